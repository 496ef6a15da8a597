// Async work: search and add off the JS thread. The worker pins every JS buffer it
// touches with a persistent reference until it settles.
//
// Teardown safety: a worker thread may be terminated while an operation is in flight. Its
// completion then runs while the environment is being torn down, when JS can no longer
// run: settling the promise fails, and node-addon-api reports that as a C++ exception
// thrown out of a libuv callback (std::terminate, SIGABRT for the whole process). So the
// worker skips settling once the environment's cleanup hook has marked it closing, and
// catches the Napi::Error of a settle that fails anyway (the hook may run after us).
// Nobody can observe that promise any more; the pinned references are released as usual.
#pragma once
#include <napi.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace rapm {

class PromiseWorker : public Napi::AsyncWorker {
 public:
  // `work` runs on a libuv thread and must not touch JS; `what` names the argument
  // an error is about.
  PromiseWorker(Napi::Env env, std::function<Status()> work, std::string what);
  void Pin(Napi::Value v);
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override;
  void OnOK() override;
  void OnError(const Napi::Error& e) override;

 private:
  Napi::Promise::Deferred deferred_;
  std::function<Status()> work_;
  std::string what_;
  Status status_;
  std::vector<Napi::Reference<Napi::Value>> pins_;
  std::shared_ptr<const std::atomic<bool>> closing_;  // Addon::closing of the creating env

  template <typename F>
  void settle(F&& f);
};

}  // namespace rapm
