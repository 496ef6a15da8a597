#include "priors.h"

#include <algorithm>

namespace rapm {

namespace {

// One query's prior: acc[c] = f32(double(acc[c]) + double(w_j) * double(v_j[c])) over the
// neighbours j in order, skipping zero weights. The product of two floats is exact in double,
// so an FMA contraction (if the compiler makes one) rounds the same way as the separate
// multiply and add: the result is the TypeScript loop's (src/retrieval/priors.ts) bit for bit.
// Multiversioned where GCC can (x86-64 ELF): the same arithmetic, wider vectors.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__ELF__) && !defined(RAPM_NO_CLONES)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void blend_one(const int32_t* rows, const float* w, const float* values, int k, int dv, float* out) {
  for (int c = 0; c < dv; ++c) out[c] = 0.0f;
  for (int j = 0; j < k; ++j) {
    const float wj = w[j];
    if (wj == 0.0f) continue;
    const double wd = wj;
    const float* v = values + static_cast<int64_t>(rows[j]) * dv;
    for (int c = 0; c < dv; ++c) out[c] = static_cast<float>(static_cast<double>(out[c]) + wd * static_cast<double>(v[c]));
  }
}

}  // namespace

void blend_priors(const int32_t* rows, const float* weights, const float* values, int64_t n, int k, int dv, float* prior,
                  ThreadPool& pool) {
  if (n <= 0) return;
  constexpr int64_t kQueriesPerTask = 256;
  const int64_t tasks = (n + kQueriesPerTask - 1) / kQueriesPerTask;
  pool.parallel_for(tasks, [&](int64_t t) {
    const int64_t q1 = std::min(n, (t + 1) * kQueriesPerTask);
    for (int64_t q = t * kQueriesPerTask; q < q1; ++q) {
      // The value rows are scattered over the table: ask for the next query's while this one sums.
      if (q + 1 < q1) {
        for (int j = 0; j < k; ++j) {
          const char* v = reinterpret_cast<const char*>(values + static_cast<int64_t>(rows[(q + 1) * k + j]) * dv);
          for (int64_t o = 0; o < static_cast<int64_t>(dv) * 4; o += 64) __builtin_prefetch(v + o);
        }
      }
      blend_one(rows + q * k, weights + q * k, values, k, dv, prior + q * dv);
    }
  });
}

}  // namespace rapm
