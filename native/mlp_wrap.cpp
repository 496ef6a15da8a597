#include "mlp_wrap.h"

#include <cmath>
#include <string>

#include "addon.h"
#include "core/mlp.h"
#include "napi_util.h"
#include "search_worker.h"

namespace rapm {
namespace {

MlpShape spec_arg(const Napi::CallbackInfo& info, size_t i) {
  Napi::Int32Array a = i32_arg(info, i, "spec", -1);
  MlpShape s;
  const Status st = mlp_decode_spec(a.Data(), a.ElementLength(), &s);
  if (!st.ok()) throw status_error(info.Env(), st, "spec");
  return s;
}

// Rows of a [rows, cols] Float32Array argument whose row count is not known yet.
int64_t rows_of(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t cols) {
  Napi::Float32Array a = f32_arg(info, i, name, -1);
  const int64_t len = static_cast<int64_t>(a.ElementLength());
  if (len % cols != 0) {
    throw range_error(info.Env(), "RAPM_SHAPE_MISMATCH",
                      std::string("Expected ") + name + " to hold whole rows of " + std::to_string(cols) +
                          " values but received length " + std::to_string(len));
  }
  return len / cols;
}

// A Float32Array of `len` elements, or null/undefined when `allowed_null` (returns nullptr).
float* opt_f32(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t len, bool want) {
  const bool absent = info.Length() <= i || info[i].IsNull() || info[i].IsUndefined();
  if (!want) {
    if (!absent) throw type_error(info.Env(), "RAPM_TYPE", std::string("Expected null for ") + name + " (baseline network has no residual)");
    return nullptr;
  }
  if (absent) throw type_error(info.Env(), "RAPM_TYPE", std::string("Expected Float32Array for ") + name + " (fusion network)");
  return f32_arg(info, i, name, len).Data();
}

double real_arg(const Napi::CallbackInfo& info, size_t i, const char* name, double lo, double hi, bool lo_open) {
  const double v = number_arg(info, i, name);
  if (!std::isfinite(v) || v > hi || (lo_open ? v <= lo : v < lo)) {
    throw range_error(info.Env(), "RAPM_INVALID_ARG",
                      std::string("Expected finite number in ") + (lo_open ? "(" : "[") + std::to_string(lo) + ", " +
                          std::to_string(hi) + "] for " + name + " but received " + std::to_string(v));
  }
  return v;
}

Napi::Value MlpParamCount(const Napi::CallbackInfo& info) {
  const MlpShape s = spec_arg(info, 0);
  return Napi::Number::New(info.Env(), static_cast<double>(s.size));
}

// _mlpLayout(spec) -> Float64Array [size, inputDim, then per layer: in, out, w, b, gamma, beta]
Napi::Value MlpLayout(const Napi::CallbackInfo& info) {
  const MlpShape s = spec_arg(info, 0);
  Napi::Float64Array a = Napi::Float64Array::New(info.Env(), 2 + 6 * s.layers.size());
  a[0] = static_cast<double>(s.size);
  a[1] = s.input_dim;
  for (size_t l = 0; l < s.layers.size(); ++l) {
    const MlpLayer& ly = s.layers[l];
    double* o = a.Data() + 2 + 6 * l;
    o[0] = ly.in;
    o[1] = ly.out;
    o[2] = static_cast<double>(ly.w);
    o[3] = static_cast<double>(ly.b);
    o[4] = static_cast<double>(ly.gamma);
    o[5] = static_cast<double>(ly.beta);
  }
  return a;
}

// mlpForward(spec, params, x [n, inputDim], residual [n, outDim] | null, out [n, outDim])
Napi::Value MlpForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const MlpShape s = spec_arg(info, 0);
  float* params = f32_arg(info, 1, "params", s.size).Data();
  const int64_t n = rows_of(info, 2, "x", s.input_dim);
  const float* x = info[2].As<Napi::Float32Array>().Data();
  const float* res = opt_f32(info, 3, "residual", n * s.out_dim, s.kind == 0);
  float* out = f32_arg(info, 4, "out", n * s.out_dim).Data();
  Addon& addon = Addon::of(env);
  auto pool = addon.get_pool();
  const Status st = addon.mlp_cache->forward(s, *addon.mlp_kernels.load(), *pool, params, x, res, n, out);
  if (!st.ok()) throw status_error(env, st, "mlpForward");
  return env.Undefined();
}

// mlpTrainStep(spec, params, adamM, adamV, step, lr, weightDecay, x [bs, inputDim],
//              residual [bs, outDim] | null, target [bs, outDim], dropoutP, dropoutSeed) -> loss
Napi::Value MlpTrainStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const MlpShape s = spec_arg(info, 0);
  float* params = f32_arg(info, 1, "params", s.size).Data();
  float* am = f32_arg(info, 2, "adamM", s.size).Data();
  float* av = f32_arg(info, 3, "adamV", s.size).Data();
  MlpTrainArgs args;
  args.step = int_arg(info, 4, "step", 1, 2147483647);
  args.lr = real_arg(info, 5, "lr", 0.0, 1.0, true);
  args.weight_decay = real_arg(info, 6, "weightDecay", 0.0, 1.0, false);
  const int64_t bs = rows_of(info, 7, "x", s.input_dim);
  if (bs < 1 || bs > kMlpMaxBatch) {
    throw range_error(env, "RAPM_SHAPE_MISMATCH", "Expected between 1 and " + std::to_string(kMlpMaxBatch) + " rows in x but received " + std::to_string(bs));
  }
  const float* x = info[7].As<Napi::Float32Array>().Data();
  const float* res = opt_f32(info, 8, "residual", bs * s.out_dim, s.kind == 0);
  const float* target = f32_arg(info, 9, "target", bs * s.out_dim).Data();
  args.dropout = real_arg(info, 10, "dropoutP", 0.0, 0.99, false);
  args.seed = static_cast<uint32_t>(int_arg(info, 11, "dropoutSeed", 0, 4294967295LL));
  if (params == am || params == av || am == av) throw range_error(env, "RAPM_INVALID_ARG", "params, adamM and adamV must be distinct arrays");
  Addon& addon = Addon::of(env);
  auto pool = addon.get_pool();
  double loss = 0;
  const Status st = addon.mlp_cache->train_step(s, *addon.mlp_kernels.load(), *pool, params, am, av, nullptr,
                                                MlpBatch{x, res, target, static_cast<int>(bs)}, args, &loss);
  if (!st.ok()) throw status_error(env, st, "mlpTrainStep");
  return Napi::Number::New(env, loss);
}

// mlpTrainEpoch(spec, params, adamM, adamV, firstStep, lr, weightDecay, en [n, enDim], prior [n, outDim] | null,
//               target [n, outDim], order Int32Array [nOrder], batchSize, dropoutP, dropoutSeed, threads,
//               out Float64Array [1], progress Int32Array [2] | null) -> Promise<void>
// One epoch off the JS thread (core mlp_train_epoch): minibatches gathered by `order` from the
// matrices in place, AdamW steps firstStep, firstStep + 1, ...; out[0] = sum of the minibatch
// losses. threads 0 runs on the addon's pool; t >= 1 on a pool of its own with t threads (1:
// this libuv thread only), so several nets can train at once. Every array is pinned until the
// promise settles; the caller must not touch params/adamM/adamV before then.
Napi::Value MlpTrainEpoch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const MlpShape s = spec_arg(info, 0);
  Napi::Float32Array params = f32_arg(info, 1, "params", s.size);
  Napi::Float32Array am = f32_arg(info, 2, "adamM", s.size);
  Napi::Float32Array av = f32_arg(info, 3, "adamV", s.size);
  MlpTrainArgs args;
  args.step = int_arg(info, 4, "step", 1, 2147483647);
  args.lr = real_arg(info, 5, "lr", 0.0, 1.0, true);
  args.weight_decay = real_arg(info, 6, "weightDecay", 0.0, 1.0, false);
  const int en_dim = s.kind == 0 ? s.input_dim - s.out_dim : s.input_dim;
  if (en_dim < 1) throw range_error(env, "RAPM_SHAPE_MISMATCH", "Expected a fusion net wider than its output");
  const int64_t n = rows_of(info, 7, "en", en_dim);
  Napi::Float32Array en = info[7].As<Napi::Float32Array>();
  const bool fusion = s.kind == 0;
  const float* prior = opt_f32(info, 8, "prior", n * s.out_dim, fusion);
  Napi::Float32Array target = f32_arg(info, 9, "target", n * s.out_dim);
  Napi::Int32Array order = i32_arg(info, 10, "order", -1);
  const int batch = static_cast<int>(int_arg(info, 11, "batchSize", 1, kMlpMaxBatch));
  args.dropout = real_arg(info, 12, "dropoutP", 0.0, 0.99, false);
  args.seed = static_cast<uint32_t>(int_arg(info, 13, "dropoutSeed", 0, 4294967295LL));
  const int threads = static_cast<int>(int_arg(info, 14, "threads", 0, 1024));
  Napi::Float64Array out = typed_arg<double>(info, 15, "out", napi_float64_array, "Float64Array", 1);
  const bool has_progress = info.Length() > 16 && !info[16].IsNull() && !info[16].IsUndefined();
  Napi::Int32Array progress = has_progress ? i32_arg(info, 16, "progress", 2) : Napi::Int32Array();
  if (params.Data() == am.Data() || params.Data() == av.Data() || am.Data() == av.Data())
    throw range_error(env, "RAPM_INVALID_ARG", "params, adamM and adamV must be distinct arrays");
  if (static_cast<int64_t>(order.ElementLength()) + args.step - 1 > 2147483647)
    throw range_error(env, "RAPM_INVALID_ARG", "step + the epoch's minibatches overflow the AdamW step counter");
  Addon& addon = Addon::of(env);
  const MlpKernels* kern = addon.mlp_kernels.load();
  std::shared_ptr<ThreadPool> shared = threads == 0 ? addon.get_pool() : nullptr;
  MlpEpoch e;
  e.en = en.Data();
  e.prior = prior;
  e.target = target.Data();
  e.en_dim = en_dim;
  e.rows = n;
  e.order = order.Data();
  e.n_order = static_cast<int64_t>(order.ElementLength());
  e.batch = batch;
  e.progress = has_progress ? progress.Data() : nullptr;
  float* p = params.Data();
  float* m = am.Data();
  float* v = av.Data();
  double* loss = out.Data();
  std::shared_ptr<const std::atomic<bool>> closing = addon.closing;  // an epoch takes seconds: stop early on teardown
  auto* w = new PromiseWorker(
      env,
      [=] {
        std::shared_ptr<ThreadPool> pool = shared ? shared : std::make_shared<ThreadPool>(threads);
        MlpEpoch ep = e;
        ep.closing = closing.get();
        return mlp_train_epoch(s, *kern, *pool, p, m, v, ep, args, loss);
      },
      "mlpTrainEpoch");
  for (size_t i : {1, 2, 3, 7, 8, 9, 10, 15, 16}) {
    if (info.Length() > i) w->Pin(info[i]);
  }
  Napi::Promise promise = w->Promise();
  w->Queue();
  return promise;
}

// mlpForwardRows(spec, params, en [src, enDim], prior [src, outDim] | null, rows Int32Array [n] | null,
//                out [n, outDim], threads) -> Promise<void>
// Inference off the JS thread on rows read in place (core mlp_forward_rows): out row m = the net on
// en[rows[m]] (+ prior[rows[m]]), bit-identical to mlpForward on those rows copied out. threads 0:
// the addon's pool; t >= 1 a pool of its own (1: this libuv thread only), so several nets can score
// at once. Every array is pinned until the promise settles.
Napi::Value MlpForwardRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const MlpShape s = spec_arg(info, 0);
  Napi::Float32Array params = f32_arg(info, 1, "params", s.size);
  const int en_dim = s.kind == 0 ? s.input_dim - s.out_dim : s.input_dim;
  if (en_dim < 1) throw range_error(env, "RAPM_SHAPE_MISMATCH", "Expected a fusion net wider than its output");
  const int64_t src = rows_of(info, 2, "en", en_dim);
  Napi::Float32Array en = info[2].As<Napi::Float32Array>();
  const float* prior = opt_f32(info, 3, "prior", src * s.out_dim, s.kind == 0);
  const bool has_rows = info.Length() > 4 && !info[4].IsNull() && !info[4].IsUndefined();
  Napi::Int32Array rows = has_rows ? i32_arg(info, 4, "rows", -1) : Napi::Int32Array();
  const int64_t n = has_rows ? static_cast<int64_t>(rows.ElementLength()) : src;
  Napi::Float32Array out = f32_arg(info, 5, "out", n * s.out_dim);
  const int threads = static_cast<int>(int_arg(info, 6, "threads", 0, 1024));
  Addon& addon = Addon::of(env);
  const MlpKernels* kern = addon.mlp_kernels.load();
  std::shared_ptr<ThreadPool> shared = threads == 0 ? addon.get_pool() : nullptr;
  MlpRowsInput in;
  in.en = en.Data();
  in.prior = prior;
  in.en_dim = en_dim;
  in.src_rows = src;
  in.rows = has_rows ? rows.Data() : nullptr;
  in.n = n;
  const float* p = params.Data();
  float* o = out.Data();
  auto* w = new PromiseWorker(
      env,
      [=] {
        std::shared_ptr<ThreadPool> pool = shared ? shared : std::make_shared<ThreadPool>(threads);
        return mlp_forward_rows(s, *kern, *pool, p, in, o);
      },
      "mlpForwardRows");
  for (size_t i : {1, 2, 3, 4, 5}) {
    if (info.Length() > i) w->Pin(info[i]);
  }
  Napi::Promise promise = w->Promise();
  w->Queue();
  return promise;
}

// _mlpGradient(spec, params, x, residual | null, target, dropoutP, dropoutSeed, step, grad [size]) -> loss
Napi::Value MlpGradient(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const MlpShape s = spec_arg(info, 0);
  float* params = f32_arg(info, 1, "params", s.size).Data();
  const int64_t bs = rows_of(info, 2, "x", s.input_dim);
  if (bs < 1 || bs > kMlpMaxBatch) {
    throw range_error(env, "RAPM_SHAPE_MISMATCH", "Expected between 1 and " + std::to_string(kMlpMaxBatch) + " rows in x but received " + std::to_string(bs));
  }
  const float* x = info[2].As<Napi::Float32Array>().Data();
  const float* res = opt_f32(info, 3, "residual", bs * s.out_dim, s.kind == 0);
  const float* target = f32_arg(info, 4, "target", bs * s.out_dim).Data();
  MlpTrainArgs args;
  args.dropout = real_arg(info, 5, "dropoutP", 0.0, 0.99, false);
  args.seed = static_cast<uint32_t>(int_arg(info, 6, "dropoutSeed", 0, 4294967295LL));
  args.step = int_arg(info, 7, "step", 1, 2147483647);
  float* grad = f32_arg(info, 8, "grad", s.size).Data();
  Addon& addon = Addon::of(env);
  auto pool = addon.get_pool();
  double loss = 0;
  const Status st = addon.mlp_cache->train_step(s, *addon.mlp_kernels.load(), *pool, params, nullptr, nullptr, grad,
                                                MlpBatch{x, res, target, static_cast<int>(bs)}, args, &loss);
  if (!st.ok()) throw status_error(env, st, "_mlpGradient");
  return Napi::Number::New(env, loss);
}

// _mlpDropoutBits(seed, step, layer, row, col) -> uint32
Napi::Value MlpDropoutBits(const Napi::CallbackInfo& info) {
  const auto u = [&](size_t i, const char* n) { return static_cast<uint32_t>(int_arg(info, i, n, 0, 4294967295LL)); };
  return Napi::Number::New(info.Env(), mlp_dropout_bits(u(0, "seed"), u(1, "step"), u(2, "layer"), u(3, "row"), u(4, "col")));
}

Napi::Value MlpMemoryBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(Addon::of(info.Env()).mlp_cache->memory_bytes()));
}

}  // namespace

void MlpWrapInit(Napi::Env env, Napi::Object exports) {
  exports.Set("mlpParamCount", Napi::Function::New(env, MlpParamCount, "mlpParamCount"));
  exports.Set("mlpForward", Napi::Function::New(env, MlpForward, "mlpForward"));
  exports.Set("mlpTrainStep", Napi::Function::New(env, MlpTrainStep, "mlpTrainStep"));
  exports.Set("mlpTrainEpoch", Napi::Function::New(env, MlpTrainEpoch, "mlpTrainEpoch"));
  exports.Set("mlpForwardRows", Napi::Function::New(env, MlpForwardRows, "mlpForwardRows"));
  exports.Set("_mlpGradient", Napi::Function::New(env, MlpGradient, "_mlpGradient"));
  exports.Set("_mlpLayout", Napi::Function::New(env, MlpLayout, "_mlpLayout"));
  exports.Set("_mlpDropoutBits", Napi::Function::New(env, MlpDropoutBits, "_mlpDropoutBits"));
  exports.Set("_mlpMemoryBytes", Napi::Function::New(env, MlpMemoryBytes, "_mlpMemoryBytes"));
}

}  // namespace rapm
