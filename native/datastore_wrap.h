// JS class Datastore: positional arguments only; TypeScript validates first.
#pragma once
#include <napi.h>

#include <memory>

#include "core/datastore.h"

namespace rapm {

class DatastoreWrap : public Napi::ObjectWrap<DatastoreWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit DatastoreWrap(const Napi::CallbackInfo& info);

 private:
  Napi::Value Add(const Napi::CallbackInfo& info);
  Napi::Value AddSync(const Napi::CallbackInfo& info);
  Napi::Value Search(const Napi::CallbackInfo& info);
  Napi::Value SearchSync(const Napi::CallbackInfo& info);
  Napi::Value Size(const Napi::CallbackInfo& info);
  Napi::Value MemoryBytes(const Napi::CallbackInfo& info);
  Napi::Value Dim(const Napi::CallbackInfo& info);
  Napi::Value ValueDim(const Napi::CallbackInfo& info);
  Napi::Value Bf16(const Napi::CallbackInfo& info);
  Napi::Value SegmentCount(const Napi::CallbackInfo& info);
  Napi::Value FastPathStats(const Napi::CallbackInfo& info);
  Napi::Value ExportRows(const Napi::CallbackInfo& info);
  Napi::Value ImportRows(const Napi::CallbackInfo& info);
  Napi::Value BlendPriors(const Napi::CallbackInfo& info);

  std::shared_ptr<Datastore> store_;
};

}  // namespace rapm
