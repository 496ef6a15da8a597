#include "topk.h"

#include <algorithm>
#include <cstring>
#include <functional>

namespace rapm {

// Order-preserving float -> uint32 (finite inputs): flip all bits of negatives, the sign of positives.
TopKEntry topk_pack(float v, int32_t id) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return (static_cast<uint64_t>(u) << 32) | static_cast<uint32_t>(~static_cast<uint32_t>(id));
}

float topk_value(TopKEntry e) {
  uint32_t u = static_cast<uint32_t>(e >> 32);
  u = (u & 0x80000000u) ? (u & 0x7FFFFFFFu) : ~u;
  float v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}

int32_t topk_id(TopKEntry e) { return static_cast<int32_t>(~static_cast<uint32_t>(e)); }

int topk_capacity(int k) { return 2 * k + 32; }

bool TopK::push(float v, int32_t id) {
  if (v < thr) return false;
  buf[size++] = topk_pack(v, id);
  if (size == cap) select();
  return true;
}

void TopK::select() {
  if (size <= k) return;
  std::nth_element(buf, buf + (k - 1), buf + size, std::greater<TopKEntry>());
  if (margin <= 0.0f) {
    size = k;
    thr = topk_value(buf[k - 1]);
    return;
  }
  const float lim = topk_value(buf[k - 1]) - margin;
  size = static_cast<int>(std::partition(buf + k, buf + size, [lim](TopKEntry e) { return topk_value(e) >= lim; }) - buf);
  thr = lim;
  if (size > cap - cap / 4) {
    overflow = true;
    const int keep = std::max(k, cap / 2);
    std::nth_element(buf, buf + (keep - 1), buf + size, std::greater<TopKEntry>());
    size = keep;
    thr = topk_value(buf[keep - 1]);
  }
}

void TopK::sort_desc() {
  select();
  std::sort(buf, buf + size, std::greater<TopKEntry>());
}

}  // namespace rapm
