// bf16 first pass with AVX-512 BF16 (VDPBF16PS: two bf16 products per f32 lane, added to
// the f32 accumulator; DAZ/FTZ, round to nearest even, MXCSR not consulted).
// Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 by file suffix;
// everything but the table getter stays in the anonymous namespace.
//
// Keys stay in the shared bf16 panel layout (32 keys of one dim side by side). Two dims p,
// p+1 are interleaved in registers (VPUNPCK[LH]WD), which visits the keys of a panel in the
// order {0-3, 8-11, 16-19, 24-27 | 4-7, ...}; the sums are put back in key order before the
// threshold test.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels.h"
#include "pack_queries.h"

namespace rapm {
namespace {

constexpr int kMr = 12;  // 12 queries x 32 keys = 24 zmm accumulators

inline __m512bh as_bh(__m512i v) {
  __m512bh r;
  std::memcpy(&r, &v, sizeof r);
  return r;
}

#include "tile_loop.inc"

template <int MR>
void tile(const ScanArgs& a, const uint32_t* qp, int q0, int64_t p0, int64_t p1, Prefetch pf) {
  const int d = a.d, dfull = a.d / 2;  // dim pairs (2h, 2h+1) with both dims; odd d leaves one
  // lo holds keys 8j+t, hi keys 8j+4+t (j = 128-bit lane, t = 0..3): back to key order.
  const __m512i idx0 = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
  const __m512i idx1 = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
  // Each panel's sums start from the first dim pair's products added to `zero`, a register
  // the compiler cannot see is zero, instead of from 2 MR accumulators zeroed per panel: the
  // same bits (the accumulator is +0 either way), and on Zen 5 a faster loop at small d
  // (native/test/bf16_loop.cpp, keys from L2: d = 104 5.5 -> 6.0 VDPBF16PS per ns, d = 1024
  // ~1%). Inside the search it is within noise at W2 d = 103 (first pass 62.9 ms both ways).
  __m512 zero = _mm512_setzero_ps();
  __asm__("" : "+v"(zero));
  for (int64_t P = p0; P < p1; ++P) {
    __m512 lo[MR], hi[MR];
    const uint16_t* kp = a.keys_bf16 + static_cast<size_t>(P) * d * kPanel;
    const auto step = [&](auto first, int h, __m512i ka, __m512i kb) {
      const __m512bh k0 = as_bh(_mm512_unpacklo_epi16(ka, kb));
      const __m512bh k1 = as_bh(_mm512_unpackhi_epi16(ka, kb));
      const uint32_t* q = qp + static_cast<size_t>(h) * kMr;
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        const __m512bh qv = as_bh(_mm512_set1_epi32(static_cast<int>(q[i])));
        lo[i] = _mm512_dpbf16_ps(decltype(first)::value ? zero : lo[i], qv, k0);
        hi[i] = _mm512_dpbf16_ps(decltype(first)::value ? zero : hi[i], qv, k1);
      }
    };
    const auto keys = [&](int p) { return _mm512_loadu_si512(kp + static_cast<size_t>(p) * kPanel); };
    // Dims (0, 1) (or dim 0 alone when d = 1), then the other full pairs, then an odd last dim.
    pf.step();
    step(std::true_type{}, 0, keys(0), d >= 2 ? keys(1) : _mm512_setzero_si512());
    for (int h = 1; h < dfull; ++h) {
      pf.step();
      step(std::false_type{}, h, keys(2 * h), keys(2 * h + 1));
    }
    if ((d & 1) && d > 1) step(std::false_type{}, dfull, keys(d - 1), _mm512_setzero_si512());
    const int64_t row0 = P * kPanel;
    const int64_t valid = a.n_rows - row0;
    const uint32_t lanes = valid >= kPanel ? 0xFFFFFFFFu : ((1u << valid) - 1u);
    // Test every query first, then push: a call while accumulators are live would spill
    // them all (every zmm register is caller-saved). A query's threshold changes only in its
    // own push, so testing them all before pushing any is the same test.
    alignas(64) float s[MR][kPanel];
    uint32_t masks[MR];
    uint32_t any = 0;
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      // The threshold is one value per query, so lo/hi are tested as they are and put back in
      // key order only when some lane passes (rare once the threshold has settled).
      const __m512 t = _mm512_set1_ps(a.thr[q0 + i]);
      masks[i] = 0;
      if (_mm512_cmp_ps_mask(lo[i], t, _CMP_GE_OQ) | _mm512_cmp_ps_mask(hi[i], t, _CMP_GE_OQ)) {
        const __m512 s0 = _mm512_permutex2var_ps(lo[i], idx0, hi[i]);
        const __m512 s1 = _mm512_permutex2var_ps(lo[i], idx1, hi[i]);
        masks[i] = (static_cast<uint32_t>(_mm512_cmp_ps_mask(s0, t, _CMP_GE_OQ)) |
                    (static_cast<uint32_t>(_mm512_cmp_ps_mask(s1, t, _CMP_GE_OQ)) << 16)) &
                   lanes;
        _mm512_store_ps(s[i], s0);
        _mm512_store_ps(s[i] + 16, s1);
        any |= masks[i];
      }
    }
    if (any) {
      for (int i = 0; i < MR; ++i)
        if (masks[i]) a.push(a.push_ctx, q0 + i, s[i], masks[i], row0);
    }
  }
}


void scan_bf16(const ScanArgs& a) {
  const int d = a.d, d2 = (a.d + 1) / 2;
  const QueryTiles tiles(a.nq, kMr);
  // Tile panels (pack_queries.h): one uint32 = bf16 of dims (2h, 2h+1) (low half = 2h) per
  // query; odd d pads with 0.
  std::vector<uint32_t> qpack(static_cast<size_t>(tiles.count) * d2 * kMr, 0u);
  for (int t = 0; t < tiles.count; ++t) {
    for (int i = 0; i < tiles.size(t); ++i) {
      const uint16_t* src = a.queries_bf16 + static_cast<size_t>(tiles.start(t) + i) * d;
      uint32_t* dst = qpack.data() + static_cast<size_t>(t) * d2 * kMr + i;
      for (int h = 0; h < d2; ++h) {
        const uint32_t hi = 2 * h + 1 < d ? src[2 * h + 1] : 0u;
        dst[static_cast<size_t>(h) * kMr] = static_cast<uint32_t>(src[2 * h]) | (hi << 16);
      }
    }
  }
  const auto key_at = [&](int64_t P) { return a.keys_bf16 + static_cast<size_t>(P) * d * kPanel; };
  scan_tiles(a, qpack.data(), d2, key_at, static_cast<int64_t>(d) * kPanel * 2, d / 2);
}

}  // namespace

const Kernels* kernels_avx512bf16() {
  static const Kernels table = [] {
    Kernels k = *kernels_avx512vnni();
    k.name = "avx512bf16";
    k.scan_bf16 = scan_bf16;
    k.fast_bf16 = true;
    return k;
  }();
  return &table;
}

}  // namespace rapm
