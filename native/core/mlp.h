// Fusion / baseline MLP arithmetic: forward, cosine loss, backward and fused AdamW over the
// MlpKernels table, split over the thread pool. Plain C++17, exception-free (returns Status).
//
// Spec (Int32Array, built by src/fusion/native-mlp.ts from a layout.ts MlpSpec):
//   [kind (0 fusion, 1 baseline), activation (0 GELU erf, 1 ReLU), layerNorm (0/1),
//    inputDim, nLayers, out_0, ..., out_{nLayers-1}]
// Layer l maps in_l -> out_l (in_0 = inputDim, in_l = out_{l-1}); every layer but the last is
// hidden (LayerNorm when layerNorm, then the activation, then dropout while training). The
// parameter arena is W_0, b_0, [gamma_0, beta_0], W_1, ..., W_{L-1}, b_{L-1} exactly as in
// src/fusion/layout.ts (W_l [out_l, in_l] row-major).
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "../kernels/mlp_kernels.h"
#include "status.h"
#include "thread_pool.h"

namespace rapm {

struct MlpLayer {
  int in = 0, out = 0;
  int64_t w = 0, b = 0, gamma = -1, beta = -1;
};

struct MlpShape {
  int kind = 0;  // 0 fusion (pred = residual + net(x)), 1 baseline (pred = net(x))
  int act = 0;   // 0 GELU, 1 ReLU
  bool layer_norm = false;
  int input_dim = 0;
  int out_dim = 0;
  int max_width = 0;  // widest layer input or output
  std::vector<MlpLayer> layers;
  int64_t size = 0;  // arena length
  std::vector<int32_t> spec;
};

constexpr int kMlpSpecHeader = 5;
constexpr int kMlpMaxLayers = 64;
constexpr int kMlpMaxWidth = 1 << 16;
constexpr int kMlpMaxBatch = 1 << 16;  // rows of one training step

Status mlp_decode_spec(const int32_t* spec, size_t len, MlpShape* out);

// The counter-based dropout stream: keep unit (row, col) of hidden layer `layer` at `step`
// iff mlp_dropout_bits(...) >= mlp_dropout_threshold(p). Mirrored in test/helpers/mlp-reference.ts.
uint32_t mlp_dropout_bits(uint32_t seed, uint32_t step, uint32_t layer, uint32_t row, uint32_t col);
uint32_t mlp_dropout_threshold(double p);

// First row of a [rows, cols] matrix holding NaN or +-Inf, or -1.
int64_t mlp_first_nonfinite_row(const float* p, int64_t rows, int64_t cols);

struct MlpBatch {
  const float* x;         // [batch, input_dim]
  const float* residual;  // [batch, out_dim] (fusion) or nullptr (baseline)
  const float* target;    // [batch, out_dim]
  int batch;
  // Gathered form (rows != nullptr): batch row m is row rows[m] of the source matrices, read in
  // place: x is then [*, en_dim] (the input, or for fusion its first en_dim columns, the prior
  // being the rest: en_dim + out_dim == input_dim), residual and target [*, out_dim].
  const int32_t* rows = nullptr;
  int en_dim = 0;
  // Optional (gathered form): the rows of the minibatch that follows, prefetched while this one
  // trains (they are read first by the next step's checks, a cache miss per line otherwise).
  const int32_t* next_rows = nullptr;
  int next_n = 0;
};

struct MlpTrainArgs {
  double lr = 0, weight_decay = 0;
  int64_t step = 1;  // 1-based AdamW step; also keys the dropout stream
  double dropout = 0;
  uint32_t seed = 0;
};

struct TrainWorkspace;
struct ForwardWorkspace;

// One epoch of one net: minibatches of `batch` rows taken from the source matrices in `order`
// (the last one smaller when batch does not divide n_order), each a gathered MlpBatch. Step k
// (0-based) of the epoch is AdamW step args.step + k and keys its dropout mask as the same
// step through train_step would: the result is bit-identical to calling train_step per
// minibatch with the rows copied out. Runs on any thread with its own workspace, so the
// epochs of several nets (training seeds) can run at once.
struct MlpEpoch {
  const float* en;        // [rows, en_dim]
  const float* prior;     // [rows, out_dim] (fusion) or nullptr (baseline)
  const float* target;    // [rows, out_dim]
  int en_dim = 0;
  int64_t rows = 0;
  const int32_t* order = nullptr;  // [n_order] row indices, each in [0, rows)
  int64_t n_order = 0;
  int batch = 0;
  // Optional [2]: [0] rows trained so far (written after every minibatch, for progress bars);
  // [1] a nonzero value asks the epoch to stop before its next minibatch (it then returns Ok
  // with progress[0] < n_order; the caller knows it asked).
  int32_t* progress = nullptr;
  // Optional: set when the JS environment shuts down (worker terminate, exit): stop as above.
  const std::atomic<bool>* closing = nullptr;
};

Status mlp_train_epoch(const MlpShape& shape, const MlpKernels& k, ThreadPool& pool, float* params, float* adam_m,
                       float* adam_v, const MlpEpoch& epoch, const MlpTrainArgs& args, double* loss_sum);

// Inference on rows read in place: row m of the input is en[rows[m]] followed (fusion) by
// prior[rows[m]], and out [n, out_dim] = prior[rows[m]] + net(x) (fusion) or net(x). rows ==
// nullptr: rows 0..n-1. Bit-identical to MlpCache::forward on those rows copied out (a row's
// result depends only on the row). Values are checked for NaN/Inf while they are copied in (the
// first bad source row is reported, named "en" or "prior"). Uses a workspace of its own, so it
// may run on any thread, beside other calls (several nets scoring at once).
struct MlpRowsInput {
  const float* en;        // [src_rows, en_dim]
  const float* prior;     // [src_rows, out_dim] (fusion) or nullptr (baseline)
  int en_dim = 0;
  int64_t src_rows = 0;
  const int32_t* rows = nullptr;  // [n] indices in [0, src_rows), or nullptr
  int64_t n = 0;
};
Status mlp_forward_rows(const MlpShape& shape, const MlpKernels& k, ThreadPool& pool, const float* params,
                        const MlpRowsInput& in, float* out);

// Workspaces (activations, masks, gradients) allocated once per (spec, batch) and reused.
// One cache per addon instance; calls are synchronous on that instance's JS thread.
class MlpCache {
 public:
  MlpCache();
  ~MlpCache();
  MlpCache(const MlpCache&) = delete;
  MlpCache& operator=(const MlpCache&) = delete;

  // Forward + loss + backward. With adam_m/adam_v: AdamW updates params/adam_m/adam_v in place
  // (grad unused). With adam_m == nullptr: the full gradient goes to grad [size], params untouched.
  Status train_step(const MlpShape& shape, const MlpKernels& k, ThreadPool& pool, float* params, float* adam_m,
                    float* adam_v, float* grad, const MlpBatch& batch, const MlpTrainArgs& args, double* loss);
  // Inference (no dropout): out [n, out_dim] = residual + net(x) (fusion) or net(x).
  Status forward(const MlpShape& shape, const MlpKernels& k, ThreadPool& pool, const float* params, const float* x,
                 const float* residual, int64_t n, float* out);
  size_t memory_bytes() const;

 private:
  std::vector<std::unique_ptr<TrainWorkspace>> train_;
  std::vector<std::unique_ptr<ForwardWorkspace>> fwd_;
  uint64_t tick_ = 0;
};

}  // namespace rapm
