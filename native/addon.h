// Per-environment state (one per main thread or worker thread that loads the addon).
#pragma once
#include <napi.h>

#include <atomic>
#include <memory>
#include <mutex>

#include "core/mlp.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "kernels/mlp_kernels.h"

namespace rapm {

struct Addon {
  std::atomic<const Kernels*> kernels{nullptr};
  std::atomic<const MlpKernels*> mlp_kernels{nullptr};  // same level as `kernels`
  std::unique_ptr<MlpCache> mlp_cache;                  // training/inference workspaces
  std::mutex pool_mu;
  std::shared_ptr<ThreadPool> pool;  // replaced whole by setConcurrency; in-flight work keeps its own
  Napi::FunctionReference datastore_ctor;
  // Set by the environment's cleanup hook (worker exit, process exit). Shared so an async
  // worker that completes during teardown can read it even after the Addon is deleted.
  std::shared_ptr<std::atomic<bool>> closing = std::make_shared<std::atomic<bool>>(false);

  std::shared_ptr<ThreadPool> get_pool() {
    std::lock_guard<std::mutex> lock(pool_mu);
    return pool;
  }
  static Addon& of(Napi::Env env) { return *env.GetInstanceData<Addon>(); }
};

}  // namespace rapm
