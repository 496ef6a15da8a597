// The datastore: L2-normalised keys in cache-friendly panels (f32 or bf16), their
// dv-dim values, and an exclusion group per row (rows of the same utterance share one).
//
// Rows live in immutable segments. add() builds a new segment (merging small trailing
// ones, log-structured, so there are O(log n) segments) and swaps it in under a short
// lock; a search works on the snapshot it took when it started, so appends may run
// while searches do.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "../kernels/kernels.h"
#include "status.h"
#include "thread_pool.h"

namespace rapm {

struct AlignedFree {
  void operator()(void* p) const;
};

struct Segment {
  int64_t base = 0;     // global row of the segment's first row
  int64_t n = 0;        // rows
  int64_t npanels = 0;  // ceil(n / kPanel); the last panel is zero-padded
  std::unique_ptr<float, AlignedFree> keys_f32;      // [npanels][d][kPanel]
  std::unique_ptr<uint16_t, AlignedFree> keys_bf16;  // same layout
  std::vector<float> values;                         // [n, dv]
  std::vector<int32_t> groups;                       // [n]
};

struct Snapshot {
  std::vector<std::shared_ptr<const Segment>> segments;
  int64_t n = 0;
  int d = 0;
  int dv = 0;
  bool bf16 = false;
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
  float* prior;         // [b, dv]
  int32_t* neighbors;   // [b, k]
  float* weights;       // [b, k]
  float* similarities;  // [b, k]
};

class Datastore {
 public:
  Datastore(int d, int dv, bool bf16);

  int d() const { return d_; }
  int dv() const { return dv_; }
  bool bf16() const { return bf16_; }
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
  Status export_rows(int64_t row_begin, int64_t row_end, float* keys_f32, uint16_t* keys_bf16, float* values,
                     int32_t* groups, ThreadPool& pool) const;

  // Appends m rows already in stored form, as export_rows wrote them (keys normalised, f32
  // or bf16 bits matching the store): copied as they are, never re-normalised, so a
  // save/load round trip is bit-exact and bf16 keys are not rounded twice. Checks that
  // values and keys are finite, that each key row has unit norm (|x|^2 within 2e-2 of 1)
  // and that groups are >= 0; on error nothing is added. The rows become one new segment
  // that is not merged with earlier ones, so a bulk load in blocks never holds two copies
  // of the rows (later add() calls merge as usual).
  Status import_rows(const float* keys_f32, const uint16_t* keys_bf16, const float* values, const int32_t* groups,
                     int64_t m, ThreadPool& pool);

 private:
  int d_, dv_;
  bool bf16_;
  std::mutex add_mu_;           // one add at a time
  mutable std::mutex state_mu_;  // guards segments_ and n_
  std::vector<std::shared_ptr<const Segment>> segments_;
  int64_t n_ = 0;
};

// Exact search over a snapshot. queries [b, d] (normalised into scratch here).
Status search(const Snapshot& snap, const Kernels& kern, ThreadPool& pool, const float* queries, int64_t b,
              const SearchParams& params, const SearchOutputs& out);

// Checks every row of [m, d] is finite and has a non-zero norm, and writes normalised
// rows into out (may alias in). Status names the first bad row.
Status normalize_rows(const float* in, float* out, int64_t m, int d, ThreadPool& pool);

}  // namespace rapm
