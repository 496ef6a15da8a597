#include "aggregate.h"

#include <cmath>

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
  const double m = sims[0];
  double z = 0;
  for (int i = 0; i < k; ++i) z += std::exp((static_cast<double>(sims[i]) - m) / tau);
  for (int i = 0; i < k; ++i) weights[i] = static_cast<float>(std::exp((static_cast<double>(sims[i]) - m) / tau) / z);
}

}  // namespace rapm
