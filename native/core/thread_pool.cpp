#include "thread_pool.h"

#include <atomic>

namespace rapm {

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
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (stop_ && queue_.empty()) return;
      job = queue_.front();
      if (job->next.load(std::memory_order_relaxed) >= job->n) {
        queue_.pop_front();  // every task claimed; the job's owner waits for the rest
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
  }
  cv_.notify_all();
  while (run_one(*job)) {
  }
  std::unique_lock<std::mutex> lock(job->mu);
  job->cv.wait(lock, [&] { return job->done.load(std::memory_order_acquire) == n; });
}

}  // namespace rapm
