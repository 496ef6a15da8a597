// AVX-512 (F/BW/VL/DQ) kernels. Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq
// by file suffix; everything but the table getter stays in the anonymous namespace.
#include <immintrin.h>

#include <type_traits>

#include "kernels.h"
#include "pack_queries.h"

namespace rapm {
namespace {

constexpr int kMr = 12;  // 12 queries x 32 keys = 24 zmm accumulators

template <bool kBf16>
inline void load_keys(const ScanArgs& a, size_t off, __m512* k0, __m512* k1) {
  if (kBf16) {
    const __m512i raw = _mm512_loadu_si512(a.keys_bf16 + off);
    *k0 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(raw)), 16));
    *k1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(raw, 1)), 16));
  } else {
    *k0 = _mm512_loadu_ps(a.keys_f32 + off);
    *k1 = _mm512_loadu_ps(a.keys_f32 + off + 16);
  }
}

// One micro-tile: MR queries (packed, dimension-major) against key panels [p0, p1).
template <int MR, bool kBf16>
void tile(const ScanArgs& a, const float* q, int q0, int64_t p0, int64_t p1) {
  const int d = a.d;
  // Each panel's sums start as fma(q, k, zero) with `zero` a register the compiler cannot see
  // is zero, instead of 2 MR accumulators zeroed per panel (the same bits; the bf16 first pass
  // does the same, kernels/similarity_avx512bf16.cpp).
  __m512 zero = _mm512_setzero_ps();
  __asm__("" : "+v"(zero));
  for (int64_t P = p0; P < p1; ++P) {
    __m512 acc0[MR], acc1[MR];
    const size_t off = static_cast<size_t>(P) * d * kPanel;
    const auto step = [&](auto first, int p) {
      __m512 k0, k1;
      load_keys<kBf16>(a, off + static_cast<size_t>(p) * kPanel, &k0, &k1);
      const float* qp = q + p * kMr;
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        const __m512 qv = _mm512_set1_ps(qp[i]);
        acc0[i] = _mm512_fmadd_ps(qv, k0, decltype(first)::value ? zero : acc0[i]);
        acc1[i] = _mm512_fmadd_ps(qv, k1, decltype(first)::value ? zero : acc1[i]);
      }
    };
    step(std::true_type{}, 0);
    for (int p = 1; p < d; ++p) step(std::false_type{}, p);
    const int64_t row0 = P * kPanel;
    const int64_t valid = a.n_rows - row0;
    const uint32_t lanes = valid >= kPanel ? 0xFFFFFFFFu : ((1u << valid) - 1u);
    if (a.row_out && a.row_out_at + row0 >= 0) {
      // Whole rows (kernels.h ScanArgs::row_out): straight from the accumulators, no push.
      float* dst = a.row_out + static_cast<int64_t>(q0) * a.row_out_stride + a.row_out_at + row0;
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        _mm512_mask_storeu_ps(dst + static_cast<int64_t>(i) * a.row_out_stride, static_cast<__mmask16>(lanes), acc0[i]);
        _mm512_mask_storeu_ps(dst + static_cast<int64_t>(i) * a.row_out_stride + 16, static_cast<__mmask16>(lanes >> 16), acc1[i]);
      }
      continue;
    }
    // Test every query first, then push: a call while accumulators are live would spill
    // them all (every zmm register is caller-saved; with W1's whole rows every query pushes
    // every panel). A query's threshold changes only in its own push, so this is the same test.
    alignas(64) float s[MR][kPanel];
    uint32_t masks[MR];
    uint32_t any = 0;
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m512 t = _mm512_set1_ps(a.thr[q0 + i]);
      masks[i] = (static_cast<uint32_t>(_mm512_cmp_ps_mask(acc0[i], t, _CMP_GE_OQ)) |
                  (static_cast<uint32_t>(_mm512_cmp_ps_mask(acc1[i], t, _CMP_GE_OQ)) << 16)) &
                 lanes;
      if (masks[i]) {
        _mm512_store_ps(s[i], acc0[i]);
        _mm512_store_ps(s[i] + 16, acc1[i]);
      }
      any |= masks[i];
    }
    if (any) {
      for (int i = 0; i < MR; ++i)
        if (masks[i]) a.push(a.push_ctx, q0 + i, s[i], masks[i], row0);
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
    case 6: return tile<6, kBf16>(a, q, q0, p0, p1);
    case 7: return tile<7, kBf16>(a, q, q0, p0, p1);
    case 8: return tile<8, kBf16>(a, q, q0, p0, p1);
    case 9: return tile<9, kBf16>(a, q, q0, p0, p1);
    case 10: return tile<10, kBf16>(a, q, q0, p0, p1);
    case 11: return tile<11, kBf16>(a, q, q0, p0, p1);
    default: return tile<12, kBf16>(a, q, q0, p0, p1);
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

// dot_halves (kernels.h): J (query, half panel) dots side by side, each lane's chain
// acc = fma(q[p], k[p], acc) from 0, p ascending: tile<>'s for that query and lanes (acc0 for
// half 0, acc1 for half 1), so the same bits. J <= 6 keeps the 2 J row pointers in registers (no reloads in the loop).
template <int J, bool kBf16>
void dot_halves_group(const DotHalf* jb, int d) {
  __m512 acc[J];
  const float* q[J];
  const float* kf[J];
  const uint16_t* kb[J];
#pragma GCC unroll 8
  for (int j = 0; j < J; ++j) {
    acc[j] = _mm512_setzero_ps();
    q[j] = jb[j].query;
    kf[j] = static_cast<const float*>(jb[j].keys) + 16 * jb[j].half;
    kb[j] = static_cast<const uint16_t*>(jb[j].keys) + 16 * jb[j].half;
  }
  for (int p = 0; p < d; ++p) {
#pragma GCC unroll 8
    for (int j = 0; j < J; ++j) {
      __m512 k;
      if (kBf16) {
        const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kb[j] + static_cast<size_t>(p) * kPanel));
        k = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
      } else {
        k = _mm512_loadu_ps(kf[j] + static_cast<size_t>(p) * kPanel);
      }
      acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(q[j][p]), k, acc[j]);
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < J; ++j) _mm512_storeu_ps(jb[j].out, acc[j]);
}

template <bool kBf16>
void dot_halves_impl(const DotHalf* jobs, int n, int d) {
  constexpr int kJ = 6;
  int i = 0;
  for (; i + kJ <= n; i += kJ) dot_halves_group<kJ, kBf16>(jobs + i, d);
  switch (n - i) {
    case 5: return dot_halves_group<5, kBf16>(jobs + i, d);
    case 4: return dot_halves_group<4, kBf16>(jobs + i, d);
    case 3: return dot_halves_group<3, kBf16>(jobs + i, d);
    case 2: return dot_halves_group<2, kBf16>(jobs + i, d);
    case 1: return dot_halves_group<1, kBf16>(jobs + i, d);
    default: return;
  }
}

void dot_halves(const DotHalf* jobs, int n, int d, bool bf16) {
  bf16 ? dot_halves_impl<true>(jobs, n, d) : dot_halves_impl<false>(jobs, n, d);
}

// dot_lanes (kernels.h): up to 16 (query, key row) dots side by side, one per lane, each
// lane's chain acc = fma(q[p], k[p], acc) from 0, p ascending: tile<>'s for that query
// and lane, so the same bits. A run's jobs lie in panels a and b (b = a when one panel):
// lane j takes its key of dim p from row p of its panel with one permute (bf16: VPERMT2W of
// the two 32-key rows into the high halves of zeroed dwords, which is the key widened to f32
// exactly as load_keys does; f32: VPERMT2PS of each panel's two 16-key halves, then a blend),
// and its query value from a 16 x 16 transpose of the run's query rows, done for 16 dims at a
// time into qt. Two runs go side by side: one run's chain would wait on the FMA latency.
struct LaneRun {
  const DotLane* jobs;
  int n;                 // 1..16
  const void* pa;        // panel of the jobs with from_b clear
  const void* pb;        // panel of the others (pa when all share one)
  __m512i idx;           // per lane: the key's lane, + 32 when it is in pb
  __mmask16 from_b;      // lanes whose key is in pb
};

// The next run from jobs[i, n): at most 16 jobs, in at most two panels. Returns its end.
int next_run(const DotLane* jobs, int i, int n, LaneRun* r) {
  alignas(64) int32_t lane[16];
  r->jobs = jobs + i;
  r->pa = r->pb = jobs[i].keys;
  r->from_b = 0;
  int c = 0;
  for (; c < 16 && i + c < n; ++c) {
    const DotLane& j = jobs[i + c];
    if (j.keys != r->pa && j.keys != r->pb) {
      if (r->pb != r->pa) break;  // a third panel: it starts the next run
      r->pb = j.keys;
    }
    const bool b = j.keys != r->pa;
    lane[c] = j.lane + (b ? kPanel : 0);
    r->from_b = static_cast<__mmask16>(r->from_b | (b ? 1u << c : 0u));
  }
  for (int t = c; t < 16; ++t) lane[t] = lane[0];  // idle lanes repeat job 0 (never stored)
  r->n = c;
  r->idx = _mm512_load_si512(lane);
  return i + c;
}

// qt[t] = (q_0[p0 + t], ..., q_15[p0 + t]) for t < w (w <= 16): the rows loaded masked to w
// values (no read past a row's end), then the usual four shuffle rounds.
inline void transpose16(const float* const* q, int p0, int w, float (*qt)[16]) {
  const __mmask16 m = static_cast<__mmask16>(w >= 16 ? 0xFFFF : (1u << w) - 1u);
  __m512 r[16], t[16];
#pragma GCC unroll 16
  for (int j = 0; j < 16; ++j) r[j] = _mm512_maskz_loadu_ps(m, q[j] + p0);
#pragma GCC unroll 8
  for (int j = 0; j < 16; j += 2) {
    t[j] = _mm512_unpacklo_ps(r[j], r[j + 1]);
    t[j + 1] = _mm512_unpackhi_ps(r[j], r[j + 1]);
  }
#pragma GCC unroll 4
  for (int j = 0; j < 16; j += 4) {
    r[j] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[j]), _mm512_castps_pd(t[j + 2])));
    r[j + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[j]), _mm512_castps_pd(t[j + 2])));
    r[j + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[j + 1]), _mm512_castps_pd(t[j + 3])));
    r[j + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[j + 1]), _mm512_castps_pd(t[j + 3])));
  }
  // r[4g + c] holds dims c, c + 4, c + 8, c + 12 (one per 128-bit lane) of rows 4g .. 4g + 3.
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    t[c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88);       // dims c, c + 8: rows 0-3, 4-7
    t[4 + c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xDD);   // dims c + 4, c + 12
    t[8 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
    t[12 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xDD);
  }
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    _mm512_store_ps(qt[c], _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88));
    _mm512_store_ps(qt[c + 8], _mm512_shuffle_f32x4(t[c], t[8 + c], 0xDD));
    _mm512_store_ps(qt[c + 4], _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0x88));
    _mm512_store_ps(qt[c + 12], _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0xDD));
  }
}

// Lane j's key of dim p. idx: the run's idx, for bf16 shifted into the high word of each
// dword (VPERMT2W reads 6 bits of each word: lane + 32 b; the low words are zeroed).
template <bool kBf16>
inline __m512 lane_keys(const LaneRun& r, __m512i idx, size_t p) {
  if (kBf16) {
    const __m512i a = _mm512_loadu_si512(static_cast<const uint16_t*>(r.pa) + p * kPanel);
    const __m512i b = _mm512_loadu_si512(static_cast<const uint16_t*>(r.pb) + p * kPanel);
    return _mm512_castsi512_ps(_mm512_maskz_permutex2var_epi16(0xAAAAAAAAu, a, idx, b));
  }
  // VPERMT2PS reads 5 bits of each index: the lane within the panel.
  const float* a = static_cast<const float*>(r.pa) + p * kPanel;
  const float* b = static_cast<const float*>(r.pb) + p * kPanel;
  const __m512 ka = _mm512_permutex2var_ps(_mm512_loadu_ps(a), idx, _mm512_loadu_ps(a + 16));
  const __m512 kb = _mm512_permutex2var_ps(_mm512_loadu_ps(b), idx, _mm512_loadu_ps(b + 16));
  return _mm512_mask_blend_ps(r.from_b, ka, kb);
}

template <int NR, bool kBf16>
void dot_runs(const LaneRun* runs, int d) {
  constexpr size_t kRow = kBf16 ? kPanel * 2 : kPanel * 4;  // bytes of a panel's dim row
  constexpr size_t kLaneAhead = 24;
  alignas(64) float qt[NR][16][16];
  const float* q[NR][16];
  __m512 acc[NR];
  __m512i idx[NR];
#pragma GCC unroll 2
  for (int g = 0; g < NR; ++g) {
    acc[g] = _mm512_setzero_ps();
    for (int j = 0; j < 16; ++j) q[g][j] = runs[g].jobs[j < runs[g].n ? j : 0].query;
    idx[g] = kBf16 ? _mm512_slli_epi32(runs[g].idx, 16) : runs[g].idx;
  }
  for (int p0 = 0; p0 < d; p0 += 16) {
    const int w = d - p0 < 16 ? d - p0 : 16;
#pragma GCC unroll 2
    for (int g = 0; g < NR; ++g) transpose16(q[g], p0, w, qt[g]);
    for (int t = 0; t < w; ++t) {
      const size_t p = static_cast<size_t>(p0 + t);
      // The panels' rows kLaneAhead dims on. Measured at W2 d = 1024 (bf16 keys, the re-rank
      // reads the whole store): ~18 ms instead of ~20.
      if (p + kLaneAhead < static_cast<size_t>(d)) {
#pragma GCC unroll 2
        for (int g = 0; g < NR; ++g) {
          _mm_prefetch(static_cast<const char*>(runs[g].pa) + (p + kLaneAhead) * kRow, _MM_HINT_T0);
          if (runs[g].pb != runs[g].pa) _mm_prefetch(static_cast<const char*>(runs[g].pb) + (p + kLaneAhead) * kRow, _MM_HINT_T0);
        }
      }
#pragma GCC unroll 2
      for (int g = 0; g < NR; ++g) {
        const __m512 k = lane_keys<kBf16>(runs[g], idx[g], p);
        acc[g] = _mm512_fmadd_ps(_mm512_load_ps(qt[g][t]), k, acc[g]);
      }
    }
  }
#pragma GCC unroll 2
  for (int g = 0; g < NR; ++g) {
    alignas(64) float v[16];
    _mm512_store_ps(v, acc[g]);
    for (int j = 0; j < runs[g].n; ++j) *runs[g].jobs[j].out = v[j];
  }
}

void dot_lanes(const DotLane* jobs, int n, int d, bool bf16) {
  for (int i = 0; i < n;) {
    LaneRun runs[2];
    i = next_run(jobs, i, n, &runs[0]);
    if (i < n) {
      i = next_run(jobs, i, n, &runs[1]);
      bf16 ? dot_runs<2, true>(runs, d) : dot_runs<2, false>(runs, d);
    } else {
      bf16 ? dot_runs<1, true>(runs, d) : dot_runs<1, false>(runs, d);
    }
  }
}

// The prior blend (kernels.h blend_rows): each column's products and sums rounded as in the
// portable version (multiply, then add: no FMA), rows in order, zero weights skipped; 16
// columns per register, up to 64 kept in registers across the rows, the last block masked.
template <int NV>
void blend_block(const float* const* rows, const float* w, int m, int j0, __mmask16 last, float* out) {
  __m512 acc[NV];
#pragma GCC unroll 4
  for (int c = 0; c < NV; ++c) acc[c] = _mm512_setzero_ps();
  for (int i = 0; i < m; ++i) {
    if (w[i] == 0.0f) continue;
    const __m512 wi = _mm512_set1_ps(w[i]);
    const float* v = rows[i] + j0;
#pragma GCC unroll 4
    for (int c = 0; c < NV; ++c) {
      const __m512 x = c + 1 < NV ? _mm512_loadu_ps(v + 16 * c) : _mm512_maskz_loadu_ps(last, v + 16 * c);
      // The *_round_ forms (current rounding mode, i.e. the same IEEE operations) because GCC
      // contracts a plain _mm512_mul_ps + _mm512_add_ps into an FMA in C++ even under
      // -std=c++17 (its -ffp-contract=off default is for ISO C only), which rounds once
      // instead of twice: kernel_test's blend check caught exactly that.
      acc[c] = _mm512_add_round_ps(acc[c], _mm512_mul_round_ps(wi, x, _MM_FROUND_CUR_DIRECTION), _MM_FROUND_CUR_DIRECTION);
    }
  }
#pragma GCC unroll 4
  for (int c = 0; c < NV; ++c) {
    if (c + 1 < NV) {
      _mm512_storeu_ps(out + j0 + 16 * c, acc[c]);
    } else {
      _mm512_mask_storeu_ps(out + j0 + 16 * c, last, acc[c]);
    }
  }
}

// No prefetch of its own: search() prefetches the next query's rows while this one is blended.
void blend(const float* const* rows, const float* w, int m, int dv, float* out) {
  int j0 = 0;
  for (; dv - j0 > 64; j0 += 64) blend_block<4>(rows, w, m, j0, 0xFFFF, out);
  const int rest = dv - j0;  // 1..64
  if (rest <= 0) return;
  const int nv = (rest + 15) / 16;
  const __mmask16 last = static_cast<__mmask16>(0xFFFFu >> (16 * nv - rest));
  switch (nv) {
    case 1: return blend_block<1>(rows, w, m, j0, last, out);
    case 2: return blend_block<2>(rows, w, m, j0, last, out);
    case 3: return blend_block<3>(rows, w, m, j0, last, out);
    default: return blend_block<4>(rows, w, m, j0, last, out);
  }
}

double fma_probe(int64_t iters, float* sink) {
  constexpr int kChains = 16;
  __m512 x[kChains];
  for (int j = 0; j < kChains; ++j) x[j] = _mm512_set1_ps(1.0f + j * 1e-3f);
  const __m512 m = _mm512_set1_ps(0.9999999f), c = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 16
    for (int j = 0; j < kChains; ++j) x[j] = _mm512_fmadd_ps(x[j], m, c);
  }
  __m512 s = x[0];
  for (int j = 1; j < kChains; ++j) s = _mm512_add_ps(s, x[j]);
  *sink = _mm512_reduce_add_ps(s);
  return static_cast<double>(iters) * kChains * 16 * 2;
}

float read_sum(const float* p, size_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    s0 = _mm512_add_ps(s0, _mm512_loadu_ps(p + i));
    s1 = _mm512_add_ps(s1, _mm512_loadu_ps(p + i + 16));
    s2 = _mm512_add_ps(s2, _mm512_loadu_ps(p + i + 32));
    s3 = _mm512_add_ps(s3, _mm512_loadu_ps(p + i + 48));
  }
  float t = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
  for (; i < n; ++i) t += p[i];
  return t;
}

const Kernels kTable = {SimdLevel::kAvx512, "avx512", kMr, scan, fma_probe, read_sum,
                            scan_bf16_scalar, scan_i8_scalar, false, false,
                            scan_i8keys_avx512,  // int8 store: kernels/int8_keys_avx512.cpp
                            dot_panel_i8_avx512,  // int8 store's re-rank: kernels/int8_keys_avx512.cpp
                            blend, dot_halves,
                            &kRowSelectAvx512,  // kernels/select_avx512.cpp
                            true,  // scan_rows
                            dot_lanes};

}  // namespace

const Kernels* kernels_avx512() { return &kTable; }

}  // namespace rapm
