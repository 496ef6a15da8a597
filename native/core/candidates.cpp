#include "candidates.h"

#include <algorithm>
#include <functional>
#include <memory>
#include <new>

namespace rapm {

float kth_largest(float* x, int n, int k) {
  // Quickselect: [lo, hi) holds the rank-(want) element (rank 0 = the largest). Each round
  // splits it branch-free into > p, == p and < p (the pivot p, a median of three, is one of
  // the values, so the middle part is never empty and every round shrinks the range).
  int lo = 0, hi = n;
  const int want = k - 1;
  while (hi - lo > 16) {
    const float a = x[lo], b = x[lo + (hi - lo) / 2], c = x[hi - 1];
    const float p = std::max(std::min(a, b), std::min(std::max(a, b), c));
    int j = lo;
    for (int i = lo; i < hi; ++i) {  // > p to the front
      const float v = x[i];
      x[i] = x[j];
      x[j] = v;
      j += v > p;
    }
    if (want < j) {
      hi = j;
      continue;
    }
    int e = j;
    for (int i = j; i < hi; ++i) {  // == p next
      const float v = x[i];
      x[i] = x[e];
      x[e] = v;
      e += v == p;
    }
    if (want < e) return p;
    lo = e;
  }
  // A few left: insertion sort, largest first.
  for (int i = lo + 1; i < hi; ++i) {
    const float v = x[i];
    int j = i;
    for (; j > lo && x[j - 1] < v; --j) x[j] = x[j - 1];
    x[j] = v;
  }
  return x[want];
}

Candidates::Candidates(TopKEntry* b, int c, int kk, float m) : buf(b), cap(c), k(kk), margin(m) {
  trigger = std::min(cap, 2 * k + 64);
}

namespace {

// select()'s work space, one per thread, kept for the thread's life (at most the largest
// buffer length seen, 8k + 256 floats for the fast path). Null if it cannot be allocated.
float* values_scratch(int n) {
  thread_local std::unique_ptr<float[]> buf;
  thread_local int len = 0;
  if (len < n) {
    buf.reset(new (std::nothrow) float[static_cast<size_t>(n)]);
    len = buf ? n : 0;
  }
  return buf.get();
}

}  // namespace

void Candidates::select() {
  if (size > k) {
    if (float* v = values_scratch(cap)) {
      for (int i = 0; i < size; ++i) v[i] = topk_value(buf[i]);
      kth_value = kth_of(v, size, k);
    } else {  // no work space: select on the entries themselves
      std::nth_element(buf, buf + (k - 1), buf + size, std::greater<TopKEntry>());
      kth_value = topk_value(buf[k - 1]);
    }
    const float lim = kth_value - margin;
    // Keep value >= lim, compared on the packed keys: the key order is the float order except
    // that -0 sits just below +0, so a zero limit compares as -0 (both zeros are >= 0).
    const uint64_t lim_key = topk_pack(lim == 0.0f ? -0.0f : lim, 0) >> 32;
    int j = 0;
    for (int i = 0; i < size; ++i) {
      const TopKEntry e = buf[i];
      buf[j] = e;
      j += (e >> 32) >= lim_key;
    }
    size = j;
    thr = std::max(thr, lim);
    if (size > cap - cap / 4) {
      overflow = true;
      const int keep = std::max(k, cap / 2);
      std::nth_element(buf, buf + (keep - 1), buf + size, std::greater<TopKEntry>());
      size = keep;
      thr = topk_value(buf[keep - 1]);
    }
  }
  while (size > trigger / 2 && trigger < cap) trigger = std::min(cap, 2 * trigger);
}

float Candidates::kth() const {
  if (size > k) return kth_value;
  return last();
}

float Candidates::last() const {
  TopKEntry m = ~TopKEntry{0};
  for (int i = 0; i < size; ++i) m = std::min(m, buf[i]);
  return topk_value(m);
}

}  // namespace rapm
