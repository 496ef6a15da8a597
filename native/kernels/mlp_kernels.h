// MLP kernel table (Linear as sgemm micro-tiles, LayerNorm, GELU/ReLU, cosine loss, AdamW):
// one implementation per instruction set, chosen at run time next to the similarity table.
// Declarations only (see kernels.h): nothing here is compiled inline into an ISA unit.
//
// Activations inside the trainer are stored feature-major, "column" layout: a [f, mp]
// block holds feature f of batch row m at f * mp + m, and mp (the padded batch) is a
// multiple of kMlpColBlock. Every per-row operation (LayerNorm statistics, cosine) is then
// a vertical reduction over features, vectorised across batch rows.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels.h"

namespace rapm {

constexpr int kMlpColBlock = 16;  // batch columns are padded to a multiple of this

// AdamW constants of one step (torch.optim.AdamW semantics), precomputed in baseline code:
//   p *= decay; m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g^2;
//   p -= step_size * m / (sqrt(v) * inv_bc2_sqrt + eps)
struct AdamArgs {
  float decay;          // 1 - lr * weight_decay
  float beta1, one_minus_beta1;
  float beta2, one_minus_beta2;
  float eps;
  float step_size;      // lr / (1 - beta1^step)
  float inv_bc2_sqrt;   // 1 / sqrt(1 - beta2^step)
};

// Hidden-layer epilogue on columns [m0, m1) (multiples of kMlpColBlock) of [n, mp] blocks:
//   LayerNorm (when gamma != nullptr, eps 1e-5, biased variance) -> activation -> dropout.
struct HiddenFwdArgs {
  const float* z;      // [n, mp] x W^T + b
  int n, mp, m0, m1;
  const float* gamma;  // [n] or nullptr (no LayerNorm)
  const float* beta;   // [n]
  int act;             // 0 GELU (erf), 1 ReLU
  const float* mask;   // [n, mp] dropout scale (0 or 1/(1-p)), or nullptr
  float* xhat;         // [n, mp] normalised z (training with LayerNorm), or nullptr
  float* rstd;         // [mp] 1/sqrt(var + eps) (training with LayerNorm), or nullptr
  float* u;            // [n, mp] activation input (training), or nullptr
  float* a;            // [n, mp] output; may alias z when xhat and u are nullptr
};

struct HiddenBwdArgs {
  const float* da;     // [n, mp] dLoss/d(output a)
  const float* mask;   // as in the forward, or nullptr
  const float* u;      // [n, mp]
  const float* xhat;   // [n, mp] (LayerNorm only)
  const float* rstd;   // [mp]    (LayerNorm only)
  const float* gamma;  // [n] or nullptr (no LayerNorm)
  int n, mp, m0, m1, act;
  float* dz;           // [n, mp] dLoss/dz
  float* dgamma;       // [n] sum over columns [m0, m1) of dy * xhat (LayerNorm only)
  float* dbeta;        // [n] sum over columns [m0, m1) of dy        (LayerNorm only)
};

// Loss 1 - cos(pred, target) per column, pred = out + res, cos = dot / sqrt(max(|p|^2|t|^2, 1e-16)).
struct LossArgs {
  const float* out;    // [d, mp] network output
  const float* res;    // [d, mp] residual, or nullptr
  const float* tgt;    // [d, mp]
  int d, mp, m0, m1;
  int m_valid;         // columns >= m_valid are padding: loss 0, gradient 0
  float grad_scale;    // dLoss/dcos of one row (-1/M for the batch mean)
  float* dout;         // [d, mp] dLoss/dout, or nullptr (evaluation)
  float* loss;         // [mp] 1 - cos per column
};

struct MlpKernels {
  SimdLevel level;
  const char* name;
  // out[r*mp + j] = (init ? init[r] : 0) + sum_{t<T} b[r*sr + t*st] * x[t*mp + j], r < rows, j < mp.
  // Forward (b = W rows, sr = in, st = 1) and input gradient (b = W columns, sr = 1, st = in).
  void (*gemm_bcast)(const float* b, int64_t sr, int64_t st, const float* x, int T, int mp,
                     const float* init, float* out, int rows);
  // g[n][k] = sum_{m<M} dz[n*mp + m] * a[m*lda + k], n < N, k in [k0, k1). With adam == nullptr
  // g is stored to grad[n*ldw + k]; otherwise w/am/av[n*ldw + k] get the AdamW update (g never stored).
  void (*gemm_wgrad)(const float* dz, int mp, int M, const float* a, int64_t lda, int N, int k0, int k1,
                     float* grad, float* w, float* am, float* av, int64_t ldw, const AdamArgs* adam);
  void (*adamw)(float* p, float* m, float* v, const float* g, int64_t n, const AdamArgs* adam);
  // out[r] = sum_{j<mp} x[r*mp + j]
  void (*row_sums)(const float* x, int mp, int rows, float* out);
  void (*hidden_fwd)(const HiddenFwdArgs* args);
  void (*hidden_bwd)(const HiddenBwdArgs* args);
  void (*cosine_loss)(const LossArgs* args);
};

const MlpKernels* mlp_kernels_scalar();
// Defined only where the ISA exists: x86-64 for AVX, aarch64 for NEON.
const MlpKernels* mlp_kernels_avx2();
const MlpKernels* mlp_kernels_avx512();
const MlpKernels* mlp_kernels_neon();
// The table for a level (baseline code, core/mlp.cpp); scalar when the level has none.
const MlpKernels* mlp_kernels_for(SimdLevel level);

}  // namespace rapm
