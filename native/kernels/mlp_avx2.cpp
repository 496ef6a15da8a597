// AVX2 + FMA MLP kernels. Compiled with -mavx2 -mfma by file suffix; everything but the
// table getter stays in the anonymous namespace.
#include <immintrin.h>

#include <cmath>

#include "mlp_kernels.h"

namespace rapm {
namespace {

constexpr SimdLevel kLevel = SimdLevel::kAvx2;
constexpr const char* kName = "avx2";

struct V {
  using R = __m256;
  static constexpr int W = 8;
  static constexpr bool kExactMath = false;
  // gemm_bcast: 6 rows x 16 columns = 12 ymm accumulators (16 registers in all).
  static constexpr int kBcastVecs = 2, kBcastRows = 6, kBcastRows1 = 6;
  // gemm_wgrad: 4 rows x 24 columns = 12 ymm accumulators.
  static constexpr int kWgVecs = 3, kWgRows = 4;
  static constexpr int kWgQueueRows = 0;  // AdamW right after each tile (no queued updates)
  static __m256i lanes(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static R zero() { return _mm256_setzero_ps(); }
  static R set1(float x) { return _mm256_set1_ps(x); }
  static R load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, R r) { _mm256_storeu_ps(p, r); }
  static R loadn(const float* p, int n) { return _mm256_maskload_ps(p, lanes(n)); }
  static void storen(float* p, R r, int n) { _mm256_maskstore_ps(p, lanes(n), r); }
  static R add(R a, R b) { return _mm256_add_ps(a, b); }
  static R sub(R a, R b) { return _mm256_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm256_mul_ps(a, b); }
  static R div(R a, R b) { return _mm256_div_ps(a, b); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  static R sqrt(R a) { return _mm256_sqrt_ps(a); }
  static R max(R a, R b) { return _mm256_max_ps(a, b); }
  static R min(R a, R b) { return _mm256_min_ps(a, b); }
  static float hsum(R a) {
    const __m128 q = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    const __m128 d = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(d, _mm_movehdup_ps(d)));
  }
  static R gt0(R x, R a) { return _mm256_and_ps(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ), a); }
  static R gt(R a, R b, R x, R y) { return _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_GT_OQ)); }
  static R round(R a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static R exp2i(R n) {
    const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
  }
};

#include "mlp_body.inc"

}  // namespace

const MlpKernels* mlp_kernels_avx2() { return &kTable; }

}  // namespace rapm
