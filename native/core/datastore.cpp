#include "datastore.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <string>

#include "aggregate.h"
#include "topk.h"

namespace rapm {

void AlignedFree::operator()(void* p) const { std::free(p); }

namespace {

template <typename T>
std::unique_ptr<T, AlignedFree> aligned_zeroed(size_t count) {
  size_t bytes = (count * sizeof(T) + 63) / 64 * 64;
  if (bytes == 0) bytes = 64;
  void* p = std::aligned_alloc(64, bytes);
  if (p == nullptr) return nullptr;
  std::memset(p, 0, bytes);
  return std::unique_ptr<T, AlignedFree>(static_cast<T*>(p));
}

// Round-to-nearest-even f32 -> bf16 (inputs are finite here).
inline uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline size_t panel_offset(int64_t row, int p, int d) {
  return static_cast<size_t>(row / kPanel) * d * kPanel + static_cast<size_t>(p) * kPanel + row % kPanel;
}

// Copies all rows of src into dst starting at dst_row0.
void copy_segment_rows(const Segment& src, Segment& dst, int64_t dst_row0, int d, int dv) {
  if (dst_row0 % kPanel == 0) {  // panel-aligned: whole panels at once
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
Status allocate_segment(int64_t base, int64_t n, int d, int dv, bool bf16, std::shared_ptr<Segment>* out) {
  try {
    auto seg = std::make_shared<Segment>();
    seg->base = base;
    seg->n = n;
    seg->npanels = (n + kPanel - 1) / kPanel;
    const size_t key_elems = static_cast<size_t>(seg->npanels) * d * kPanel;
    if (bf16) {
      seg->keys_bf16 = aligned_zeroed<uint16_t>(key_elems);
      if (!seg->keys_bf16) throw std::bad_alloc();
    } else {
      seg->keys_f32 = aligned_zeroed<float>(key_elems);
      if (!seg->keys_f32) throw std::bad_alloc();
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

Status normalize_rows(const float* in, float* out, int64_t m, int d, ThreadPool& pool) {
  constexpr int64_t kRowsPerTask = 256;
  const int64_t tasks = (m + kRowsPerTask - 1) / kRowsPerTask;
  std::vector<int64_t> bad(static_cast<size_t>(tasks), -1);
  std::vector<StatusCode> why(static_cast<size_t>(tasks), StatusCode::kOk);
  pool.parallel_for(tasks, [&](int64_t t) {
    const int64_t r1 = std::min(m, (t + 1) * kRowsPerTask);
    for (int64_t r = t * kRowsPerTask; r < r1; ++r) {
      const float* x = in + r * d;
      double s = 0;
      for (int j = 0; j < d; ++j) s += static_cast<double>(x[j]) * x[j];
      if (!std::isfinite(s)) {
        bad[t] = r;
        why[t] = StatusCode::kNonFinite;
        return;
      }
      if (s == 0) {
        bad[t] = r;
        why[t] = StatusCode::kZeroNorm;
        return;
      }
      const double inv = 1.0 / std::sqrt(s);
      float* y = out + r * d;
      for (int j = 0; j < d; ++j) y[j] = static_cast<float>(x[j] * inv);
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

Datastore::Datastore(int d, int dv, bool bf16) : d_(d), dv_(dv), bf16_(bf16) {}

int64_t Datastore::size() const {
  std::lock_guard<std::mutex> lock(state_mu_);
  return n_;
}

int64_t Datastore::memory_bytes() const {
  std::lock_guard<std::mutex> lock(state_mu_);
  int64_t bytes = 0;
  for (const auto& s : segments_) {
    bytes += s->npanels * d_ * kPanel * (bf16_ ? 2 : 4);
    bytes += static_cast<int64_t>(s->values.size() * sizeof(float) + s->groups.size() * sizeof(int32_t));
  }
  return bytes;
}

Snapshot Datastore::snapshot() const {
  std::lock_guard<std::mutex> lock(state_mu_);
  return Snapshot{segments_, n_, d_, dv_, bf16_};
}

Status Datastore::add(const float* keys, const float* values, const int32_t* groups, int64_t m,
                      ThreadPool& pool) {
  if (m <= 0) return Status::Ok();
  std::lock_guard<std::mutex> add_lock(add_mu_);
  // Normalise (and validate) first: on error nothing changes.
  std::vector<float> normed;
  try {
    normed.resize(static_cast<size_t>(m) * d_);
  } catch (const std::bad_alloc&) {
    return Status::Error(StatusCode::kOutOfMemory, "out of memory normalising keys");
  }
  Status st = normalize_rows(keys, normed.data(), m, d_, pool);
  if (!st.ok()) {
    st.subject = "keys";
    return st;
  }
  for (int64_t r = 0; r < m * dv_; ++r) {
    if (!std::isfinite(values[r])) {
      return Status::Error(StatusCode::kNonFinite, "row contains NaN or Infinity", r / dv_, "values");
    }
  }

  // Log-structured merge: fold trailing segments no larger than what is being added.
  std::vector<std::shared_ptr<const Segment>> segs;
  int64_t n_old;
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    segs = segments_;
    n_old = n_;
  }
  size_t keep = segs.size();
  int64_t merged_rows = m;
  while (keep > 0 && segs[keep - 1]->n <= merged_rows) {
    merged_rows += segs[keep - 1]->n;
    --keep;
  }
  std::shared_ptr<Segment> seg;
  st = allocate_segment(n_old + m - merged_rows, merged_rows, d_, dv_, bf16_, &seg);
  if (!st.ok()) return st;
  int64_t at = 0;
  for (size_t s = keep; s < segs.size(); ++s) {
    copy_segment_rows(*segs[s], *seg, at, d_, dv_);
    at += segs[s]->n;
  }
  // New rows into panel layout, in parallel over panels' worth of rows.
  const int64_t first = at;
  const int64_t tasks = (m + 1023) / 1024;
  Segment* dst = seg.get();
  const int d = d_;
  pool.parallel_for(tasks, [&](int64_t t) {
    const int64_t r1 = std::min(m, (t + 1) * 1024);
    for (int64_t r = t * 1024; r < r1; ++r) {
      const float* x = normed.data() + r * d;
      for (int p = 0; p < d; ++p) {
        const size_t o = panel_offset(first + r, p, d);
        if (dst->keys_bf16) {
          dst->keys_bf16.get()[o] = to_bf16(x[p]);
        } else {
          dst->keys_f32.get()[o] = x[p];
        }
      }
    }
  });
  std::copy(values, values + m * dv_, seg->values.begin() + first * dv_);
  std::copy(groups, groups + m, seg->groups.begin() + first);

  segs.resize(keep);
  segs.push_back(std::move(seg));
  std::lock_guard<std::mutex> lock(state_mu_);
  segments_ = std::move(segs);
  n_ = n_old + m;
  return Status::Ok();
}

namespace {

struct PushCtx {
  TopK* heaps;
  float* thr;
  const int32_t* groups;   // segment-local
  int64_t base;            // segment base row
  int64_t first;           // first segment-local row in the searched range
  const int32_t* exclude;  // per task query, or null
};

void push_candidates(void* ctx, int qi, const float* sims, uint32_t mask, int64_t row0) {
  auto* c = static_cast<PushCtx*>(ctx);
  TopK& h = c->heaps[qi];
  const int32_t ex = c->exclude ? c->exclude[qi] : -1;
  while (mask) {
    const int l = __builtin_ctz(mask);
    mask &= mask - 1;
    const int64_t r = row0 + l;
    if (r < c->first || (ex >= 0 && c->groups[r] == ex)) continue;
    h.push(sims[l], static_cast<int32_t>(c->base + r));
  }
  c->thr[qi] = h.thr;
}

const Segment* segment_of(const Snapshot& snap, int64_t row) {
  auto it = std::upper_bound(snap.segments.begin(), snap.segments.end(), row,
                             [](int64_t r, const std::shared_ptr<const Segment>& s) { return r < s->base; });
  return (it - 1)->get();
}

}  // namespace

Status search(const Snapshot& snap, const Kernels& kern, ThreadPool& pool, const float* queries, int64_t b,
              const SearchParams& params, const SearchOutputs& out) {
  const int d = snap.d, dv = snap.dv, k = params.k;
  if (b <= 0) return Status::Ok();
  const int64_t rb = params.row_begin, re = params.row_end < 0 ? snap.n : params.row_end;
  if (rb < 0 || rb >= re || re > snap.n) {
    return Status::Error(StatusCode::kInvalidArg, "row range [" + std::to_string(rb) + ", " + std::to_string(re) +
                                                      ") is empty or outside [0, " + std::to_string(snap.n) + ")");
  }
  if (k < 1 || k > re - rb) {
    return Status::Error(StatusCode::kKTooLarge,
                         "k = " + std::to_string(k) + " but only " + std::to_string(re - rb) + " rows are searched");
  }
  std::vector<float> qn;
  try {
    qn.resize(static_cast<size_t>(b) * d);
  } catch (const std::bad_alloc&) {
    return Status::Error(StatusCode::kOutOfMemory, "out of memory normalising queries");
  }
  Status st = normalize_rows(queries, qn.data(), b, d, pool);
  if (!st.ok()) return st;

  // Task grid: query chunks x key chunks. Query chunks are whole micro-tiles; when there
  // are too few queries to feed every thread, keys are split too and heaps merged after.
  const int threads = pool.threads();
  const int mr = kern.mr;
  const int64_t qtiles = (b + mr - 1) / mr;
  const int64_t qtasks = std::min<int64_t>(qtiles, 4 * threads);
  const int64_t qchunk = (qtiles + qtasks - 1) / qtasks * mr;
  const int64_t qtasks_real = (b + qchunk - 1) / qchunk;
  const int64_t ktasks = qtasks_real >= threads ? 1 : (4 * threads + qtasks_real - 1) / qtasks_real;
  const int key_bytes = snap.bf16 ? 2 : 4;
  const int64_t block_panels = std::max<int64_t>(1, (384 * 1024) / (static_cast<int64_t>(d) * kPanel * key_bytes));

  const int cap = topk_capacity(k);
  std::vector<TopKEntry> entries;
  try {
    entries.resize(static_cast<size_t>(ktasks) * b * cap);
  } catch (const std::bad_alloc&) {
    return Status::Error(StatusCode::kOutOfMemory, "out of memory for top-k buffers");
  }
  std::vector<int> heap_sizes(static_cast<size_t>(ktasks) * b, 0);

  pool.parallel_for(qtasks_real * ktasks, [&](int64_t task) {
    const int64_t qt = task / ktasks, kt = task % ktasks;
    const int64_t q0 = qt * qchunk;
    const int nq = static_cast<int>(std::min(b, q0 + qchunk) - q0);
    std::vector<TopK> heaps(static_cast<size_t>(nq));
    std::vector<float> thr(static_cast<size_t>(nq), -std::numeric_limits<float>::infinity());
    for (int i = 0; i < nq; ++i) {
      const size_t o = (static_cast<size_t>(kt) * b + q0 + i) * cap;
      heaps[i] = TopK{entries.data() + o, 0, k, cap, -std::numeric_limits<float>::infinity()};
    }
    const int64_t packed_rows = (nq + kern.mr - 1) / kern.mr * kern.mr;
    std::vector<float> qpack(static_cast<size_t>(packed_rows) * d);
    PushCtx ctx{heaps.data(), thr.data(), nullptr, 0, 0, params.exclude_groups ? params.exclude_groups + q0 : nullptr};
    for (const auto& seg : snap.segments) {
      // The searched rows of this segment, segment-local: [lr0, lr1).
      const int64_t lr0 = std::max<int64_t>(rb - seg->base, 0), lr1 = std::min<int64_t>(re - seg->base, seg->n);
      if (lr0 >= lr1) continue;
      const int64_t first_panel = lr0 / kPanel, panels = (lr1 + kPanel - 1) / kPanel - first_panel;
      const int64_t p0 = first_panel + panels * kt / ktasks, p1 = first_panel + panels * (kt + 1) / ktasks;
      if (p0 >= p1) continue;
      ctx.groups = seg->groups.data();
      ctx.base = seg->base;
      ctx.first = lr0;
      // Lanes at or past lr1 are masked by the kernel; rows before lr0 by push_candidates.
      ScanArgs a{qn.data() + q0 * d, nq, d, seg->keys_f32.get(), seg->keys_bf16.get(), p0, p1, lr1,
                 block_panels, qpack.data(), thr.data(), push_candidates, &ctx};
      kern.scan(a);
    }
    for (int i = 0; i < nq; ++i) {
      heaps[i].select();
      heap_sizes[static_cast<size_t>(kt) * b + q0 + i] = heaps[i].size;
    }
  });

  // Merge key chunks, sort, aggregate.
  const int64_t ftasks = std::min<int64_t>(b, 64);
  std::vector<int64_t> short_q(static_cast<size_t>(ftasks), -1);
  pool.parallel_for(ftasks, [&](int64_t t) {
    std::vector<TopKEntry> merged(static_cast<size_t>(cap));
    for (int64_t q = b * t / ftasks; q < b * (t + 1) / ftasks; ++q) {
      TopK h{merged.data(), 0, k, cap, -std::numeric_limits<float>::infinity()};
      for (int64_t kt = 0; kt < ktasks; ++kt) {
        const TopKEntry* e = entries.data() + (static_cast<size_t>(kt) * b + q) * cap;
        const int sz = heap_sizes[static_cast<size_t>(kt) * b + q];
        for (int i = 0; i < sz; ++i) h.push(topk_value(e[i]), topk_id(e[i]));
      }
      if (h.size < k) {
        if (short_q[t] < 0) short_q[t] = q;
        continue;
      }
      h.sort_desc();
      float* w = out.weights + q * k;
      float* s = out.similarities + q * k;
      int32_t* nb = out.neighbors + q * k;
      for (int i = 0; i < k; ++i) {
        s[i] = topk_value(merged[i]);
        nb[i] = topk_id(merged[i]);
      }
      aggregate_weights(s, k, params.tau, params.aggregate, w);
      float* pr = out.prior + q * dv;
      std::fill(pr, pr + dv, 0.0f);
      for (int i = 0; i < k; ++i) {
        if (w[i] == 0.0f) continue;
        const Segment* seg = segment_of(snap, nb[i]);
        const float* v = seg->values.data() + (nb[i] - seg->base) * dv;
        for (int j = 0; j < dv; ++j) pr[j] += w[i] * v[j];
      }
    }
  });
  for (int64_t q : short_q) {
    if (q >= 0) {
      return Status::Error(StatusCode::kKTooLarge,
                           "fewer than k = " + std::to_string(k) + " rows remain after exclusion", q);
    }
  }
  return Status::Ok();
}

// ---------------------------------------------------------------- bulk export / import
// (persistence: src/retrieval/persist.ts streams a datastore to a file in row blocks)

namespace {

inline float bf16_to_f32(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

constexpr int64_t kBulkRows = 256;  // rows per parallel task (a multiple of kPanel)

}  // namespace

Status Datastore::export_rows(int64_t row_begin, int64_t row_end, float* keys_f32, uint16_t* keys_bf16, float* values,
                              int32_t* groups, ThreadPool& pool) const {
  const Snapshot snap = snapshot();
  if (row_begin < 0 || row_begin > row_end || row_end > snap.n) {
    return Status::Error(StatusCode::kInvalidArg, "row range [" + std::to_string(row_begin) + ", " +
                                                      std::to_string(row_end) + ") is outside [0, " +
                                                      std::to_string(snap.n) + "]");
  }
  if ((keys_f32 != nullptr && bf16_) || (keys_bf16 != nullptr && !bf16_)) {
    return Status::Error(StatusCode::kInvalidArg, bf16_ ? "keys of a bf16 datastore export as bf16 bits (Uint16Array)"
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
        if (values != nullptr) std::memcpy(values + o * dv, seg->values.data() + lr * dv, sizeof(float) * dv);
        if (groups != nullptr) groups[o] = seg->groups[static_cast<size_t>(lr)];
      }
    }
  });
  return Status::Ok();
}

Status Datastore::import_rows(const float* keys_f32, const uint16_t* keys_bf16, const float* values,
                              const int32_t* groups, int64_t m, ThreadPool& pool) {
  if (m <= 0) return Status::Ok();
  if (bf16_ ? keys_bf16 == nullptr || keys_f32 != nullptr : keys_f32 == nullptr || keys_bf16 != nullptr) {
    return Status::Error(StatusCode::kInvalidArg, bf16_ ? "a bf16 datastore imports keys as bf16 bits (Uint16Array)"
                                                        : "an f32 datastore imports keys as f32 (Float32Array)");
  }
  std::lock_guard<std::mutex> add_lock(add_mu_);
  const int d = d_, dv = dv_;

  // Validate first: on error nothing changes. Each task records its first bad row.
  enum Why : int { kNone = 0, kKeyNonFinite, kKeyNorm, kValueNonFinite, kGroupNegative };
  const int64_t tasks = (m + kBulkRows - 1) / kBulkRows;
  std::vector<int64_t> bad(static_cast<size_t>(tasks), -1);
  std::vector<int> why(static_cast<size_t>(tasks), kNone);
  std::vector<double> norm2(static_cast<size_t>(tasks), 0.0);
  pool.parallel_for(tasks, [&](int64_t t) {
    const int64_t r1 = std::min(m, (t + 1) * kBulkRows);
    for (int64_t r = t * kBulkRows; r < r1; ++r) {
      double s = 0;
      for (int j = 0; j < d; ++j) {
        const float x = keys_bf16 != nullptr ? bf16_to_f32(keys_bf16[r * d + j]) : keys_f32[r * d + j];
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
        if (!std::isfinite(values[r * dv + j])) {
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
        return Status::Error(StatusCode::kNonFinite, "row contains NaN or Infinity", bad[t], "values");
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
  Status alloc = allocate_segment(n_old, m, d, dv, bf16_, &seg);
  if (!alloc.ok()) return alloc;
  std::copy(values, values + m * dv, seg->values.begin());
  std::copy(groups, groups + m, seg->groups.begin());
  Segment* dst = seg.get();
  pool.parallel_for(tasks, [&](int64_t t) {
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
  std::lock_guard<std::mutex> lock(state_mu_);
  segments_.push_back(std::move(seg));
  n_ = n_old + m;
  return Status::Ok();
}

}  // namespace rapm
