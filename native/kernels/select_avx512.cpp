// The selection passes (kernels.h RowSelect) with AVX-512: 16 compares to a mask register at
// a time. Same results as the portable ones (core/select.cpp): the same
// float compares (ordered: NaN never passes, -0 == +0), counted or listed in index order.
// Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq by file suffix; only the table
// leaves the anonymous namespace.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels.h"

namespace rapm {
namespace {

int64_t count_at_least(const float* row, int64_t n, float t) {
  const __m512 tv = _mm512_set1_ps(t);
  int64_t i = 0, c = 0;
  for (; i + 64 <= n; i += 64) {
    const uint64_t m = static_cast<uint64_t>(_mm512_cmp_ps_mask(_mm512_loadu_ps(row + i), tv, _CMP_GE_OQ)) |
                       static_cast<uint64_t>(_mm512_cmp_ps_mask(_mm512_loadu_ps(row + i + 16), tv, _CMP_GE_OQ)) << 16 |
                       static_cast<uint64_t>(_mm512_cmp_ps_mask(_mm512_loadu_ps(row + i + 32), tv, _CMP_GE_OQ)) << 32 |
                       static_cast<uint64_t>(_mm512_cmp_ps_mask(_mm512_loadu_ps(row + i + 48), tv, _CMP_GE_OQ)) << 48;
    c += __builtin_popcountll(m);
  }
  for (; i < n; i += 16) {
    const __mmask16 in = n - i >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (n - i)) - 1u);
    c += __builtin_popcount(_mm512_mask_cmp_ps_mask(in, _mm512_maskz_loadu_ps(in, row + i), tv, _CMP_GE_OQ));
  }
  return c;
}

int64_t compress_at_least(const float* row, int64_t n, float t, uint64_t* idx) {
  // Per 16 rows: the passing lanes' indices packed to the front of a register (VPCOMPRESSQ,
  // 8 at a time) and stored whole; the count advances by how many passed, so the lanes past
  // it are overwritten by the next store (or left past the count: room for 16 is required).
  const __m512 tv = _mm512_set1_ps(t);
  const __m512i iota = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7), eight = _mm512_set1_epi64(8);
  int64_t c = 0;
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t left = n - i;
    const __mmask16 in = left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
    const unsigned m = _mm512_mask_cmp_ps_mask(in, _mm512_maskz_loadu_ps(in, row + i), tv, _CMP_GE_OQ);
    const __m512i lo = _mm512_add_epi64(_mm512_set1_epi64(i), iota);
    _mm512_storeu_si512(idx + c, _mm512_maskz_compress_epi64(static_cast<__mmask8>(m), lo));
    c += __builtin_popcount(m & 0xFFu);
    _mm512_storeu_si512(idx + c, _mm512_maskz_compress_epi64(static_cast<__mmask8>(m >> 8), _mm512_add_epi64(lo, eight)));
    c += __builtin_popcount(m >> 8);
  }
  return c;
}

void rank(const float* v, int64_t c, int64_t padded, int32_t* ranks) {
  for (int64_t i = 0; i < c; ++i) {
    // Entries before i (lower index) rank above when >=, entries after i when >: the block
    // holding i mixes both (lanes below i's take >=, lanes above take >, i itself neither).
    const __m512 b = _mm512_set1_ps(v[i]);
    const int64_t blk = i / 16 * 16;
    int64_t r = 0;
    for (int64_t j = 0; j < blk; j += 16) r += __builtin_popcount(_mm512_cmp_ps_mask(_mm512_loadu_ps(v + j), b, _CMP_GE_OQ));
    const __m512 x = _mm512_loadu_ps(v + blk);
    const unsigned below = (1u << (i - blk)) - 1u;
    r += __builtin_popcount((_mm512_cmp_ps_mask(x, b, _CMP_GE_OQ) & below) |
                            (_mm512_cmp_ps_mask(x, b, _CMP_GT_OQ) & ~below & ~(below + 1u) & 0xFFFFu));
    for (int64_t j = blk + 16; j < padded; j += 16) r += __builtin_popcount(_mm512_cmp_ps_mask(_mm512_loadu_ps(v + j), b, _CMP_GT_OQ));
    ranks[i] = static_cast<int32_t>(r);
  }
}

// Quickselect as the portable one (core/candidates.cpp: median-of-three pivot p, split into
// > p, == p, < p), each round in two passes over the range: count the lanes > p and == p
// (compares to masks), then move the one part the rank lies in to the front of the range
// (VPCOMPRESSPS into a register, then a store masked to the lanes that passed: it writes at
// w <= i, never past the 16 values just read, so the range is compacted in place).
float kth_largest(float* x, int n, int k) {
  int lo = 0, hi = n;
  int want = k - 1;  // rank within [lo, hi), 0 = the largest
  while (hi - lo > 16) {
    const float a = x[lo], b = x[lo + (hi - lo) / 2], c = x[hi - 1];
    const float p = std::max(std::min(a, b), std::min(std::max(a, b), c));
    const __m512 pv = _mm512_set1_ps(p);
    int gt = 0, eq = 0;
    for (int i = lo; i < hi; i += 16) {
      const int left = hi - i;
      const __mmask16 in = left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
      const __m512 v = _mm512_maskz_loadu_ps(in, x + i);
      gt += __builtin_popcount(_mm512_mask_cmp_ps_mask(in, v, pv, _CMP_GT_OQ));
      eq += __builtin_popcount(_mm512_mask_cmp_ps_mask(in, v, pv, _CMP_EQ_OQ));
    }
    if (want >= gt && want < gt + eq) return p;
    const bool upper = want < gt;  // the rank lies among the values > p (else among those < p)
    if (!upper) want -= gt + eq;
    int w = lo;
    for (int i = lo; i < hi; i += 16) {
      const int left = hi - i;
      const __mmask16 in = left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
      const __m512 v = _mm512_maskz_loadu_ps(in, x + i);
      const __mmask16 m = upper ? _mm512_mask_cmp_ps_mask(in, v, pv, _CMP_GT_OQ) : _mm512_mask_cmp_ps_mask(in, v, pv, _CMP_LT_OQ);
      const int cnt = __builtin_popcount(m);
      _mm512_mask_storeu_ps(x + w, static_cast<__mmask16>((1u << cnt) - 1u), _mm512_maskz_compress_ps(m, v));
      w += cnt;
    }
    hi = w;
  }
  // A few left: insertion sort, largest first.
  for (int i = lo + 1; i < hi; ++i) {
    const float v = x[i];
    int j = i;
    for (; j > lo && x[j - 1] < v; --j) x[j] = x[j - 1];
    x[j] = v;
  }
  return x[lo + want];
}

}  // namespace

const RowSelect kRowSelectAvx512 = {count_at_least, compress_at_least, rank, kth_largest};

}  // namespace rapm
