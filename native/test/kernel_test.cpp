// Standalone kernel test: every SIMD level this CPU and build can run, checked against the
// scalar level and against a double-precision reference, over the usual dimensions.
// Plain C++17 over native/core and native/kernels (no Node, no N-API), so the same program
// runs natively on x86-64 (scalar, avx2, avx512) and cross-compiled for aarch64 under
// qemu-user (scalar, neon). Built and run by scripts/kernel-test.sh.
//
//   rapm_kernel_test [--quick] [--dims 1,3,7] [--level NAME]...
//
// --quick uses smaller row and query counts (for qemu), never fewer dimensions. Prints one
// line per level ("neon: 1234 checks passed") and exits 1 on any failure, 2 on bad usage.
//
// Tolerances are proportional to d: a d-term float dot product of unit vectors is within
// d * FLT_EPSILON of the exact value (|sum error| <= d u sum |q_i k_i|, u = FLT_EPSILON / 2).
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "../core/candidates.h"
#include "../core/cpu.h"
#include "../core/datastore.h"
#include "../core/mlp.h"
#include "../core/select.h"
#include "../kernels/kernels.h"
#include "../kernels/mlp_kernels.h"

namespace {

using namespace rapm;

constexpr double kEps = FLT_EPSILON;
const int kAllDims[] = {1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 101, 103, 1024};

// ------------------------------------------------------------------ tally and reporting

struct Tally {
  std::string level;
  int64_t passed = 0, failed = 0;
};

Tally* g_tally = nullptr;  // the level being checked
std::string g_where;       // what is being checked (printed with a failure)
int g_printed = 0;         // failures printed so far (the rest are only counted)

void check(bool ok, const char* fmt, ...) {
  if (ok) {
    ++g_tally->passed;
    return;
  }
  ++g_tally->failed;
  if (g_printed++ >= 40) return;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "FAIL [%s] %s: %s\n", g_tally->level.c_str(), g_where.c_str(), msg);
}

// One check: |got[i] - want[i]| <= tol[i] for all i (tol may be a single value when tol_n == 1).
template <typename G, typename W>
void check_close(const char* name, const G* got, const W* want, size_t n, const double* tol, size_t tol_n) {
  size_t worst = 0;
  double worst_excess = 0;
  bool ok = true;
  for (size_t i = 0; i < n; ++i) {
    const double t = tol[tol_n == 1 ? 0 : i];
    const double diff = std::fabs(static_cast<double>(got[i]) - static_cast<double>(want[i]));
    if (!(diff <= t)) {  // NaN fails too
      const double excess = std::isnan(diff) ? INFINITY : diff / (t > 0 ? t : 1e-300);
      if (ok || excess > worst_excess) {
        worst = i;
        worst_excess = excess;
      }
      ok = false;
    }
  }
  if (ok) {
    check(true, "");
    return;
  }
  check(false, "%s[%zu] = %.9g, want %.9g (tol %.3g)", name, worst, static_cast<double>(got[worst]),
        static_cast<double>(want[worst]), tol[tol_n == 1 ? 0 : worst]);
}
template <typename G, typename W>
void check_close(const char* name, const G* got, const W* want, size_t n, double tol) {
  check_close(name, got, want, n, &tol, 1);
}
template <typename G, typename W>
void check_close(const char* name, const std::vector<G>& got, const std::vector<W>& want, const std::vector<double>& tol) {
  check_close(name, got.data(), want.data(), got.size(), tol.data(), tol.size());
}

// ------------------------------------------------------------------ data

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {  // splitmix64
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
  float normal() {
    const double u1 = uniform() + 1e-300, u2 = uniform();
    return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }
  std::vector<float> normals(size_t n, float scale = 1.0f) {
    std::vector<float> v(n);
    for (float& x : v) x = scale * normal();
    return v;
  }
};

struct Sizes {
  int n;  // datastore rows
  int b;  // queries
};

// ------------------------------------------------------------------ search

struct SearchCase {
  const char* name;
  int k;        // <= 0: all searched rows
  Aggregate agg;
  bool exclude;
  bool subrange;
};

struct SearchResult {
  std::vector<float> prior, weights, sims;
  std::vector<int32_t> ids;
  Status st;
};

SearchResult run_search(const Snapshot& snap, const Kernels& kern, ThreadPool& pool, const std::vector<float>& queries,
                        int b, const SearchParams& p) {
  SearchResult r;
  r.prior.assign(static_cast<size_t>(b) * snap.dv, NAN);
  r.weights.assign(static_cast<size_t>(b) * p.k, NAN);
  r.sims.assign(static_cast<size_t>(b) * p.k, NAN);
  r.ids.assign(static_cast<size_t>(b) * p.k, -7);
  r.st = search(snap, kern, pool, queries.data(), b, p, SearchOutputs{r.prior.data(), r.ids.data(), r.weights.data(), r.sims.data()});
  return r;
}

struct Ranked {
  double sim;
  int32_t id;
};

// Clusters of the reference ranking: consecutive entries closer than `gap` share a cluster.
// Entries of a cluster whose exact similarities are all equal (identical keys) must come back
// in ascending id order; entries of a cluster that is clearly separated must come back as is.
void check_query(const std::vector<Ranked>& ref, const float* sims, const int32_t* ids,
                 const float* weights, const float* prior, int k, double tol, const SearchCase& sc, double tau,
                 const std::vector<float>& values, int dv, const std::vector<double>& exact_of_row,
                 int64_t rb, int64_t re, const std::vector<int32_t>& groups, int32_t excl) {
  // 1. ids: in range, distinct, not excluded.
  bool ids_ok = true;
  std::vector<int32_t> sorted(ids, ids + k);
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < k; ++i) {
    ids_ok = ids_ok && ids[i] >= rb && ids[i] < re && (excl < 0 || groups[ids[i]] != excl);
    if (i > 0) ids_ok = ids_ok && sorted[i] != sorted[i - 1];
  }
  check(ids_ok, "ids out of range, repeated or excluded (first %d, group %d excluded)", ids[0], excl);
  if (!ids_ok) return;
  // 2. each similarity is that row's exact similarity.
  std::vector<double> exact(k);
  for (int i = 0; i < k; ++i) exact[i] = exact_of_row[ids[i]];
  check_close("sim vs exact", sims, exact.data(), k, tol);
  // 3. best first; equal similarities in ascending id order.
  bool order_ok = true;
  for (int i = 0; i + 1 < k; ++i)
    order_ok = order_ok && (sims[i] > sims[i + 1] || (sims[i] == sims[i + 1] && ids[i] < ids[i + 1]));
  check(order_ok, "not sorted best first with lower id first on ties");
  // 4. the i-th best value matches the reference's i-th best (order statistics move by <= tol).
  std::vector<double> ref_sims(k);
  for (int i = 0; i < k; ++i) ref_sims[i] = ref[i].sim;
  check_close("i-th best sim vs reference", sims, ref_sims.data(), k, tol);
  // 5. ids: per reference cluster (entries within 2 tol), the same ids wherever that is decided.
  const double gap = 2 * tol;
  bool ids_match = true;
  int bad_pos = -1;
  size_t c0 = 0;
  while (c0 < static_cast<size_t>(k)) {
    size_t c1 = c0 + 1;
    while (c1 < ref.size() && ref[c1 - 1].sim - ref[c1].sim <= gap) ++c1;
    bool all_equal = true;
    for (size_t i = c0 + 1; i < c1; ++i) all_equal = all_equal && ref[i].sim == ref[c0].sim;
    const size_t end = std::min(c1, static_cast<size_t>(k));
    if (all_equal || c1 <= static_cast<size_t>(k)) {
      // Exact ties (identical keys: every level computes identical floats, so the lower id
      // wins), or a whole cluster inside the top k: the same set, and for ties the same order.
      std::vector<int32_t> want, got;
      for (size_t i = c0; i < end; ++i) {
        want.push_back(ref[i].id);
        got.push_back(ids[i]);
      }
      if (!all_equal) {
        // A cluster of near-equal (not identical) similarities: any order inside, same members.
        std::sort(want.begin(), want.end());
        std::sort(got.begin(), got.end());
      }
      if (got != want) {
        ids_match = false;
        bad_pos = static_cast<int>(c0);
      }
    } else {
      // A near-tie straddling position k: the kept ones must come from that cluster.
      for (size_t i = c0; i < end; ++i) {
        bool member = false;
        for (size_t j = c0; j < c1; ++j) member = member || ref[j].id == ids[i];
        if (!member) {
          ids_match = false;
          bad_pos = static_cast<int>(i);
        }
      }
    }
    c0 = c1;
  }
  check(ids_match, "ids differ from the reference ranking at position %d (got %d, want %d)", bad_pos,
        bad_pos >= 0 ? ids[bad_pos] : -1, bad_pos >= 0 ? ref[bad_pos].id : -1);
  // 6. weights from the returned similarities, and the prior from weights and values.
  std::vector<double> w(k);
  if (sc.agg == Aggregate::kSoftmax) {
    double z = 0;
    for (int i = 0; i < k; ++i) z += std::exp((static_cast<double>(sims[i]) - sims[0]) / tau);
    for (int i = 0; i < k; ++i) w[i] = std::exp((static_cast<double>(sims[i]) - sims[0]) / tau) / z;
  } else {
    for (int i = 0; i < k; ++i) w[i] = sc.agg == Aggregate::kMean ? 1.0 / k : (i == 0 ? 1.0 : 0.0);
  }
  check_close("weights", weights, w.data(), k, 2e-7);
  std::vector<double> pr(dv, 0.0), ptol(dv, 1e-6);
  for (int i = 0; i < k; ++i) {
    for (int j = 0; j < dv; ++j) {
      pr[j] += w[i] * values[static_cast<size_t>(ids[i]) * dv + j];
      ptol[j] += 4 * kEps * (k + 1) * std::fabs(w[i] * values[static_cast<size_t>(ids[i]) * dv + j]);
    }
  }
  check_close("prior", prior, pr.data(), dv, ptol.data(), ptol.size());
}

void test_search(const std::vector<const Kernels*>& levels, std::vector<Tally>& tallies, int d, KeyPrecision prec,
                 const Sizes& sz, ThreadPool& pool1, ThreadPool& pool3, uint64_t seed) {
  const bool bf16 = prec == KeyPrecision::kBf16, int8 = prec == KeyPrecision::kInt8;
  const int n = sz.n, b = sz.b, dv = 5;
  Rng rng(seed);
  std::vector<float> keys = rng.normals(static_cast<size_t>(n) * d);
  // Identical keys (exact ties in every level): within a segment and across segments.
  const std::pair<int, int> dups[] = {{1, n - 3}, {4, 9}, {4, 10}, {20, n / 2 + 1}};
  for (auto [src, dst] : dups) std::copy_n(&keys[static_cast<size_t>(src) * d], d, &keys[static_cast<size_t>(dst) * d]);
  std::vector<float> values = rng.normals(static_cast<size_t>(n) * dv);
  std::vector<int32_t> groups(n);
  for (int r = 0; r < n; ++r) groups[r] = r / 2;  // pairs of rows share an exclusion group

  Datastore ds(d, dv, prec);
  // Three adds: three segments whose bases are not panel-aligned.
  const int cut1 = n * 55 / 100, cut2 = n * 85 / 100;
  const int cuts[4] = {0, cut1, cut2, n};
  for (int s = 0; s < 3; ++s) {
    const int64_t m = cuts[s + 1] - cuts[s];
    Status st = ds.add(&keys[static_cast<size_t>(cuts[s]) * d], &values[static_cast<size_t>(cuts[s]) * dv],
                       &groups[cuts[s]], m, pool3);
    if (!st.ok()) {
      g_where = "search setup d=" + std::to_string(d);
      g_tally = &tallies[0];
      check(false, "add failed: %s", st.message.c_str());
      return;
    }
  }
  const Snapshot snap = ds.snapshot();
  // The stored keys (normalised, bf16-rounded for bf16, scale * codes for int8) are what every
  // level must agree on.
  std::vector<float> stored(static_cast<size_t>(n) * d);
  if (int8) {
    std::vector<int8_t> codes(static_cast<size_t>(n) * d);
    std::vector<float> scales(n);
    ds.export_rows(0, n, nullptr, nullptr, nullptr, nullptr, pool3, codes.data(), scales.data());
    for (size_t i = 0; i < codes.size(); ++i) stored[i] = scales[i / d] * codes[i];
  } else if (bf16) {
    std::vector<uint16_t> bits(static_cast<size_t>(n) * d);
    ds.export_rows(0, n, nullptr, bits.data(), nullptr, nullptr, pool3);
    for (size_t i = 0; i < bits.size(); ++i) {
      const uint32_t u = static_cast<uint32_t>(bits[i]) << 16;
      std::memcpy(&stored[i], &u, sizeof u);
    }
  } else {
    ds.export_rows(0, n, stored.data(), nullptr, nullptr, nullptr, pool3);
  }

  // Queries: the first half are copies of stored rows (self-similarity 1, duplicates tie at
  // the top), the rest random. Query 0 copies row 1, which has an identical twin (n - 3).
  std::vector<float> queries = rng.normals(static_cast<size_t>(b) * d);
  std::vector<int32_t> self(b, -1), excl(b, -1);
  for (int q = 0; q < b / 2; ++q) {
    self[q] = q == 0 ? 1 : (q * 37 + 5) % n;
    std::copy_n(&keys[static_cast<size_t>(self[q]) * d], d, &queries[static_cast<size_t>(q) * d]);
    excl[q] = groups[self[q]];
  }
  // Exact similarities: queries normalised in double, dotted with the stored keys in double.
  std::vector<double> exact(static_cast<size_t>(b) * n);
  for (int q = 0; q < b; ++q) {
    const float* x = &queries[static_cast<size_t>(q) * d];
    double s2 = 0;
    for (int j = 0; j < d; ++j) s2 += static_cast<double>(x[j]) * x[j];
    const double inv = 1.0 / std::sqrt(s2);
    for (int r = 0; r < n; ++r) {
      double s = 0;
      for (int j = 0; j < d; ++j) s += x[j] * inv * stored[static_cast<size_t>(r) * d + j];
      exact[static_cast<size_t>(q) * n + r] = s;
    }
  }
  const double tol = (d + 4) * kEps;
  const double tau = 0.05;
  const SearchCase cases[] = {
      {"k=5 softmax", 5, Aggregate::kSoftmax, false, false},
      {"k=17 softmax leave-one-out", 17, Aggregate::kSoftmax, true, false},
      {"k=3 mean rows [n/4, n-9)", 3, Aggregate::kMean, false, true},
      {"k=1 top1 leave-one-out", 1, Aggregate::kTop1, true, false},
      {"k=all softmax", 0, Aggregate::kSoftmax, false, false},
  };
  const std::string what = std::string("search ") + (int8 ? "int8" : bf16 ? "bf16" : "f32") + " keys d=" + std::to_string(d);
  for (const SearchCase& sc : cases) {
    SearchParams p;
    p.tau = static_cast<float>(tau);
    p.aggregate = sc.agg;
    if (sc.subrange) {
      p.row_begin = n / 4;
      p.row_end = n - 9;
    }
    const int64_t rb = p.row_begin, re = p.row_end < 0 ? n : p.row_end;
    p.k = sc.k > 0 ? sc.k : static_cast<int>(re - rb);
    p.exclude_groups = sc.exclude ? excl.data() : nullptr;
    // Reference ranking per query: exact similarity descending, lower id first on ties.
    std::vector<std::vector<Ranked>> ref(b);
    for (int q = 0; q < b; ++q) {
      for (int64_t r = rb; r < re; ++r) {
        if (sc.exclude && excl[q] >= 0 && groups[r] == excl[q]) continue;
        ref[q].push_back({exact[static_cast<size_t>(q) * n + r], static_cast<int32_t>(r)});
      }
      std::sort(ref[q].begin(), ref[q].end(),
                [](const Ranked& a, const Ranked& c) { return a.sim > c.sim || (a.sim == c.sim && a.id < c.id); });
    }
    SearchResult scalar;
    for (size_t li = 0; li < levels.size(); ++li) {
      const Kernels* kern = levels[li];
      g_tally = &tallies[li];
      g_where = what + " " + sc.name;
      SearchResult got = run_search(snap, *kern, pool3, queries, b, p);
      check(got.st.ok(), "search failed: %s", got.st.message.c_str());
      if (!got.st.ok()) continue;
      for (int q = 0; q < b; ++q) {
        const size_t o = static_cast<size_t>(q) * p.k;
        const int32_t ex = sc.exclude ? excl[q] : -1;
        std::vector<double> exact_row(exact.begin() + static_cast<size_t>(q) * n, exact.begin() + static_cast<size_t>(q + 1) * n);
        check_query(ref[q], &got.sims[o], &got.ids[o], &got.weights[o], &got.prior[static_cast<size_t>(q) * dv],
                    p.k, tol, sc, tau, values, dv, exact_row, rb, re, groups, ex);
        if (sc.exclude && self[q] >= 0) {
          bool no_self = true;
          for (int i = 0; i < p.k; ++i) no_self = no_self && got.ids[o + i] != self[q];
          check(no_self, "leave-one-out returned the query's own row %d", self[q]);
        }
      }
      // The same level on one thread (no key split, one heap per query) gives identical bits.
      SearchResult one = run_search(snap, *kern, pool1, queries, b, p);
      check(one.st.ok() && one.ids == got.ids &&
                std::memcmp(one.sims.data(), got.sims.data(), got.sims.size() * sizeof(float)) == 0 &&
                std::memcmp(one.prior.data(), got.prior.data(), got.prior.size() * sizeof(float)) == 0,
            "1 thread and 3 threads disagree");
      // Both top-K strategies (core/select.h: reservoir, whole rows) give identical bits, on 3
      // threads and on 1 (whole rows need one key part per query: on 3 threads these small
      // stores are split by keys too, so only the 1-thread run keeps whole rows; there levels
      // with Kernels::scan_rows store them from the kernel, core/search.cpp).
      for (SelectMode mode : {SelectMode::kReservoir, SelectMode::kRow}) {
        for (ThreadPool* pool : {&pool3, &pool1}) {
          set_select_mode(mode);
          SearchResult forced = run_search(snap, *kern, *pool, queries, b, p);
          set_select_mode(SelectMode::kAuto);
          check(forced.st.ok() && forced.ids == got.ids &&
                    std::memcmp(forced.sims.data(), got.sims.data(), got.sims.size() * sizeof(float)) == 0 &&
                    std::memcmp(forced.prior.data(), got.prior.data(), got.prior.size() * sizeof(float)) == 0,
                "%s selection on %d thread(s) disagrees with the default", mode == SelectMode::kRow ? "whole-row" : "reservoir",
                pool->threads());
        }
      }
      if (kern->level == SimdLevel::kScalar) {
        scalar = got;
      } else if (!scalar.sims.empty()) {
        // Against the scalar level directly: similarities within 2 tol position by position,
        // and the prior within what those differences move softmax(sim / tau) by.
        check_close("sims vs scalar", got.sims.data(), scalar.sims.data(), got.sims.size(), 2 * tol);
        double vmax = 0;
        for (float v : values) vmax = std::max(vmax, static_cast<double>(std::fabs(v)));
        const double prior_tol = 1e-5 + (sc.agg == Aggregate::kSoftmax ? 8 * tol / tau : 0) * vmax;
        bool same_ids_ok = true;
        for (int q = 0; q < b; ++q) {
          // Where scalar's ranking has clear gaps (> 2 tol) everywhere, ids are identical.
          const size_t o = static_cast<size_t>(q) * p.k;
          bool clear = true;
          for (int i = 0; i + 1 < p.k; ++i) clear = clear && scalar.sims[o + i] - scalar.sims[o + i + 1] > 2 * tol;
          if (clear) same_ids_ok = same_ids_ok && std::equal(&got.ids[o], &got.ids[o] + p.k, &scalar.ids[o]);
        }
        check(same_ids_ok, "ids differ from scalar where scalar's ranking is unambiguous");
        if (got.ids == scalar.ids) check_close("prior vs scalar", got.prior.data(), scalar.prior.data(), got.prior.size(), prior_tol);
      }
    }
  }
}

// select_row (core/select.h) against a full sort by (similarity desc, index asc), on rows
// built to break it: ties straddling the k-th place, -0 and +0, -inf (excluded) rows, fewer
// finite rows than k, a single value everywhere, a few levels only (large tie blocks that
// force the nth_element fallback), skewed and two-peaked distributions, long rows.
// Every level's passes (kernels.h RowSelect) are checked, through select_row and each pass
// alone against the portable one.
void test_select_row(const std::vector<const Kernels*>& levels) {
  g_where = "select_row";
  Rng rng(4242);
  const float ninf = -std::numeric_limits<float>::infinity();
  SelectScratch scratch;
  std::vector<const RowSelect*> all_ops;
  for (const Kernels* kl : levels)
    if (std::find(all_ops.begin(), all_ops.end(), kl->row_select) == all_ops.end()) all_ops.push_back(kl->row_select);
  int cases = 0;
  auto run = [&](const std::vector<float>& row, int k, const char* what) {
    for (size_t oi = 0; oi < all_ops.size(); ++oi) {
    const RowSelect* ops = all_ops[oi];
    const int64_t n = static_cast<int64_t>(row.size());
    const int64_t base = 1000;
    std::vector<TopKEntry> want;
    for (int64_t i = 0; i < n; ++i)
      if (row[i] != ninf) want.push_back(topk_pack(row[i], static_cast<int32_t>(base + i)));
    std::sort(want.begin(), want.end(), std::greater<TopKEntry>());
    if (static_cast<int64_t>(want.size()) > k) want.resize(static_cast<size_t>(k));
    std::vector<TopKEntry> got(static_cast<size_t>(k) + 1, 0);
    const int m = select_row(*ops, row.data(), n, k, base, got.data(), scratch);
    got.resize(static_cast<size_t>(std::max(m, 0)));
    check(got == want, "%s (n=%lld k=%d, passes %s): %d entries, want %zu, or a different order", what,
          static_cast<long long>(n), k, ops == &kRowSelectPortable ? "portable" : "level's own", m, want.size());
    ++cases;
    }
  };
  for (int64_t n : {1, 7, 16, 17, 100, 2316, 20000}) {
    for (int k : {1, 5, 70, 300}) {
      std::vector<float> row(static_cast<size_t>(n));
      for (float& x : row) x = 0.05f * rng.normal();
      run(row, k, "normal");
      for (float& x : row) x = std::round(x * 40.0f) / 40.0f;  // a few levels: big tie blocks, zeros
      run(row, k, "few levels");
      for (float& x : row) x = rng.uniform() < 0.5 ? 0.9f + 0.01f * rng.normal() : 0.1f * rng.normal();
      run(row, k, "two peaks");
      for (float& x : row) x = static_cast<float>(std::exp(3.0 * rng.normal()) * 1e-3);
      run(row, k, "skewed");
      for (float& x : row) x = rng.uniform() < 0.3 ? ninf : 0.2f * rng.normal();
      run(row, k, "excluded rows");
      for (float& x : row) x = 0.25f;
      run(row, k, "all equal");
      for (size_t i = 0; i < row.size(); ++i)
        row[i] = (i % 3 == 0) ? -0.0f : (i % 3 == 1 ? 0.0f : -0.01f * static_cast<float>(i % 7));
      run(row, k, "signed zeros");
      // Ties straddling the k-th place: the top k - 2 distinct, then 5 equal values.
      for (float& x : row) x = -1.0f + 0.1f * static_cast<float>(rng.uniform());
      for (int i = 0; i < k + 3 && i < n; ++i) row[static_cast<size_t>((i * 7919) % n)] = i < k - 2 ? 1.0f - 0.001f * i : 0.5f;
      run(row, k, "ties at the k-th place");
    }
  }
  std::vector<float> few = {ninf, 0.3f, ninf, -0.2f};
  run(few, 3, "fewer finite rows than k");
  run(std::vector<float>(40, ninf), 2, "no finite row");
  check(cases > 200, "select_row ran %d cases", cases);

  // Each pass alone against the portable one: lengths around the 16- and 64-wide blocks,
  // thresholds equal to entries, signed zeros, -inf; rank on padded candidate lists with ties.
  int pass_cases = 0;
  for (const RowSelect* ops : all_ops) {
    for (int64_t n : {0, 1, 3, 15, 16, 17, 31, 63, 64, 65, 100, 127, 128, 129, 2316}) {
      std::vector<float> row(static_cast<size_t>(n));
      for (size_t i = 0; i < row.size(); ++i) {
        const double u = rng.uniform();
        row[i] = u < 0.1 ? ninf : u < 0.2 ? (i % 2 ? 0.0f : -0.0f) : std::round(rng.normal() * 8.0f) / 8.0f;
      }
      for (float t : {ninf, -FLT_MAX, -0.0f, 0.0f, 0.125f, -0.5f, 1.0f, 3.0f, std::numeric_limits<float>::infinity()}) {
        const int64_t want_c = kRowSelectPortable.count_at_least(row.data(), n, t);
        check(ops->count_at_least(row.data(), n, t) == want_c, "count_at_least n=%lld t=%g", static_cast<long long>(n), t);
        std::vector<uint64_t> want_i(static_cast<size_t>(n) + 16), got_i(static_cast<size_t>(n) + 16, ~uint64_t{0});
        check(kRowSelectPortable.compress_at_least(row.data(), n, t, want_i.data()) == want_c, "portable compress count");
        const int64_t got_c = ops->compress_at_least(row.data(), n, t, got_i.data());
        check(got_c == want_c && std::equal(got_i.begin(), got_i.begin() + got_c, want_i.begin()),
              "compress_at_least n=%lld t=%g: %lld entries, want %lld", static_cast<long long>(n), t,
              static_cast<long long>(got_c), static_cast<long long>(want_c));
        ++pass_cases;
      }
      // rank: the row's finite entries as a candidate list, padded with -inf to a multiple of 16.
      std::vector<float> v;
      for (float x : row)
        if (x != ninf) v.push_back(x);
      const int64_t c = static_cast<int64_t>(v.size());
      v.resize(static_cast<size_t>((c + 15) / 16 * 16), ninf);
      std::vector<int32_t> want_r(static_cast<size_t>(c)), got_r(static_cast<size_t>(c), -1);
      for (int64_t i = 0; i < c; ++i) {
        int32_t r = 0;
        for (int64_t j = 0; j < c; ++j) r += j < i ? v[j] >= v[i] : j > i ? v[j] > v[i] : 0;
        want_r[i] = r;
      }
      ops->rank(v.data(), c, static_cast<int64_t>(v.size()), got_r.data());
      check(got_r == want_r, "rank c=%lld differs from the direct count", static_cast<long long>(c));
      ++pass_cases;
    }
  }
  check(pass_cases > 100, "select passes ran %d cases", pass_cases);
}

// kth_largest (core/candidates.h) against a sort: every rank of arrays with ties, signed
// zeros, negatives and a single repeated value, around its small-range cutoff (16) and above;
// and every level's own (kernels.h RowSelect::kth_largest, which may overwrite x) the same way.
void test_kth_largest(const std::vector<const Kernels*>& levels) {
  g_where = "kth_largest";
  std::vector<float (*)(float*, int, int)> fns;
  for (const Kernels* kl : levels)
    if (kl->row_select->kth_largest != kth_largest &&
        std::find(fns.begin(), fns.end(), kl->row_select->kth_largest) == fns.end())
      fns.push_back(kl->row_select->kth_largest);
  Rng rng(777);
  int cases = 0, bad = 0;
  for (int n : {1, 2, 3, 15, 16, 17, 18, 31, 32, 33, 100, 244, 257, 1000}) {
    for (int kind = 0; kind < 5; ++kind) {
      std::vector<float> x(static_cast<size_t>(n));
      for (float& v : x) {
        v = kind == 0   ? rng.normal()
            : kind == 1 ? std::round(rng.normal() * 3.0f) / 3.0f                            // few levels
            : kind == 2 ? (rng.next() % 3 == 0 ? -0.0f : rng.next() % 2 ? 0.0f : -rng.normal())  // zeros
            : kind == 3 ? 0.5f                                                                  // all equal
                        : static_cast<float>(rng.next() % 4) - 2.0f;                           // 4 values
      }
      std::vector<float> sorted = x;
      std::sort(sorted.begin(), sorted.end(), std::greater<float>());
      for (int k = 1; k <= n; k += (n > 40 ? 1 + n / 40 : 1)) {
        std::vector<float> y = x;
        const float got = kth_largest(y.data(), n, k);
        std::vector<float> ys = y;
        std::sort(ys.begin(), ys.end(), std::greater<float>());
        // The k-th value (as a value: -0 == +0), and y a permutation of x.
        if (!(got == sorted[k - 1]) || ys != sorted) {
          if (bad++ == 0) check(false, "n=%d kind %d k=%d: %.9g, want %.9g", n, kind, k, got, sorted[k - 1]);
        }
        ++cases;
        for (auto fn : fns) {
          std::vector<float> z = x;
          const float zk = fn(z.data(), n, k);
          if (!(zk == sorted[k - 1]) && bad++ == 0) check(false, "level's own, n=%d kind %d k=%d: %.9g, want %.9g", n, kind, k, zk, sorted[k - 1]);
          ++cases;
        }
      }
    }
  }
  check(bad == 0 && cases > 500, "%d of %d cases wrong", bad, cases);
}

// Candidates (core/candidates.h) against a sort of everything pushed: after the last select()
// kth() is the k-th best value, every pushed row within margin of it is kept (and nothing
// else: no row below the limit, none twice, none that was not pushed), the admission
// threshold never passed kth - margin; a set that outgrows its buffer reports overflow.
void test_candidates(const std::vector<const Kernels*>& levels) {
  g_where = "candidates";
  Rng rng(4343);
  int cases = 0;
  for (int k : {1, 5, 20, 90}) {
    for (float margin : {0.0f, 0.01f, 0.2f, 5.0f}) {
      for (int kind = 0; kind < 4; ++kind) {
        const int cap = 8 * k + 256, n = 5000;
        std::vector<TopKEntry> buf(static_cast<size_t>(cap));
        Candidates c(buf.data(), cap, k, margin);
        std::vector<TopKEntry> pushed;
        float max_thr = -std::numeric_limits<float>::infinity();
        for (int i = 0; i < n; ++i) {
          // Rising values (the threshold keeps moving), ties on a grid, signed zeros.
          // Kind 3: k-th best a zero (a limit of 0 with margin 0), the other zero's sign too.
          const float z = rng.next() % 2 ? 0.0f : -0.0f;
          float v = kind == 0   ? rng.normal() + 1e-3f * static_cast<float>(i)
                    : kind == 1 ? std::round(rng.normal() * 8.0f) / 8.0f
                    : kind == 2 ? (rng.next() % 4 == 0 ? z : 0.05f * rng.normal())
                                : (i % 2000 == 0 ? 1.0f : rng.next() % 64 == 0 ? z : -std::fabs(rng.normal()));
          const int32_t id = static_cast<int32_t>(rng.next() % 1000000) * 8 + i % 8;  // distinct ids
          if (v >= c.thr) pushed.push_back(topk_pack(v, id));  // what push() admits
          c.push(v, id);
          max_thr = std::max(max_thr, c.thr);
        }
        c.select();
        std::vector<float> all_vals;
        for (TopKEntry e : pushed) all_vals.push_back(topk_value(e));
        std::sort(all_vals.begin(), all_vals.end(), std::greater<float>());
        const float kth = all_vals[static_cast<size_t>(k - 1)], lim = kth - margin;
        std::vector<TopKEntry> want;
        for (TopKEntry e : pushed)
          if (topk_value(e) >= lim) want.push_back(e);
        std::vector<TopKEntry> got(buf.begin(), buf.begin() + c.size);
        std::sort(want.begin(), want.end());
        std::sort(got.begin(), got.end());
        if (c.overflow) {
          // The set outgrew 3/4 of its buffer at some select() (the caller then redoes the
          // query): a wide margin only. Whatever is kept was pushed.
          check(margin >= 0.2f, "k=%d margin %g kind %d: overflow with a narrow margin", k, margin, kind);
          std::vector<TopKEntry> sp = pushed;
          std::sort(sp.begin(), sp.end());
          check(std::includes(sp.begin(), sp.end(), got.begin(), got.end()) && c.size <= cap,
                "k=%d margin %g kind %d: overflowed set holds rows never pushed", k, margin, kind);
        } else {
          check(static_cast<int>(want.size()) <= cap - cap / 4, "k=%d margin %g kind %d: %zu rows within margin, no overflow",
                k, margin, kind, want.size());
          check(got == want, "k=%d margin %g kind %d: %d kept, want %zu", k, margin, kind, c.size, want.size());
          check(c.kth() == kth, "k=%d margin %g kind %d: kth %.9g, want %.9g", k, margin, kind, c.kth(), kth);
          check(max_thr <= lim, "k=%d margin %g kind %d: threshold reached %.9g above kth - margin %.9g", k, margin, kind,
                max_thr, lim);
        }
        ++cases;
      }
    }
  }
  check(cases == 64, "candidates ran %d cases", cases);

  // push_lanes (the first pass's push, branch-free) against push() lane by lane: after every
  // panel of 32 lanes (a random subset offered, ids id0 + lane) the two sets hold the same
  // entries in the same order with the same threshold; the second set selects with each
  // level's kth_largest (the same values, so the same sets).
  std::vector<float (*)(float*, int, int)> kths = {kth_largest};
  for (const Kernels* kl : levels)
    if (std::find(kths.begin(), kths.end(), kl->row_select->kth_largest) == kths.end()) kths.push_back(kl->row_select->kth_largest);
  int lane_cases = 0;
  for (auto kth_fn : kths) {
    for (int k : {1, 20, 90}) {
      for (float margin : {0.0f, 0.05f}) {
        const int cap = 8 * k + 256;
        std::vector<TopKEntry> b1(static_cast<size_t>(cap)), b2(static_cast<size_t>(cap));
        Candidates c1(b1.data(), cap, k, margin), c2(b2.data(), cap, k, margin);
        c2.kth_of = kth_fn;
        bool same = true;
        for (int panel = 0; panel < 400; ++panel) {
          float sims[32];
          for (float& v : sims) v = rng.next() % 16 == 0 ? 0.0f : 0.1f * rng.normal() + 2e-4f * static_cast<float>(panel);
          uint32_t mask = static_cast<uint32_t>(rng.next()) & static_cast<uint32_t>(rng.next());
          const int32_t id0 = panel * 32;
          for (uint32_t m = mask; m; m &= m - 1) c1.push(sims[__builtin_ctz(m)], id0 + __builtin_ctz(m));
          c2.push_lanes(sims, mask, id0);
          same = same && c1.size == c2.size && c1.thr == c2.thr && std::equal(b1.begin(), b1.begin() + c1.size, b2.begin());
        }
        check(same, "push_lanes k=%d margin %g: the set differs from push() lane by lane", k, margin);
        ++lane_cases;
      }
    }
  }
  check(lane_cases >= 6, "push_lanes ran %d cases", lane_cases);
}

// The fast paths' first passes (scan_bf16, scan_i8) of a level against the reference: every
// valid lane of [panel_begin, panel_end) pushed exactly once and nothing else; bf16 sums within
// gamma(d) sum |q'_p k'_p| of the exact (double) dot product of the bf16 values (any summation
// order, kernels.h); int8 bit for bit equal to scan_i8_scalar. Then, with a threshold per
// query, exactly the lanes whose (same) value reaches it. Key blocks of 2 panels over 5 panels
// (a partial last one), panel_begin 0 and 1, query counts around the micro-tile sizes.
struct FirstPassLog {
  int nq, rows;
  std::vector<float> sims;    // [nq, rows], NaN = not pushed
  std::vector<int> pushes;    // [nq, rows] times pushed
};

void log_push(void* ctx, int qi, const float* sims, uint32_t mask, int64_t row0) {
  auto* g = static_cast<FirstPassLog*>(ctx);
  while (mask) {
    const int l = __builtin_ctz(mask);
    mask &= mask - 1;
    const int64_t r = row0 + l;
    if (qi < 0 || qi >= g->nq || r < 0 || r >= g->rows) {
      check(false, "push outside the scanned range: query %d row %lld", qi, static_cast<long long>(r));
      continue;
    }
    g->sims[static_cast<size_t>(qi) * g->rows + r] = sims[l];
    ++g->pushes[static_cast<size_t>(qi) * g->rows + r];
  }
}

void test_first_pass(const Kernels& kern, int d, uint64_t seed) {
  Rng rng(seed);
  const int panels = 5, n_rows = panels * kPanel - 7, d4 = (d + 3) / 4, nq_max = 30;
  const double u = std::ldexp(1.0, -23);
  const double gamma_d = d * u / (1 - d * u);
  // bf16 keys in panels, bf16 queries row-major (normals / sqrt(d): about unit rows).
  const float sc = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
  auto to_bf16 = [](float x) {
    uint32_t v;
    std::memcpy(&v, &x, sizeof v);
    return static_cast<uint16_t>((v + 0x7FFFu + ((v >> 16) & 1u)) >> 16);
  };
  auto from_bf16 = [](uint16_t h) {
    const uint32_t v = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &v, sizeof f);
    return f;
  };
  std::vector<uint16_t> kb(static_cast<size_t>(panels) * d * kPanel), qb(static_cast<size_t>(nq_max) * d);
  for (auto& h : kb) h = to_bf16(sc * rng.normal());
  for (auto& h : qb) h = to_bf16(sc * rng.normal());
  // int8 keys (codes in [-127, 127], pad dims 0), scales, sums; u8 queries (pad 128).
  std::vector<int8_t> ki(static_cast<size_t>(panels) * d4 * kPanel * 4, 0);
  std::vector<float> kscale(static_cast<size_t>(panels) * kPanel, 0.0f), qscale(nq_max);
  std::vector<int32_t> ksum(static_cast<size_t>(panels) * kPanel, 0);
  std::vector<uint8_t> qu(static_cast<size_t>(nq_max) * d4 * 4, 128);
  for (int r = 0; r < panels * kPanel; ++r) {
    const int P = r / kPanel, l = r % kPanel;
    const int mode = r % 7;  // a few rows at the extremes (all +127 / all -127)
    for (int p = 0; p < d; ++p) {
      const int v = mode == 3 ? 127 : mode == 5 ? -127 : static_cast<int>(rng.next() % 255) - 127;
      ki[(static_cast<size_t>(P) * d4 + p / 4) * kPanel * 4 + l * 4 + p % 4] = static_cast<int8_t>(v);
      ksum[r] += v;
    }
    kscale[r] = r < n_rows ? static_cast<float>(0.5 + rng.uniform()) / (127.0f * std::sqrt(static_cast<float>(d))) : 0.0f;
  }
  for (int q = 0; q < nq_max; ++q) {
    for (int p = 0; p < d; ++p)
      qu[static_cast<size_t>(q) * d4 * 4 + p] = static_cast<uint8_t>(q % 5 == 2 ? 255 : q % 5 == 4 ? 1 : 1 + rng.next() % 255);
    qscale[q] = static_cast<float>(0.5 + rng.uniform()) / (127.0f * std::sqrt(static_cast<float>(d)));
  }
  for (bool int8 : {false, true}) {
    g_where = std::string("first pass ") + (int8 ? "int8" : "bf16") + " d=" + std::to_string(d);
    for (int nq : {1, 5, 12, 13, 30}) {
      for (int64_t pb : {0, 1}) {
        const int64_t rows = n_rows;
        FirstPassLog all{nq, static_cast<int>(rows), std::vector<float>(static_cast<size_t>(nq) * rows, NAN),
                         std::vector<int>(static_cast<size_t>(nq) * rows, 0)};
        std::vector<float> thr(nq, -std::numeric_limits<float>::infinity());
        ScanArgs a{nullptr, nq, d, nullptr, nullptr, pb, panels, rows, 2, nullptr, thr.data(), log_push, &all};
        if (int8) {
          a.keys_i8 = ki.data();
          a.key_scale = kscale.data();
          a.key_sum = ksum.data();
          a.queries_u8 = qu.data();
          a.query_scale = qscale.data();
        } else {
          a.keys_bf16 = kb.data();
          a.queries_bf16 = qb.data();
        }
        (int8 ? kern.scan_i8 : kern.scan_bf16)(a);
        // The reference values.
        FirstPassLog ref{nq, static_cast<int>(rows), std::vector<float>(static_cast<size_t>(nq) * rows, NAN),
                         std::vector<int>(static_cast<size_t>(nq) * rows, 0)};
        if (int8) {
          ScanArgs r = a;
          r.push_ctx = &ref;
          scan_i8_scalar(r);
        }
        int64_t bad_push = 0, bad_value = 0;
        for (int q = 0; q < nq; ++q) {
          for (int64_t r = 0; r < rows; ++r) {
            const size_t at = static_cast<size_t>(q) * rows + r;
            const int want_pushes = r >= pb * kPanel ? 1 : 0;
            if (all.pushes[at] != want_pushes) {
              if (bad_push++ == 0)
                check(false, "%d queries, panel_begin %lld: query %d row %lld pushed %d times (want %d)", nq,
                      static_cast<long long>(pb), q, static_cast<long long>(r), all.pushes[at], want_pushes);
              continue;
            }
            if (!want_pushes) continue;
            const float got = all.sims[at];
            if (int8) {
              if (std::memcmp(&got, &ref.sims[at], sizeof got) != 0 && bad_value++ == 0)
                check(false, "%d queries: query %d row %lld: %.9g, scan_i8_scalar %.9g", nq, q, static_cast<long long>(r),
                      got, ref.sims[at]);
            } else {
              const int P = static_cast<int>(r / kPanel), l = static_cast<int>(r % kPanel);
              double exact = 0, mag = 0;
              for (int p = 0; p < d; ++p) {
                const double t = static_cast<double>(from_bf16(qb[static_cast<size_t>(q) * d + p])) *
                                 from_bf16(kb[(static_cast<size_t>(P) * d + p) * kPanel + l]);
                exact += t;
                mag += std::fabs(t);
              }
              const double tol = gamma_d * mag + 3.0 * d * std::ldexp(1.0, -126);
              if (!(std::fabs(got - exact) <= tol) && bad_value++ == 0)
                check(false, "%d queries: query %d row %lld: %.9g, exact %.17g, bound %.3g", nq, q,
                      static_cast<long long>(r), got, exact, tol);
            }
          }
        }
        check(bad_push == 0 && bad_value == 0, "%d queries, panel_begin %lld: %lld bad pushes, %lld bad values", nq,
              static_cast<long long>(pb), static_cast<long long>(bad_push), static_cast<long long>(bad_value));
        // Thresholds: each query's own median, upper quartile and largest value (then only the
        // lanes equal to it); exactly the lanes at or above it are pushed, with the same values.
        for (double frac : {0.5, 0.75, 1.0}) {
          FirstPassLog cut{nq, static_cast<int>(rows), std::vector<float>(static_cast<size_t>(nq) * rows, NAN),
                           std::vector<int>(static_cast<size_t>(nq) * rows, 0)};
          for (int q = 0; q < nq; ++q) {
            std::vector<float> v(all.sims.begin() + static_cast<size_t>(q) * rows + pb * kPanel,
                                 all.sims.begin() + static_cast<size_t>(q + 1) * rows);
            const size_t at = std::min(v.size() - 1, static_cast<size_t>(frac * static_cast<double>(v.size())));
            std::nth_element(v.begin(), v.begin() + at, v.end());
            thr[q] = v[at];
          }
          a.push_ctx = &cut;
          (int8 ? kern.scan_i8 : kern.scan_bf16)(a);
          int64_t bad_cut = 0, passed = 0;
          for (int q = 0; q < nq; ++q) {
            for (int64_t r = pb * kPanel; r < rows; ++r) {
              const size_t at = static_cast<size_t>(q) * rows + r;
              const bool want = all.sims[at] >= thr[q];
              passed += want;
              if (cut.pushes[at] != (want ? 1 : 0) ||
                  (want && std::memcmp(&cut.sims[at], &all.sims[at], sizeof(float)) != 0))
                ++bad_cut;
            }
          }
          check(bad_cut == 0 && passed >= nq, "%d queries, panel_begin %lld, threshold at %.2f: %lld lanes pushed against the rule",
                nq, static_cast<long long>(pb), frac, static_cast<long long>(bad_cut));
        }
      }
    }
  }
}

// K larger than what remains after exclusion is a status, not a crash (any level).
int round_up(int x, int m) { return (x + m - 1) / m * m; }

// The reference of the dot-panel tests: `scan` (with the keys set in `a`) over panel P for
// queries nq-1 .. 0 (reversed, so the dot reads them through pointers out of order), every
// lane pushed: want[i * kPanel + l] for query pointer ptrs[i].
struct PanelReference {
  std::vector<const float*> ptrs;
  std::vector<float> want;
};
PanelReference scan_panel(void (*scan)(const ScanArgs&), ScanArgs a, const Kernels& kern,
                          const std::vector<float>& queries, int nq, int d, int64_t P) {
  PanelReference r{std::vector<const float*>(nq), std::vector<float>(static_cast<size_t>(nq) * kPanel, std::nanf(""))};
  std::vector<float> qrows(static_cast<size_t>(nq) * d), qpack(static_cast<size_t>(round_up(nq, kern.mr)) * d);
  for (int i = 0; i < nq; ++i) {
    r.ptrs[i] = &queries[static_cast<size_t>(nq - 1 - i) * d];
    std::copy_n(r.ptrs[i], d, &qrows[static_cast<size_t>(i) * d]);
  }
  std::vector<float> thr(nq, -std::numeric_limits<float>::infinity());
  a.queries = qrows.data();
  a.nq = nq;
  a.d = d;
  a.panel_begin = P;
  a.panel_end = P + 1;
  a.block_panels = 1;
  a.qpack = qpack.data();
  a.thr = thr.data();
  a.push = [](void* o, int qi, const float* sv, uint32_t, int64_t) {
    std::copy_n(sv, kPanel, static_cast<float*>(o) + static_cast<size_t>(qi) * kPanel);
  };
  a.push_ctx = r.want.data();
  scan(a);
  return r;
}

// Lanes where a dot of `half` (-1: all) differs from the reference: inside the half not the same
// bits, outside it not left at `mark`.
int64_t dot_mismatches(const std::vector<float>& got, const std::vector<float>& want, int nq, int half, float mark) {
  int64_t bad = 0;
  for (int i = 0; i < nq; ++i)
    for (int l = 0; l < kPanel; ++l) {
      const size_t at = static_cast<size_t>(i) * kPanel + l;
      const bool in = half < 0 || l / (kPanel / 2) == half;
      bad += in ? std::memcmp(&got[at], &want[at], sizeof(float)) != 0 : got[at] != mark;
    }
  return bad;
}

// Keys of the dot tests: `panels` panels of normal f32 keys in the panel layout, rows past
// `rows` (in the last panel) zero as padding, the same keys rounded to bf16 (RNE), and nq
// normal query rows (drawn after the keys).
struct DotKeys {
  std::vector<float> f32;
  std::vector<uint16_t> bf16;
  std::vector<float> queries;
};
DotKeys dot_keys(Rng& rng, int panels, int rows, int d, int nq) {
  DotKeys k{rng.normals(static_cast<size_t>(panels) * kPanel * d), {}, {}};
  for (int p = 0; p < d; ++p)  // panel layout: zero the padding lanes of the last panel
    for (int l = rows % kPanel; l < kPanel; ++l) k.f32[(static_cast<size_t>(panels - 1) * d + p) * kPanel + l] = 0.0f;
  k.bf16.resize(k.f32.size());
  for (size_t i = 0; i < k.f32.size(); ++i) {
    uint32_t u;
    std::memcpy(&u, &k.f32[i], sizeof u);
    k.bf16[i] = static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
  }
  k.queries = rng.normals(static_cast<size_t>(nq) * d);
  return k;
}

// The level's scan of every panel of dk (f32 or bf16 keys): want[P][i * kPanel + l] is query
// i's (row order) value for lane l of panel P; qrow the query row pointers dots are given.
std::pair<std::vector<std::vector<float>>, std::vector<const float*>> scan_panels(const Kernels& kern, const DotKeys& dk,
                                                                                   int panels, int rows, int d, int nq,
                                                                                   bool bf16) {
  std::vector<std::vector<float>> want(panels);
  std::vector<const float*> qrow;
  for (int P = 0; P < panels; ++P) {
    ScanArgs a{};
    a.keys_f32 = bf16 ? nullptr : dk.f32.data();
    a.keys_bf16 = bf16 ? dk.bf16.data() : nullptr;
    a.n_rows = rows;
    auto [ptrs, w] = scan_panel(kern.scan, a, kern, dk.queries, nq, d, P);
    want[P] = w;
    qrow = ptrs;
  }
  return {want, qrow};
}

// dot_halves (the re-rank of panels few queries hold) against the level's own scan: bit for
// bit, f32 and bf16 keys, 1..13 dots in one call (groups and their remainders), each its own
// query (any order, repeats allowed), panel (the partial last one too) and half; every dot
// writes its 16 values and nothing next to them.
void test_dot_halves(const Kernels& kern, int d, uint64_t seed) {
  g_where = "dot_halves d=" + std::to_string(d);
  // core/search.cpp routes a panel to one of the two by its candidate count: a level needs both.
  check((kern.dot_halves == nullptr) == (kern.dot_lanes == nullptr), "%s has only one of dot_halves and dot_lanes",
        kern.name);
  if (kern.dot_halves == nullptr) return;  // search.cpp re-ranks by scan on this level
  Rng rng(seed);
  const int panels = 3, rows = panels * kPanel - 7, nq = 5;
  const DotKeys dk = dot_keys(rng, panels, rows, d, nq);
  const std::vector<float>& keys = dk.f32;
  const std::vector<uint16_t>& keys_bf16 = dk.bf16;
  const size_t off = static_cast<size_t>(d) * kPanel;
  for (bool bf16 : {false, true}) {
    const auto [want, qrow] = scan_panels(kern, dk, panels, rows, d, nq, bf16);
    for (int n = 1; n <= 13; ++n) {
      const float mark = -1234.5f;
      std::vector<float> got(static_cast<size_t>(n) * 18, mark);  // 16 values + 2 guards per dot
      std::vector<DotHalf> jobs(n);
      std::vector<int> jq(n), jp(n);
      for (int j = 0; j < n; ++j) {
        jq[j] = (j * 3 + n) % nq;
        jp[j] = (j + n) % panels;
        const void* k = bf16 ? static_cast<const void*>(keys_bf16.data() + jp[j] * off) : keys.data() + jp[j] * off;
        jobs[j] = DotHalf{qrow[jq[j]], k, (j + n / 2) % 2, got.data() + static_cast<size_t>(j) * 18 + 1};
      }
      kern.dot_halves(jobs.data(), n, d, bf16);
      int64_t bad = 0;
      for (int j = 0; j < n; ++j) {
        const float* g = got.data() + static_cast<size_t>(j) * 18;
        bad += g[0] != mark || g[17] != mark;
        for (int l = 0; l < 16; ++l)
          bad += std::memcmp(&g[1 + l], &want[jp[j]][static_cast<size_t>(jq[j]) * kPanel + 16 * jobs[j].half + l],
                             sizeof(float)) != 0;
      }
      check(bad == 0, "dot_halves (%s keys, %d dots) differs from scan in %lld values (or wrote outside them)",
            bf16 ? "bf16" : "f32", n, static_cast<long long>(bad));
    }
  }
}

// dot_lanes (the re-rank of panels many queries hold) against the level's own scan: bit for
// bit, f32 and bf16 keys, 1..40 jobs in one call, each its own query (repeats allowed), panel
// (the partial last one too) and lane; jobs sorted by panel (runs of 16 across two panels,
// the kernel's fast case) and in a scattered order (runs cut at a third panel: 1..16 jobs);
// every job writes its one value and nothing next to it.
void test_dot_lanes(const Kernels& kern, int d, uint64_t seed) {
  if (kern.dot_lanes == nullptr) return;  // search.cpp re-ranks by scan on this level
  g_where = "dot_lanes d=" + std::to_string(d);
  Rng rng(seed);
  const int panels = 4, rows = panels * kPanel - 7, nq = 7;
  const DotKeys dk = dot_keys(rng, panels, rows, d, nq);
  const size_t off = static_cast<size_t>(d) * kPanel;
  for (bool bf16 : {false, true}) {
    const auto [want, qrow] = scan_panels(kern, dk, panels, rows, d, nq, bf16);
    for (bool sorted : {true, false}) {
      for (int n = 1; n <= 40; ++n) {
        const float mark = -1234.5f;
        std::vector<float> got(static_cast<size_t>(n) * 2 + 1, mark);  // value j at 2 j + 1
        std::vector<DotLane> jobs(n);
        std::vector<int> jq(n), jp(n);
        for (int j = 0; j < n; ++j) {
          jq[j] = static_cast<int>(rng.next() % nq);
          jp[j] = sorted ? j * panels / n : static_cast<int>(rng.next() % panels);
          const void* k = bf16 ? static_cast<const void*>(dk.bf16.data() + jp[j] * off) : dk.f32.data() + jp[j] * off;
          jobs[j] = DotLane{qrow[jq[j]], k, static_cast<int>(rng.next() % kPanel), got.data() + 2 * j + 1};
        }
        kern.dot_lanes(jobs.data(), n, d, bf16);
        int64_t bad = got[0] != mark;
        for (int j = 0; j < n; ++j) {
          bad += got[2 * j + 2] != mark;
          bad += std::memcmp(&got[2 * j + 1], &want[jp[j]][static_cast<size_t>(jq[j]) * kPanel + jobs[j].lane],
                             sizeof(float)) != 0;
        }
        check(bad == 0, "dot_lanes (%s keys, %d jobs, %s) differs from scan in %lld values (or wrote outside them)",
              bf16 ? "bf16" : "f32", n, sorted ? "sorted by panel" : "scattered", static_cast<long long>(bad));
      }
    }
  }
}

// The level's prior blend against the portable blend_rows, bit for bit: value widths around
// the 16-column registers and 64-column blocks (dv = d), zero weights (skipped), a -0 term,
// rows in a scattered order, and nothing written past out[dv - 1].
void test_blend(const Kernels& kern, int d, uint64_t seed) {
  g_where = "blend dv=" + std::to_string(d);
  Rng rng(seed);
  const int dv = d, nrows = 97;
  const std::vector<float> table = rng.normals(static_cast<size_t>(nrows) * dv + 16);
  for (int m : {1, 7, 70, 90}) {
    std::vector<const float*> rows(m);
    std::vector<float> w(m);
    for (int i = 0; i < m; ++i) {
      rows[i] = &table[static_cast<size_t>((i * 37 + 11) % nrows) * dv];
      w[i] = (i % 5 == 3) ? 0.0f : std::fabs(rng.normals(1)[0]) / m;
    }
    if (m > 1) w[1] = -0.0f;  // a zero of either sign is skipped
    const float mark = -1234.5f;
    std::vector<float> want(static_cast<size_t>(dv) + 16, mark), got(static_cast<size_t>(dv) + 16, mark);
    blend_rows(rows.data(), w.data(), m, dv, want.data());
    kern.blend(rows.data(), w.data(), m, dv, got.data());
    int64_t bad = 0;
    for (size_t j = 0; j < got.size(); ++j) bad += std::memcmp(&got[j], &want[j], sizeof(float)) != 0;
    check(bad == 0, "blend (%d rows, dv %d) differs from blend_rows in %lld of %d columns (or wrote past dv)", m, dv,
          static_cast<long long>(bad), dv);
  }
}

// dot_panel_i8 (an int8 store's re-rank) against the level's own scan_i8keys: bit for bit,
// queries read through pointers in any order, tile remainders 1..7 and a full tile of 8 (13),
// whole panels and each half (its 16 lanes as scan_i8keys', the other 16 of out untouched),
// with and without a next panel to prefetch (one half of it, or all); the last panel partial
// (codes and scales of the padding rows zero, as core/int8_store.cpp leaves them).
void test_dot_panel_i8(const Kernels& kern, int d, uint64_t seed) {
  if (kern.dot_panel_i8 == nullptr) return;  // search.cpp goes through scan_i8keys on this level
  g_where = "dot_panel_i8 d=" + std::to_string(d);
  Rng rng(seed);
  const int panels = 3, rows = panels * kPanel - 7, nq_max = 13, d4 = (d + 3) / 4;
  const size_t off = static_cast<size_t>(d4) * kPanel * 4;  // bytes per panel
  std::vector<int8_t> codes(static_cast<size_t>(panels) * off, 0);
  std::vector<float> scale(static_cast<size_t>(panels) * kPanel, 0.0f);
  const std::vector<float> u = rng.normals(static_cast<size_t>(rows) * (d + 1));
  for (int r = 0; r < rows; ++r) {
    for (int p = 0; p < d; ++p) {  // codes in [-127, 127]; pad dims of the last group stay 0
      const float x = u[static_cast<size_t>(r) * (d + 1) + p] * 50.0f;
      const int v = static_cast<int>(std::max(-127.0f, std::min(127.0f, std::nearbyint(x))));
      codes[(static_cast<size_t>(r / kPanel) * d4 + p / 4) * kPanel * 4 + (r % kPanel) * 4 + p % 4] = static_cast<int8_t>(v);
    }
    scale[r] = 1e-3f * (1.0f + std::fabs(u[static_cast<size_t>(r) * (d + 1) + d]));
  }
  const std::vector<float> queries = rng.normals(static_cast<size_t>(nq_max) * d);
  for (int nq : {1, 5, 8, 13}) {
    for (int P : {1, panels - 1}) {
      ScanArgs a{};
      a.keys_i8 = codes.data();
      a.key_scale = scale.data();
      a.n_rows = rows;
      const auto [ptrs, want] = scan_panel(kern.scan_i8keys, a, kern, queries, nq, d, P);
      for (int half : {-1, 0, 1}) {
        for (int next : {-1, 0, 2}) {
          const float mark = -1234.5f;  // lanes outside the half keep it
          std::vector<float> got(want.size(), mark);
          DotPanelArgs da{ptrs.data(), nq, d, codes.data() + P * off, scale.data() + P * kPanel, half, got.data()};
          if (next >= 0) {
            da.next = codes.data() + next * off;
            da.next_half = next == 0 ? half : -1;
            da.next_scale = scale.data() + next * kPanel;
          }
          kern.dot_panel_i8(da);
          const int64_t bad = dot_mismatches(got, want, nq, half, mark);
          check(bad == 0, "dot_panel_i8 (%d queries, panel %d, half %d, next %d) differs from scan_i8keys in %lld lanes", nq,
                P, half, next, static_cast<long long>(bad));
        }
      }
    }
  }
}

void test_search_errors(const Kernels& kern, ThreadPool& pool) {
  g_where = "search errors";
  Rng rng(99);
  const int d = 5, n = 4;
  Datastore ds(d, 1, false);
  std::vector<float> keys = rng.normals(n * d), values = rng.normals(n);
  std::vector<int32_t> groups = {0, 0, 1, 2};
  check(ds.add(keys.data(), values.data(), groups.data(), n, pool).ok(), "add");
  std::vector<float> q = rng.normals(d);
  SearchParams p;
  p.k = 3;
  int32_t ex = 0;
  p.exclude_groups = &ex;
  SearchResult r = run_search(ds.snapshot(), kern, pool, q, 1, p);
  check(!r.st.ok() && r.st.code == StatusCode::kKTooLarge, "k = 3 with 2 rows left after exclusion: want kKTooLarge");
  p.k = 2;
  r = run_search(ds.snapshot(), kern, pool, q, 1, p);
  check(r.st.ok() && r.ids[0] >= 2 && r.ids[1] >= 2, "k = 2 with exclusion: want rows 2 and 3");
  std::vector<float> zero(d, 0.0f);
  p.exclude_groups = nullptr;
  r = run_search(ds.snapshot(), kern, pool, zero, 1, p);
  check(r.st.code == StatusCode::kZeroNorm, "zero query: want kZeroNorm");
  std::vector<float> bad = q;
  bad[d - 1] = NAN;
  r = run_search(ds.snapshot(), kern, pool, bad, 1, p);
  check(r.st.code == StatusCode::kNonFinite, "NaN query: want kNonFinite");
}

// The benchmark probes of a level: read_sum is a sum, fma_probe counts its flops.
void test_probes(const Kernels& kern, int d, uint64_t seed) {
  g_where = std::string("probes n=") + std::to_string(d);
  Rng rng(seed);
  std::vector<float> x = rng.normals(d);
  double s = 0, a = 0;
  for (float v : x) s += v, a += std::fabs(v);
  const float got = kern.read_sum(x.data(), x.size());
  check(std::fabs(got - s) <= (d + 2) * kEps * a, "read_sum = %.9g, want %.9g", got, s);
  float sink = NAN;
  const double flops = kern.fma_probe(d, &sink);
  check(flops > 0 && std::fmod(flops, 2.0 * d) == 0 && std::isfinite(sink) && sink > 0,
        "fma_probe(%d) = %.17g flops (a multiple of 2 x %d expected), sink %g", d, flops, d, sink);
}

// normalize_rows (baseline code shared by every level): rows of unit norm, bad rows named.
void test_normalize(int d, ThreadPool& pool) {
  g_where = "normalize d=" + std::to_string(d);
  Rng rng(7 + d);
  const int m = 300;  // more than one 256-row task
  std::vector<float> x = rng.normals(static_cast<size_t>(m) * d, 3.0f), y(x.size());
  check(normalize_rows(x.data(), y.data(), m, d, pool).ok(), "normalize_rows failed");
  std::vector<double> want(x.size());
  for (int r = 0; r < m; ++r) {
    double s = 0;
    for (int j = 0; j < d; ++j) s += static_cast<double>(x[r * d + j]) * x[r * d + j];
    for (int j = 0; j < d; ++j) want[r * d + j] = x[r * d + j] / std::sqrt(s);
  }
  check_close("normalised", y.data(), want.data(), y.size(), 2 * kEps);
  // Bit for bit the one-row-at-a-time formula (rows run side by side in groups of 8, the
  // scaling 4 values at a time: neither may change a bit).
  int exact = 0;
  for (int r = 0; r < m; ++r) {
    double s = 0;
    for (int j = 0; j < d; ++j) s += static_cast<double>(x[r * d + j]) * x[r * d + j];
    const double inv = 1.0 / std::sqrt(s);
    for (int j = 0; j < d; ++j) exact += y[r * d + j] == static_cast<float>(x[r * d + j] * inv);
  }
  check(exact == m * d, "normalised rows differ from the one-row formula in %d of %d values", m * d - exact, m * d);
  x[static_cast<size_t>(261) * d + d / 2] = INFINITY;
  Status st = normalize_rows(x.data(), y.data(), m, d, pool);
  check(st.code == StatusCode::kNonFinite && st.row == 261, "Inf in row 261: got code %d row %lld", static_cast<int>(st.code),
        static_cast<long long>(st.row));
  std::fill_n(&x[static_cast<size_t>(17) * d], d, 0.0f);
  st = normalize_rows(x.data(), y.data(), m, d, pool);
  check(st.code == StatusCode::kZeroNorm && st.row == 17, "zero row 17: got code %d row %lld", static_cast<int>(st.code),
        static_cast<long long>(st.row));
}

// ------------------------------------------------------------------ MLP kernels


double gelu_d(double u) { return 0.5 * u * (1.0 + std::erf(u / std::sqrt(2.0))); }
double gelu_grad_d(double u) {
  return 0.5 * (1.0 + std::erf(u / std::sqrt(2.0))) + u * std::exp(-0.5 * u * u) / std::sqrt(2.0 * 3.14159265358979323846);
}

struct AdamState {
  double p, m, v;
};
AdamState adam_ref(double p, double m, double v, double g, const AdamArgs& a) {
  p *= a.decay;
  m = a.beta1 * m + a.one_minus_beta1 * g;
  v = a.beta2 * v + a.one_minus_beta2 * g * g;
  p -= a.step_size * m / (std::sqrt(v) * a.inv_bc2_sqrt + a.eps);
  return {p, m, v};
}
// Error bound of one AdamW update when g is known to within eg (plus a few roundings each).
AdamState adam_tol(const AdamState& r, double g, double eg, const AdamArgs& a) {
  const double em = a.one_minus_beta1 * eg + 8 * kEps * (std::fabs(r.m) + std::fabs(a.one_minus_beta1 * g));
  const double ev = a.one_minus_beta2 * (2 * std::fabs(g) * eg + eg * eg) + 8 * kEps * r.v;
  const double sv = std::sqrt(r.v);
  const double den = sv * a.inv_bc2_sqrt + a.eps;
  const double eden = a.inv_bc2_sqrt * (sv > 0 ? ev / (2 * sv) : std::sqrt(ev)) + 8 * kEps * den;
  const double upd = a.step_size * std::fabs(r.m) / den;
  const double ep = 8 * kEps * (std::fabs(r.p) + upd) + a.step_size * (em / den + std::fabs(r.m) * eden / (den * den));
  return {ep, em, ev};
}

AdamArgs make_adam(double lr, double wd, int step) {
  AdamArgs a{};
  const double bc1 = 1.0 - std::pow(0.9, step), bc2 = 1.0 - std::pow(0.999, step);
  a.decay = static_cast<float>(1.0 - lr * wd);
  a.beta1 = 0.9f;
  a.one_minus_beta1 = static_cast<float>(1.0 - 0.9);
  a.beta2 = 0.999f;
  a.one_minus_beta2 = static_cast<float>(1.0 - 0.999);
  a.eps = 1e-8f;
  a.step_size = static_cast<float>(lr / bc1);
  a.inv_bc2_sqrt = static_cast<float>(1.0 / std::sqrt(bc2));
  return a;
}

void test_gemm(const MlpKernels& mk, int d, uint64_t seed) {
  Rng rng(seed);
  const int T = d;
  for (int mp : {16, 48}) {
    for (int rows : {7, 13}) {
      for (int transposed = 0; transposed < 2; ++transposed) {
        g_where = "gemm_bcast T=" + std::to_string(T) + " mp=" + std::to_string(mp) + " rows=" + std::to_string(rows) +
                  (transposed ? " (input gradient layout)" : " (forward layout)");
        std::vector<float> bm = rng.normals(static_cast<size_t>(rows) * T), x = rng.normals(static_cast<size_t>(T) * mp),
                           init = rng.normals(rows);
        const int64_t sr = transposed ? 1 : T, st = transposed ? rows : 1;
        const bool with_init = (rows + transposed) % 2 == 1;
        std::vector<float> out(static_cast<size_t>(rows) * mp, NAN);
        mk.gemm_bcast(bm.data(), sr, st, x.data(), T, mp, with_init ? init.data() : nullptr, out.data(), rows);
        std::vector<double> want(out.size()), tol(out.size());
        for (int r = 0; r < rows; ++r) {
          for (int j = 0; j < mp; ++j) {
            double s = with_init ? init[r] : 0.0, a = std::fabs(s);
            for (int t = 0; t < T; ++t) {
              const double term = static_cast<double>(bm[r * sr + t * st]) * x[static_cast<size_t>(t) * mp + j];
              s += term;
              a += std::fabs(term);
            }
            want[static_cast<size_t>(r) * mp + j] = s;
            tol[static_cast<size_t>(r) * mp + j] = (T + 2) * kEps * a + 1e-30;
          }
        }
        check_close("out", out, want, tol);
      }
    }
  }
  // gemm_wgrad: g[n][k] = sum_m dz[n, m] a[m, k] over columns [k0, k1); outside untouched.
  const int N = 7, M = 19, mp = 32, lda = d + 1, ldw = d + 2;
  for (int k0 : {0, d > 1 ? 1 : 0}) {
    for (int fused = 0; fused < 2; ++fused) {
      g_where = "gemm_wgrad K=" + std::to_string(d) + " k0=" + std::to_string(k0) + (fused ? " + AdamW" : "");
      std::vector<float> dz = rng.normals(static_cast<size_t>(N) * mp), a = rng.normals(static_cast<size_t>(M) * lda);
      const float sentinel = 12345.0f;
      std::vector<float> grad(static_cast<size_t>(N) * ldw, sentinel);
      std::vector<float> w = rng.normals(grad.size()), am = rng.normals(grad.size(), 1e-2f), av(grad.size());
      for (float& v : av) v = static_cast<float>(1e-4 + 1e-3 * rng.uniform());
      const std::vector<float> w0 = w, am0 = am, av0 = av;
      const AdamArgs adam = make_adam(1e-3, 1e-4, 7);
      mk.gemm_wgrad(dz.data(), mp, M, a.data(), lda, N, k0, d, fused ? nullptr : grad.data(), fused ? w.data() : nullptr,
                    fused ? am.data() : nullptr, fused ? av.data() : nullptr, ldw, fused ? &adam : nullptr);
      std::vector<double> want(grad.size()), tol(grad.size());
      std::vector<double> wp(grad.size()), wm(grad.size()), wv(grad.size()), tp(grad.size()), tm(grad.size()), tv(grad.size());
      for (int n = 0; n < N; ++n) {
        for (int k = 0; k < ldw; ++k) {
          const size_t o = static_cast<size_t>(n) * ldw + k;
          if (k < k0 || k >= d) {  // untouched
            want[o] = sentinel;
            tol[o] = 0;
            wp[o] = w0[o], wm[o] = am0[o], wv[o] = av0[o];
            tp[o] = tm[o] = tv[o] = 0;
            continue;
          }
          double s = 0, abs_s = 0;
          for (int m = 0; m < M; ++m) {
            const double term = static_cast<double>(dz[static_cast<size_t>(n) * mp + m]) * a[static_cast<size_t>(m) * lda + k];
            s += term;
            abs_s += std::fabs(term);
          }
          want[o] = s;
          tol[o] = (M + 2) * kEps * abs_s + 1e-30;
          const AdamState r = adam_ref(w0[o], am0[o], av0[o], s, adam);
          const AdamState t = adam_tol(r, s, tol[o], adam);
          wp[o] = r.p, wm[o] = r.m, wv[o] = r.v;
          tp[o] = t.p, tm[o] = t.m, tv[o] = t.v;
        }
      }
      if (fused) {
        check_close("w", w, wp, tp);
        check_close("adam m", am, wm, tm);
        check_close("adam v", av, wv, tv);
        check(std::all_of(grad.begin(), grad.end(), [&](float g) { return g == sentinel; }), "grad written in fused mode");
      } else {
        check_close("grad", grad, want, tol);
      }
    }
  }
  // adamw over n = d parameters (vector body and tail).
  {
    g_where = "adamw n=" + std::to_string(d);
    std::vector<float> p = rng.normals(d), m = rng.normals(d, 1e-2f), v(d), g = rng.normals(d, 1e-2f);
    for (float& x : v) x = static_cast<float>(1e-4 * rng.uniform());
    const AdamArgs adam = make_adam(1e-3, 1e-2, 3);
    std::vector<double> wp(d), wm(d), wv(d), tp(d), tm(d), tv(d);
    for (int i = 0; i < d; ++i) {
      const AdamState r = adam_ref(p[i], m[i], v[i], g[i], adam), t = adam_tol(r, g[i], 0.0, adam);
      wp[i] = r.p, wm[i] = r.m, wv[i] = r.v, tp[i] = t.p, tm[i] = t.m, tv[i] = t.v;
    }
    mk.adamw(p.data(), m.data(), v.data(), g.data(), d, &adam);
    check_close("p", p, wp, tp);
    check_close("m", m, wm, tm);
    check_close("v", v, wv, tv);
  }
  // row_sums over mp = d rounded up to the column block.
  {
    const int cols = round_up(d, kMlpColBlock), rows = 5;
    g_where = "row_sums mp=" + std::to_string(cols);
    std::vector<float> x = rng.normals(static_cast<size_t>(rows) * cols), out(rows, NAN);
    mk.row_sums(x.data(), cols, rows, out.data());
    std::vector<double> want(rows), tol(rows);
    for (int r = 0; r < rows; ++r) {
      double s = 0, a = 0;
      for (int j = 0; j < cols; ++j) s += x[static_cast<size_t>(r) * cols + j], a += std::fabs(x[static_cast<size_t>(r) * cols + j]);
      want[r] = s;
      tol[r] = (cols + 2) * kEps * a;
    }
    check_close("sums", out, want, tol);
  }
}

// LayerNorm + GELU/ReLU + dropout (forward and backward) over n = d features, and the cosine loss.
void test_hidden_and_loss(const MlpKernels& mk, int d, uint64_t seed) {
  Rng rng(seed);
  const int n = d, mp = 32;
  const double base = 8 * (n + 16) * kEps;
  struct Variant {
    bool ln;
    int act;
    bool mask;
    int m0;
  };
  for (const Variant& vr : {Variant{true, 0, false, 0}, Variant{true, 0, true, 16}, Variant{false, 1, true, 0},
                            Variant{true, 1, false, 0}, Variant{false, 0, false, 16}}) {
    g_where = "hidden n=" + std::to_string(n) + (vr.ln ? " LayerNorm" : "") + (vr.act == 0 ? " GELU" : " ReLU") +
              (vr.mask ? " dropout" : "") + " cols [" + std::to_string(vr.m0) + ", 32)";
    const size_t sz = static_cast<size_t>(n) * mp;
    std::vector<float> z = rng.normals(sz, 1.5f), gamma(n), beta = rng.normals(n, 0.2f), mask(sz);
    for (float& g : gamma) g = 1.0f + 0.3f * rng.normal();
    for (float& m : mask) m = rng.uniform() < 0.1 ? 0.0f : static_cast<float>(1.0 / 0.9);
    const float sentinel = -777.0f;
    std::vector<float> xhat(sz, sentinel), u(sz, sentinel), a(sz, sentinel), rstd(mp, sentinel);
    HiddenFwdArgs fa{z.data(), n, mp, vr.m0, mp, vr.ln ? gamma.data() : nullptr, beta.data(), vr.act,
                     vr.mask ? mask.data() : nullptr, vr.ln ? xhat.data() : nullptr, vr.ln ? rstd.data() : nullptr,
                     u.data(), a.data()};
    mk.hidden_fwd(&fa);
    std::vector<double> wx(sz, sentinel), wu(sz, sentinel), wa(sz, sentinel), wr(mp, sentinel);
    std::vector<double> tx(sz, 0), tu(sz, 0), ta(sz, 0), tr(mp, 0);
    for (int c = vr.m0; c < mp; ++c) {
      double mean = 0, var = 0, rs = 1, zmax = 0;
      if (vr.ln) {
        auto zat = [&](int f) { return static_cast<double>(z[static_cast<size_t>(f) * mp + c]); };
        for (int f = 0; f < n; ++f) mean += zat(f), zmax = std::max(zmax, std::fabs(zat(f)));
        mean /= n;
        for (int f = 0; f < n; ++f) var += (zat(f) - mean) * (zat(f) - mean);
        var /= n;
        rs = 1.0 / std::sqrt(var + 1e-5);
        wr[c] = rs;
        tr[c] = base * rs;
      }
      for (int f = 0; f < n; ++f) {
        const size_t o = static_cast<size_t>(f) * mp + c;
        double y = z[o], ey = base * std::fabs(y);
        if (vr.ln) {
          const double xh = (z[o] - mean) * rs;
          wx[o] = xh;
          tx[o] = base * (std::fabs(xh) + zmax * rs);
          y = xh * gamma[f] + beta[f];
          ey = std::fabs(gamma[f]) * tx[o] + base * (std::fabs(y) + std::fabs(beta[f]));
        }
        wu[o] = y;
        tu[o] = ey;
        const double ms = vr.mask ? mask[o] : 1.0;
        wa[o] = (vr.act == 0 ? gelu_d(y) : std::max(y, 0.0)) * ms;
        // GELU' <= 1.13; the vector GELU's erf/exp approximations add ~1e-6 relative.
        ta[o] = ms * (1.2 * ey + (vr.act == 0 ? 4e-6 * (1 + std::fabs(y)) : 0.0));
      }
    }
    if (vr.ln) {
      check_close("xhat", xhat, wx, tx);
      check_close("rstd", rstd, wr, tr);
    }
    check_close("u", u, wu, tu);
    check_close("a", a, wa, ta);

    // Backward from the reference forward values (same inputs for every level).
    std::vector<float> da = rng.normals(sz), xhat_in(sz), u_in(sz), rstd_in(mp);
    for (size_t i = 0; i < sz; ++i) xhat_in[i] = static_cast<float>(wx[i]), u_in[i] = static_cast<float>(wu[i]);
    for (int c = 0; c < mp; ++c) rstd_in[c] = static_cast<float>(wr[c]);
    std::vector<float> dz(sz, sentinel), dgamma(n, sentinel), dbeta(n, sentinel);
    HiddenBwdArgs ba{da.data(), vr.mask ? mask.data() : nullptr, u_in.data(), vr.ln ? xhat_in.data() : nullptr,
                     vr.ln ? rstd_in.data() : nullptr, vr.ln ? gamma.data() : nullptr, n, mp, vr.m0, mp, vr.act,
                     dz.data(), vr.ln ? dgamma.data() : nullptr, vr.ln ? dbeta.data() : nullptr};
    mk.hidden_bwd(&ba);
    std::vector<double> wdz(sz, sentinel), tdz(sz, 0), wdg(n, 0), wdb(n, 0), tdg(n, 0), tdb(n, 0);
    for (int c = vr.m0; c < mp; ++c) {
      std::vector<double> dx(n), edx(n);
      double s1 = 0, s2 = 0, a1 = 0, a2 = 0;
      for (int f = 0; f < n; ++f) {
        const size_t o = static_cast<size_t>(f) * mp + c;
        double dd = da[o] * (vr.mask ? mask[o] : 1.0);
        const double uu = u_in[o];
        // Activation derivative: exact for ReLU; the vector GELU' is within ~1e-6 relative.
        const double gd = vr.act == 0 ? gelu_grad_d(uu) : (uu > 0 ? 1.0 : 0.0);
        double edd = std::fabs(dd) * (vr.act == 0 ? 4e-6 : 0.0) + 4 * kEps * std::fabs(dd * gd);
        dd *= gd;
        if (vr.ln) {
          wdb[f] += dd;
          wdg[f] += dd * xhat_in[o];
          tdb[f] += edd + base * std::fabs(dd);
          tdg[f] += (edd + base * std::fabs(dd)) * std::fabs(xhat_in[o]);
          dd *= gamma[f];
          edd *= std::fabs(gamma[f]);
          s1 += dd, a1 += std::fabs(dd) + edd;
          s2 += dd * xhat_in[o], a2 += (std::fabs(dd) + edd) * std::fabs(xhat_in[o]);
        }
        dx[f] = dd;
        edx[f] = edd;
      }
      for (int f = 0; f < n; ++f) {
        const size_t o = static_cast<size_t>(f) * mp + c;
        if (vr.ln) {
          const double rs = rstd_in[c];
          wdz[o] = rs * (dx[f] - s1 / n - xhat_in[o] * s2 / n);
          tdz[o] = rs * (edx[f] + base * (std::fabs(dx[f]) + a1 / n + std::fabs(xhat_in[o]) * a2 / n));
        } else {
          wdz[o] = dx[f];
          tdz[o] = edx[f] + base * std::fabs(dx[f]);
        }
      }
    }
    check_close("dz", dz, wdz, tdz);
    if (vr.ln) {
      check_close("dgamma", dgamma, wdg, tdg);
      check_close("dbeta", dbeta, wdb, tdb);
    }
  }

  // Cosine loss over d output features; columns past m_valid are padding.
  for (int with_res = 0; with_res < 2; ++with_res) {
    g_where = "cosine_loss d=" + std::to_string(d) + (with_res ? " with residual" : "");
    const int m_valid = 27;
    const size_t sz = static_cast<size_t>(d) * mp;
    std::vector<float> out = rng.normals(sz), res = rng.normals(sz), tgt = rng.normals(sz);
    std::vector<float> dout(sz, NAN), loss(mp, NAN);
    const float gs = -1.0f / m_valid;
    LossArgs la{out.data(), with_res ? res.data() : nullptr, tgt.data(), d, mp, 0, mp, m_valid, gs, dout.data(), loss.data()};
    mk.cosine_loss(&la);
    std::vector<double> wl(mp), tl(mp), wd(sz), td(sz);
    const double lb = 8 * (d + 16) * kEps;
    for (int c = 0; c < mp; ++c) {
      double dot = 0, pp = 0, tt = 0;
      for (int f = 0; f < d; ++f) {
        const size_t o = static_cast<size_t>(f) * mp + c;
        const double p = out[o] + (with_res ? res[o] : 0.0), t = tgt[o];
        dot += p * t, pp += p * p, tt += t * t;
      }
      const double den = std::sqrt(std::max(pp * tt, 1e-16)), cs = dot / den;
      const bool valid = c < m_valid;
      wl[c] = valid ? 1.0 - cs : 0.0;
      tl[c] = lb;
      for (int f = 0; f < d; ++f) {
        const size_t o = static_cast<size_t>(f) * mp + c;
        const double p = out[o] + (with_res ? res[o] : 0.0), t = tgt[o];
        wd[o] = valid ? gs * (t / den - cs * p / pp) : 0.0;
        td[o] = lb * std::fabs(gs) * (std::fabs(t) / den + std::fabs(cs * p) / pp) + 1e-30;
      }
    }
    check_close("loss", loss, wl, tl);
    check_close("dout", dout, wd, td);
  }
}

// One training step (forward, loss, backward, AdamW) and inference through MlpCache, at
// `level` against the scalar table, from identical parameters, inputs and optimizer state.
void test_train_step(const MlpKernels& mk, const MlpKernels& scalar, int d, ThreadPool& pool, uint64_t seed) {
  struct Spec {
    const char* name;
    std::vector<int32_t> v;
  };
  const Spec specs[] = {
      {"fusion GELU LayerNorm", {0, 0, 1, d, 3, 24, 16, 7}},
      {"baseline ReLU", {1, 1, 0, d, 2, 20, 5}},
  };
  for (const Spec& sp : specs) {
    g_where = std::string("train step ") + sp.name + " input " + std::to_string(d);
    MlpShape shape;
    Status st = mlp_decode_spec(sp.v.data(), sp.v.size(), &shape);
    check(st.ok(), "spec: %s", st.message.c_str());
    if (!st.ok()) continue;
    Rng rng(seed);
    const int M = 19;
    std::vector<float> params(static_cast<size_t>(shape.size));
    for (const MlpLayer& l : shape.layers) {
      const float sw = static_cast<float>(1.0 / std::sqrt(static_cast<double>(l.in)));
      for (int64_t i = 0; i < static_cast<int64_t>(l.in) * l.out; ++i) params[l.w + i] = sw * rng.normal();
      for (int i = 0; i < l.out; ++i) params[l.b + i] = 0.1f * rng.normal();
      if (l.gamma >= 0)
        for (int i = 0; i < l.out; ++i) params[l.gamma + i] = 1.0f + 0.1f * rng.normal(), params[l.beta + i] = 0.1f * rng.normal();
    }
    std::vector<float> x = rng.normals(static_cast<size_t>(M) * d), res = rng.normals(static_cast<size_t>(M) * shape.out_dim),
                       tgt = rng.normals(static_cast<size_t>(M) * shape.out_dim);
    const MlpBatch batch{x.data(), shape.kind == 0 ? res.data() : nullptr, tgt.data(), M};
    MlpTrainArgs args;
    args.lr = 1e-3;
    args.weight_decay = 1e-4;
    args.step = 10;
    args.dropout = 0.1;
    args.seed = 7;
    // Gradient (adam_m == nullptr): params untouched, full gradient out.
    MlpCache cache;
    std::vector<float> g_level(params.size(), NAN), g_scalar(params.size(), NAN);
    double loss_level = NAN, loss_scalar = NAN;
    std::vector<float> p1 = params, p2 = params;
    const bool ok1 = cache.train_step(shape, scalar, pool, p1.data(), nullptr, nullptr, g_scalar.data(), batch, args, &loss_scalar).ok();
    const bool ok2 = cache.train_step(shape, mk, pool, p2.data(), nullptr, nullptr, g_level.data(), batch, args, &loss_level).ok();
    check(ok1 && ok2, "train_step failed");
    check(p1 == params && p2 == params, "gradient mode changed the parameters");
    const double rel = 64 * (d + 16) * kEps;
    check(std::fabs(loss_level - loss_scalar) <= rel, "loss %.9g vs scalar %.9g", loss_level, loss_scalar);
    // Per tensor: |diff| <= rel * max |gradient of that tensor|.
    std::vector<double> gtol(params.size());
    auto tensor_tol = [&](int64_t off, int64_t len) {
      double mx = 0;
      for (int64_t i = 0; i < len; ++i) mx = std::max(mx, static_cast<double>(std::fabs(g_scalar[off + i])));
      for (int64_t i = 0; i < len; ++i) gtol[off + i] = rel * mx + 1e-12;
    };
    for (const MlpLayer& l : shape.layers) {
      tensor_tol(l.w, static_cast<int64_t>(l.in) * l.out);
      tensor_tol(l.b, l.out);
      if (l.gamma >= 0) tensor_tol(l.gamma, l.out), tensor_tol(l.beta, l.out);
    }
    check_close("gradient vs scalar", g_level, g_scalar, gtol);
    // AdamW step from a mid-training optimizer state.
    std::vector<float> am = rng.normals(params.size(), 1e-3f), av(params.size());
    for (float& v : av) v = static_cast<float>(1e-6 + 1e-5 * rng.uniform());
    std::vector<float> ps = params, ms = am, vs = av, pl = params, ml = am, vl = av;
    const bool ok3 = cache.train_step(shape, scalar, pool, ps.data(), ms.data(), vs.data(), nullptr, batch, args, &loss_scalar).ok();
    const bool ok4 = cache.train_step(shape, mk, pool, pl.data(), ml.data(), vl.data(), nullptr, batch, args, &loss_level).ok();
    check(ok3 && ok4, "train_step with AdamW failed");
    const AdamArgs adam = make_adam(args.lr, args.weight_decay, static_cast<int>(args.step));
    std::vector<double> tp(params.size()), tm(params.size()), tv(params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      // Both levels' updates are within adam_tol of the exact update of their own gradient;
      // the two gradients differ by <= gtol.
      const AdamState r = adam_ref(params[i], am[i], av[i], g_scalar[i], adam);
      const AdamState t = adam_tol(r, g_scalar[i], 2 * gtol[i], adam);
      tp[i] = 2 * t.p, tm[i] = 2 * t.m, tv[i] = 2 * t.v;
    }
    check_close("params after AdamW vs scalar", pl, ps, tp);
    check_close("adam m vs scalar", ml, ms, tm);
    check_close("adam v vs scalar", vl, vs, tv);
    // Inference.
    std::vector<float> fo_s(static_cast<size_t>(M) * shape.out_dim, NAN), fo_l(fo_s.size(), NAN);
    const bool ok5 = cache.forward(shape, scalar, pool, params.data(), x.data(), batch.residual, M, fo_s.data()).ok();
    const bool ok6 = cache.forward(shape, mk, pool, params.data(), x.data(), batch.residual, M, fo_l.data()).ok();
    check(ok5 && ok6, "forward failed");
    double mx = 0;
    for (float v : fo_s) mx = std::max(mx, static_cast<double>(std::fabs(v)));
    check_close("forward vs scalar", fo_l.data(), fo_s.data(), fo_l.size(), rel * (mx + 1));
  }
}

// ------------------------------------------------------------------ dispatch

void test_dispatch(const std::vector<const Kernels*>& all) {
  g_where = "dispatch";
  const auto& known = known_level_names();
  for (const Kernels* k : all) {
    check(std::find(known.begin(), known.end(), k->name) != known.end(), "level %s missing from known_level_names()", k->name);
    check(kernels_by_name(k->name) == k, "kernels_by_name(%s)", k->name);
    const MlpKernels* mk = mlp_kernels_for(k->level);
    check(mk != nullptr && (mk->level == k->level || mk->level == SimdLevel::kScalar), "mlp_kernels_for(%s)", k->name);
  }
  check(all.back()->level == SimdLevel::kScalar, "supported levels must end with scalar");
  check(choose_kernels(nullptr).how == KernelChoice::kBest && choose_kernels(nullptr).kernels == all.front(), "unset: best level");
  check(choose_kernels("").how == KernelChoice::kBest, "empty RAPM_SIMD: best level");
  for (const Kernels* k : all) {
    const KernelChoice c = choose_kernels(k->name);
    check(c.how == KernelChoice::kOverride && c.kernels == k, "RAPM_SIMD=%s: that level", k->name);
  }
  const KernelChoice bad = choose_kernels("avx512x");
  check(bad.how == KernelChoice::kUnknown && bad.kernels == all.front() &&
            bad.message.find("RAPM_SIMD=\"avx512x\" is not a SIMD level; using " + std::string(all.front()->name)) == 0 &&
            bad.message.find("valid levels: scalar, neon, avx2, avx512, avx512vnni, avx512bf16") != std::string::npos,
        "misspelt RAPM_SIMD: got '%s'", bad.message.c_str());
  // A known level this CPU or build cannot run: an explicit fallback to the best level.
#if defined(__aarch64__) || defined(_M_ARM64)
  const char* foreign = "avx2";
#else
  const char* foreign = "neon";
#endif
  const KernelChoice fb = choose_kernels(foreign);
  check(fb.how == KernelChoice::kFallback && fb.kernels == all.front() &&
            fb.message.find(std::string("using ") + all.front()->name) != std::string::npos,
        "RAPM_SIMD=%s here: got '%s'", foreign, fb.message.c_str());
  // The CPUID decoder (the MSVC path) agrees with the compiler's probe on this machine, and
  // respects the OS register state.
  CpuidWords w;
  w.max_leaf = 13;
  w.l1_ecx = (1u << 12) | (1u << 27) | (1u << 28);
  w.l7_ebx = (1u << 5) | (1u << 16) | (1u << 17) | (1u << 30) | (1u << 31);
  w.l7_ecx = 1u << 11;
  w.l7_max_sub = 1;
  w.l7s1_eax = 1u << 5;
  w.xcr0 = 0xE7;
  X86Features f = decode_x86_features(w);
  check(f.avx2_fma && f.avx512 && f.avx512_vnni && f.avx512_bf16, "decode: everything on");
  w.xcr0 = 0x07;  // OS saves YMM but not ZMM/opmask
  f = decode_x86_features(w);
  check(f.avx2_fma && !f.avx512 && !f.avx512_vnni && !f.avx512_bf16, "decode: no ZMM state -> avx2 only");
  w.l1_ecx &= ~(1u << 27);  // no OSXSAVE: nothing wide
  f = decode_x86_features(w);
  check(!f.avx2_fma && !f.avx512, "decode: no OSXSAVE -> scalar");
  w.l1_ecx |= 1u << 27;
  w.xcr0 = 0xE7;
  w.max_leaf = 6;  // no leaf 7
  f = decode_x86_features(w);
  check(!f.avx2_fma && !f.avx512, "decode: max leaf 6 -> scalar");
#if defined(__x86_64__) || defined(_M_X64)
  const X86Features probed = decode_x86_features(read_cpuid_words());
  const X86Features& used = x86_features();
  check(probed.avx2_fma == used.avx2_fma && probed.avx512 == used.avx512 && probed.avx512_vnni == used.avx512_vnni &&
            probed.avx512_bf16 == used.avx512_bf16,
        "cpuid decode (avx2 %d avx512 %d vnni %d bf16 %d) != compiler probe (%d %d %d %d)", probed.avx2_fma, probed.avx512,
        probed.avx512_vnni, probed.avx512_bf16, used.avx2_fma, used.avx512, used.avx512_vnni, used.avx512_bf16);
  std::printf("cpu: avx2+fma %s, avx512 %s, avx512_vnni %s, avx512_bf16 %s\n", used.avx2_fma ? "yes" : "no",
              used.avx512 ? "yes" : "no", used.avx512_vnni ? "yes" : "no", used.avx512_bf16 ? "yes" : "no");
#endif
}

int usage(const char* msg) {
  std::fprintf(stderr, "rapm_kernel_test: %s\nusage: rapm_kernel_test [--quick] [--dims 1,3,7] [--level NAME]...\n", msg);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::vector<int> dims(std::begin(kAllDims), std::end(kAllDims));
  std::vector<std::string> only;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      quick = true;
    } else if (a == "--dims" && i + 1 < argc) {
      dims.clear();
      for (const char* p = argv[++i]; *p;) {
        char* end;
        const long v = std::strtol(p, &end, 10);
        if (end == p || v < 1 || v > 65536) return usage("--dims takes a comma-separated list of integers in [1, 65536]");
        dims.push_back(static_cast<int>(v));
        p = *end == ',' ? end + 1 : end;
        if (*end != ',' && *end != '\0') return usage("--dims takes a comma-separated list of integers");
      }
    } else if (a == "--level" && i + 1 < argc) {
      only.push_back(argv[++i]);
    } else {
      return usage(("unknown argument '" + a + "'").c_str());
    }
  }
  const std::vector<const Kernels*> all = supported_kernels();
  // Scalar first: every other level is compared with its results.
  std::vector<const Kernels*> levels;
  levels.push_back(all.back());
  for (const Kernels* k : all)
    if (k != all.back() && (only.empty() || std::find(only.begin(), only.end(), k->name) != only.end())) levels.push_back(k);
  for (const std::string& o : only) {
    if (!kernels_by_name(o)) {
      std::string have;
      for (const Kernels* k : all) have += std::string(have.empty() ? "" : ", ") + k->name;
      return usage(("level '" + o + "' is not supported here (supported: " + have + ")").c_str());
    }
  }
  const Sizes sz = quick ? Sizes{75, 13} : Sizes{131, 29};
#if defined(__aarch64__)
  const char* arch = "aarch64";
#elif defined(__x86_64__) || defined(_M_X64)
  const char* arch = "x86-64";
#else
  const char* arch = "other";
#endif
  std::string names, dim_list;
  for (const Kernels* k : levels) names += std::string(names.empty() ? "" : ", ") + k->name;
  for (int d : dims) dim_list += (dim_list.empty() ? "" : ",") + std::to_string(d);
  std::printf("rapm kernel test: %s, levels %s, d in {%s}, %d rows x %d queries%s\n", arch, names.c_str(), dim_list.c_str(),
              sz.n, sz.b, quick ? " (quick)" : "");
  std::fflush(stdout);

  std::vector<Tally> tallies(levels.size());
  for (size_t i = 0; i < levels.size(); ++i) tallies[i].level = levels[i]->name;
  ThreadPool pool1(1), pool3(3);

  g_tally = &tallies[0];
  test_dispatch(all);
  test_search_errors(*levels[0], pool3);
  test_select_row(levels);
  test_kth_largest(levels);
  test_candidates(levels);
  for (int d : dims) {
    g_tally = &tallies[0];
    test_normalize(d, pool3);
    for (KeyPrecision prec : {KeyPrecision::kF32, KeyPrecision::kBf16, KeyPrecision::kInt8})
      test_search(levels, tallies, d, prec, sz, pool1, pool3, 1000 + d * 2 + static_cast<int>(prec));
    const MlpKernels& scalar_mlp = *mlp_kernels_for(SimdLevel::kScalar);
    for (size_t li = 0; li < levels.size(); ++li) {
      g_tally = &tallies[li];
      test_probes(*levels[li], d, 4000 + d);
      test_dot_halves(*levels[li], d, 8200 + d);
      test_dot_lanes(*levels[li], d, 8300 + d);
      test_blend(*levels[li], d, 8500 + d);
      test_dot_panel_i8(*levels[li], d, 8500 + d);
      test_first_pass(*levels[li], d, 9000 + d);
      const MlpKernels* mk = mlp_kernels_for(levels[li]->level);
      test_gemm(*mk, d, 5000 + d);
      test_hidden_and_loss(*mk, d, 6000 + d);
      if (li > 0) test_train_step(*mk, scalar_mlp, d, pool3, 7000 + d);
    }
  }
  // Which table each level's MLP uses (a level without its own MLP kernels uses scalar's).
  int failed = 0;
  for (size_t i = 0; i < levels.size(); ++i) {
    const MlpKernels* mk = mlp_kernels_for(levels[i]->level);
    std::printf("%s: %lld checks passed%s (similarity + %s MLP kernels)\n", tallies[i].level.c_str(),
                static_cast<long long>(tallies[i].passed),
                tallies[i].failed ? (", " + std::to_string(tallies[i].failed) + " FAILED").c_str() : "", mk->name);
    failed += tallies[i].failed > 0;
  }
  std::fflush(stdout);
  if (failed) {
    std::fprintf(stderr, "rapm kernel test: FAILED (%d level(s) with failures)\n", failed);
    return 1;
  }
  std::printf("rapm kernel test: all %zu levels passed\n", levels.size());
  return 0;
}
