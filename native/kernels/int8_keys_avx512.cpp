// Exact scan over int8-stored keys with AVX-512 (precision 'int8'; definition in kernels.h,
// reference: int8_keys_scalar.cpp). Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq
// by file suffix; everything but scan_i8keys_avx512 and dot_panel_i8_avx512 (called only
// through the avx512 tables) stays in the anonymous namespace.
//
// Per group of 4 dims, two 64-byte loads hold the 32 lanes' codes (one int32 lane per key row,
// byte j = dim 4g + j); each dim is sign-extended by a shift pair, converted to f32 and
// FMA'd with 12 broadcast queries. p ascending with FMA, then the row's scale: the same
// order for every call, so the re-rank reproduces the exact scan bit for bit.
#include <immintrin.h>

#include "kernels.h"
#include "pack_queries.h"

namespace rapm {
namespace {

constexpr int kMr = 12;  // as the avx512 tables (a.qpack holds round_up(nq, 12) * d floats)

// Dim j (0..3) of each int32 lane of v, sign-extended, as float.
template <int J>
inline __m512 dim_of(__m512i v) {
  if (J == 3) return _mm512_cvtepi32_ps(_mm512_srai_epi32(v, 24));
  return _mm512_cvtepi32_ps(_mm512_srai_epi32(_mm512_slli_epi32(v, 24 - 8 * J), 24));
}

template <int MR, int J>
inline void fma_dim(const float* q, __m512i k0, __m512i k1, __m512* acc0, __m512* acc1) {
  const __m512 f0 = dim_of<J>(k0), f1 = dim_of<J>(k1);
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    const __m512 qv = _mm512_set1_ps(q[i]);
    acc0[i] = _mm512_fmadd_ps(qv, f0, acc0[i]);
    acc1[i] = _mm512_fmadd_ps(qv, f1, acc1[i]);
  }
}

template <int MR>
void tile(const ScanArgs& a, const float* q, int q0, int64_t p0, int64_t p1) {
  const int d = a.d, d4 = (d + 3) / 4, full = d / 4, rest = d % 4;
  for (int64_t P = p0; P < p1; ++P) {
    __m512 acc0[MR], acc1[MR];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      acc0[i] = _mm512_setzero_ps();
      acc1[i] = _mm512_setzero_ps();
    }
    const int8_t* kp = a.keys_i8 + static_cast<size_t>(P) * d4 * kPanel * 4;
    for (int g = 0; g < full; ++g) {
      const __m512i k0 = _mm512_loadu_si512(kp + static_cast<size_t>(g) * kPanel * 4);
      const __m512i k1 = _mm512_loadu_si512(kp + static_cast<size_t>(g) * kPanel * 4 + 64);
      const float* qg = q + static_cast<size_t>(4 * g) * kMr;
      fma_dim<MR, 0>(qg, k0, k1, acc0, acc1);
      fma_dim<MR, 1>(qg + kMr, k0, k1, acc0, acc1);
      fma_dim<MR, 2>(qg + 2 * kMr, k0, k1, acc0, acc1);
      fma_dim<MR, 3>(qg + 3 * kMr, k0, k1, acc0, acc1);
    }
    if (rest > 0) {  // the last, partial group: only its real dims (no padding terms)
      const __m512i k0 = _mm512_loadu_si512(kp + static_cast<size_t>(full) * kPanel * 4);
      const __m512i k1 = _mm512_loadu_si512(kp + static_cast<size_t>(full) * kPanel * 4 + 64);
      const float* qg = q + static_cast<size_t>(4 * full) * kMr;
      fma_dim<MR, 0>(qg, k0, k1, acc0, acc1);
      if (rest > 1) fma_dim<MR, 1>(qg + kMr, k0, k1, acc0, acc1);
      if (rest > 2) fma_dim<MR, 2>(qg + 2 * kMr, k0, k1, acc0, acc1);
    }
    const int64_t row0 = P * kPanel;
    const int64_t valid = a.n_rows - row0;
    const uint32_t lanes = valid >= kPanel ? 0xFFFFFFFFu : ((1u << valid) - 1u);
    const __m512 ks0 = _mm512_loadu_ps(a.key_scale + row0);
    const __m512 ks1 = _mm512_loadu_ps(a.key_scale + row0 + 16);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m512 s0 = _mm512_mul_ps(acc0[i], ks0), s1 = _mm512_mul_ps(acc1[i], ks1);
      const __m512 t = _mm512_set1_ps(a.thr[q0 + i]);
      uint32_t m = static_cast<uint32_t>(_mm512_cmp_ps_mask(s0, t, _CMP_GE_OQ)) |
                   (static_cast<uint32_t>(_mm512_cmp_ps_mask(s1, t, _CMP_GE_OQ)) << 16);
      m &= lanes;
      if (m) {
        alignas(64) float s[kPanel];
        _mm512_store_ps(s, s0);
        _mm512_store_ps(s + 16, s1);
        a.push(a.push_ctx, q0 + i, s, m, row0);
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
    case 6: return tile<6>(a, q, q0, p0, p1);
    case 7: return tile<7>(a, q, q0, p0, p1);
    case 8: return tile<8>(a, q, q0, p0, p1);
    case 9: return tile<9>(a, q, q0, p0, p1);
    case 10: return tile<10>(a, q, q0, p0, p1);
    case 11: return tile<11>(a, q, q0, p0, p1);
    default: return tile<12>(a, q, q0, p0, p1);
  }
}

// dot_panel_i8 (kernels.h): tile<> for one panel with the queries read through row pointers
// instead of a packed panel. Per lane the same chain as tile<>: acc = fma(q[p], k[p], acc) over
// the real dims p ascending from 0, then acc * scale; a half panel (kHalf) runs the chains of
// lanes lo .. lo + 15 only, which are tile<>'s acc0 (lo = 0, the group's first 64-byte line)
// or acc1 (lo = 16, its second line). pf, when set, is another panel whose pf_lines lines per
// group (from pf + g * 128) are prefetched while this one is dotted.
template <int MR, bool kHalf, int J>
inline void dot_dim(const float* const* q, int p, __m512i k0, __m512i k1, __m512* acc0, __m512* acc1) {
  const __m512 f0 = dim_of<J>(k0);
  const __m512 f1 = kHalf ? f0 : dim_of<J>(k1);
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    const __m512 qv = _mm512_set1_ps(q[i][p]);
    acc0[i] = _mm512_fmadd_ps(qv, f0, acc0[i]);
    if (!kHalf) acc1[i] = _mm512_fmadd_ps(qv, f1, acc1[i]);
  }
}

template <int MR, bool kHalf>
void dot_tile(const float* const* q, int d, const int8_t* kp, const float* ks, int lo, float* out, const char* pf,
              int pf_lines) {
  const int full = d / 4, rest = d % 4;
  __m512 acc0[MR], acc1[MR];
  const float* qi[MR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    acc0[i] = _mm512_setzero_ps();
    acc1[i] = _mm512_setzero_ps();
    qi[i] = q[i];
  }
  const int8_t* kh = kp + 4 * lo;  // the half's line of each group (lo = 0 for a whole panel)
  // Dim group g: its first `dims` dims (4, or the real dims of the last, partial group, as tile<>).
  const auto group = [&](int g, int dims) {
    if (pf != nullptr) {
      _mm_prefetch(pf + static_cast<size_t>(g) * kPanel * 4, _MM_HINT_T0);
      if (pf_lines > 1) _mm_prefetch(pf + static_cast<size_t>(g) * kPanel * 4 + 64, _MM_HINT_T0);
    }
    const int8_t* kg = kh + static_cast<size_t>(g) * kPanel * 4;
    const __m512i k0 = _mm512_loadu_si512(kg);
    const __m512i k1 = kHalf ? k0 : _mm512_loadu_si512(kg + 64);
    dot_dim<MR, kHalf, 0>(qi, 4 * g, k0, k1, acc0, acc1);
    if (dims > 1) dot_dim<MR, kHalf, 1>(qi, 4 * g + 1, k0, k1, acc0, acc1);
    if (dims > 2) dot_dim<MR, kHalf, 2>(qi, 4 * g + 2, k0, k1, acc0, acc1);
    if (dims > 3) dot_dim<MR, kHalf, 3>(qi, 4 * g + 3, k0, k1, acc0, acc1);
  };
  for (int g = 0; g < full; ++g) group(g, 4);
  if (rest > 0) group(full, rest);
  const __m512 ks0 = _mm512_loadu_ps(ks + lo);
  const __m512 ks1 = kHalf ? ks0 : _mm512_loadu_ps(ks + 16);
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    _mm512_storeu_ps(out + i * kPanel + lo, _mm512_mul_ps(acc0[i], ks0));
    if (!kHalf) _mm512_storeu_ps(out + i * kPanel + 16, _mm512_mul_ps(acc1[i], ks1));
  }
}

template <bool kHalf>
void dot_panel_impl(const DotPanelArgs& a, const char* pf, int pf_lines) {
  constexpr int kDotMr = 8;  // 16 accumulators + 8 query pointers: no spills
  const float* const* q = a.queries;
  const int nq = a.nq, d = a.d, lo = kHalf ? 16 * a.half : 0;
  const int8_t* kp = a.keys_i8;
  const float* ks = a.key_scale;
  int i = 0;
  for (; i + kDotMr <= nq; i += kDotMr) {
    dot_tile<kDotMr, kHalf>(q + i, d, kp, ks, lo, a.out + static_cast<size_t>(i) * kPanel, pf, pf_lines);
    pf = nullptr;  // the first tile prefetched it
  }
  float* o = a.out + static_cast<size_t>(i) * kPanel;
  switch (nq - i) {
    case 7: return dot_tile<7, kHalf>(q + i, d, kp, ks, lo, o, pf, pf_lines);
    case 6: return dot_tile<6, kHalf>(q + i, d, kp, ks, lo, o, pf, pf_lines);
    case 5: return dot_tile<5, kHalf>(q + i, d, kp, ks, lo, o, pf, pf_lines);
    case 4: return dot_tile<4, kHalf>(q + i, d, kp, ks, lo, o, pf, pf_lines);
    case 3: return dot_tile<3, kHalf>(q + i, d, kp, ks, lo, o, pf, pf_lines);
    case 2: return dot_tile<2, kHalf>(q + i, d, kp, ks, lo, o, pf, pf_lines);
    case 1: return dot_tile<1, kHalf>(q + i, d, kp, ks, lo, o, pf, pf_lines);
    default: return;
  }
}

}  // namespace

void dot_panel_i8_avx512(const DotPanelArgs& a) {
  // The next panel's lines of each group: one (its half's) or both; and its scales' lines.
  const char* pf = static_cast<const char*>(a.next);
  int pf_lines = 1;
  if (pf != nullptr) {
    if (a.next_half >= 0) {
      pf += 64 * a.next_half;
    } else {
      pf_lines = 2;
    }
    if (a.next_scale != nullptr) {
      const float* s = a.next_scale + (a.next_half > 0 ? 16 : 0);
      const int n = a.next_half >= 0 ? 16 : kPanel;
      _mm_prefetch(reinterpret_cast<const char*>(s), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(s + n - 1), _MM_HINT_T0);
      if (n == kPanel) _mm_prefetch(reinterpret_cast<const char*>(s + 16), _MM_HINT_T0);
    }
  }
  if (a.half >= 0) {
    dot_panel_impl<true>(a, pf, pf_lines);
  } else {
    dot_panel_impl<false>(a, pf, pf_lines);
  }
}

void scan_i8keys_avx512(const ScanArgs& a) {
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
