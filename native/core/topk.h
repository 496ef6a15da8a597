// Exact top-K per query: a flat min-heap of (similarity, row) whose top is the worst
// kept candidate. "Better" means a higher similarity, or an equal one with a lower row.
#pragma once
#include <cstdint>

namespace rapm {

struct TopK {
  float* vals;     // [k]
  int32_t* ids;    // [k]
  int size;
  int k;

  // Worst kept similarity, or -inf while fewer than k are kept: the scan threshold.
  float threshold() const;
  // Offers a candidate; returns true if it was kept.
  bool push(float v, int32_t id);
  // Sorts the kept entries best first, in place. The heap is unusable afterwards.
  void sort_desc();
};

}  // namespace rapm
