// The fast path's first-pass candidate set for one query (core/search.cpp): the k best rows
// seen so far by first-pass similarity, plus every row within `margin` of the k-th best.
//
// A reservoir like TopK (core/topk.h): candidates at or above the admission threshold are
// appended, and when the buffer reaches its trigger size, select() keeps the k best and all
// others >= kth - margin, and the threshold becomes kth - margin. The threshold never
// exceeds (final kth) - margin, which is what the exactness proof needs. The trigger size
// starts small (2k + 64) and doubles, up to the buffer length, whenever a selection keeps
// more than half of it, so a selection costs O(trigger) and happens at most once per
// trigger/2 admissions. If the kept set outgrows 3/4 of the buffer, `overflow` is set and the
// set falls back to the best cap/2 (the caller then redoes the query exactly).
#pragma once
#include <cstdint>
#include <limits>

#include "topk.h"

namespace rapm {

struct Candidates {
  TopKEntry* buf;  // [cap]
  int cap;         // buffer length, > k
  int k;
  float margin;    // >= 0
  int size = 0;
  int trigger = 0;  // select() when size reaches it; 0 = not set yet
  float thr = -std::numeric_limits<float>::infinity();
  bool overflow = false;

  Candidates(TopKEntry* b, int c, int kk, float m);
  void push(float v, int32_t id) {
    if (v < thr) return;
    buf[size++] = topk_pack(v, id);
    if (size >= trigger) select();
  }
  // Keeps the k best and those within margin of the k-th; updates thr. Afterwards (size > k)
  // buf[k - 1] holds the k-th best.
  void select();
  // The k-th best first-pass similarity (size >= k) and the smallest kept one, after select().
  float kth() const;
  float last() const;
};

}  // namespace rapm
