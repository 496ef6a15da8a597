#include "mlp.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <thread>
#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

namespace rapm {

namespace {
// Subnormal floats are slow on x86 (microcode assists): the fusion net's zero-initialised last
// layer and small AdamW updates produce them early in training, which cost up to 2x. Each
// thread flushes them (FTZ|DAZ) while it works on a step and restores its MXCSR after, so the
// calling JS thread keeps IEEE semantics. All threads flush, so results stay identical for any
// thread count.
class FlushDenormals {
 public:
#if defined(__x86_64__) || defined(_M_X64)
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040u); }
  ~FlushDenormals() { _mm_setcsr(saved_); }

 private:
  unsigned saved_;
#else
  FlushDenormals() {}  // aarch64 cores handle subnormals at full speed (user-provided: no unused-variable warning)
#endif
};
}  // namespace

const MlpKernels* mlp_kernels_for(SimdLevel level) {
  switch (level) {
#if defined(__x86_64__) || defined(_M_X64)
    case SimdLevel::kAvx512: return mlp_kernels_avx512();
    case SimdLevel::kAvx2: return mlp_kernels_avx2();
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
    case SimdLevel::kNeon: return mlp_kernels_neon();
#endif
    default: return mlp_kernels_scalar();
  }
}

Status mlp_decode_spec(const int32_t* s, size_t len, MlpShape* out) {
  auto bad = [](const std::string& m) { return Status::Error(StatusCode::kInvalidArg, "spec: " + m); };
  if (len < kMlpSpecHeader + 1) return Status::Error(StatusCode::kShape, "spec: expected at least 6 entries");
  if (s[0] != 0 && s[0] != 1) return bad("kind must be 0 (fusion) or 1 (baseline)");
  if (s[1] != 0 && s[1] != 1) return bad("activation must be 0 (gelu) or 1 (relu)");
  if (s[2] != 0 && s[2] != 1) return bad("layerNorm must be 0 or 1");
  if (s[3] < 1 || s[3] > kMlpMaxWidth) return bad("inputDim out of range");
  if (s[4] < 1 || s[4] > kMlpMaxLayers) return bad("nLayers out of range");
  if (len != static_cast<size_t>(kMlpSpecHeader + s[4])) {
    return Status::Error(StatusCode::kShape, "spec: expected " + std::to_string(kMlpSpecHeader + s[4]) +
                                                 " entries for " + std::to_string(s[4]) + " layers");
  }
  MlpShape sh;
  sh.kind = s[0];
  sh.act = s[1];
  sh.layer_norm = s[2] == 1;
  sh.input_dim = s[3];
  sh.max_width = s[3];
  sh.spec.assign(s, s + len);
  const int L = s[4];
  int64_t at = 0;
  int in = s[3];
  for (int l = 0; l < L; ++l) {
    const int o = s[kMlpSpecHeader + l];
    if (o < 1 || o > kMlpMaxWidth) return bad("layer width out of range");
    MlpLayer ly;
    ly.in = in;
    ly.out = o;
    ly.w = at;
    at += static_cast<int64_t>(in) * o;
    ly.b = at;
    at += o;
    if (l + 1 < L && sh.layer_norm) {
      ly.gamma = at;
      at += o;
      ly.beta = at;
      at += o;
    }
    sh.layers.push_back(ly);
    sh.max_width = std::max(sh.max_width, o);
    in = o;
  }
  sh.out_dim = in;
  sh.size = at;
  if (at > (int64_t{1} << 31)) return bad("too many parameters");
  *out = std::move(sh);
  return Status::Ok();
}

namespace {

inline uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

}  // namespace

namespace {
// The two halves of mlp_dropout_bits: a key per (seed, step, layer), then per (row, col). The
// training step hoists the key out of its loops and the row hash out of the column loop.
inline uint32_t dropout_key(uint32_t seed, uint32_t step, uint32_t layer) {
  return mix32(mix32(mix32(seed ^ 0x9e3779b9U) ^ step) ^ layer);
}
inline uint32_t dropout_row(uint32_t key, uint32_t row) { return mix32(key ^ row); }
}  // namespace

uint32_t mlp_dropout_bits(uint32_t seed, uint32_t step, uint32_t layer, uint32_t row, uint32_t col) {
  return mix32(dropout_row(dropout_key(seed, step, layer), row) ^ col);
}

uint32_t mlp_dropout_threshold(double p) {
  const double t = std::floor(p * 4294967296.0);
  return t >= 4294967295.0 ? 4294967295U : t <= 0 ? 0U : static_cast<uint32_t>(t);
}

int64_t mlp_first_nonfinite_row(const float* p, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = p + r * cols;
    uint32_t bad = 0;
    for (int64_t c = 0; c < cols; ++c) {
      uint32_t b;
      std::memcpy(&b, row + c, 4);
      bad |= static_cast<uint32_t>((b & 0x7f800000U) == 0x7f800000U);
    }
    if (bad) return r;
  }
  return -1;
}

namespace {

constexpr int kFwdRows = 24;       // output features per forward chunk
constexpr int kBwdCols = 64;       // input features per backward chunk
constexpr int kInferRows = 64;     // batch rows per inference chunk

int round_up(int v, int m) { return (v + m - 1) / m * m; }
// Row stride of a batch-major copy: whole 64-byte lines, and never a multiple of 2 KiB, so
// the 32 rows one gradient tile walks do not all land in a few L1 sets.
int batch_ld(int cols) {
  const int ld = round_up(cols, 16);
  return ld % 512 == 0 ? ld + 16 : ld;
}
int ceil_div(int64_t v, int64_t m) { return static_cast<int>((v + m - 1) / m); }
// Every 64-byte line of p[0, n).
inline void prefetch_floats(const float* p, int n) {
  for (int o = 0; o < n; o += 16) __builtin_prefetch(p + o);
  __builtin_prefetch(p + n - 1);
}

// 64-byte aligned, zero-initialised floats.
class AlignedFloats {
 public:
  ~AlignedFloats() { reset(); }
  bool alloc(size_t n) {
    reset();
    p_ = static_cast<float*>(::operator new(std::max<size_t>(n, 16) * sizeof(float), std::align_val_t(64), std::nothrow));
    if (p_ == nullptr) return false;
    n_ = n;
    std::memset(p_, 0, n * sizeof(float));
    return true;
  }
  void reset() {
    if (p_) ::operator delete(p_, std::align_val_t(64));
    p_ = nullptr;
    n_ = 0;
  }
  float* data() const { return p_; }
  size_t size() const { return n_; }

 private:
  float* p_ = nullptr;
  size_t n_ = 0;
};

// Bump allocator over one AlignedFloats: first pass counts, second hands out pointers.
class Carver {
 public:
  explicit Carver(float* base) : base_(base) {}
  float* take(size_t n) {
    float* p = base_ ? base_ + off_ : nullptr;
    off_ += (n + 15) & ~size_t{15};
    return p;
  }
  size_t total() const { return off_; }

 private:
  float* base_;
  size_t off_ = 0;
};

enum class PhaseKind { kPrep, kFwd, kEpi, kLoss, kBwd, kEpiBwd };
struct Phase {
  PhaseKind kind;
  int layer;
  int chunks;
};

// Cheap phased work sharing: every task walks the phases in order, claims chunks of the
// current phase from a counter and waits until all chunks of that phase are done. A task
// that starts late finds the early phases claimed and catches up, so nothing depends on
// every pool thread joining (no deadlock when the pool is busy), and a chunk's result does
// not depend on which thread ran it (bit-identical for any thread count).
class PhaseRunner {
 public:
  void prepare(size_t phases) {
    if (phases != n_) {
      ctr_.reset(new std::atomic<int>[phases * 2]);
      n_ = phases;
    }
    for (size_t i = 0; i < 2 * n_; ++i) ctr_[i].store(0, std::memory_order_relaxed);
  }
  template <class F>
  void run(ThreadPool& pool, const std::vector<Phase>& phases, F&& chunk) {
    prepare(phases.size());
    int most = 1;
    for (const Phase& p : phases) most = std::max(most, p.chunks);
    const int tasks = std::min(pool.threads(), most);
    std::atomic<int>* ctr = ctr_.get();
    pool.parallel_for(tasks, [&](int64_t) {
      const FlushDenormals ftz;
      for (size_t p = 0; p < phases.size(); ++p) {
        const int n = phases[p].chunks;
        for (;;) {
          const int c = ctr[2 * p].fetch_add(1, std::memory_order_relaxed);
          if (c >= n) break;
          chunk(phases[p], c);
          ctr[2 * p + 1].fetch_add(1, std::memory_order_acq_rel);
        }
        for (int spins = 0; ctr[2 * p + 1].load(std::memory_order_acquire) < n; ++spins) {
          if (spins < 4096) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#elif defined(__aarch64__)
            asm volatile("yield");
#endif
          } else {
            std::this_thread::yield();
          }
        }
      }
    });
  }

 private:
  std::unique_ptr<std::atomic<int>[]> ctr_;
  size_t n_ = 0;
};

}  // namespace

struct LayerBufs {
  float* z = nullptr;     // [out, mp] x W^T + b
  float* xhat = nullptr;  // [out, mp] hidden + LayerNorm
  float* rstd = nullptr;  // [mp]
  float* u = nullptr;     // [out, mp] activation input (hidden)
  float* mask = nullptr;  // [out, mp] dropout scale (hidden)
  float* at = nullptr;    // [out, mp] output activation, feature-major (hidden)
  float* ab = nullptr;    // [batch, lda] output activation, batch-major (hidden)
  int lda = 0;
  float* da = nullptr;    // [out, mp] dLoss/d at (hidden)
  float* dz = nullptr;    // [out, mp] dLoss/dz
  float* pg = nullptr;    // [mp/16, out] dgamma partial sums per column block
  float* pb = nullptr;    // [mp/16, out] dbeta partial sums
};

struct TrainWorkspace {
  std::vector<int32_t> spec;
  int batch = 0, mp = 0;
  uint64_t used = 0;
  AlignedFloats mem;
  float* xt = nullptr;   // [in_0, mp]
  float* xb = nullptr;   // [batch, ldx] copy of x with a padded row stride
  int ldx = 0;
  float* rt = nullptr;   // [out_dim, mp] residual
  float* tt = nullptr;   // [out_dim, mp] target
  float* loss = nullptr; // [mp]
  float* grad = nullptr; // [size]: small-parameter gradients while training
  std::vector<LayerBufs> lb;
  std::vector<Phase> phases;
  PhaseRunner runner;

  bool init(const MlpShape& s, int M) {
    spec = s.spec;
    batch = M;
    mp = round_up(M, kMlpColBlock);
    const int L = static_cast<int>(s.layers.size());
    const int blocks = mp / kMlpColBlock;
    auto carve = [&](Carver& c) {
      const size_t mpz = static_cast<size_t>(mp);
      xt = c.take(static_cast<size_t>(s.input_dim) * mpz);
      ldx = batch_ld(s.input_dim);
      xb = c.take(static_cast<size_t>(ldx) * M);
      rt = c.take(static_cast<size_t>(s.out_dim) * mpz);
      tt = c.take(static_cast<size_t>(s.out_dim) * mpz);
      loss = c.take(mpz);
      grad = c.take(static_cast<size_t>(s.size));
      lb.assign(L, LayerBufs{});
      for (int l = 0; l < L; ++l) {
        const size_t o = static_cast<size_t>(s.layers[l].out);
        LayerBufs& b = lb[l];
        b.z = c.take(o * mpz);
        b.dz = c.take(o * mpz);
        if (l + 1 < L) {
          if (s.layer_norm) {
            b.xhat = c.take(o * mpz);
            b.rstd = c.take(mpz);
            b.pg = c.take(o * blocks);
            b.pb = c.take(o * blocks);
          }
          b.u = c.take(o * mpz);
          b.mask = c.take(o * mpz);
          b.at = c.take(o * mpz);
          b.lda = batch_ld(static_cast<int>(o));
          b.ab = c.take(static_cast<size_t>(b.lda) * M);
          b.da = c.take(o * mpz);
        }
      }
    };
    Carver count(nullptr);
    carve(count);
    if (!mem.alloc(count.total())) return false;
    Carver real(mem.data());
    carve(real);

    phases.clear();
    phases.push_back({PhaseKind::kPrep, 0, ceil_div(s.input_dim, kBwdCols) + 1});
    for (int l = 0; l < L; ++l) {
      phases.push_back({PhaseKind::kFwd, l, ceil_div(s.layers[l].out, kFwdRows)});
      phases.push_back({l + 1 < L ? PhaseKind::kEpi : PhaseKind::kLoss, l, blocks});
    }
    for (int l = L - 1; l >= 0; --l) {
      if (l + 1 < L) phases.push_back({PhaseKind::kEpiBwd, l, blocks});
      phases.push_back({PhaseKind::kBwd, l, ceil_div(s.layers[l].in, kBwdCols) + 1});
    }
    return true;
  }
};

struct ForwardWorkspace {
  std::vector<int32_t> spec;
  uint64_t used = 0;
  int tasks = 0;
  size_t per_task = 0;
  AlignedFloats mem;
  PhaseRunner runner;

  bool init(const MlpShape& s, int t) {
    spec = s.spec;
    tasks = t;
    const size_t w = static_cast<size_t>(kInferRows);
    per_task = ((static_cast<size_t>(s.input_dim) * w + 15) & ~size_t{15}) + 2 * static_cast<size_t>(s.max_width) * w;
    return mem.alloc(per_task * static_cast<size_t>(t));
  }
  float* xt(int task) const { return mem.data() + per_task * static_cast<size_t>(task); }
};

MlpCache::MlpCache() = default;
MlpCache::~MlpCache() = default;

size_t MlpCache::memory_bytes() const {
  size_t b = 0;
  for (const auto& w : train_) b += w->mem.size() * sizeof(float);
  for (const auto& w : fwd_) b += w->mem.size() * sizeof(float);
  return b;
}

namespace {
constexpr size_t kCacheEntries = 4;

template <class W>
void evict_lru(std::vector<std::unique_ptr<W>>* v) {
  if (v->size() < kCacheEntries) return;
  auto it = std::min_element(v->begin(), v->end(), [](const auto& a, const auto& b) { return a->used < b->used; });
  v->erase(it);
}
}  // namespace

namespace {

// Where batch row m's data is: in place in the source matrices (gathered) or packed.
struct BatchRows {
  const MlpBatch& in;
  int input_dim, out_dim, head;  // head: columns of x read from in.x; the rest (fusion, gathered) from in.residual
  BatchRows(const MlpBatch& b, const MlpShape& s)
      : in(b), input_dim(s.input_dim), out_dim(s.out_dim), head(b.rows ? b.en_dim : s.input_dim) {}
  int64_t src(int m) const { return in.rows ? in.rows[m] : m; }
  const float* x(int m) const { return in.x + src(m) * head; }
  const float* x_tail(int m) const { return in.residual + src(m) * out_dim; }  // only when head < input_dim
  const float* residual(int m) const { return in.residual + src(m) * out_dim; }
  const float* target(int m) const { return in.target + src(m) * out_dim; }
};

Status check_batch(const MlpShape& s, const MlpBatch& in) {
  const int M = in.batch;
  if (M < 1 || M > kMlpMaxBatch) return Status::Error(StatusCode::kInvalidArg, "batch size out of range");
  if (in.rows == nullptr) {
    if (int64_t r = mlp_first_nonfinite_row(in.x, M, s.input_dim); r >= 0)
      return Status::Error(StatusCode::kNonFinite, "NaN or Infinity", r, "x");
    if (in.residual) {
      if (int64_t r = mlp_first_nonfinite_row(in.residual, M, s.out_dim); r >= 0)
        return Status::Error(StatusCode::kNonFinite, "NaN or Infinity", r, "residual");
    }
    if (int64_t r = mlp_first_nonfinite_row(in.target, M, s.out_dim); r >= 0)
      return Status::Error(StatusCode::kNonFinite, "NaN or Infinity", r, "target");
    return Status::Ok();
  }
  // Gathered: the offending row is reported as the source row.
  const BatchRows br(in, s);
  for (int m = 0; m < M; ++m) {
    if (mlp_first_nonfinite_row(br.x(m), 1, br.head) >= 0) return Status::Error(StatusCode::kNonFinite, "NaN or Infinity", br.src(m), "x");
    if (in.residual && mlp_first_nonfinite_row(br.residual(m), 1, s.out_dim) >= 0)
      return Status::Error(StatusCode::kNonFinite, "NaN or Infinity", br.src(m), "residual");
    if (mlp_first_nonfinite_row(br.target(m), 1, s.out_dim) >= 0)
      return Status::Error(StatusCode::kNonFinite, "NaN or Infinity", br.src(m), "target");
  }
  return Status::Ok();
}

Status run_train_step(TrainWorkspace* ws, const MlpShape& s, const MlpKernels& k, ThreadPool& pool, float* params,
                      float* adam_m, float* adam_v, float* grad_out, const MlpBatch& in, const MlpTrainArgs& args,
                      double* loss_out);

}  // namespace

Status MlpCache::train_step(const MlpShape& s, const MlpKernels& k, ThreadPool& pool, float* params, float* adam_m,
                            float* adam_v, float* grad_out, const MlpBatch& in, const MlpTrainArgs& args,
                            double* loss_out) {
  if (Status st = check_batch(s, in); !st.ok()) return st;
  const int M = in.batch;
  TrainWorkspace* ws = nullptr;
  for (auto& w : train_)
    if (w->batch == M && w->spec == s.spec) ws = w.get();
  if (ws == nullptr) {
    evict_lru(&train_);
    auto fresh = std::make_unique<TrainWorkspace>();
    if (!fresh->init(s, M)) return Status::Error(StatusCode::kOutOfMemory, "out of memory for the training workspace");
    ws = fresh.get();
    train_.push_back(std::move(fresh));
  }
  ws->used = ++tick_;
  return run_train_step(ws, s, k, pool, params, adam_m, adam_v, grad_out, in, args, loss_out);
}

namespace {

// The progress counters are plain Int32Array slots shared with JS (which reads and writes them
// between its own turns): relaxed atomic word accesses, no ordering needed.
inline int32_t load_shared(const int32_t* p) {
#if defined(__GNUC__)
  return __atomic_load_n(p, __ATOMIC_RELAXED);
#else
  return *static_cast<const volatile int32_t*>(p);
#endif
}
inline void store_shared(int32_t* p, int32_t v) {
#if defined(__GNUC__)
  __atomic_store_n(p, v, __ATOMIC_RELAXED);
#else
  *static_cast<volatile int32_t*>(p) = v;
#endif
}

}  // namespace

Status mlp_train_epoch(const MlpShape& s, const MlpKernels& k, ThreadPool& pool, float* params, float* adam_m,
                       float* adam_v, const MlpEpoch& e, const MlpTrainArgs& args, double* loss_sum) {
  *loss_sum = 0;
  if (e.batch < 1 || e.batch > kMlpMaxBatch) return Status::Error(StatusCode::kInvalidArg, "batch size out of range");
  if (e.en_dim + (s.kind == 0 ? s.out_dim : 0) != s.input_dim || (s.kind == 0) != (e.prior != nullptr))
    return Status::Error(StatusCode::kShape, "epoch: en/prior widths do not make the net's input");
  for (int64_t i = 0; i < e.n_order; ++i) {
    if (e.order[i] < 0 || e.order[i] >= e.rows) return Status::Error(StatusCode::kInvalidArg, "epoch: order holds a row out of range", i, "order");
  }
  std::unique_ptr<TrainWorkspace> full, last;
  double sum = 0;
  MlpTrainArgs a = args;
  for (int64_t s0 = 0; s0 < e.n_order; s0 += e.batch) {
    if ((e.progress && load_shared(e.progress + 1) != 0) || (e.closing && e.closing->load(std::memory_order_relaxed))) break;
    const int M = static_cast<int>(std::min<int64_t>(e.batch, e.n_order - s0));
    std::unique_ptr<TrainWorkspace>& ws = M == e.batch ? full : last;
    if (!ws) {
      ws = std::make_unique<TrainWorkspace>();
      if (!ws->init(s, M)) return Status::Error(StatusCode::kOutOfMemory, "out of memory for the training workspace");
    }
    MlpBatch b{e.en, e.prior, e.target, M};
    b.rows = e.order + s0;
    b.en_dim = e.en_dim;
    b.next_rows = e.order + s0 + M;
    b.next_n = static_cast<int>(std::min<int64_t>(e.batch, e.n_order - s0 - M));
    if (Status st = check_batch(s, b); !st.ok()) return st;
    double loss = 0;
    if (Status st = run_train_step(ws.get(), s, k, pool, params, adam_m, adam_v, nullptr, b, a, &loss); !st.ok()) return st;
    sum += loss;
    ++a.step;
    if (e.progress) store_shared(e.progress, static_cast<int32_t>(s0 + M));
  }
  *loss_sum = sum;
  return Status::Ok();
}

namespace {

Status run_train_step(TrainWorkspace* ws, const MlpShape& s, const MlpKernels& k, ThreadPool& pool, float* params,
                      float* adam_m, float* adam_v, float* grad_out, const MlpBatch& in, const MlpTrainArgs& args,
                      double* loss_out) {
  const int M = in.batch;
  const BatchRows br(in, s);
  const bool train = adam_m != nullptr;
  AdamArgs adam{};
  if (train) {
    const double step = static_cast<double>(args.step);
    const double bc1 = 1.0 - std::pow(0.9, step), bc2 = 1.0 - std::pow(0.999, step);
    adam.decay = static_cast<float>(1.0 - args.lr * args.weight_decay);
    adam.beta1 = 0.9f;
    adam.one_minus_beta1 = static_cast<float>(1.0 - 0.9);
    adam.beta2 = 0.999f;
    adam.one_minus_beta2 = static_cast<float>(1.0 - 0.999);
    adam.eps = 1e-8f;
    adam.step_size = static_cast<float>(args.lr / bc1);
    adam.inv_bc2_sqrt = static_cast<float>(1.0 / std::sqrt(bc2));
  }
  const AdamArgs* adam_p = train ? &adam : nullptr;
  float* grad = train ? ws->grad : grad_out;

  const int L = static_cast<int>(s.layers.size());
  const int mp = ws->mp;
  const int D = s.out_dim;
  const bool drop = args.dropout > 0;
  const uint32_t thr = mlp_dropout_threshold(args.dropout);
  const float keep_scale = static_cast<float>(1.0 / (1.0 - args.dropout));
  const uint32_t step32 = static_cast<uint32_t>(args.step);

  auto chunk = [&](const Phase& ph, int c) {
    const int l = ph.layer;
    switch (ph.kind) {
      case PhaseKind::kPrep: {
        const int nx = ph.chunks - 1;
        if (c < nx) {
          const int k0 = c * kBwdCols, k1 = std::min(s.input_dim, k0 + kBwdCols);
          const int h1 = std::min(k1, br.head);
          for (int m = 0; m < M; ++m) {
            const float* xr = br.x(m);
            float* xb = ws->xb + static_cast<int64_t>(m) * ws->ldx;
            for (int j = k0; j < h1; ++j) {
              ws->xt[static_cast<int64_t>(j) * mp + m] = xr[j];
              xb[j] = xr[j];
            }
            if (h1 < k1) {  // gathered fusion input: columns >= en_dim are the prior
              const float* tail = br.x_tail(m);
              for (int j = std::max(k0, br.head); j < k1; ++j) {
                ws->xt[static_cast<int64_t>(j) * mp + m] = tail[j - br.head];
                xb[j] = tail[j - br.head];
              }
            }
          }
          for (int j = k0; j < k1; ++j)
            for (int m = M; m < mp; ++m) ws->xt[static_cast<int64_t>(j) * mp + m] = 0.0f;
        } else {
          for (int m = 0; m < mp; ++m) {
            const float* tr = m < M ? br.target(m) : nullptr;
            const float* rr = m < M && in.residual ? br.residual(m) : nullptr;
            for (int j = 0; j < D; ++j) {
              ws->tt[static_cast<int64_t>(j) * mp + m] = tr ? tr[j] : 0.0f;
              if (in.residual) ws->rt[static_cast<int64_t>(j) * mp + m] = rr ? rr[j] : 0.0f;
            }
          }
        }
        break;
      }
      case PhaseKind::kFwd: {
        const MlpLayer& ly = s.layers[l];
        const int n0 = c * kFwdRows, rows = std::min(kFwdRows, ly.out - n0);
        const float* xin = l == 0 ? ws->xt : ws->lb[l - 1].at;
        k.gemm_bcast(params + ly.w + static_cast<int64_t>(n0) * ly.in, ly.in, 1, xin, ly.in, mp, params + ly.b + n0,
                     ws->lb[l].z + static_cast<int64_t>(n0) * mp, rows);
        break;
      }
      case PhaseKind::kEpi: {
        const MlpLayer& ly = s.layers[l];
        LayerBufs& b = ws->lb[l];
        const int m0 = c * kMlpColBlock, m1 = m0 + kMlpColBlock;
        if (drop) {
          // mlp_dropout_bits(seed, step, l, m, f), with the (seed, step, l) key and the per-row
          // hash computed once: the same bits at a fifth of the hashing.
          const uint32_t key = dropout_key(args.seed, step32, static_cast<uint32_t>(l));
          uint32_t rowh[kMlpColBlock];
          for (int m = m0; m < m1; ++m) rowh[m - m0] = dropout_row(key, static_cast<uint32_t>(m));
          // Branch-free over the block's 16 columns (the hash is computed for padding columns
          // too, then masked), so that the compiler vectorises it: scalar, it cost more than
          // the whole LayerNorm + GELU epilogue.
          float keep[kMlpColBlock];
          for (int j = 0; j < kMlpColBlock; ++j) keep[j] = m0 + j < M ? keep_scale : 0.0f;
          for (int f = 0; f < ly.out; ++f) {
            float* mrow = b.mask + static_cast<int64_t>(f) * mp + m0;
            const uint32_t col = static_cast<uint32_t>(f);
            for (int j = 0; j < kMlpColBlock; ++j) mrow[j] = mix32(rowh[j] ^ col) >= thr ? keep[j] : 0.0f;
          }
        }
        HiddenFwdArgs a{};
        a.z = b.z;
        a.n = ly.out;
        a.mp = mp;
        a.m0 = m0;
        a.m1 = m1;
        a.gamma = s.layer_norm ? params + ly.gamma : nullptr;
        a.beta = s.layer_norm ? params + ly.beta : nullptr;
        a.act = s.act;
        a.mask = drop ? b.mask : nullptr;
        a.xhat = b.xhat;
        a.rstd = b.rstd;
        a.u = b.u;
        a.a = b.at;
        k.hidden_fwd(&a);
        const int mend = std::min(m1, M);
        for (int f = 0; f < ly.out; ++f) {
          const float* src = b.at + static_cast<int64_t>(f) * mp;
          for (int m = m0; m < mend; ++m) b.ab[static_cast<int64_t>(m) * b.lda + f] = src[m];
        }
        break;
      }
      case PhaseKind::kLoss: {
        LossArgs a{};
        a.out = ws->lb[l].z;
        a.res = in.residual ? ws->rt : nullptr;
        a.tgt = ws->tt;
        a.d = D;
        a.mp = mp;
        a.m0 = c * kMlpColBlock;
        a.m1 = a.m0 + kMlpColBlock;
        a.m_valid = M;
        a.grad_scale = static_cast<float>(-1.0 / M);
        a.dout = ws->lb[l].dz;
        a.loss = ws->loss;
        k.cosine_loss(&a);
        break;
      }
      case PhaseKind::kEpiBwd: {
        const MlpLayer& ly = s.layers[l];
        LayerBufs& b = ws->lb[l];
        HiddenBwdArgs a{};
        a.da = b.da;
        a.mask = drop ? b.mask : nullptr;
        a.u = b.u;
        a.xhat = b.xhat;
        a.rstd = b.rstd;
        a.gamma = s.layer_norm ? params + ly.gamma : nullptr;
        a.n = ly.out;
        a.mp = mp;
        a.m0 = c * kMlpColBlock;
        a.m1 = a.m0 + kMlpColBlock;
        a.act = s.act;
        a.dz = b.dz;
        a.dgamma = b.pg ? b.pg + static_cast<int64_t>(c) * ly.out : nullptr;
        a.dbeta = b.pb ? b.pb + static_cast<int64_t>(c) * ly.out : nullptr;
        k.hidden_bwd(&a);
        break;
      }
      case PhaseKind::kBwd: {
        const MlpLayer& ly = s.layers[l];
        LayerBufs& b = ws->lb[l];
        const int nk = ph.chunks - 1;
        if (c < nk) {
          const int k0 = c * kBwdCols, k1 = std::min(ly.in, k0 + kBwdCols);
          if (l > 0) {  // input gradient first: it reads W before the update below
            k.gemm_bcast(params + ly.w + k0, 1, ly.in, b.dz, ly.out, mp, nullptr,
                         ws->lb[l - 1].da + static_cast<int64_t>(k0) * mp, k1 - k0);
          }
          if (l == 0 && in.next_n > 0) {
            // The first layer's chunks end the step: each prefetches its share of the next
            // minibatch's source rows, late enough that the step's own traffic leaves them cached.
            for (int m = c * in.next_n / nk, m_end = (c + 1) * in.next_n / nk; m < m_end; ++m) {
              const int64_t r = in.next_rows[m];
              prefetch_floats(in.x + r * br.head, br.head);
              if (in.residual) prefetch_floats(in.residual + r * D, D);
              prefetch_floats(in.target + r * D, D);
            }
          }
          const float* ain = l == 0 ? ws->xb : ws->lb[l - 1].ab;
          const int lda = l == 0 ? ws->ldx : ws->lb[l - 1].lda;
          k.gemm_wgrad(b.dz, mp, M, ain, lda, ly.out, k0, k1, train ? nullptr : grad + ly.w,
                       train ? params + ly.w : nullptr, train ? adam_m + ly.w : nullptr,
                       train ? adam_v + ly.w : nullptr, ly.in, adam_p);
        } else {
          k.row_sums(b.dz, mp, ly.out, grad + ly.b);
          int64_t n_small = ly.out;
          if (ly.gamma >= 0) {
            const int blocks = mp / kMlpColBlock;
            for (int f = 0; f < ly.out; ++f) {
              float g = 0.0f, be = 0.0f;
              for (int q = 0; q < blocks; ++q) {
                g += b.pg[static_cast<int64_t>(q) * ly.out + f];
                be += b.pb[static_cast<int64_t>(q) * ly.out + f];
              }
              grad[ly.gamma + f] = g;
              grad[ly.beta + f] = be;
            }
            n_small = 3 * static_cast<int64_t>(ly.out);  // b, gamma, beta are contiguous
          }
          if (train) k.adamw(params + ly.b, adam_m + ly.b, adam_v + ly.b, grad + ly.b, n_small, adam_p);
        }
        break;
      }
    }
  };
  ws->runner.run(pool, ws->phases, chunk);

  double sum = 0;
  for (int m = 0; m < M; ++m) sum += ws->loss[m];
  *loss_out = sum / M;
  (void)L;
  return Status::Ok();
}

}  // namespace

namespace {

// Where inference row m's input is: packed ([n, input_dim] x and [n, out_dim] residual) or
// gathered in place (x's first `head` columns from en[rows[m]], the rest and the residual from
// prior[rows[m]]).
struct FwdRows {
  const float* x;         // packed x, or en [*, head] when gathered
  const float* residual;  // packed residual, or prior [*, out_dim] (fusion)
  const int32_t* rows;    // nullptr: packed
  int head;               // columns of the input read from x (input_dim when packed)
  int out_dim;
  int64_t src(int64_t m) const { return rows ? rows[m] : m; }
  const float* x_row(int64_t m) const { return x + src(m) * head; }
  const float* res_row(int64_t m) const { return residual ? residual + src(m) * out_dim : nullptr; }
};

inline bool non_finite(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  return (b & 0x7f800000U) == 0x7f800000U;
}

// Inference over n rows in chunks of kInferRows, chunks spread over the pool's tasks (each task
// owns a slice of ws). A row's result depends only on the row (columns of a chunk never mix),
// so it is the same for any chunking, thread count or row order. With `scan`, the values are
// checked for NaN/Inf while they are copied in (no second pass): the first bad source row goes
// to *bad_row (the caller reports it; out is then unspecified).
void forward_rows(const MlpShape& s, const MlpKernels& k, ThreadPool& pool, ForwardWorkspace* ws, int tasks,
                  const float* params, const FwdRows& in, int64_t n, float* out, bool scan, int64_t* bad_row) {
  const int D = s.out_dim;
  const int L = static_cast<int>(s.layers.size());
  const int chunks = ceil_div(n, kInferRows);
  const size_t xt_len = (static_cast<size_t>(s.input_dim) * kInferRows + 15) & ~size_t{15};
  const size_t buf_len = static_cast<size_t>(s.max_width) * kInferRows;
  std::atomic<int> next{0};
  std::atomic<int64_t> first_bad{-1};
  pool.parallel_for(tasks, [&](int64_t task) {
    const FlushDenormals ftz;
    float* xt = ws->xt(static_cast<int>(task));
    float* bufs[2] = {xt + xt_len, xt + xt_len + buf_len};
    for (;;) {
      const int c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= chunks) break;
      const int64_t r0 = static_cast<int64_t>(c) * kInferRows;
      const int M = static_cast<int>(std::min<int64_t>(kInferRows, n - r0));
      const int mp = round_up(M, kMlpColBlock);
      int64_t bad = -1;  // first bad row of this chunk (rows are visited in order)
      for (int m = 0; m < M; ++m) {
        const float* xr = in.x_row(r0 + m);
        bool b = false;
        for (int j = 0; j < in.head; ++j) {
          xt[static_cast<int64_t>(j) * mp + m] = xr[j];
          if (scan) b |= non_finite(xr[j]);
        }
        if (in.head < s.input_dim) {  // gathered fusion input: the prior completes the row
          const float* tail = in.res_row(r0 + m);
          for (int j = in.head; j < s.input_dim; ++j) {
            xt[static_cast<int64_t>(j) * mp + m] = tail[j - in.head];
            if (scan) b |= non_finite(tail[j - in.head]);
          }
        } else if (scan && in.residual) {
          const float* rr = in.res_row(r0 + m);
          for (int j = 0; j < D; ++j) b |= non_finite(rr[j]);
        }
        if (b && bad < 0) bad = r0 + m;
      }
      if (bad >= 0) {
        int64_t cur = first_bad.load(std::memory_order_relaxed);
        while ((cur < 0 || bad < cur) && !first_bad.compare_exchange_weak(cur, bad, std::memory_order_relaxed)) {
        }
        continue;
      }
      for (int j = 0; j < s.input_dim; ++j)
        for (int m = M; m < mp; ++m) xt[static_cast<int64_t>(j) * mp + m] = 0.0f;
      const float* cur = xt;
      float* dst = nullptr;
      for (int l = 0; l < L; ++l) {
        const MlpLayer& ly = s.layers[l];
        dst = bufs[l & 1];
        k.gemm_bcast(params + ly.w, ly.in, 1, cur, ly.in, mp, params + ly.b, dst, ly.out);
        if (l + 1 < L) {
          HiddenFwdArgs a{};
          a.z = dst;
          a.n = ly.out;
          a.mp = mp;
          a.m0 = 0;
          a.m1 = mp;
          a.gamma = s.layer_norm ? params + ly.gamma : nullptr;
          a.beta = s.layer_norm ? params + ly.beta : nullptr;
          a.act = s.act;
          a.a = dst;
          k.hidden_fwd(&a);
        }
        cur = dst;
      }
      for (int m = 0; m < M; ++m) {
        float* o = out + (r0 + m) * D;
        const float* rr = in.res_row(r0 + m);
        for (int j = 0; j < D; ++j) {
          const float v = dst[static_cast<int64_t>(j) * mp + m];
          o[j] = rr ? v + rr[j] : v;
        }
      }
    }
  });
  *bad_row = first_bad.load();
}

}  // namespace

Status MlpCache::forward(const MlpShape& s, const MlpKernels& k, ThreadPool& pool, const float* params,
                         const float* x, const float* residual, int64_t n, float* out) {
  if (n < 0) return Status::Error(StatusCode::kInvalidArg, "row count out of range");
  if (n == 0) return Status::Ok();
  if (int64_t r = mlp_first_nonfinite_row(x, n, s.input_dim); r >= 0)
    return Status::Error(StatusCode::kNonFinite, "NaN or Infinity", r, "x");
  if (residual) {
    if (int64_t r = mlp_first_nonfinite_row(residual, n, s.out_dim); r >= 0)
      return Status::Error(StatusCode::kNonFinite, "NaN or Infinity", r, "residual");
  }
  const int chunks = ceil_div(n, kInferRows);
  const int tasks = std::min(pool.threads(), chunks);
  ForwardWorkspace* ws = nullptr;
  for (auto& w : fwd_)
    if (w->spec == s.spec && w->tasks >= tasks) ws = w.get();
  if (ws == nullptr) {
    for (auto it = fwd_.begin(); it != fwd_.end(); ++it) {
      if ((*it)->spec == s.spec) {
        fwd_.erase(it);
        break;
      }
    }
    evict_lru(&fwd_);
    auto fresh = std::make_unique<ForwardWorkspace>();
    if (!fresh->init(s, std::max(tasks, pool.threads()))) return Status::Error(StatusCode::kOutOfMemory, "out of memory for the forward workspace");
    ws = fresh.get();
    fwd_.push_back(std::move(fresh));
  }
  ws->used = ++tick_;
  int64_t bad = -1;
  forward_rows(s, k, pool, ws, tasks, params, FwdRows{x, residual, nullptr, s.input_dim, s.out_dim}, n, out, false, &bad);
  return Status::Ok();
}

Status mlp_forward_rows(const MlpShape& s, const MlpKernels& k, ThreadPool& pool, const float* params,
                        const MlpRowsInput& in, float* out) {
  const int en_dim = s.kind == 0 ? s.input_dim - s.out_dim : s.input_dim;
  if (in.en_dim != en_dim || (s.kind == 0) != (in.prior != nullptr))
    return Status::Error(StatusCode::kShape, "forward rows: en/prior widths do not make the net's input");
  if (in.n < 0) return Status::Error(StatusCode::kInvalidArg, "row count out of range");
  if (in.n == 0) return Status::Ok();
  if (in.rows) {
    for (int64_t i = 0; i < in.n; ++i) {
      if (in.rows[i] < 0 || in.rows[i] >= in.src_rows) return Status::Error(StatusCode::kInvalidArg, "forward rows: a row out of range", i, "rows");
    }
  } else if (in.n > in.src_rows) {
    return Status::Error(StatusCode::kShape, "forward rows: more rows than the matrices hold");
  }
  const int tasks = std::min(pool.threads(), ceil_div(in.n, kInferRows));
  ForwardWorkspace ws;  // this call's own (it may run on any thread, beside other calls)
  if (!ws.init(s, tasks)) return Status::Error(StatusCode::kOutOfMemory, "out of memory for the forward workspace");
  int64_t bad = -1;
  forward_rows(s, k, pool, &ws, tasks, params, FwdRows{in.en, in.prior, in.rows, en_dim, s.out_dim}, in.n, out, true, &bad);
  if (bad >= 0) {
    const bool in_en = mlp_first_nonfinite_row(in.en + (in.rows ? in.rows[bad] : bad) * en_dim, 1, en_dim) >= 0;
    return Status::Error(StatusCode::kNonFinite, "NaN or Infinity", in.rows ? in.rows[bad] : bad, in_en ? "en" : "prior");
  }
  return Status::Ok();
}

}  // namespace rapm
