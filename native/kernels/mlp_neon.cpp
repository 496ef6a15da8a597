// NEON (aarch64 baseline) MLP kernels, compiled only on arm64. Plain intrinsics over the
// shared body; tails go through a small stack buffer. Everything but the getter is internal.
#include <arm_neon.h>

#include <cmath>
#include <cstring>

#include "mlp_kernels.h"

namespace rapm {
namespace {

constexpr SimdLevel kLevel = SimdLevel::kNeon;
constexpr const char* kName = "neon";

struct V {
  using R = float32x4_t;
  static constexpr int W = 4;
  static constexpr bool kExactMath = false;
  // gemm_bcast: 6 rows x 16 columns = 24 q-register accumulators.
  static constexpr int kBcastVecs = 4, kBcastRows = 6, kBcastRows1 = 6;
  // gemm_wgrad: 4 rows x 16 columns = 16 accumulators.
  static constexpr int kWgVecs = 4, kWgRows = 4;
  static constexpr int kWgQueueRows = 0;  // AdamW right after each tile (no queued updates)
  static R zero() { return vdupq_n_f32(0.0f); }
  static R set1(float x) { return vdupq_n_f32(x); }
  static R load(const float* p) { return vld1q_f32(p); }
  static void store(float* p, R r) { vst1q_f32(p, r); }
  static R loadn(const float* p, int n) {
    float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    std::memcpy(t, p, sizeof(float) * static_cast<size_t>(n));
    return vld1q_f32(t);
  }
  static void storen(float* p, R r, int n) {
    float t[4];
    vst1q_f32(t, r);
    std::memcpy(p, t, sizeof(float) * static_cast<size_t>(n));
  }
  static R add(R a, R b) { return vaddq_f32(a, b); }
  static R sub(R a, R b) { return vsubq_f32(a, b); }
  static R mul(R a, R b) { return vmulq_f32(a, b); }
  static R div(R a, R b) { return vdivq_f32(a, b); }
  static R fma(R a, R b, R c) { return vfmaq_f32(c, a, b); }
  static R sqrt(R a) { return vsqrtq_f32(a); }
  static R max(R a, R b) { return vmaxq_f32(a, b); }
  static R min(R a, R b) { return vminq_f32(a, b); }
  static float hsum(R a) { return vaddvq_f32(a); }
  static R gt0(R x, R a) {
    return vreinterpretq_f32_u32(vandq_u32(vcgtq_f32(x, vdupq_n_f32(0.0f)), vreinterpretq_u32_f32(a)));
  }
  static R gt(R a, R b, R x, R y) { return vbslq_f32(vcgtq_f32(a, b), x, y); }
  static R round(R a) { return vrndnq_f32(a); }
  static R exp2i(R n) {
    const int32x4_t e = vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127));
    return vreinterpretq_f32_s32(vshlq_n_s32(e, 23));
  }
};

#include "mlp_body.inc"

}  // namespace

const MlpKernels* mlp_kernels_neon() { return &kTable; }

}  // namespace rapm
