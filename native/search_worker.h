// Async work: search and add off the JS thread. The worker pins every JS buffer it
// touches with a persistent reference until it settles.
#pragma once
#include <napi.h>

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
};

}  // namespace rapm
