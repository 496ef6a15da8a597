#include "select.h"

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>

#include "baseline_sse2.h"
#include "candidates.h"

namespace rapm {

namespace {

std::atomic<int> g_mode{static_cast<int>(SelectMode::kAuto)};

// The linear passes over a row use SSE2 on x86-64 (core/baseline_sse2.h) and plain loops
// elsewhere; each gives the same result either way.

// RowSelect::count_at_least (kernels.h).
int64_t count_at_least_portable(const float* row, int64_t n, float t) {
  int64_t i = 0, c = 0;
#ifdef RAPM_BASELINE_SSE2
  const __m128 tv = _mm_set1_ps(t);
  while (i + 16 <= n) {
    // Blocks of at most 2^20 rows: the 32-bit lane counts cannot overflow.
    const int64_t end = std::min(n, i + (int64_t{1} << 20));
    __m128i a0 = _mm_setzero_si128(), a1 = a0, a2 = a0, a3 = a0;
    for (; i + 16 <= end; i += 16) {
      a0 = _mm_sub_epi32(a0, _mm_castps_si128(_mm_cmpge_ps(_mm_loadu_ps(row + i), tv)));
      a1 = _mm_sub_epi32(a1, _mm_castps_si128(_mm_cmpge_ps(_mm_loadu_ps(row + i + 4), tv)));
      a2 = _mm_sub_epi32(a2, _mm_castps_si128(_mm_cmpge_ps(_mm_loadu_ps(row + i + 8), tv)));
      a3 = _mm_sub_epi32(a3, _mm_castps_si128(_mm_cmpge_ps(_mm_loadu_ps(row + i + 12), tv)));
    }
    alignas(16) int32_t lanes[4];
    _mm_store_si128(reinterpret_cast<__m128i*>(lanes), _mm_add_epi32(_mm_add_epi32(a0, a1), _mm_add_epi32(a2, a3)));
    c += static_cast<int64_t>(lanes[0]) + lanes[1] + lanes[2] + lanes[3];
  }
#endif
  for (; i < n; ++i) c += row[i] >= t ? 1 : 0;
  return c;
}

// RowSelect::compress_at_least (kernels.h; the blocks below write up to 4 entries past the
// count unconditionally).
int64_t compress_at_least_portable(const float* row, int64_t n, float t, uint64_t* idx) {
  int64_t i = 0, c = 0;
#ifdef RAPM_BASELINE_SSE2
  const __m128 tv = _mm_set1_ps(t);
  for (; i + 64 <= n; i += 64) {
    uint64_t m = 0;
    for (int j = 0; j < 64; j += 16) {
      const uint64_t b = static_cast<uint32_t>(_mm_movemask_ps(_mm_cmpge_ps(_mm_loadu_ps(row + i + j), tv))) |
                         static_cast<uint32_t>(_mm_movemask_ps(_mm_cmpge_ps(_mm_loadu_ps(row + i + j + 4), tv))) << 4 |
                         static_cast<uint32_t>(_mm_movemask_ps(_mm_cmpge_ps(_mm_loadu_ps(row + i + j + 8), tv))) << 8 |
                         static_cast<uint32_t>(_mm_movemask_ps(_mm_cmpge_ps(_mm_loadu_ps(row + i + j + 12), tv))) << 12;
      m |= b << j;
    }
    // The selected rows are few (about k of n): the first four of a block are written
    // without a data-dependent branch (slots past the block's count are overwritten later),
    // a loop takes any more.
    for (int j = 0; j < 4; ++j) {
      idx[c] = static_cast<uint64_t>(i + (m ? __builtin_ctzll(m) : 0));
      c += m != 0;
      m &= m - 1;
    }
    for (; m; m &= m - 1) idx[c++] = static_cast<uint64_t>(i + __builtin_ctzll(m));
  }
#endif
  for (; i < n; ++i) {
    idx[c] = static_cast<uint64_t>(i);
    c += row[i] >= t ? 1 : 0;
  }
  return c;
}

// RowSelect::rank (kernels.h).
void rank_portable(const float* v, int64_t c, int64_t padded, int32_t* ranks) {
  for (int64_t i = 0; i < c; ++i) {
    // Rows before i (lower index) are better when >=, rows after i when >.
    const float vi = v[i];
    const int64_t blk = i / 4 * 4;
    int64_t rank = 0;
    int64_t j = 0;
#ifdef RAPM_BASELINE_SSE2
    const __m128 b = _mm_set1_ps(vi);
    __m128i acc = _mm_setzero_si128();
    for (; j < blk; j += 4) acc = _mm_sub_epi32(acc, _mm_castps_si128(_mm_cmpge_ps(_mm_loadu_ps(v + j), b)));
    for (; j < blk + 4; ++j) rank += j < i ? (v[j] >= vi) : j > i ? (v[j] > vi) : 0;
    for (; j < padded; j += 4) acc = _mm_sub_epi32(acc, _mm_castps_si128(_mm_cmpgt_ps(_mm_loadu_ps(v + j), b)));
    alignas(16) int32_t lanes[4];
    _mm_store_si128(reinterpret_cast<__m128i*>(lanes), acc);
    rank += static_cast<int64_t>(lanes[0]) + lanes[1] + lanes[2] + lanes[3];
#else
    for (; j < padded; ++j) rank += j < i ? (v[j] >= vi) : j > i ? (v[j] > vi) : 0;
#endif
    ranks[i] = static_cast<int32_t>(rank);
  }
}

// Mean and standard deviation of the finite entries (a guess for the first threshold only:
// any value would give the same answer, a good one saves passes), from a sample of about one
// entry in `stride` (with SSE2 every stride-th block of 8); *finite estimates their count.
void finite_moments(const float* row, int64_t n, int64_t stride, double* mean, double* sd, int64_t* finite) {
  double ts = 0, ts2 = 0;
  int64_t tc = 0, i = 0;
#ifdef RAPM_BASELINE_SSE2
  const __m128 lowest = _mm_set1_ps(-FLT_MAX);
  const int64_t step = 8 * stride;
  while (i + 8 <= n) {
    // Blocks of at most 2^16 rows: float sums of values in [-2, 2] stay accurate enough.
    const int64_t end = std::min(n, i + (int64_t{1} << 16));
    __m128 s0 = _mm_setzero_ps(), s1 = s0, q0 = s0, q1 = s0;
    __m128i c0 = _mm_setzero_si128(), c1 = c0;
    for (; i + 8 <= end; i += step) {
      const __m128 x0 = _mm_loadu_ps(row + i), x1 = _mm_loadu_ps(row + i + 4);
      const __m128 f0 = _mm_cmpge_ps(x0, lowest), f1 = _mm_cmpge_ps(x1, lowest);
      const __m128 v0 = _mm_and_ps(x0, f0), v1 = _mm_and_ps(x1, f1);
      s0 = _mm_add_ps(s0, v0);
      s1 = _mm_add_ps(s1, v1);
      q0 = _mm_add_ps(q0, _mm_mul_ps(v0, v0));
      q1 = _mm_add_ps(q1, _mm_mul_ps(v1, v1));
      c0 = _mm_sub_epi32(c0, _mm_castps_si128(f0));
      c1 = _mm_sub_epi32(c1, _mm_castps_si128(f1));
    }
    alignas(16) float fs[4], fq[4];
    alignas(16) int32_t ic[4];
    _mm_store_ps(fs, _mm_add_ps(s0, s1));
    _mm_store_ps(fq, _mm_add_ps(q0, q1));
    _mm_store_si128(reinterpret_cast<__m128i*>(ic), _mm_add_epi32(c0, c1));
    for (int j = 0; j < 4; ++j) {
      ts += fs[j];
      ts2 += fq[j];
      tc += ic[j];
    }
  }
#endif
  for (; i < n; i += stride) {
    if (row[i] >= -FLT_MAX) {
      ts += row[i];
      ts2 += static_cast<double>(row[i]) * row[i];
      ++tc;
    }
  }
  *finite = std::min(n, tc * stride);
  *mean = tc > 0 ? ts / static_cast<double>(tc) : 0.0;
  const double var = tc > 1 ? (ts2 - ts * ts / static_cast<double>(tc)) / static_cast<double>(tc - 1) : 0.0;
  *sd = var > 0 ? std::sqrt(var) : 0.0;
}

// z with P(Z >= z) = p for a standard normal Z, p in (0, 1) (Abramowitz & Stegun 26.2.23,
// |error| < 4.5e-4; only used to guess thresholds).
double upper_quantile(double p) {
  const double q = p < 0.5 ? p : 1 - p;
  const double t = std::sqrt(-2.0 * std::log(q));
  const double z = t - (2.515517 + 0.802853 * t + 0.010328 * t * t) / (1 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t * t * t);
  return p < 0.5 ? z : -z;
}

// The k best of the c rows idx[0, c) (ascending indices) of `row`, best first, into out;
// returns min(c, k). For up to kRankMax candidates each one's rank is counted directly
// (how many others are better: a higher similarity, or an equal one at a lower index),
// which costs c^2/4 SSE2 compares (c^2/16 with AVX-512) but no unpredictable branches;
// otherwise, and when a zero similarity makes the float compare disagree with the entry order
// (-0 < +0 there), nth_element and sort on the packed entries.
int sort_best(const RowSelect& ops, const float* row, uint64_t* idx, int64_t c, int k, int64_t id_base, TopKEntry* out,
              std::vector<float>& vals, std::vector<int32_t>& ranks) {
  constexpr int64_t kRankMax = 256;
  bool plain = c <= kRankMax;
  if (plain) {
    vals.resize(static_cast<size_t>((c + 15) / 16 * 16));  // RowSelect::rank's padding
    for (int64_t j = 0; j < c; ++j) {
      vals[j] = row[idx[j]];
      plain = plain && vals[j] != 0.0f;
    }
    for (int64_t j = c; j < static_cast<int64_t>(vals.size()); ++j) vals[j] = -std::numeric_limits<float>::infinity();
  }
  if (!plain) {
    for (int64_t j = 0; j < c; ++j) {
      const int64_t i = static_cast<int64_t>(idx[j]);
      idx[j] = topk_pack(row[i], static_cast<int32_t>(id_base + i));
    }
    const int64_t m = std::min<int64_t>(c, k);
    if (c > m) std::nth_element(idx, idx + (m - 1), idx + c, std::greater<TopKEntry>());
    std::sort(idx, idx + m, std::greater<TopKEntry>());
    std::copy(idx, idx + m, out);
    return static_cast<int>(m);
  }
  const int64_t padded = static_cast<int64_t>(vals.size());
  ranks.resize(static_cast<size_t>(c));
  ops.rank(vals.data(), c, padded, ranks.data());
  for (int64_t i = 0; i < c; ++i)
    if (ranks[i] < k) out[ranks[i]] = topk_pack(vals[i], static_cast<int32_t>(id_base + static_cast<int64_t>(idx[i])));
  return static_cast<int>(std::min<int64_t>(c, k));
}

}  // namespace

const RowSelect kRowSelectPortable = {count_at_least_portable, compress_at_least_portable, rank_portable,
                                      kth_largest};  // core/candidates.cpp

void set_select_mode(SelectMode mode) { g_mode.store(static_cast<int>(mode)); }

bool select_by_row(int64_t rows, int k, int64_t queries_per_task) {
  const auto mode = static_cast<SelectMode>(g_mode.load());
  if (mode != SelectMode::kAuto) return mode == SelectMode::kRow;
  // Row buffers of one task within 8 MiB, and K/N at least 1/64 (W1: 70 of 2,316).
  constexpr int64_t kMaxBytes = int64_t{8} << 20;
  return rows <= 64 * static_cast<int64_t>(k) && rows * queries_per_task * static_cast<int64_t>(sizeof(float)) <= kMaxBytes;
}

void push_row(void* ctx, int qi, const float* sims, uint32_t mask, int64_t local_row0) {
  auto* c = static_cast<RowSink*>(ctx);
  float* row = c->rows + static_cast<int64_t>(qi) * c->stride;
  const int64_t at = c->base + local_row0 - c->rb;  // index of lane 0 (< 0: before the range)
  if (mask == 0xFFFFFFFFu && at >= 0) {
    std::memcpy(row + at, sims, 32 * sizeof(float));
  } else {
    for (uint32_t m = mask; m; m &= m - 1) {
      const int l = __builtin_ctz(m);
      if (at + l >= 0) row[at + l] = sims[l];
    }
  }
  const int32_t ex = c->exclude ? c->exclude[qi] : -1;
  if (ex < 0) return;
  for (uint32_t m = mask; m; m &= m - 1) {
    const int l = __builtin_ctz(m);
    if (at + l >= 0 && c->groups[local_row0 + l] == ex) row[at + l] = -std::numeric_limits<float>::infinity();
  }
}

int select_row(const RowSelect& ops, const float* row, int64_t n, int k, int64_t id_base, TopKEntry* out,
               SelectScratch& scratch) {
  // Any t with count(sim >= t) >= k is exact: a row below t has at least k rows strictly
  // above it (a float compare, so -0 and +0 are on the same side), so it is not among the
  // k best. The search only tunes t so that few more than k rows pass.
  const int64_t hi = k + k / 8 + 8;  // accepted counts: [k, hi]
  double mean, sd;
  int64_t finite;
  // A sample of about 512 entries is enough for the guess (W1's rows: 2,316 entries).
  finite_moments(row, n, std::max<int64_t>(1, n / 512), &mean, &sd, &finite);
  float t_lo = -FLT_MAX;  // count(t_lo) >= k, or t_lo = -FLT_MAX: every finite row
  if (finite > hi && sd > 0) {
    float t_hi = std::numeric_limits<float>::infinity();  // count(t_hi) < k
    const double aim = upper_quantile((k + k / 16 + 4.0) / static_cast<double>(finite));
    auto z_of = [&](int64_t c) { return upper_quantile(std::clamp(static_cast<double>(c), 0.5, finite - 0.5) / finite); };
    double t = mean + sd * aim;
    double t_prev = 0, z_prev = 0;
    bool have_prev = false;
    for (int it = 0; it < 12; ++it) {
      const float tf = static_cast<float>(t);
      if (!(tf > t_lo && tf < t_hi)) break;  // no float left between the brackets
      const int64_t c = ops.count_at_least(row, n, tf);
      if (c >= k) {
        t_lo = tf;
        if (c <= hi) break;
      } else {
        t_hi = tf;
      }
      // Secant step in the normal model's z (count -> z): the distance to the aimed count
      // times the local slope dt/dz (sd until two points are known).
      const double z = z_of(c);
      double slope = sd;
      if (have_prev && z != z_prev) {
        const double s = (t - t_prev) / (z - z_prev);
        if (s > 0 && std::isfinite(s)) slope = s;
      }
      t_prev = t;
      z_prev = z;
      have_prev = true;
      double next = t + slope * (aim - z);
      const bool lo_known = t_lo > -FLT_MAX, hi_known = t_hi < std::numeric_limits<float>::infinity();
      if (!(next > t_lo && next < t_hi)) {  // outside the bracket: bisect (or step out by sd)
        next = lo_known && hi_known ? 0.5 * (static_cast<double>(t_lo) + t_hi) : lo_known ? t_lo + sd : t_hi - sd;
      }
      t = next;
    }
  }
  // Keep the rows at or above t_lo (their indices), then the k best of them, best first.
  if (scratch.idx.size() < static_cast<size_t>(n) + 16) scratch.idx.resize(static_cast<size_t>(n) + 16);
  uint64_t* idx = scratch.idx.data();
  const int64_t c = ops.compress_at_least(row, n, t_lo, idx);
  return sort_best(ops, row, idx, c, k, id_base, out, scratch.vals, scratch.ranks);
}

}  // namespace rapm
