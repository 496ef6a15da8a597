// AVX2 + FMA kernels. Compiled with -mavx2 -mfma by file suffix; everything but the
// table getter stays in the anonymous namespace.
#include <immintrin.h>

#include "kernels.h"
#include "pack_queries.h"

namespace rapm {
namespace {

constexpr int kMr = 6;  // 6 queries x 16 keys (half a panel) = 12 ymm accumulators

template <bool kBf16>
inline void load_keys(const ScanArgs& a, size_t off, __m256* k0, __m256* k1) {
  if (kBf16) {
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.keys_bf16 + off));
    *k0 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(raw)), 16));
    *k1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(raw, 1)), 16));
  } else {
    *k0 = _mm256_loadu_ps(a.keys_f32 + off);
    *k1 = _mm256_loadu_ps(a.keys_f32 + off + 8);
  }
}

template <int MR, bool kBf16>
void tile(const ScanArgs& a, const float* q, int q0, int64_t p0, int64_t p1) {
  const int d = a.d;
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
      const size_t off = static_cast<size_t>(P) * d * kPanel + h * 16;
      for (int p = 0; p < d; ++p) {
        __m256 k0, k1;
        load_keys<kBf16>(a, off + static_cast<size_t>(p) * kPanel, &k0, &k1);
        const float* qp = q + p * kMr;
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
          const __m256 qv = _mm256_broadcast_ss(qp + i);
          acc0[i] = _mm256_fmadd_ps(qv, k0, acc0[i]);
          acc1[i] = _mm256_fmadd_ps(qv, k1, acc1[i]);
        }
      }
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const __m256 t = _mm256_set1_ps(a.thr[q0 + i]);
        uint32_t m = static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(acc0[i], t, _CMP_GE_OQ))) |
                     (static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(acc1[i], t, _CMP_GE_OQ))) << 8);
        m = (m << (16 * h)) & lanes;
        if (m) {
          alignas(32) float s[kPanel];
          _mm256_store_ps(s + 16 * h, acc0[i]);
          _mm256_store_ps(s + 16 * h + 8, acc1[i]);
          a.push(a.push_ctx, q0 + i, s, m, row0);
        }
      }
    }
  }
}

template <bool kBf16>
void tile_dispatch(int mr, const ScanArgs& a, const float* q, int q0, int64_t p0, int64_t p1) {
  switch (mr) {
    case 1: return tile<1, kBf16>(a, q, q0, p0, p1);
    case 2: return tile<2, kBf16>(a, q, q0, p0, p1);
    case 3: return tile<3, kBf16>(a, q, q0, p0, p1);
    case 4: return tile<4, kBf16>(a, q, q0, p0, p1);
    case 5: return tile<5, kBf16>(a, q, q0, p0, p1);
    default: return tile<6, kBf16>(a, q, q0, p0, p1);
  }
}

template <bool kBf16>
void scan_impl(const ScanArgs& a) {
  pack_queries<kMr>(a);
  const QueryTiles tiles(a.nq, kMr);
  for (int64_t kb = a.panel_begin; kb < a.panel_end; kb += a.block_panels) {
    const int64_t kb_end = kb + a.block_panels < a.panel_end ? kb + a.block_panels : a.panel_end;
    for (int qp = 0; qp < tiles.count; ++qp) {
      tile_dispatch<kBf16>(tiles.size(qp), a, a.qpack + static_cast<size_t>(qp) * a.d * kMr, tiles.start(qp), kb, kb_end);
    }
  }
}

void scan(const ScanArgs& a) {
  if (a.keys_bf16 != nullptr) {
    scan_impl<true>(a);
  } else {
    scan_impl<false>(a);
  }
}

double fma_probe(int64_t iters, float* sink) {
  constexpr int kChains = 12;
  __m256 x[kChains];
  for (int j = 0; j < kChains; ++j) x[j] = _mm256_set1_ps(1.0f + j * 1e-3f);
  const __m256 m = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int j = 0; j < kChains; ++j) x[j] = _mm256_fmadd_ps(x[j], m, c);
  }
  __m256 s = x[0];
  for (int j = 1; j < kChains; ++j) s = _mm256_add_ps(s, x[j]);
  alignas(32) float o[8];
  _mm256_store_ps(o, s);
  *sink = o[0] + o[1] + o[2] + o[3] + o[4] + o[5] + o[6] + o[7];
  return static_cast<double>(iters) * kChains * 8 * 2;
}

float read_sum(const float* p, size_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_add_ps(s0, _mm256_loadu_ps(p + i));
    s1 = _mm256_add_ps(s1, _mm256_loadu_ps(p + i + 8));
    s2 = _mm256_add_ps(s2, _mm256_loadu_ps(p + i + 16));
    s3 = _mm256_add_ps(s3, _mm256_loadu_ps(p + i + 24));
  }
  alignas(32) float o[8];
  _mm256_store_ps(o, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  float t = o[0] + o[1] + o[2] + o[3] + o[4] + o[5] + o[6] + o[7];
  for (; i < n; ++i) t += p[i];
  return t;
}

const Kernels kTable = {SimdLevel::kAvx2, "avx2", kMr, scan, fma_probe, read_sum,
                            scan_bf16_scalar, scan_i8_scalar, false, false,
                            scan_i8keys_avx2};  // int8 store: kernels/int8_keys_avx2.cpp

}  // namespace

const Kernels* kernels_avx2() { return &kTable; }

}  // namespace rapm
