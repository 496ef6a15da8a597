// Exact top-K per query, as a reservoir: candidates at or above the admission
// threshold are appended (cheap, predictable), and when the buffer fills, the best k
// are selected (nth_element) and the k-th becomes the new threshold. "Better" means a
// higher similarity, or an equal one with a lower row; ties at the threshold are
// admitted and settled by the selection, so the result equals a full sort.
//
// Each candidate is one uint64: the similarity mapped to an order-preserving unsigned
// integer in the high half, the complemented row in the low half. "Better" is then a
// plain integer '>', which selection and sorting compare much faster than (float, id).
#pragma once
#include <cstdint>
#include <cstring>

namespace rapm {

using TopKEntry = uint64_t;

// Inline: they run once per admitted candidate. (Only baseline translation units include
// this header, never a kernels/*_<isa>.cpp one, so no ISA-flagged copy can be merged in.)
// Order-preserving float -> uint32 (finite inputs): flip all bits of negatives, the sign of positives.
inline TopKEntry topk_pack(float v, int32_t id) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return (static_cast<uint64_t>(u) << 32) | static_cast<uint32_t>(~static_cast<uint32_t>(id));
}

inline float topk_value(TopKEntry e) {
  uint32_t u = static_cast<uint32_t>(e >> 32);
  u = (u & 0x80000000u) ? (u & 0x7FFFFFFFu) : ~u;
  float v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}

inline int32_t topk_id(TopKEntry e) { return static_cast<int32_t>(~static_cast<uint32_t>(e)); }

//
// With margin > 0 (the fast path's first pass) it keeps every candidate within `margin` of
// the k-th best instead: select() keeps the k best and all others >= kth - margin, and the
// admission threshold becomes kth - margin. If that set outgrows 3/4 of the buffer, the
// heap falls back to the best cap/2 and sets `overflow` (the caller then cannot rely on it).
struct TopK {
  TopKEntry* buf;  // [cap]
  int size;
  int k;
  int cap;    // > k
  float thr;  // admission threshold: -inf until the first selection
  float margin = 0.0f;
  bool overflow = false;

  // Offers a candidate; returns true if it was buffered.
  bool push(float v, int32_t id);
  // Keeps the best k, plus those within margin of the k-th (no order); updates thr.
  void select();
  // select(), then sorts the kept entries best first; size becomes min(size, k) (margin 0).
  void sort_desc();
};

// Buffer length per query for a given k: the reservoir trades a lagging threshold
// (more candidates admitted) for O(1) admission.
int topk_capacity(int k);

}  // namespace rapm
