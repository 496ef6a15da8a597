// Softmax(sim / tau), uniform mean and hard top-1 over the K rows a query kept.
#pragma once
#include "datastore.h"

namespace rapm {

// sims: the k similarities of one query, best first. Writes k weights summing to 1.
void aggregate_weights(const float* sims, int k, float tau, Aggregate agg, float* weights);

// out[j] = the float sum, over i = 0..m-1 in order, of w[i] * rows[i][j], j < dv (the prior:
// the neighbours' values blended by their weights). Rows whose weight is 0 are skipped.
void blend_rows(const float* const* rows, const float* w, int m, int dv, float* out);

}  // namespace rapm
