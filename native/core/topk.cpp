#include "topk.h"

#include <algorithm>

namespace rapm {
namespace {

// A function object, not a function pointer: std::nth_element/sort inline it.
struct Better {
  bool operator()(const TopKEntry& a, const TopKEntry& b) const { return a.v > b.v || (a.v == b.v && a.id < b.id); }
};

}  // namespace

int topk_capacity(int k) { return 2 * k + 32; }

bool TopK::push(float v, int32_t id) {
  if (v < thr) return false;
  buf[size++] = TopKEntry{v, id};
  if (size == cap) select();
  return true;
}

void TopK::select() {
  if (size <= k) return;
  std::nth_element(buf, buf + (k - 1), buf + size, Better());
  size = k;
  thr = buf[k - 1].v;
}

void TopK::sort_desc() {
  select();
  std::sort(buf, buf + size, Better());
}

}  // namespace rapm
