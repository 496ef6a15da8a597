#include "topk.h"

#include <algorithm>
#include <cstring>
#include <functional>

namespace rapm {

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
