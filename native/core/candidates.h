// The fast path's first-pass candidate set for one query (core/search.cpp): the k best rows
// seen so far by first-pass similarity, plus every row within `margin` of the k-th best.
//
// A reservoir like TopK (core/topk.h): candidates at or above the admission threshold are
// appended, and when the buffer reaches its trigger size, select() keeps every row whose
// value is >= kth - margin (which includes the k best), and the threshold becomes
// kth - margin. The threshold never exceeds (final kth) - margin, which is what the
// exactness proof needs. The trigger size starts small (2k + 64) and doubles, up to the
// buffer length, whenever a selection keeps more than half of it, so a selection costs
// O(trigger) and happens at most once per trigger/2 admissions. If the kept set outgrows 3/4
// of the buffer, `overflow` is set and the set falls back to the best cap/2 (the caller then
// redoes the query exactly).
//
// select() needs only the k-th best VALUE (kth_largest below, a quickselect on a copy of the
// values in a per-thread work space), then one pass that keeps the rows at or above the
// limit: the rows' order in the buffer carries no meaning.
#pragma once
#include <cstdint>
#include <limits>

#include "topk.h"

namespace rapm {

// The k-th largest of x[0, n) (1 <= k <= n, no NaN; -0 and +0 count as equal); reorders x.
float kth_largest(float* x, int n, int k);

struct Candidates {
  TopKEntry* buf;  // [cap]
  int cap;         // buffer length, > k
  int k;
  float margin;    // >= 0
  int size = 0;
  int trigger = 0;  // select() when size reaches it; 0 = not set yet
  float thr = -std::numeric_limits<float>::infinity();
  float kth_value = 0;  // the k-th best value at the last select() with size > k
  bool overflow = false;
  float (*kth_of)(float*, int, int) = kth_largest;  // the level's (kernels.h RowSelect): same value

  Candidates(TopKEntry* b, int c, int kk, float m);
  void push(float v, int32_t id) {
    if (v < thr) return;
    buf[size++] = topk_pack(v, id);
    if (size >= trigger) select();
  }
  // push(sims[l], id0 + l) for each lane l of mask, lowest first, without a branch on the
  // threshold (on the kernel's pushes it mostly passes, and a mispredicted test per lane
  // was most of the cost): the entry is written at buf[size] either way and kept by
  // advancing size only when it passes (size < trigger <= cap, so the slot exists).
  void push_lanes(const float* sims, uint32_t mask, int32_t id0) {
    for (; mask; mask &= mask - 1) {
      const int l = __builtin_ctz(mask);
      buf[size] = topk_pack(sims[l], id0 + l);
      size += sims[l] >= thr ? 1 : 0;
      if (size >= trigger) select();
    }
  }
  // Keeps the rows within margin of the k-th best (so the k best too); updates thr.
  void select();
  // The k-th best first-pass similarity (size >= k) and the smallest kept one, after select().
  float kth() const;
  float last() const;
};

}  // namespace rapm
