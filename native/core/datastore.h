// The datastore: L2-normalised keys in cache-friendly panels (f32 or bf16), their
// dv-dim values, and an exclusion group per row (rows of the same utterance share one).
//
// Rows live in immutable segments. add() builds a new segment (merging small trailing
// ones, log-structured; segments of kSettledRows and more are left alone, so there are
// O(n / kSettledRows + log n) segments: see Datastore::add) and swaps it in under a short
// lock; a search works on the snapshot it took when it started, so appends may run
// while searches do.
#pragma once
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "../kernels/kernels.h"
#include "status.h"
#include "thread_pool.h"

namespace rapm {

// The largest |value| a datastore row may hold. Priors are float32 blends of up to k value
// rows with weights that sum to 1 within rounding (so a touch above 1), and the scores square
// them: values near FLT_MAX would overflow to Infinity. Prosody features are many orders of
// magnitude below this; add and import refuse anything beyond it, and NaN, as non-finite.
constexpr float kMaxAbsValue = 1e30f;
inline bool value_in_range(float v) { return std::fabs(v) <= kMaxAbsValue; }  // false for NaN


struct AlignedFree {
  void operator()(void* p) const;
};

// A zeroed, 64-byte aligned array of count T (nullptr when out of memory).
template <typename T>
std::unique_ptr<T, AlignedFree> aligned_zeroed(size_t count) {
  size_t bytes = (count * sizeof(T) + 63) / 64 * 64;
  if (bytes == 0) bytes = 64;
  void* p = std::aligned_alloc(64, bytes);
  if (p == nullptr) return nullptr;
  std::memset(p, 0, bytes);
  return std::unique_ptr<T, AlignedFree>(static_cast<T*>(p));
}

// A 64-byte aligned array of count T, uninitialised (nullptr when out of memory): for arrays the
// caller writes in full, so no memset pass precedes the real writes.
template <typename T>
std::unique_ptr<T, AlignedFree> aligned_uninit(size_t count) {
  size_t bytes = (count * sizeof(T) + 63) / 64 * 64;
  if (bytes == 0) bytes = 64;
  return std::unique_ptr<T, AlignedFree>(static_cast<T*>(std::aligned_alloc(64, bytes)));
}

// Key storage: f32, bf16, or int8 codes with a per-row scale (core/int8_store.cpp).
enum class KeyPrecision : int { kF32 = 0, kBf16 = 1, kInt8 = 2 };

// Fast search path (a first pass on narrower keys, then an exact re-rank; see core/search.cpp).
enum class FastPath : int { kOff = 0, kBf16 = 1, kInt8 = 2 };

// How many queries the fast path served, and how many of those it redid exactly because
// the first pass could not prove its candidates contain the exact top-K.
struct FastPathCounters {
  std::atomic<int64_t> queries{0};  // queries searched with the fast path
  std::atomic<int64_t> redone{0};   // of those, redone by the exact scan
  std::atomic<int64_t> candidates{0};  // candidates kept by the first pass, summed over the other queries
  std::atomic<int64_t> reranked{0};    // of those, the ones the exact re-rank dotted (core/search.cpp:
                                       // all of them in one round, fewer in two)
};

struct Segment {
  int64_t base = 0;     // global row of the segment's first row
  int64_t n = 0;        // rows
  int64_t npanels = 0;  // ceil(n / kPanel); the last panel is zero-padded
  std::unique_ptr<float, AlignedFree> keys_f32;      // [npanels][d][kPanel]
  std::unique_ptr<uint16_t, AlignedFree> keys_bf16;  // same layout
  std::vector<float> values;                         // [n, dv]
  std::vector<int32_t> groups;                       // [n]
  // Fast-path shadow of the keys (core/shadow.cpp), built with the segment:
  std::unique_ptr<uint16_t, AlignedFree> shadow_bf16;  // bf16 panels of an f32 store (kBf16)
  // (for an int8 store, keys_i8 / i8_scale / i8_sum ARE the stored keys: core/int8_store.cpp)
  std::unique_ptr<int8_t, AlignedFree> keys_i8;        // int8 panels (kInt8), layout in kernels.h
  std::vector<float> i8_scale;                         // [npanels*kPanel] per-row int8 step
  std::vector<int32_t> i8_sum;                         // [npanels*kPanel] per-row sum of int8 values
  double key_norm_max = 0;    // max over rows of ||stored key|| (computed in double)
  double shadow_err_max = 0;  // max over rows of ||stored key - shadow key|| (0: no rounding)
};

struct Snapshot {
  std::vector<std::shared_ptr<const Segment>> segments;
  int64_t n = 0;
  int d = 0;
  int dv = 0;
  bool bf16 = false;
  FastPath fast = FastPath::kOff;
  std::shared_ptr<FastPathCounters> counters;
  bool int8 = false;  // int8 store: the exact scan is kernels scan_i8keys over keys_i8
};

enum class Aggregate : int { kSoftmax = 0, kMean = 1, kTop1 = 2 };

struct SearchParams {
  int k = 1;
  float tau = 0.04f;
  Aggregate aggregate = Aggregate::kSoftmax;
  const int32_t* exclude_groups = nullptr;  // [b] or null; -1 = exclude nothing
  int64_t row_begin = 0;                    // only rows in [row_begin, row_end) are searched
  int64_t row_end = -1;                     // -1: to the end
};

struct SearchOutputs {
  float* prior;         // [b, dv], or null: no blend (the neighbour lists only)
  int32_t* neighbors;   // [b, k]
  float* weights;       // [b, k]
  float* similarities;  // [b, k]
};

class Datastore {
 public:
  // fast: the fast search path this store keeps a shadow for (kOff: none; kBf16 on a bf16
  // store needs no shadow, the stored keys are the first-pass keys).
  Datastore(int d, int dv, bool bf16, FastPath fast = FastPath::kOff);
  // Any precision. kInt8 needs d <= kMaxI8Dim and fast kOff or kInt8 (the wrapper checks both).
  Datastore(int d, int dv, KeyPrecision precision, FastPath fast = FastPath::kOff);

  int d() const { return d_; }
  int dv() const { return dv_; }
  bool bf16() const { return bf16_; }
  bool int8() const { return int8_; }
  FastPath fast_path() const { return fast_; }
  const FastPathCounters& fast_counters() const { return *counters_; }
  int64_t size() const;
  int64_t memory_bytes() const;
  Snapshot snapshot() const;

  // Appends m rows. keys [m, d] (normalised here), values [m, dv], groups [m].
  // On error nothing is added; the status names the offending row of this batch.
  Status add(const float* keys, const float* values, const int32_t* groups, int64_t m, ThreadPool& pool);

  // Copies rows [row_begin, row_end) out in stored form, row-major: keys [m, d] as f32
  // (keys_f32, f32 store) or as bf16 bit patterns (keys_bf16, bf16 store), values [m, dv],
  // groups [m]. Any output may be null (skipped); the key output of the other precision
  // must be null. Works on a snapshot, so it may run while rows are being appended.
  // An int8 store exports keys as codes (keys_i8, [m, d]) and scales (scales_i8, [m]).
  Status export_rows(int64_t row_begin, int64_t row_end, float* keys_f32, uint16_t* keys_bf16, float* values,
                     int32_t* groups, ThreadPool& pool, int8_t* keys_i8 = nullptr, float* scales_i8 = nullptr) const;

  // Appends m rows already in stored form, as export_rows wrote them (keys normalised, f32
  // or bf16 bits matching the store): copied as they are, never re-normalised, so a
  // save/load round trip is bit-exact and bf16 keys are not rounded twice. Checks that
  // values and keys are finite, that each key row has unit norm (|x|^2 within 2e-2 of 1)
  // and that groups are >= 0; on error nothing is added. The rows become one new segment
  // that is not merged with earlier ones, so a bulk load in blocks never holds two copies
  // of the rows (later add() calls merge as usual).
  // An int8 store imports codes [m, d] in [-127, 127] and scales [m] (finite, > 0); the unit-norm
  // check applies to scale * codes.
  Status import_rows(const float* keys_f32, const uint16_t* keys_bf16, const float* values, const int32_t* groups,
                     int64_t m, ThreadPool& pool, const int8_t* keys_i8 = nullptr, const float* scales_i8 = nullptr);

 private:
  int d_, dv_;
  bool bf16_;
  bool int8_ = false;
  FastPath fast_;
  std::shared_ptr<FastPathCounters> counters_;
  std::mutex add_mu_;           // one add at a time
  mutable std::mutex state_mu_;  // guards segments_ and n_
  std::vector<std::shared_ptr<const Segment>> segments_;
  int64_t n_ = 0;
};

// The segment holding global row `row` (< snap.n).
const Segment* segment_of(const Snapshot& snap, int64_t row);

// Builds the fast-path shadow of a segment whose stored keys are complete (core/shadow.cpp).
Status build_shadow(Segment& seg, int d, bool bf16_store, FastPath fast, ThreadPool& pool);
int64_t shadow_bytes(const Segment& seg, int d);

// First-pass buffer per query of the fast path for a top-k search (candidates <= 3/4 of it).
int fast_buffer(int k);
// Fewest searched key panels for which a top-k search takes the fast path (core/search.cpp).
int64_t fast_min_panels(int k);

// Search over a snapshot (core/search.cpp). queries [b, d] (normalised into scratch here).
// The result is the exact search's, also when snap.fast selects a fast path: see search.cpp.
Status search(const Snapshot& snap, const Kernels& kern, ThreadPool& pool, const float* queries, int64_t b,
              const SearchParams& params, const SearchOutputs& out);

// Checks every row of [m, d] is finite and has a non-zero norm, and writes normalised
// rows into out (may alias in). Status names the first bad row.
Status normalize_rows(const float* in, float* out, int64_t m, int d, ThreadPool& pool);

}  // namespace rapm
