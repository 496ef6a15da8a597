#include "datastore.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <string>

#include "baseline_sse2.h"
#include "bf16.h"
#include "int8_store.h"
#include "uninit.h"

namespace rapm {

namespace {
const char* const kValueRangeMessage = "row contains NaN, Infinity or a value beyond +-1e30 (kMaxAbsValue: priors blend values in float32)";
}  // namespace


void AlignedFree::operator()(void* p) const { std::free(p); }

namespace {


inline size_t panel_offset(int64_t row, int p, int d) {
  return static_cast<size_t>(row / kPanel) * d * kPanel + static_cast<size_t>(p) * kPanel + row % kPanel;
}

// Copies all rows of src into dst starting at dst_row0.
void copy_segment_rows(const Segment& src, Segment& dst, int64_t dst_row0, int d, int dv, bool int8) {
  if (int8) {
    i8_copy_rows(src, dst, dst_row0, d);  // the stored int8 keys (core/int8_store.cpp)
  } else if (dst_row0 % kPanel == 0) {  // panel-aligned: whole panels at once  // panel-aligned: whole panels at once
    const size_t elems = static_cast<size_t>(src.npanels) * d * kPanel;
    const size_t at = static_cast<size_t>(dst_row0 / kPanel) * d * kPanel;
    if (src.keys_f32) std::memcpy(dst.keys_f32.get() + at, src.keys_f32.get(), elems * sizeof(float));
    if (src.keys_bf16) std::memcpy(dst.keys_bf16.get() + at, src.keys_bf16.get(), elems * sizeof(uint16_t));
  } else {
    for (int64_t r = 0; r < src.n; ++r) {
      for (int p = 0; p < d; ++p) {
        const size_t s = panel_offset(r, p, d), t = panel_offset(dst_row0 + r, p, d);
        if (src.keys_f32) dst.keys_f32.get()[t] = src.keys_f32.get()[s];
        if (src.keys_bf16) dst.keys_bf16.get()[t] = src.keys_bf16.get()[s];
      }
    }
  }
  std::copy(src.values.begin(), src.values.end(), dst.values.begin() + dst_row0 * dv);
  std::copy(src.groups.begin(), src.groups.end(), dst.groups.begin() + dst_row0);
}

// A zeroed segment of n rows starting at global row `base` (panel-padded keys, values, groups).
Status allocate_segment(int64_t base, int64_t n, int d, int dv, bool bf16, bool int8, std::shared_ptr<Segment>* out) {
  try {
    auto seg = std::make_shared<Segment>();
    seg->base = base;
    seg->n = n;
    seg->npanels = (n + kPanel - 1) / kPanel;
    const size_t key_elems = static_cast<size_t>(seg->npanels) * d * kPanel;
    if (int8) {
      Status st = i8_allocate(*seg, d);
      if (!st.ok()) return st;
    } else if (bf16) {
      seg->keys_bf16 = aligned_uninit<uint16_t>(key_elems);
      if (!seg->keys_bf16) throw std::bad_alloc();
    } else {
      seg->keys_f32 = aligned_uninit<float>(key_elems);
      if (!seg->keys_f32) throw std::bad_alloc();
    }
    // Every lane of a row < n is written by the caller (copied or added rows); only the last
    // panel's lanes past n stay padding, which must be zero (norms, shadows and scans read it).
    // Zeroing that one panel instead of the whole array saves a pass over the segment's keys.
    if (!int8 && seg->npanels > 0) {
      const size_t last = static_cast<size_t>(seg->npanels - 1) * d * kPanel, panel = static_cast<size_t>(d) * kPanel;
      if (bf16) {
        std::memset(seg->keys_bf16.get() + last, 0, panel * sizeof(uint16_t));
      } else {
        std::memset(seg->keys_f32.get() + last, 0, panel * sizeof(float));
      }
    }
    seg->values.resize(static_cast<size_t>(n) * dv);
    seg->groups.resize(static_cast<size_t>(n));
    *out = std::move(seg);
    return Status::Ok();
  } catch (const std::bad_alloc&) {
    return Status::Error(StatusCode::kOutOfMemory, "out of memory allocating " + std::to_string(n) + " rows");
  }
}

}  // namespace

namespace {

// Squared norms of the rows x[0, rows) (rows <= 8, each [d]): per row the double sum of
// x[j]^2, j ascending, each product exact (float x float fits a double) and each add rounded
// once, so the same bits however many rows run side by side. The adds are latency-bound: with
// SSE2 two rows share a register and four registers run at once (8 chains), else 8 scalar chains.
void sum_squares(const float* const* x, int rows, int d, double* out) {
  double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int j = 0;
#ifdef RAPM_BASELINE_SSE2
  if (rows == 8) {
    __m128d acc[4] = {_mm_setzero_pd(), _mm_setzero_pd(), _mm_setzero_pd(), _mm_setzero_pd()};
    for (; j + 4 <= d; j += 4) {
      for (int p = 0; p < 4; ++p) {
        const __m128 a = _mm_loadu_ps(x[2 * p] + j), b = _mm_loadu_ps(x[2 * p + 1] + j);
        const __m128 lo = _mm_unpacklo_ps(a, b), hi = _mm_unpackhi_ps(a, b);  // a0 b0 a1 b1 | a2 b2 a3 b3
        __m128d v = _mm_cvtps_pd(lo);
        acc[p] = _mm_add_pd(acc[p], _mm_mul_pd(v, v));
        v = _mm_cvtps_pd(_mm_movehl_ps(lo, lo));
        acc[p] = _mm_add_pd(acc[p], _mm_mul_pd(v, v));
        v = _mm_cvtps_pd(hi);
        acc[p] = _mm_add_pd(acc[p], _mm_mul_pd(v, v));
        v = _mm_cvtps_pd(_mm_movehl_ps(hi, hi));
        acc[p] = _mm_add_pd(acc[p], _mm_mul_pd(v, v));
      }
    }
    for (int p = 0; p < 4; ++p) {
      _mm_storel_pd(&s[2 * p], acc[p]);
      _mm_storeh_pd(&s[2 * p + 1], acc[p]);
    }
  }
#endif
  for (; j < d; ++j) {
    for (int i = 0; i < rows; ++i) s[i] += static_cast<double>(x[i][j]) * x[i][j];
  }
  for (int i = 0; i < rows; ++i) out[i] = s[i];
}

// y[j] = float(x[j] * inv) in double, element by element (SSE2: 4 at a time, the same operations).
void scale_row(const float* x, double inv, int d, float* y) {
  int j = 0;
#ifdef RAPM_BASELINE_SSE2
  const __m128d iv = _mm_set1_pd(inv);
  for (; j + 4 <= d; j += 4) {
    const __m128 a = _mm_loadu_ps(x + j);
    const __m128 lo = _mm_cvtpd_ps(_mm_mul_pd(_mm_cvtps_pd(a), iv));
    const __m128 hi = _mm_cvtpd_ps(_mm_mul_pd(_mm_cvtps_pd(_mm_movehl_ps(a, a)), iv));
    _mm_storeu_ps(y + j, _mm_movelh_ps(lo, hi));
  }
#endif
  for (; j < d; ++j) y[j] = static_cast<float>(x[j] * inv);
}

}  // namespace

Status normalize_rows(const float* in, float* out, int64_t m, int d, ThreadPool& pool) {
  // Small tasks: a search's few hundred queries still spread over every thread.
  constexpr int64_t kRowsPerTask = 64;
  const int64_t tasks = (m + kRowsPerTask - 1) / kRowsPerTask;
  std::vector<int64_t> bad(static_cast<size_t>(tasks), -1);
  std::vector<StatusCode> why(static_cast<size_t>(tasks), StatusCode::kOk);
  pool.parallel_for(tasks, [&](int64_t t) {
    const int64_t r0 = t * kRowsPerTask, r1 = std::min(m, (t + 1) * kRowsPerTask);
    constexpr int kRows = 8;
    for (int64_t g0 = r0; g0 < r1; g0 += kRows) {
      const int rows = static_cast<int>(std::min<int64_t>(kRows, r1 - g0));
      const float* x[kRows];
      for (int i = 0; i < rows; ++i) x[i] = in + (g0 + i) * d;
      double norms[kRows];
      sum_squares(x, rows, d, norms);
      for (int i = 0; i < rows; ++i) {
        const double s = norms[i];
        if (!std::isfinite(s)) {
          bad[t] = g0 + i;
          why[t] = StatusCode::kNonFinite;
          return;
        }
        if (s == 0) {
          bad[t] = g0 + i;
          why[t] = StatusCode::kZeroNorm;
          return;
        }
        scale_row(x[i], 1.0 / std::sqrt(s), d, out + (g0 + i) * d);
      }
    }
  });
  for (int64_t t = 0; t < tasks; ++t) {
    if (bad[t] >= 0) {
      const bool nf = why[t] == StatusCode::kNonFinite;
      return Status::Error(why[t], nf ? "row contains NaN or Infinity" : "row has zero norm", bad[t]);
    }
  }
  return Status::Ok();
}

Datastore::Datastore(int d, int dv, bool bf16, FastPath fast)
    : d_(d), dv_(dv), bf16_(bf16), fast_(fast), counters_(std::make_shared<FastPathCounters>()) {}

Datastore::Datastore(int d, int dv, KeyPrecision precision, FastPath fast)
    : Datastore(d, dv, precision == KeyPrecision::kBf16, fast) {
  int8_ = precision == KeyPrecision::kInt8;
}

int64_t Datastore::size() const {
  std::lock_guard<std::mutex> lock(state_mu_);
  return n_;
}

int64_t Datastore::memory_bytes() const {
  std::lock_guard<std::mutex> lock(state_mu_);
  int64_t bytes = 0;
  for (const auto& s : segments_) {
    bytes += s->npanels * d_ * kPanel * (int8_ ? 0 : bf16_ ? 2 : 4);  // int8 keys: in shadow_bytes
    bytes += static_cast<int64_t>(s->values.size() * sizeof(float) + s->groups.size() * sizeof(int32_t));
    bytes += shadow_bytes(*s, d_);
  }
  return bytes;
}

Snapshot Datastore::snapshot() const {
  std::lock_guard<std::mutex> lock(state_mu_);
  return Snapshot{segments_, n_, d_, dv_, bf16_, fast_, counters_, int8_};
}

Status Datastore::add(const float* keys, const float* values, const int32_t* groups, int64_t m,
                      ThreadPool& pool) {
  if (m <= 0) return Status::Ok();
  std::lock_guard<std::mutex> add_lock(add_mu_);

  // Log-structured merge: fold trailing segments no larger than what is being added, except
  // settled ones (>= kSettledRows). A segment that size costs a search nothing measurable as a
  // segment of its own (a scan call and a query packing per segment, next to its rows' dot
  // products), while folding it copies every one of its rows into fresh memory at each
  // doubling: with equal chunks each row was copied log2(n / chunk) times, and fresh pages
  // (page faults, zeroing) dominated add(). Small appends still merge into segments of at
  // least kSettledRows / 2 rows, so there are at most O(n / kSettledRows + log n) segments.
  constexpr int64_t kSettledRows = 16384;
  std::vector<std::shared_ptr<const Segment>> segs;
  int64_t n_old;
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    segs = segments_;
    n_old = n_;
  }
  size_t keep = segs.size();
  int64_t merged_rows = m;
  while (keep > 0 && segs[keep - 1]->n <= merged_rows && segs[keep - 1]->n < kSettledRows) {
    merged_rows += segs[keep - 1]->n;
    --keep;
  }
  std::shared_ptr<Segment> seg;
  Status st = allocate_segment(n_old + m - merged_rows, merged_rows, d_, dv_, bf16_, int8_, &seg);
  if (!st.ok()) return st;
  int64_t at = 0;
  for (size_t s = keep; s < segs.size(); ++s) {
    copy_segment_rows(*segs[s], *seg, at, d_, dv_, int8_);
    at += segs[s]->n;
  }
  // New rows: normalised (and validated) block by block through one reused buffer, straight
  // into panel layout. The segment is published only at the end: on error nothing changes.
  const int64_t first = at;
  Segment* dst = seg.get();
  const int d = d_;
  constexpr int64_t kBlockRows = 2048;
  UninitVector<float> normed;  // written in full by normalize_rows
  try {
    normed.resize(static_cast<size_t>(std::min(m, kBlockRows)) * d);
  } catch (const std::bad_alloc&) {
    return Status::Error(StatusCode::kOutOfMemory, "out of memory normalising keys");
  }
  for (int64_t b0 = 0; b0 < m; b0 += kBlockRows) {
    const int64_t rows = std::min(kBlockRows, m - b0);
    st = normalize_rows(keys + b0 * d, normed.data(), rows, d, pool);
    if (!st.ok()) {
      st.subject = "keys";
      if (st.row >= 0) st.row += b0;
      return st;
    }
    if (int8_) {
      i8_quantize_rows(normed.data(), rows, d, *dst, first + b0, pool);
      continue;
    }
    const int64_t tasks = (rows + 255) / 256;
    pool.parallel_for(tasks, [&](int64_t t) {
      const int64_t r1 = std::min(rows, (t + 1) * 256);
      for (int64_t r = t * 256; r < r1; ++r) {
        const float* x = normed.data() + r * d;
        for (int p = 0; p < d; ++p) {
          const size_t o = panel_offset(first + b0 + r, p, d);
          if (dst->keys_bf16) {
            dst->keys_bf16.get()[o] = to_bf16(x[p]);
          } else {
            dst->keys_f32.get()[o] = x[p];
          }
        }
      }
    });
  }
  for (int64_t r = 0; r < m * dv_; ++r) {
    if (!value_in_range(values[r])) {
      return Status::Error(StatusCode::kNonFinite, kValueRangeMessage, r / dv_, "values");
    }
  }
  std::copy(values, values + m * dv_, seg->values.begin() + first * dv_);
  std::copy(groups, groups + m, seg->groups.begin() + first);
  if (int8_) {
    i8_key_stats(*seg, d_, pool);  // the stored keys are the int8 first pass's keys: no shadow
  } else {
    st = build_shadow(*seg, d_, bf16_, fast_, pool);
    if (!st.ok()) return st;
  }

  segs.resize(keep);
  segs.push_back(std::move(seg));
  std::lock_guard<std::mutex> lock(state_mu_);
  segments_ = std::move(segs);
  n_ = n_old + m;
  return Status::Ok();
}

const Segment* segment_of(const Snapshot& snap, int64_t row) {
  auto it = std::upper_bound(snap.segments.begin(), snap.segments.end(), row,
                             [](int64_t r, const std::shared_ptr<const Segment>& s) { return r < s->base; });
  return (it - 1)->get();
}

// ---------------------------------------------------------------- bulk export / import
// (persistence: src/retrieval/persist.ts streams a datastore to a file in row blocks)

namespace {

constexpr int64_t kBulkRows = 256;  // rows per parallel task (a multiple of kPanel)

}  // namespace

Status Datastore::export_rows(int64_t row_begin, int64_t row_end, float* keys_f32, uint16_t* keys_bf16, float* values,
                              int32_t* groups, ThreadPool& pool, int8_t* keys_i8, float* scales_i8) const {
  const Snapshot snap = snapshot();
  if (row_begin < 0 || row_begin > row_end || row_end > snap.n) {
    return Status::Error(StatusCode::kInvalidArg, "row range [" + std::to_string(row_begin) + ", " +
                                                      std::to_string(row_end) + ") is outside [0, " +
                                                      std::to_string(snap.n) + "]");
  }
  if (int8_ ? keys_f32 != nullptr || keys_bf16 != nullptr
            : (keys_i8 != nullptr || scales_i8 != nullptr || (keys_f32 != nullptr && bf16_) || (keys_bf16 != nullptr && !bf16_))) {
    return Status::Error(StatusCode::kInvalidArg, int8_ ? "keys of an int8 datastore export as int8 codes (Int8Array) and scales"
                                                  : bf16_ ? "keys of a bf16 datastore export as bf16 bits (Uint16Array)"
                                                          : "keys of an f32 datastore export as f32 (Float32Array)");
  }
  if (row_begin == row_end) return Status::Ok();
  const int d = d_, dv = dv_;
  const int64_t tasks = (row_end - row_begin + kBulkRows - 1) / kBulkRows;
  pool.parallel_for(tasks, [&](int64_t t) {
    const int64_t r1 = std::min(row_end, row_begin + (t + 1) * kBulkRows);
    int64_t r = row_begin + t * kBulkRows;
    while (r < r1) {
      const Segment* seg = segment_of(snap, r);
      const int64_t end = std::min(r1, seg->base + seg->n);
      for (; r < end; ++r) {
        const int64_t lr = r - seg->base, o = r - row_begin;
        if (keys_f32 != nullptr) {
          const float* src = seg->keys_f32.get();
          float* dst = keys_f32 + o * d;
          for (int p = 0; p < d; ++p) dst[p] = src[panel_offset(lr, p, d)];
        }
        if (keys_bf16 != nullptr) {
          const uint16_t* src = seg->keys_bf16.get();
          uint16_t* dst = keys_bf16 + o * d;
          for (int p = 0; p < d; ++p) dst[p] = src[panel_offset(lr, p, d)];
        }
        if (keys_i8 != nullptr || scales_i8 != nullptr) {
          i8_export_row(*seg, lr, d, keys_i8 != nullptr ? keys_i8 + o * d : nullptr, scales_i8 != nullptr ? scales_i8 + o : nullptr);
        }
        if (values != nullptr) std::memcpy(values + o * dv, seg->values.data() + lr * dv, sizeof(float) * dv);
        if (groups != nullptr) groups[o] = seg->groups[static_cast<size_t>(lr)];
      }
    }
  });
  return Status::Ok();
}

Status Datastore::import_rows(const float* keys_f32, const uint16_t* keys_bf16, const float* values,
                              const int32_t* groups, int64_t m, ThreadPool& pool, const int8_t* keys_i8,
                              const float* scales_i8) {
  if (m <= 0) return Status::Ok();
  const bool i8_given = keys_i8 != nullptr && scales_i8 != nullptr;
  if (int8_ ? !i8_given || keys_f32 != nullptr || keys_bf16 != nullptr
            : keys_i8 != nullptr || scales_i8 != nullptr ||
                  (bf16_ ? keys_bf16 == nullptr || keys_f32 != nullptr : keys_f32 == nullptr || keys_bf16 != nullptr)) {
    return Status::Error(StatusCode::kInvalidArg, int8_ ? "an int8 datastore imports keys as int8 codes (Int8Array) and scales (Float32Array)"
                                                  : bf16_ ? "a bf16 datastore imports keys as bf16 bits (Uint16Array)"
                                                          : "an f32 datastore imports keys as f32 (Float32Array)");
  }
  std::lock_guard<std::mutex> add_lock(add_mu_);
  const int d = d_, dv = dv_;

  // Validate first: on error nothing changes. Each task records its first bad row.
  enum Why : int { kNone = 0, kKeyNonFinite, kKeyNorm, kValueNonFinite, kGroupNegative, kScaleBad, kCodeBad };
  const int64_t tasks = (m + kBulkRows - 1) / kBulkRows;
  std::vector<int64_t> bad(static_cast<size_t>(tasks), -1);
  std::vector<int> why(static_cast<size_t>(tasks), kNone);
  std::vector<double> norm2(static_cast<size_t>(tasks), 0.0);
  pool.parallel_for(tasks, [&](int64_t t) {
    const int64_t r1 = std::min(m, (t + 1) * kBulkRows);
    for (int64_t r = t * kBulkRows; r < r1; ++r) {
      if (keys_i8 != nullptr && !(std::isfinite(scales_i8[r]) && scales_i8[r] > 0)) {
        bad[t] = r;
        why[t] = kScaleBad;
        return;
      }
      double s = 0;
      for (int j = 0; j < d; ++j) {
        if (keys_i8 != nullptr && keys_i8[r * d + j] < -127) {  // -128 is outside the symmetric code range
          bad[t] = r;
          why[t] = kCodeBad;
          return;
        }
        const float x = keys_i8 != nullptr    ? scales_i8[r] * keys_i8[r * d + j]
                        : keys_bf16 != nullptr ? bf16_to_f32(keys_bf16[r * d + j])
                                               : keys_f32[r * d + j];
        if (!std::isfinite(x)) {
          bad[t] = r;
          why[t] = kKeyNonFinite;
          return;
        }
        s += static_cast<double>(x) * x;
      }
      if (!(std::fabs(s - 1.0) <= 2e-2)) {
        bad[t] = r;
        why[t] = kKeyNorm;
        norm2[t] = s;
        return;
      }
      for (int j = 0; j < dv; ++j) {
        if (!value_in_range(values[r * dv + j])) {
          bad[t] = r;
          why[t] = kValueNonFinite;
          return;
        }
      }
      if (groups[r] < 0) {
        bad[t] = r;
        why[t] = kGroupNegative;
        return;
      }
    }
  });
  for (int64_t t = 0; t < tasks; ++t) {
    if (bad[t] < 0) continue;
    switch (why[t]) {
      case kKeyNonFinite:
        return Status::Error(StatusCode::kNonFinite, "row contains NaN or Infinity", bad[t], "keys");
      case kKeyNorm:
        return Status::Error(StatusCode::kInvalidArg,
                             "row is not unit-norm (|x|^2 = " + std::to_string(norm2[t]) +
                                 "): importRows takes keys as stored, already normalised",
                             bad[t], "keys");
      case kValueNonFinite:
        return Status::Error(StatusCode::kNonFinite, kValueRangeMessage, bad[t], "values");
      case kScaleBad:
        return Status::Error(StatusCode::kInvalidArg, "row's int8 scale is not a finite number > 0", bad[t], "keys");
      case kCodeBad:
        return Status::Error(StatusCode::kInvalidArg, "row holds the int8 code -128 (codes are in [-127, 127])", bad[t], "keys");
      default:
        return Status::Error(StatusCode::kInvalidArg, "group is negative", bad[t], "groups");
    }
  }

  int64_t n_old;
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    n_old = n_;
  }
  std::shared_ptr<Segment> seg;
  Status alloc = allocate_segment(n_old, m, d, dv, bf16_, int8_, &seg);
  if (!alloc.ok()) return alloc;
  std::copy(values, values + m * dv, seg->values.begin());
  std::copy(groups, groups + m, seg->groups.begin());
  Segment* dst = seg.get();
  if (int8_) i8_import_rows(keys_i8, scales_i8, m, d, *dst, pool);
  pool.parallel_for(int8_ ? 0 : tasks, [&](int64_t t) {
    const int64_t r1 = std::min(m, (t + 1) * kBulkRows);
    for (int64_t r = t * kBulkRows; r < r1; ++r) {
      for (int p = 0; p < d; ++p) {
        const size_t o = panel_offset(r, p, d);
        if (keys_bf16 != nullptr) {
          dst->keys_bf16.get()[o] = keys_bf16[r * d + p];
        } else {
          dst->keys_f32.get()[o] = keys_f32[r * d + p];
        }
      }
    }
  });
  if (int8_) {
    i8_key_stats(*seg, d, pool);
  } else {
    Status shadow = build_shadow(*seg, d, bf16_, fast_, pool);
    if (!shadow.ok()) return shadow;
  }
  std::lock_guard<std::mutex> lock(state_mu_);
  segments_.push_back(std::move(seg));
  n_ = n_old + m;
  return Status::Ok();
}

}  // namespace rapm
