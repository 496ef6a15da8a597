// Softmax(sim / tau), uniform mean and hard top-1 over the K rows a query kept.
#pragma once
#include "datastore.h"

namespace rapm {

// sims: the k similarities of one query, best first. Writes k weights summing to 1.
void aggregate_weights(const float* sims, int k, float tau, Aggregate agg, float* weights);

// blend_rows (the prior: the neighbours' values blended by their weights) is declared in
// kernels/kernels.h beside the levels' own versions (Kernels::blend), which give the same bits.

}  // namespace rapm
