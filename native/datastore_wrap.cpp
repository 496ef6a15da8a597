#include "datastore_wrap.h"

#include <cfloat>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>

#include "addon.h"
#include "core/priors.h"
#include "napi_util.h"
#include "search_worker.h"

namespace rapm {

namespace {

constexpr int64_t kMaxDim = 1 << 20;
constexpr int64_t kMaxRows = std::numeric_limits<int32_t>::max();

// Arguments of add/addSync: (keys [m,d], values [m,dv], groups [m], m).
struct AddArgs {
  int64_t m;
  Napi::Float32Array keys, values;
  Napi::Int32Array groups;
};

AddArgs read_add(const Napi::CallbackInfo& info, const Datastore& ds) {
  AddArgs a;
  a.m = int_arg(info, 3, "m", 0, kMaxRows - ds.size());
  a.keys = f32_arg(info, 0, "keys", a.m * ds.d());
  a.values = f32_arg(info, 1, "values", a.m * ds.dv());
  a.groups = i32_arg(info, 2, "groups", a.m);
  return a;
}

// Arguments of search/searchSync:
// (queries [b,d], b, k, tau, aggregate, excludeGroups [b] | null, prior [b,dv] | null, neighbors [b,k],
//  weights [b,k], similarities [b,k], rowBegin?, rowEnd?).
struct SearchArgs {
  int64_t b;
  SearchParams params;
  Napi::Float32Array queries, prior, weights, sims;
  Napi::Int32Array neighbors;
  Napi::Value exclude;
};

SearchArgs read_search(const Napi::CallbackInfo& info, const Snapshot& snap) {
  Napi::Env env = info.Env();
  SearchArgs a;
  a.b = int_arg(info, 1, "b", 0, kMaxRows);
  a.params.k = static_cast<int>(int_arg(info, 2, "k", 1, kMaxRows));
  if (info.Length() > 11 && !info[10].IsUndefined()) {
    a.params.row_begin = int_arg(info, 10, "rowBegin", 0, snap.n);
    a.params.row_end = int_arg(info, 11, "rowEnd", 0, snap.n);
  }
  const int64_t searched = (a.params.row_end < 0 ? snap.n : a.params.row_end) - a.params.row_begin;
  if (a.params.k > searched) {
    throw range_error(env, "RAPM_K_TOO_LARGE",
                      "k = " + std::to_string(a.params.k) + " but only " + std::to_string(searched) + " rows are searched");
  }
  const double tau = number_arg(info, 3, "tau");
  // tau is used as float32: it must be a normal float32 (src/settings.ts TAU_MIN/TAU_MAX), else
  // it rounds or flushes to 0 and the top weight becomes 0/0.
  if (!(tau >= static_cast<double>(FLT_MIN) && tau <= static_cast<double>(FLT_MAX))) {
    std::ostringstream msg;
    msg << "Expected tau in [FLT_MIN, FLT_MAX] (a normal float32 > 0) but received " << tau;
    throw range_error(env, "RAPM_INVALID_ARG", msg.str());
  }
  a.params.tau = static_cast<float>(tau);
  a.params.aggregate = static_cast<Aggregate>(int_arg(info, 4, "aggregate", 0, 2));
  a.queries = f32_arg(info, 0, "queries", a.b * snap.d);
  const int64_t k = a.params.k;
  if (info.Length() > 5 && !info[5].IsNull() && !info[5].IsUndefined()) {
    auto ex = i32_arg(info, 5, "excludeGroups", a.b);
    a.params.exclude_groups = ex.Data();
    a.exclude = ex;
  } else {
    a.exclude = env.Null();
  }
  // prior null: the caller wants the neighbour lists only (no blend of value rows).
  if (info.Length() > 6 && info[6].IsNull()) {
    a.prior = Napi::Float32Array();
  } else {
    a.prior = f32_arg(info, 6, "prior", a.b * snap.dv);
  }
  a.neighbors = i32_arg(info, 7, "neighbors", a.b * k);
  a.weights = f32_arg(info, 8, "weights", a.b * k);
  a.sims = f32_arg(info, 9, "similarities", a.b * k);
  return a;
}

}  // namespace

Napi::Function DatastoreWrap::Init(Napi::Env env) {
  return DefineClass(env, "Datastore",
                     {
                         InstanceMethod<&DatastoreWrap::Add>("add"),
                         InstanceMethod<&DatastoreWrap::AddSync>("addSync"),
                         InstanceMethod<&DatastoreWrap::Search>("search"),
                         InstanceMethod<&DatastoreWrap::SearchSync>("searchSync"),
                         InstanceAccessor<&DatastoreWrap::Size>("size"),
                         InstanceAccessor<&DatastoreWrap::MemoryBytes>("memoryBytes"),
                         InstanceAccessor<&DatastoreWrap::Dim>("dim"),
                         InstanceAccessor<&DatastoreWrap::ValueDim>("valueDim"),
                         InstanceAccessor<&DatastoreWrap::Bf16>("bf16"),
                         InstanceAccessor<&DatastoreWrap::SegmentCount>("_segmentCount"),
                         InstanceAccessor<&DatastoreWrap::FastPathStats>("fastPathStats"),
                         InstanceMethod<&DatastoreWrap::ExportRows>("exportRows"),
                         InstanceMethod<&DatastoreWrap::ImportRows>("importRows"),
                         InstanceMethod<&DatastoreWrap::BlendPriors>("blendPriors"),
                     });
}

DatastoreWrap::DatastoreWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DatastoreWrap>(info) {
  const int d = static_cast<int>(int_arg(info, 0, "d", 1, kMaxDim));
  const int dv = static_cast<int>(int_arg(info, 1, "dv", 1, kMaxDim));
  // precision: 0 f32, 1 bf16, 2 int8 (src/retrieval/datastore.ts maps the names); a boolean
  // (true = bf16) is still accepted.
  if (info.Length() < 3 || !(info[2].IsBoolean() || info[2].IsNumber())) {
    throw type_error(info.Env(), "RAPM_TYPE", "Expected boolean (bf16) or integer (precision) for precision");
  }
  const int precision = info[2].IsBoolean() ? (info[2].As<Napi::Boolean>().Value() ? 1 : 0)
                                            : static_cast<int>(int_arg(info, 2, "precision", 0, 2));
  // fastPath (optional): 0 off, 1 bf16, 2 int8 (src/retrieval/datastore.ts maps the names).
  const int fast = info.Length() > 3 && !info[3].IsUndefined() ? static_cast<int>(int_arg(info, 3, "fastPath", 0, 2)) : 0;
  if (precision == 2 && d > kMaxI8Dim) {
    throw range_error(info.Env(), "RAPM_INVALID_ARG", "precision 'int8' needs a key width d <= " + std::to_string(kMaxI8Dim) +
                                                          " but d = " + std::to_string(d));
  }
  if (precision == 2 && fast == 1) {
    throw range_error(info.Env(), "RAPM_INVALID_ARG",
                      "fastPath 'bf16' needs f32 or bf16 keys; an int8 datastore takes fastPath 'int8' or 'off'");
  }
  store_ = std::make_shared<Datastore>(d, dv, static_cast<KeyPrecision>(precision), static_cast<FastPath>(fast));
}

// { queries, redone, candidates, reranked }: queries searched with the fast path, how many of
// them the exact scan redid because the first pass could not prove its candidates held the
// exact top-K, the candidates the first pass kept for the others (summed), and how many of
// those the exact re-rank dotted (all in one round when candidates are dense over the store,
// fewer in two rounds otherwise: core/search.cpp).
Napi::Value DatastoreWrap::FastPathStats(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  const FastPathCounters& c = store_->fast_counters();
  o.Set("queries", Napi::Number::New(info.Env(), static_cast<double>(c.queries.load())));
  o.Set("redone", Napi::Number::New(info.Env(), static_cast<double>(c.redone.load())));
  o.Set("candidates", Napi::Number::New(info.Env(), static_cast<double>(c.candidates.load())));
  o.Set("reranked", Napi::Number::New(info.Env(), static_cast<double>(c.reranked.load())));
  return o;
}

Napi::Value DatastoreWrap::AddSync(const Napi::CallbackInfo& info) {
  AddArgs a = read_add(info, *store_);
  Status st = store_->add(a.keys.Data(), a.values.Data(), a.groups.Data(), a.m, *Addon::of(info.Env()).get_pool());
  if (!st.ok()) throw status_error(info.Env(), st, "keys/values");
  return info.Env().Undefined();
}

Napi::Value DatastoreWrap::Add(const Napi::CallbackInfo& info) {
  AddArgs a = read_add(info, *store_);
  auto store = store_;
  auto pool = Addon::of(info.Env()).get_pool();
  const float* keys = a.keys.Data();
  const float* values = a.values.Data();
  const int32_t* groups = a.groups.Data();
  const int64_t m = a.m;
  auto* w = new PromiseWorker(
      info.Env(), [=] { return store->add(keys, values, groups, m, *pool); }, "keys/values");
  w->Pin(a.keys);
  w->Pin(a.values);
  w->Pin(a.groups);
  w->Pin(info.This());
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value DatastoreWrap::SearchSync(const Napi::CallbackInfo& info) {
  Addon& addon = Addon::of(info.Env());
  Snapshot snap = store_->snapshot();
  SearchArgs a = read_search(info, snap);
  Status st = search(snap, *addon.kernels.load(), *addon.get_pool(), a.queries.Data(), a.b, a.params,
                     SearchOutputs{a.prior.Data(), a.neighbors.Data(), a.weights.Data(), a.sims.Data()});
  if (!st.ok()) throw status_error(info.Env(), st, "queries");
  return info.Env().Undefined();
}

Napi::Value DatastoreWrap::Search(const Napi::CallbackInfo& info) {
  Addon& addon = Addon::of(info.Env());
  auto snap = std::make_shared<Snapshot>(store_->snapshot());
  SearchArgs a = read_search(info, *snap);
  const Kernels* kern = addon.kernels.load();
  auto pool = addon.get_pool();
  const float* q = a.queries.Data();
  const int64_t b = a.b;
  const SearchParams params = a.params;
  const SearchOutputs out{a.prior.Data(), a.neighbors.Data(), a.weights.Data(), a.sims.Data()};
  auto* w = new PromiseWorker(
      info.Env(), [=] { return search(*snap, *kern, *pool, q, b, params, out); }, "queries");
  w->Pin(a.queries);
  w->Pin(a.exclude);
  w->Pin(a.prior);
  w->Pin(a.neighbors);
  w->Pin(a.weights);
  w->Pin(a.sims);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value DatastoreWrap::Size(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(store_->size()));
}
Napi::Value DatastoreWrap::MemoryBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(store_->memory_bytes()));
}
Napi::Value DatastoreWrap::Dim(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), store_->d()); }
Napi::Value DatastoreWrap::ValueDim(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), store_->dv());
}
Napi::Value DatastoreWrap::Bf16(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), store_->bf16());
}
Napi::Value DatastoreWrap::SegmentCount(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(store_->snapshot().segments.size()));
}

// Keys in stored form: Float32Array for an f32 store, Uint16Array (bf16 bits) for a bf16 one.
// `nullable`: null/undefined is accepted and means "skip".
namespace {
struct StoredKeys {
  float* f32 = nullptr;
  uint16_t* bf16 = nullptr;
  int8_t* i8 = nullptr;  // int8 store: codes; scales come as their own argument
  Napi::Value pin;
};
StoredKeys stored_keys_arg(const Napi::CallbackInfo& info, size_t i, const char* name, const Datastore& ds, int64_t len,
                           bool nullable) {
  StoredKeys k;
  if (nullable && (info.Length() <= i || info[i].IsNull() || info[i].IsUndefined())) return k;
  if (ds.int8()) {
    auto a = typed_arg<int8_t>(info, i, name, napi_int8_array, "Int8Array (int8 codes)", len);
    k.i8 = a.Data();
    k.pin = a;
  } else if (ds.bf16()) {
    auto a = typed_arg<uint16_t>(info, i, name, napi_uint16_array, "Uint16Array (bf16 bits)", len);
    k.bf16 = a.Data();
    k.pin = a;
  } else {
    auto a = f32_arg(info, i, name, len);
    k.f32 = a.Data();
    k.pin = a;
  }
  return k;
}
}  // namespace

// exportRows(rowBegin, rowEnd, keysOut | null, valuesOut | null, groupsOut | null, scalesOut | null):
// rows [rowBegin, rowEnd) in stored form, row-major (an int8 store: codes in keysOut, the
// per-row scales in scalesOut [m]). Sync (a memory copy of the block).
Napi::Value DatastoreWrap::ExportRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t n = store_->size();
  const int64_t rb = int_arg(info, 0, "rowBegin", 0, n);
  const int64_t re = int_arg(info, 1, "rowEnd", rb, n);
  const int64_t m = re - rb;
  StoredKeys keys = stored_keys_arg(info, 2, "keysOut", *store_, m * store_->d(), true);
  float* values = nullptr;
  int32_t* groups = nullptr;
  if (info.Length() > 3 && !info[3].IsNull() && !info[3].IsUndefined()) values = f32_arg(info, 3, "valuesOut", m * store_->dv()).Data();
  if (info.Length() > 4 && !info[4].IsNull() && !info[4].IsUndefined()) groups = i32_arg(info, 4, "groupsOut", m).Data();
  float* scales = nullptr;
  if (info.Length() > 5 && !info[5].IsNull() && !info[5].IsUndefined()) {
    if (!store_->int8()) throw type_error(env, "RAPM_TYPE", "scalesOut is for an int8 datastore only");
    scales = f32_arg(info, 5, "scalesOut", m).Data();
  }
  Status st = store_->export_rows(rb, re, keys.f32, keys.bf16, values, groups, *Addon::of(env).get_pool(), keys.i8, scales);
  if (!st.ok()) throw status_error(env, st, "rows");
  return env.Undefined();
}

// importRows(keys [m,d] stored form, values [m,dv], groups [m], m, scales [m] (int8 store only)):
// appends rows that are already normalised (see Datastore::import_rows). Sync.
Napi::Value DatastoreWrap::ImportRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t m = int_arg(info, 3, "m", 0, kMaxRows - store_->size());
  StoredKeys keys = stored_keys_arg(info, 0, "keys", *store_, m * store_->d(), false);
  auto values = f32_arg(info, 1, "values", m * store_->dv());
  auto groups = i32_arg(info, 2, "groups", m);
  const float* scales = store_->int8() ? f32_arg(info, 4, "scales", m).Data() : nullptr;
  Status st = store_->import_rows(keys.f32, keys.bf16, values.Data(), groups.Data(), m, *Addon::of(env).get_pool(), keys.i8,
                                  scales);
  if (!st.ok()) throw status_error(env, st, "keys/values");
  return env.Undefined();
}

// blendPriors(rows [n,k], weights [n,k], values [m,dv], n, k, prior [n,dv]): the priors of n
// queries from their neighbour lists (core/priors.h), on the calling thread and the pool. The
// values are the caller's (any m rows of this store's dv columns), not the stored ones. Sync.
Napi::Value DatastoreWrap::BlendPriors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int dv = store_->dv();
  const int64_t n = int_arg(info, 3, "n", 0, kMaxRows);
  const int k = static_cast<int>(int_arg(info, 4, "k", 1, kMaxRows));
  auto rows = i32_arg(info, 0, "rows", n * k);
  auto weights = f32_arg(info, 1, "weights", n * k);
  if (info.Length() <= 2 || !info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw type_error(env, "RAPM_TYPE", "Expected Float32Array for values");
  }
  auto values = info[2].As<Napi::Float32Array>();
  if (values.ElementLength() % static_cast<size_t>(dv) != 0) {
    throw range_error(env, "RAPM_SHAPE_MISMATCH", "Expected values of a multiple of " + std::to_string(dv) +
                                                      " floats (rows of dv) but received " + std::to_string(values.ElementLength()));
  }
  const int64_t m = static_cast<int64_t>(values.ElementLength() / static_cast<size_t>(dv));
  auto prior = f32_arg(info, 5, "prior", n * dv);
  const int32_t* r = rows.Data();
  for (int64_t i = 0; i < n * k; ++i) {
    if (r[i] < 0 || r[i] >= m) {
      throw range_error(env, "RAPM_INVALID_ARG", "Expected rows[" + std::to_string(i) + "] between 0 and " + std::to_string(m - 1) +
                                                     " (rows of values) but received " + std::to_string(r[i]));
    }
  }
  blend_priors(r, weights.Data(), values.Data(), n, k, dv, prior.Data(), *Addon::of(env).get_pool());
  return env.Undefined();
}

}  // namespace rapm
