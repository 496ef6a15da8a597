// The only NODE_API_MODULE: exports table and per-environment state.
#include <napi.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "addon.h"
#include "core/cpu.h"
#include "datastore_wrap.h"
#include "mlp_wrap.h"
#include "napi_util.h"

namespace rapm {
namespace {

// Threads of the pool: RAPM_THREADS when it is an integer in [1, 1024] (the range of the
// `threads` setting, src/settings.ts), else one per hardware thread; a value that is set but
// not such an integer ("abc", "0", "2.5", "1abc") is named in *warning rather than ignored.
int default_threads(std::string* warning) {
  const unsigned hc = std::thread::hardware_concurrency();
  const int hw = hc == 0 ? 1 : static_cast<int>(hc);
  const char* env = std::getenv("RAPM_THREADS");
  if (env == nullptr || *env == '\0') return hw;
  char* end = nullptr;
  errno = 0;
  const long n = std::strtol(env, &end, 10);
  if (errno == 0 && end != env && *end == '\0' && n >= 1 && n <= 1024) return static_cast<int>(n);
  *warning = "RAPM_THREADS=\"" + std::string(env) + "\" is not an integer in [1, 1024]; using " + std::to_string(hw) +
             " (one per hardware thread)";
  return hw;
}

Napi::Value SimdLevel(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), Addon::of(info.Env()).kernels.load()->name);
}

Napi::Value SimdLevels(const Napi::CallbackInfo& info) {
  auto levels = supported_kernels();
  Napi::Array arr = Napi::Array::New(info.Env(), levels.size());
  for (size_t i = 0; i < levels.size(); ++i) arr.Set(static_cast<uint32_t>(i), levels[i]->name);
  return arr;
}

Napi::Value SetSimdLevel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw type_error(env, "RAPM_TYPE", "Expected string for level");
  const std::string name = info[0].As<Napi::String>().Utf8Value();
  const Kernels* k = kernels_by_name(name);
  if (k == nullptr) {
    std::string have;
    for (const Kernels* s : supported_kernels()) have += (have.empty() ? "" : ", ") + std::string(s->name);
    throw range_error(env, "RAPM_INVALID_ARG", "SIMD level '" + name + "' is not supported here (supported: " + have + ")");
  }
  Addon::of(env).kernels.store(k);
  Addon::of(env).mlp_kernels.store(mlp_kernels_for(k->level));
  return Napi::String::New(env, k->name);
}

Napi::Value Concurrency(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), Addon::of(info.Env()).get_pool()->threads());
}

Napi::Value SetConcurrency(const Napi::CallbackInfo& info) {
  const int n = static_cast<int>(int_arg(info, 0, "threads", 1, 1024));
  Addon& addon = Addon::of(info.Env());
  auto fresh = std::make_shared<ThreadPool>(n);
  {
    std::lock_guard<std::mutex> lock(addon.pool_mu);
    addon.pool = fresh;  // in-flight work finishes on the pool it holds
  }
  return Napi::Number::New(info.Env(), n);
}

// _fmaPeak(seconds): FP32 FMA GFLOP/s of the current level on all pool threads, all running
// at once for `seconds`. Each thread times short rounds (~0.5 ms) and keeps its best rate; the
// peak is the sum of those. A whole-interval rate would read low whenever another process takes
// a core for part of the interval (seen here: 304-445 GFLOP/s on one machine), and a low peak
// makes every "x bound" ratio measured against it look better than it is.
Napi::Value FmaPeak(const Napi::CallbackInfo& info) {
  const double seconds = number_arg(info, 0, "seconds");
  // Infinity would never return; NaN, 0 or less would time no round and report a peak of 0.
  if (!(seconds > 0 && seconds <= 60)) {
    throw range_error(info.Env(), "RAPM_INVALID_ARG",
                      "Expected seconds in (0, 60] for _fmaPeak but received " + std::to_string(seconds));
  }
  Addon& addon = Addon::of(info.Env());
  const Kernels* k = addon.kernels.load();
  auto pool = addon.get_pool();
  const int t = pool->threads();
  std::vector<double> best(t, 0.0);
  std::vector<float> sink(t, 0.0f);
  pool->parallel_for(t, [&](int64_t i) {
    using Clock = std::chrono::steady_clock;
    const auto start = Clock::now();
    for (auto now = start; std::chrono::duration<double>(now - start).count() < seconds;) {
      const double flops = k->fma_probe(1 << 18, &sink[i]);
      const auto end = Clock::now();
      const double el = std::chrono::duration<double>(end - now).count();
      if (el > 0) best[i] = std::max(best[i], flops / el);
      now = end;
    }
  });
  double total = 0;
  for (double f : best) total += f;
  return Napi::Number::New(info.Env(), total / 1e9);
}

// _readBandwidth(floatsPerThread, reps): best GB/s of summing a large array on all pool threads.
Napi::Value ReadBandwidth(const Napi::CallbackInfo& info) {
  const int64_t n = int_arg(info, 0, "floatsPerThread", 1024, int64_t{1} << 32);
  const int64_t reps = int_arg(info, 1, "reps", 1, 1000);
  Addon& addon = Addon::of(info.Env());
  const Kernels* k = addon.kernels.load();
  auto pool = addon.get_pool();
  const int t = pool->threads();
  std::vector<std::vector<float>> bufs(t);
  pool->parallel_for(t, [&](int64_t i) { bufs[i].assign(static_cast<size_t>(n), 1.0f); });  // first touch per thread
  std::vector<float> sink(t, 0.0f);
  double best = 0;
  for (int64_t r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    pool->parallel_for(t, [&](int64_t i) { sink[i] += k->read_sum(bufs[i].data(), bufs[i].size()); });
    const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, static_cast<double>(n) * t * 4 / el / 1e9);
  }
  return Napi::Number::New(info.Env(), best);
}

// process.emitWarning(msg, {type, code}) (RapmSimdWarning / RAPM_SIMD, RapmThreadsWarning /
// RAPM_THREADS): once per load, visible, and silenced by --no-warnings.
void emit_warning(Napi::Env env, const char* type, const char* code, const std::string& msg) {
  Napi::Object process = env.Global().Get("process").As<Napi::Object>();
  Napi::Value emit = process.Get("emitWarning");
  if (!emit.IsFunction()) return;
  Napi::Object opts = Napi::Object::New(env);
  opts.Set("type", type);
  opts.Set("code", code);
  emit.As<Napi::Function>().Call(process, {Napi::String::New(env, msg), opts});
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // RAPM_SIMD: a supported level is used as named; a misspelt value, or a known level this
  // CPU cannot run, falls back to the best level with a warning naming the valid ones.
  const KernelChoice choice = choose_kernels(std::getenv("RAPM_SIMD"));
  if (!choice.message.empty()) emit_warning(env, "RapmSimdWarning", "RAPM_SIMD", choice.message);
  auto* addon = new Addon();
  addon->kernels.store(choice.kernels);
  addon->mlp_kernels.store(mlp_kernels_for(addon->kernels.load()->level));
  addon->mlp_cache = std::make_unique<MlpCache>();
  std::string threads_warning;
  addon->pool = std::make_shared<ThreadPool>(default_threads(&threads_warning));
  if (!threads_warning.empty()) emit_warning(env, "RapmThreadsWarning", "RAPM_THREADS", threads_warning);
  env.SetInstanceData<Addon>(addon);  // deleted at environment teardown (worker exit included)
  env.AddCleanupHook([closing = addon->closing] { closing->store(true); });  // see search_worker.h

  Napi::Function ctor = DatastoreWrap::Init(env);
  addon->datastore_ctor = Napi::Persistent(ctor);
  exports.Set("Datastore", ctor);
  exports.Set("simdLevel", Napi::Function::New(env, SimdLevel, "simdLevel"));
  exports.Set("simdLevels", Napi::Function::New(env, SimdLevels, "simdLevels"));
  exports.Set("setSimdLevel", Napi::Function::New(env, SetSimdLevel, "setSimdLevel"));
  exports.Set("concurrency", Napi::Function::New(env, Concurrency, "concurrency"));
  exports.Set("setConcurrency", Napi::Function::New(env, SetConcurrency, "setConcurrency"));
  // The value range add and import enforce (core/datastore.h), read by the data loaders so a
  // file's out-of-range value is reported with its file and row (src/data/dataset.ts).
  exports.Set("maxAbsValue", Napi::Number::New(env, kMaxAbsValue));
  exports.Set("_fmaPeak", Napi::Function::New(env, FmaPeak, "_fmaPeak"));
  exports.Set("_readBandwidth", Napi::Function::New(env, ReadBandwidth, "_readBandwidth"));
  MlpWrapInit(env, exports);
  return exports;
}

}  // namespace
}  // namespace rapm

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return rapm::Init(env, exports); }
NODE_API_MODULE(rapm, InitModule)
