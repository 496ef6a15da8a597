// Retrieval priors of many queries from their neighbour lists (src/retrieval/priors.ts
// IncrementalPriors.priors): the per-step n x k x dv blend, in parallel.
#pragma once
#include <cstdint>

#include "thread_pool.h"

namespace rapm {

// prior[q, c] = sum over j = 0..k-1 (in order, zero weights skipped) of weights[q, j] *
// values[rows[q, j], c], each step rounded as f32(double(prior) + double(w) * double(v)):
// bit for bit the TypeScript reference. rows [n, k] must index rows of values [*, dv]
// (the caller checks); prior [n, dv] is overwritten.
void blend_priors(const int32_t* rows, const float* weights, const float* values, int64_t n, int k, int dv, float* prior,
                  ThreadPool& pool);

}  // namespace rapm
