#include "thread_pool.h"

#include <atomic>
#include <chrono>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#endif

namespace rapm {

namespace {

// How long a thread polls before it sleeps: above a wake-up, below what keeps a core busy
// for nothing when the pool is idle between searches.
constexpr auto kSpin = std::chrono::microseconds(200);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

// Polls done() for up to kSpin; true if it became true.
template <typename F>
bool spin_until(F done) {
  const auto end = std::chrono::steady_clock::now() + kSpin;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() >= end) return done();
  }
}

}  // namespace

struct ThreadPool::Job {
  const std::function<void(int64_t)>* fn;
  int64_t n;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  std::mutex mu;
  std::condition_variable cv;
};

ThreadPool::ThreadPool(int threads) : threads_(threads < 1 ? 1 : threads) {
  for (int i = 1; i < threads_; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

// Claims and runs one task of `job`; false when none is left to claim.
bool ThreadPool::run_one(Job& job) {
  const int64_t i = job.next.fetch_add(1, std::memory_order_relaxed);
  if (i >= job.n) return false;
  (*job.fn)(i);
  if (job.done.fetch_add(1, std::memory_order_acq_rel) + 1 == job.n) {
    std::lock_guard<std::mutex> lock(job.mu);
    job.cv.notify_all();
  }
  return true;
}

void ThreadPool::worker_loop() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (queue_.empty() && !stop_) {
        lock.unlock();
        spin_until([this] { return queued_.load(std::memory_order_relaxed) > 0; });
        lock.lock();
      }
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (stop_ && queue_.empty()) return;
      job = queue_.front();
      if (job->next.load(std::memory_order_relaxed) >= job->n) {
        queue_.pop_front();  // every task claimed; the job's owner waits for the rest
        queued_.store(static_cast<int>(queue_.size()), std::memory_order_relaxed);
        continue;
      }
    }
    while (run_one(*job)) {
    }
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t)>& fn) {
  if (n <= 0) return;
  if (n == 1 || workers_.empty()) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  auto job = std::make_shared<Job>();
  job->fn = &fn;
  job->n = n;
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(job);
    queued_.store(static_cast<int>(queue_.size()), std::memory_order_relaxed);
  }
  cv_.notify_all();
  while (run_one(*job)) {
  }
  if (spin_until([&] { return job->done.load(std::memory_order_acquire) == n; })) return;
  std::unique_lock<std::mutex> lock(job->mu);
  job->cv.wait(lock, [&] { return job->done.load(std::memory_order_acquire) == n; });
}

}  // namespace rapm
