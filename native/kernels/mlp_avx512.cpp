// AVX-512 (F/BW/VL/DQ) MLP kernels. Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq
// by file suffix; everything but the table getter stays in the anonymous namespace.
#include <immintrin.h>

#include <cmath>

#include "mlp_kernels.h"

namespace rapm {
namespace {

constexpr SimdLevel kLevel = SimdLevel::kAvx512;
constexpr const char* kName = "avx512";

struct V {
  using R = __m512;
  static constexpr int W = 16;
  static constexpr bool kExactMath = false;
  // gemm_bcast: 12 rows x 32 columns = 24 zmm accumulators; 24 x 16 on a 16-column tail.
  static constexpr int kBcastVecs = 2, kBcastRows = 12, kBcastRows1 = 24;
  // gemm_wgrad: 6 rows x 64 columns = 24 zmm accumulators.
  static constexpr int kWgVecs = 4, kWgRows = 6;
  // AdamW tiles: 5 rows x 64 columns (20 accumulators), leaving registers for the queued update.
  static constexpr int kWgQueueRows = 5;
  static __mmask16 lanes(int n) { return static_cast<__mmask16>((1u << n) - 1u); }
  static R zero() { return _mm512_setzero_ps(); }
  static R set1(float x) { return _mm512_set1_ps(x); }
  static R load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, R r) { _mm512_storeu_ps(p, r); }
  static R loadn(const float* p, int n) { return _mm512_maskz_loadu_ps(lanes(n), p); }
  static void storen(float* p, R r, int n) { _mm512_mask_storeu_ps(p, lanes(n), r); }
  static R add(R a, R b) { return _mm512_add_ps(a, b); }
  static R sub(R a, R b) { return _mm512_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm512_mul_ps(a, b); }
  static R div(R a, R b) { return _mm512_div_ps(a, b); }
  static R fma(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static R sqrt(R a) { return _mm512_sqrt_ps(a); }
  static R max(R a, R b) { return _mm512_max_ps(a, b); }
  static R min(R a, R b) { return _mm512_min_ps(a, b); }
  static float hsum(R a) {
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
    const __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    const __m128 d = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(d, _mm_movehdup_ps(d)));
  }
  static R gt0(R x, R a) { return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GT_OQ), a); }
  static R gt(R a, R b, R x, R y) { return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_GT_OQ), y, x); }
  static R round(R a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static R exp2i(R n) {
    const __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
    return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
  }
};

#include "mlp_body.inc"

}  // namespace

const MlpKernels* mlp_kernels_avx512() { return &kTable; }

}  // namespace rapm
