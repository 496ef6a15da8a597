#include "search_worker.h"

#include <exception>

#include "napi_util.h"

namespace rapm {

PromiseWorker::PromiseWorker(Napi::Env env, std::function<Status()> work, std::string what)
    : Napi::AsyncWorker(env, "rapm"), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)),
      what_(std::move(what)) {}

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

void PromiseWorker::OnOK() {
  Napi::Env env = Env();
  if (status_.ok()) {
    deferred_.Resolve(env.Undefined());
  } else {
    deferred_.Reject(status_error(env, status_, what_).Value());
  }
}

void PromiseWorker::OnError(const Napi::Error& e) { deferred_.Reject(e.Value()); }

}  // namespace rapm
