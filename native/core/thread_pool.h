// A fixed pool of worker threads, created once per addon instance; no OpenMP.
// Several callers may run parallel_for at the same time: each call is a job with its
// own task counter, and the calling thread works on its own job too.
//
// Idle workers and a caller waiting for its job's last tasks spin for a short while
// (kSpin) before they sleep: a search is a few parallel_for calls in a row, and waking a
// sleeping thread costs tens of microseconds (more in a VM), paid at the start and the end
// of every call.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace rapm {

class ThreadPool {
 public:
  // `threads` is the total parallelism, including the calling thread.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return threads_; }
  // Runs fn(i) for i in [0, n); returns when all have finished.
  void parallel_for(int64_t n, const std::function<void(int64_t)>& fn);

 private:
  struct Job;
  void worker_loop();
  static bool run_one(Job& job);

  int threads_;
  std::atomic<int> queued_{0};  // queue_.size(), readable without the lock (spinning workers)
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace rapm
