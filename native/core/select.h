// Top-K selection for the exact scan (core/search.cpp) when many rows are kept per query.
//
// The reservoir (topk.h) relies on the kernel's admission threshold to reject most rows.
// With K/N large (the paper's datastore: K = 70 of N = 2,316 rows) the threshold lags for
// a long time, so most rows are admitted one by one and the reservoir runs nth_element
// again and again. For such a search the kernel hands over whole similarity rows instead
// (every threshold -inf; push_row stores them) and select_row picks the K best of each row
// in a few linear passes: it estimates a threshold t with count(sim >= t) just above K,
// keeps the rows at or above t, and selects the K best of those. Same order as TopK
// (higher similarity, then lower row), so the answer is bit for bit the reservoir's.
#pragma once
#include <cstdint>
#include <vector>

#include "../kernels/kernels.h"
#include "topk.h"

namespace rapm {

// Whether an exact pass over `rows` searched rows, `queries_per_task` queries per task and
// top-k keeps whole rows (select_row) instead of reservoirs (TopK): true when K/N is large
// enough for the reservoir's threshold to admit many rows and the row buffers stay small.
bool select_by_row(int64_t rows, int k, int64_t queries_per_task);

// Test hook (native/test/kernel_test.cpp): force one strategy for every pass, or kAuto (the default).
enum class SelectMode : int { kAuto = 0, kReservoir = 1, kRow = 2 };
void set_select_mode(SelectMode mode);

// Context of push_row (a PushFn, kernels/kernels.h): the kernel's similarities go to
// rows[qi * stride + (global row - rb)], -inf for a row of the query's exclusion group.
// Requires every admission threshold at -inf, so the kernel reports every valid lane.
struct RowSink {
  float* rows;             // [nq, stride]
  int64_t stride;          // rows searched: re - rb
  int64_t rb;              // global row of index 0
  const int32_t* exclude;  // [nq] exclusion group per query (-1: none), or null
  // Set per segment before its scan:
  const int32_t* groups = nullptr;  // segment-local
  int64_t base = 0;                 // global row of the segment's first row
};
void push_row(void* ctx, int qi, const float* sims, uint32_t mask, int64_t local_row0);

// Buffers select_row reuses between calls.
struct SelectScratch {
  std::vector<uint64_t> idx;
  std::vector<float> vals;
  std::vector<int32_t> ranks;
};

// The k best entries of row[0, n) (higher similarity, then lower index), id = id_base + index,
// best first into out[0, m); returns m = min(k, rows that are not -inf). `ops`: the level's
// passes over the row (kernels.h RowSelect; the answer is the same with any).
int select_row(const RowSelect& ops, const float* row, int64_t n, int k, int64_t id_base, TopKEntry* out,
               SelectScratch& scratch);

}  // namespace rapm
