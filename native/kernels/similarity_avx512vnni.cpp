// int8 first pass with AVX-512 VNNI (VPDPBUSD: u8 x s8, four products per int32 lane).
// Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni by file suffix;
// everything but the table getter stays in the anonymous namespace.
//
// Bit-exact with scan_i8_scalar: the integer sums are exact, and the float conversion and
// scaling are the same three IEEE operations (see kernels.h).
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "kernels.h"
#include "pack_queries.h"

namespace rapm {
namespace {

constexpr int kMr = 12;  // 12 queries x 32 keys = 24 zmm accumulators

#include "tile_loop.inc"

// One micro-tile: MR queries (packed: qp[g*kMr + i] = 4 query bytes of dim group g) against
// key panels [p0, p1).
template <int MR>
void tile(const ScanArgs& a, const uint32_t* qp, int q0, int64_t p0, int64_t p1, Prefetch pf) {
  const int d4 = (a.d + 3) / 4;
  for (int64_t P = p0; P < p1; ++P) {
    const int64_t row0 = P * kPanel;
    // sum (u8 - 128) * k = sum u8 * k - 128 * sum k: the accumulators start at -128 sum k.
    // Every partial sum stays within 128 * 127 * d <= 2^30 (d <= kMaxI8Dim): no wrap.
    const __m512i c0 = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(_mm512_loadu_si512(a.key_sum + row0), 7));
    const __m512i c1 =
        _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(_mm512_loadu_si512(a.key_sum + row0 + 16), 7));
    __m512i acc0[MR], acc1[MR];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      acc0[i] = c0;
      acc1[i] = c1;
    }
    const int8_t* kp = a.keys_i8 + static_cast<size_t>(P) * d4 * kPanel * 4;
    for (int g = 0; g < d4; ++g) {
      pf.step();
      const __m512i k0 = _mm512_loadu_si512(kp + static_cast<size_t>(g) * kPanel * 4);
      const __m512i k1 = _mm512_loadu_si512(kp + static_cast<size_t>(g) * kPanel * 4 + 64);
      const uint32_t* q = qp + static_cast<size_t>(g) * kMr;
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        const __m512i qv = _mm512_set1_epi32(static_cast<int>(q[i]));
        acc0[i] = _mm512_dpbusd_epi32(acc0[i], qv, k0);
        acc1[i] = _mm512_dpbusd_epi32(acc1[i], qv, k1);
      }
    }
    // The sums leave the registers here, in a plain unrolled loop: indexing acc0/acc1 in the
    // branchy loop below kept them in memory, with a stack store per VPDPBUSD in the loop above.
    alignas(64) int32_t sums[MR][kPanel];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      _mm512_store_si512(sums[i], acc0[i]);
      _mm512_store_si512(sums[i] + 16, acc1[i]);
    }
    const int64_t valid = a.n_rows - row0;
    const uint32_t lanes = valid >= kPanel ? 0xFFFFFFFFu : ((1u << valid) - 1u);
    const __m512 ks0 = _mm512_loadu_ps(a.key_scale + row0);
    const __m512 ks1 = _mm512_loadu_ps(a.key_scale + row0 + 16);
    // Integer pre-test (skips the float epilogue for a query none of whose lanes can pass).
    // For t > 0: s = fl(fl(A) * fl(qs * ks)) >= t implies A > 0 and
    //   A >= t / (qs * ks * (1 + u)^3) >= t / (qs * ks_max * (1 + u)^3)
    // (A the exact integer sum, u = 2^-24, ks <= ks_max); the bound below is that computed in
    // float (three more roundings, < 2^-21 relative in all) and lowered by 2^-16 relative, so
    // A < trunc(bound) rules out every lane. Padding lanes have ks = 0; qs > 0 always.
    const float ks_max = _mm512_reduce_max_ps(_mm512_max_ps(ks0, ks1));
    for (int i = 0; i < MR; ++i) {
      const __m512i a0 = _mm512_load_si512(sums[i]), a1 = _mm512_load_si512(sums[i] + 16);
      const float t = a.thr[q0 + i];
      if (t > 0) {
        // bound >= 2^30 (or ks_max = 0: no lane can be > 0): above every |A| (<= 128 * 127 * d <= 2^30).
        const float bound = ks_max > 0 ? t / (a.query_scale[q0 + i] * ks_max) * (1.0f - 1.0f / 65536) : INFINITY;
        const int32_t lim = bound < 1073741824.0f ? static_cast<int32_t>(bound) : INT32_MAX;
        const __m512i tv = _mm512_set1_epi32(lim);
        if (!(_mm512_cmpge_epi32_mask(a0, tv) | _mm512_cmpge_epi32_mask(a1, tv))) continue;
      }
      const __m512 qs = _mm512_set1_ps(a.query_scale[q0 + i]);
      const __m512 s0 = _mm512_mul_ps(_mm512_cvtepi32_ps(a0), _mm512_mul_ps(qs, ks0));
      const __m512 s1 = _mm512_mul_ps(_mm512_cvtepi32_ps(a1), _mm512_mul_ps(qs, ks1));
      const __m512 tt = _mm512_set1_ps(t);
      uint32_t m = static_cast<uint32_t>(_mm512_cmp_ps_mask(s0, tt, _CMP_GE_OQ)) |
                   (static_cast<uint32_t>(_mm512_cmp_ps_mask(s1, tt, _CMP_GE_OQ)) << 16);
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

void scan_i8(const ScanArgs& a) {
  const int d4 = (a.d + 3) / 4;
  const QueryTiles tiles(a.nq, kMr);
  // Tile panels (pack_queries.h): 4 bytes (one dim group) of kMr queries side by side; padding
  // queries are 128 (zero).
  std::vector<uint32_t> qpack(static_cast<size_t>(tiles.count) * d4 * kMr, 0x80808080u);
  for (int t = 0; t < tiles.count; ++t) {
    for (int i = 0; i < tiles.size(t); ++i) {
      const uint8_t* src = a.queries_u8 + static_cast<size_t>(tiles.start(t) + i) * d4 * 4;
      uint32_t* dst = qpack.data() + static_cast<size_t>(t) * d4 * kMr + i;
      for (int g = 0; g < d4; ++g) std::memcpy(dst + static_cast<size_t>(g) * kMr, src + g * 4, 4);
    }
  }
  const auto key_at = [&](int64_t P) { return a.keys_i8 + static_cast<size_t>(P) * d4 * kPanel * 4; };
  scan_tiles(a, qpack.data(), d4, key_at, static_cast<int64_t>(d4) * kPanel * 4, d4);
}

}  // namespace

const Kernels* kernels_avx512vnni() {
  static const Kernels table = [] {
    Kernels k = *kernels_avx512();
    k.name = "avx512vnni";
    k.scan_i8 = scan_i8;
    k.fast_i8 = true;
    return k;
  }();
  return &table;
}

}  // namespace rapm
