// Typed-array readers and coded JS errors for the binding layer. No logic here.
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>

#include "core/status.h"

namespace rapm {

inline Napi::Error with_code(Napi::Error err, const char* code) {
  err.Set("code", Napi::String::New(err.Env(), code));
  return err;
}
inline Napi::Error type_error(Napi::Env env, const char* code, const std::string& msg) {
  return with_code(Napi::TypeError::New(env, msg), code);
}
inline Napi::Error range_error(Napi::Env env, const char* code, const std::string& msg) {
  return with_code(Napi::RangeError::New(env, msg), code);
}

// Maps a core status to a JS error; `what` names the argument (e.g. "queries").
inline Napi::Error status_error(Napi::Env env, const Status& st, const std::string& what) {
  std::string msg = st.subject.empty() ? what : st.subject;
  if (st.row >= 0) msg += " row " + std::to_string(st.row);
  msg += ": " + st.message;
  Napi::Error err;
  const char* code = "RAPM_NATIVE";
  switch (st.code) {
    case StatusCode::kInvalidArg: code = "RAPM_INVALID_ARG"; break;
    case StatusCode::kShape: code = "RAPM_SHAPE_MISMATCH"; break;
    case StatusCode::kNonFinite: code = "RAPM_NON_FINITE"; break;
    case StatusCode::kZeroNorm: code = "RAPM_ZERO_NORM"; break;
    case StatusCode::kKTooLarge: code = "RAPM_K_TOO_LARGE"; break;
    default: break;
  }
  if (st.code == StatusCode::kOutOfMemory || st.code == StatusCode::kInternal) {
    err = Napi::Error::New(env, msg);
  } else {
    err = Napi::RangeError::New(env, msg);
  }
  err.Set("code", Napi::String::New(env, code));
  if (st.row >= 0) err.Set("row", Napi::Number::New(env, static_cast<double>(st.row)));
  return err;
}

// A typed array argument of an exact kind and element count. Throws (C++ exception,
// NAPI_CPP_EXCEPTIONS) TypeError for a wrong kind, RangeError for a wrong length.
template <typename T>
Napi::TypedArrayOf<T> typed_arg(const Napi::CallbackInfo& info, size_t i, const char* name, napi_typedarray_type kind,
                                const char* kind_name, int64_t expected_len) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != kind) {
    throw type_error(env, "RAPM_TYPE", std::string("Expected ") + kind_name + " for " + name);
  }
  auto arr = info[i].As<Napi::TypedArrayOf<T>>();
  if (expected_len >= 0 && static_cast<int64_t>(arr.ElementLength()) != expected_len) {
    throw range_error(env, "RAPM_SHAPE_MISMATCH",
                      std::string("Expected ") + name + " of length " + std::to_string(expected_len) +
                          " but received length " + std::to_string(arr.ElementLength()));
  }
  return arr;
}

inline Napi::Float32Array f32_arg(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t len) {
  return typed_arg<float>(info, i, name, napi_float32_array, "Float32Array", len);
}
inline Napi::Int32Array i32_arg(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t len) {
  return typed_arg<int32_t>(info, i, name, napi_int32_array, "Int32Array", len);
}

inline int64_t int_arg(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t lo, int64_t hi) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsNumber()) throw type_error(env, "RAPM_TYPE", std::string("Expected integer for ") + name);
  const double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= static_cast<double>(lo) && v <= static_cast<double>(hi)) || v != static_cast<double>(static_cast<int64_t>(v))) {
    throw range_error(env, "RAPM_INVALID_ARG",
                      std::string("Expected integer between ") + std::to_string(lo) + " and " + std::to_string(hi) +
                          " for " + name + " but received " + std::to_string(v));
  }
  return static_cast<int64_t>(v);
}

inline double number_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsNumber()) throw type_error(env, "RAPM_TYPE", std::string("Expected number for ") + name);
  return info[i].As<Napi::Number>().DoubleValue();
}

}  // namespace rapm
