#include "search_worker.h"

#include <exception>

#include "addon.h"
#include "napi_util.h"

namespace rapm {

PromiseWorker::PromiseWorker(Napi::Env env, std::function<Status()> work, std::string what)
    : Napi::AsyncWorker(env, "rapm"), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)),
      what_(std::move(what)), closing_(Addon::of(env).closing) {}

void PromiseWorker::Pin(Napi::Value v) {
  if (v.IsObject()) pins_.push_back(Napi::Persistent(v));  // N-API 8 cannot reference primitives
}

void PromiseWorker::Execute() {
  try {
    status_ = work_();
  } catch (const std::bad_alloc&) {
    status_ = Status::Error(StatusCode::kOutOfMemory, "out of memory");
  } catch (const std::exception& e) {
    status_ = Status::Error(StatusCode::kInternal, e.what());
  }
}

template <typename F>
void PromiseWorker::settle(F&& f) {
  if (closing_->load()) return;  // environment exiting: the promise can't be observed
  try {
    f();
  } catch (const Napi::Error&) {
    // Settling failed: the environment started exiting after the check above (JS can't
    // run any more). Swallowed here so node-addon-api never rethrows it out of libuv.
  }
}

void PromiseWorker::OnOK() {
  settle([this] {
    Napi::Env env = Env();
    if (status_.ok()) {
      deferred_.Resolve(env.Undefined());
    } else {
      deferred_.Reject(status_error(env, status_, what_).Value());
    }
  });
}

void PromiseWorker::OnError(const Napi::Error& e) {
  settle([&] { deferred_.Reject(e.Value()); });
}

}  // namespace rapm
