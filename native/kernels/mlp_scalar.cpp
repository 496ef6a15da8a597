// Scalar MLP kernels: the baseline every other level is tested against. Exact erf/exp from
// <cmath>; plain multiply-add (two roundings). Everything but the table getter is internal.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "mlp_kernels.h"

namespace rapm {
namespace {

constexpr SimdLevel kLevel = SimdLevel::kScalar;
constexpr const char* kName = "scalar";

struct V {
  using R = float;
  static constexpr int W = 1;
  static constexpr bool kExactMath = true;
  static constexpr int kBcastVecs = 16, kBcastRows = 2, kBcastRows1 = 2;
  static constexpr int kWgVecs = 16, kWgRows = 2;
  static constexpr int kWgQueueRows = 0;  // AdamW right after each tile (no queued updates)
  static R zero() { return 0.0f; }
  static R set1(float x) { return x; }
  static R load(const float* p) { return *p; }
  static void store(float* p, R r) { *p = r; }
  static R loadn(const float* p, int n) { return n > 0 ? *p : 0.0f; }
  static void storen(float* p, R r, int n) {
    if (n > 0) *p = r;
  }
  static R add(R a, R b) { return a + b; }
  static R sub(R a, R b) { return a - b; }
  static R mul(R a, R b) { return a * b; }
  static R div(R a, R b) { return a / b; }
  static R fma(R a, R b, R c) { return a * b + c; }
  static R sqrt(R a) { return std::sqrt(a); }
  static R max(R a, R b) { return a > b ? a : b; }
  static R min(R a, R b) { return a < b ? a : b; }
  static float hsum(R a) { return a; }
  static R gt0(R x, R a) { return x > 0.0f ? a : 0.0f; }
  static R gt(R a, R b, R x, R y) { return a > b ? x : y; }
};

#include "mlp_body.inc"

}  // namespace

const MlpKernels* mlp_kernels_scalar() { return &kTable; }

}  // namespace rapm
