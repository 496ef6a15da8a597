// Exception-free status for core code. Wrappers turn it into JS errors.
#pragma once
#include <cstdint>
#include <string>

namespace rapm {

enum class StatusCode : int {
  kOk = 0,
  kInvalidArg,    // RangeError, RAPM_INVALID_ARG
  kShape,         // RangeError, RAPM_SHAPE_MISMATCH
  kNonFinite,     // RangeError, RAPM_NON_FINITE (row set)
  kZeroNorm,      // RangeError, RAPM_ZERO_NORM (row set)
  kKTooLarge,     // RangeError, RAPM_K_TOO_LARGE
  kOutOfMemory,   // Error, RAPM_NATIVE
  kInternal,      // Error, RAPM_NATIVE
};

struct Status {
  StatusCode code = StatusCode::kOk;
  std::string message;
  int64_t row = -1;     // offending row, when there is one
  std::string subject;  // which input the row belongs to ("keys", "values"), when the callee knows

  bool ok() const { return code == StatusCode::kOk; }
  static Status Ok() { return Status{}; }
  static Status Error(StatusCode c, std::string msg, int64_t row = -1, std::string subject = "") {
    return Status{c, std::move(msg), row, std::move(subject)};
  }
};

}  // namespace rapm
