#include "topk.h"

#include <algorithm>
#include <limits>
#include <numeric>
#include <vector>

namespace rapm {
namespace {

// a is worse than b.
inline bool worse(float va, int32_t ia, float vb, int32_t ib) { return va < vb || (va == vb && ia > ib); }

}  // namespace

float TopK::threshold() const { return size < k ? -std::numeric_limits<float>::infinity() : vals[0]; }

bool TopK::push(float v, int32_t id) {
  if (size < k) {  // sift up
    int i = size++;
    while (i > 0) {
      const int parent = (i - 1) / 2;
      if (!worse(v, id, vals[parent], ids[parent])) break;
      vals[i] = vals[parent];
      ids[i] = ids[parent];
      i = parent;
    }
    vals[i] = v;
    ids[i] = id;
    return true;
  }
  if (!worse(vals[0], ids[0], v, id)) return false;
  int i = 0;  // replace the root, sift down
  for (;;) {
    const int l = 2 * i + 1;
    if (l >= size) break;
    int c = l;
    if (l + 1 < size && worse(vals[l + 1], ids[l + 1], vals[l], ids[l])) c = l + 1;
    if (!worse(vals[c], ids[c], v, id)) break;
    vals[i] = vals[c];
    ids[i] = ids[c];
    i = c;
  }
  vals[i] = v;
  ids[i] = id;
  return true;
}

void TopK::sort_desc() {
  std::vector<int> order(size);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](int a, int b) { return worse(vals[b], ids[b], vals[a], ids[a]); });
  std::vector<float> v(size);
  std::vector<int32_t> id(size);
  for (int i = 0; i < size; ++i) {
    v[i] = vals[order[i]];
    id[i] = ids[order[i]];
  }
  std::copy(v.begin(), v.end(), vals);
  std::copy(id.begin(), id.end(), ids);
}

}  // namespace rapm
