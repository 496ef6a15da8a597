#include "aggregate.h"

#include <cmath>
#include <vector>

namespace rapm {

void aggregate_weights(const float* sims, int k, float tau, Aggregate agg, float* weights) {
  if (agg == Aggregate::kMean) {
    for (int i = 0; i < k; ++i) weights[i] = 1.0f / static_cast<float>(k);
    return;
  }
  if (agg == Aggregate::kTop1) {
    for (int i = 0; i < k; ++i) weights[i] = i == 0 ? 1.0f : 0.0f;
    return;
  }
  // Softmax in double, shifted by the best similarity: exp never overflows.
  // Each exp once (kept in double), then the same sum and quotients.
  const double m = sims[0];
  double stack[256];
  std::vector<double> heap;
  double* e = stack;
  if (k > 256) {
    heap.resize(static_cast<size_t>(k));
    e = heap.data();
  }
  double z = 0;
  for (int i = 0; i < k; ++i) {
    e[i] = std::exp((static_cast<double>(sims[i]) - m) / tau);
    z += e[i];
  }
  for (int i = 0; i < k; ++i) weights[i] = static_cast<float>(e[i] / z);
}

void blend_rows(const float* const* rows, const float* w, int m, int dv, float* out) {
  // Columns in blocks of 32 kept in registers across the rows (each column still sums its
  // terms in row order, so the result is the same as one column at a time).
  constexpr int kBlock = 32;
  // The rows are scattered over the value table: ask for all of them up front (a few KB),
  // so their cache misses overlap instead of stalling the first block one row at a time.
  for (int i = 0; i < m; ++i) {
    if (w[i] == 0.0f) continue;
    for (int j = 0; j < dv; j += 16) __builtin_prefetch(rows[i] + j);
    __builtin_prefetch(rows[i] + dv - 1);
  }
  int j0 = 0;
  for (; j0 + kBlock <= dv; j0 += kBlock) {
    float acc[kBlock] = {};
    for (int i = 0; i < m; ++i) {
      if (w[i] == 0.0f) continue;
      const float wi = w[i];
      const float* v = rows[i] + j0;
      for (int j = 0; j < kBlock; ++j) acc[j] += wi * v[j];
    }
    for (int j = 0; j < kBlock; ++j) out[j0 + j] = acc[j];
  }
  if (j0 == dv) return;
  for (int j = j0; j < dv; ++j) out[j] = 0.0f;
  for (int i = 0; i < m; ++i) {
    if (w[i] == 0.0f) continue;
    const float wi = w[i];
    const float* v = rows[i];
    for (int j = j0; j < dv; ++j) out[j] += wi * v[j];
  }
}

}  // namespace rapm
