// Exact scan over int8-stored keys with AVX2 + FMA (precision 'int8'; definition in kernels.h,
// reference: int8_keys_scalar.cpp). Compiled with -mavx2 -mfma by file suffix; everything but
// scan_i8keys_avx2 (called only through the avx2 table) stays in the anonymous namespace.
//
// Half a panel (16 key rows) at a time, as similarity_avx2.cpp: per group of 4 dims, two
// 32-byte loads hold the 16 lanes' codes (one int32 lane per key row, byte j = dim 4g + j);
// each dim is sign-extended by a shift pair, converted to f32 and FMA'd with 6 broadcast
// queries. p ascending with FMA, then the row's scale.
#include <immintrin.h>

#include "kernels.h"
#include "pack_queries.h"

namespace rapm {
namespace {

constexpr int kMr = 6;  // as the avx2 table (a.qpack holds round_up(nq, 6) * d floats)

template <int J>
inline __m256 dim_of(__m256i v) {
  if (J == 3) return _mm256_cvtepi32_ps(_mm256_srai_epi32(v, 24));
  return _mm256_cvtepi32_ps(_mm256_srai_epi32(_mm256_slli_epi32(v, 24 - 8 * J), 24));
}

template <int MR, int J>
inline void fma_dim(const float* q, __m256i k0, __m256i k1, __m256* acc0, __m256* acc1) {
  const __m256 f0 = dim_of<J>(k0), f1 = dim_of<J>(k1);
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    const __m256 qv = _mm256_broadcast_ss(q + i);
    acc0[i] = _mm256_fmadd_ps(qv, f0, acc0[i]);
    acc1[i] = _mm256_fmadd_ps(qv, f1, acc1[i]);
  }
}

template <int MR>
void tile(const ScanArgs& a, const float* q, int q0, int64_t p0, int64_t p1) {
  const int d = a.d, d4 = (d + 3) / 4, full = d / 4, rest = d % 4;
  for (int64_t P = p0; P < p1; ++P) {
    const int64_t row0 = P * kPanel;
    const int64_t valid = a.n_rows - row0;
    const uint32_t lanes = valid >= kPanel ? 0xFFFFFFFFu : ((1u << valid) - 1u);
    for (int h = 0; h < 2; ++h) {  // two halves of 16 keys
      __m256 acc0[MR], acc1[MR];
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        acc0[i] = _mm256_setzero_ps();
        acc1[i] = _mm256_setzero_ps();
      }
      const int8_t* kp = a.keys_i8 + static_cast<size_t>(P) * d4 * kPanel * 4 + h * 64;
      for (int g = 0; g < d4; ++g) {
        const int8_t* kg = kp + static_cast<size_t>(g) * kPanel * 4;
        const __m256i k0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kg));
        const __m256i k1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kg + 32));
        const float* qg = q + static_cast<size_t>(4 * g) * kMr;
        const int dims = g < full ? 4 : rest;  // the last, partial group: only its real dims
        fma_dim<MR, 0>(qg, k0, k1, acc0, acc1);
        if (dims > 1) fma_dim<MR, 1>(qg + kMr, k0, k1, acc0, acc1);
        if (dims > 2) fma_dim<MR, 2>(qg + 2 * kMr, k0, k1, acc0, acc1);
        if (dims > 3) fma_dim<MR, 3>(qg + 3 * kMr, k0, k1, acc0, acc1);
      }
      const __m256 ks0 = _mm256_loadu_ps(a.key_scale + row0 + 16 * h);
      const __m256 ks1 = _mm256_loadu_ps(a.key_scale + row0 + 16 * h + 8);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const __m256 s0 = _mm256_mul_ps(acc0[i], ks0), s1 = _mm256_mul_ps(acc1[i], ks1);
        const __m256 t = _mm256_set1_ps(a.thr[q0 + i]);
        uint32_t m = static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(s0, t, _CMP_GE_OQ))) |
                     (static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(s1, t, _CMP_GE_OQ))) << 8);
        m = (m << (16 * h)) & lanes;
        if (m) {
          alignas(32) float s[kPanel];
          _mm256_store_ps(s + 16 * h, s0);
          _mm256_store_ps(s + 16 * h + 8, s1);
          a.push(a.push_ctx, q0 + i, s, m, row0);
        }
      }
    }
  }
}

void tile_dispatch(int mr, const ScanArgs& a, const float* q, int q0, int64_t p0, int64_t p1) {
  switch (mr) {
    case 1: return tile<1>(a, q, q0, p0, p1);
    case 2: return tile<2>(a, q, q0, p0, p1);
    case 3: return tile<3>(a, q, q0, p0, p1);
    case 4: return tile<4>(a, q, q0, p0, p1);
    case 5: return tile<5>(a, q, q0, p0, p1);
    default: return tile<6>(a, q, q0, p0, p1);
  }
}

}  // namespace

void scan_i8keys_avx2(const ScanArgs& a) {
  pack_queries<kMr>(a);
  const QueryTiles tiles(a.nq, kMr);
  for (int64_t kb = a.panel_begin; kb < a.panel_end; kb += a.block_panels) {
    const int64_t kb_end = kb + a.block_panels < a.panel_end ? kb + a.block_panels : a.panel_end;
    for (int qp = 0; qp < tiles.count; ++qp) {
      tile_dispatch(tiles.size(qp), a, a.qpack + static_cast<size_t>(qp) * a.d * kMr, tiles.start(qp), kb, kb_end);
    }
  }
}

}  // namespace rapm
