#include "candidates.h"

#include <algorithm>
#include <functional>

namespace rapm {

Candidates::Candidates(TopKEntry* b, int c, int kk, float m) : buf(b), cap(c), k(kk), margin(m) {
  trigger = std::min(cap, 2 * k + 64);
}

void Candidates::select() {
  if (size > k) {
    std::nth_element(buf, buf + (k - 1), buf + size, std::greater<TopKEntry>());
    const float lim = topk_value(buf[k - 1]) - margin;
    size = static_cast<int>(
        std::partition(buf + k, buf + size, [lim](TopKEntry e) { return topk_value(e) >= lim; }) - buf);
    thr = std::max(thr, lim);
    if (size > cap - cap / 4) {
      overflow = true;
      const int keep = std::max(k, cap / 2);
      std::nth_element(buf, buf + (keep - 1), buf + size, std::greater<TopKEntry>());
      size = keep;
      thr = topk_value(buf[keep - 1]);
      std::nth_element(buf, buf + (k - 1), buf + size, std::greater<TopKEntry>());
    }
  }
  while (size > trigger / 2 && trigger < cap) trigger = std::min(cap, 2 * trigger);
}

float Candidates::kth() const {
  if (size > k) return topk_value(buf[k - 1]);
  return last();
}

float Candidates::last() const {
  TopKEntry m = ~TopKEntry{0};
  for (int i = 0; i < size; ++i) m = std::min(m, buf[i]);
  return topk_value(m);
}

}  // namespace rapm
