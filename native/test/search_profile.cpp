// A plain driver of the exact search for profiling (no Node, no N-API): builds a store of
// random rows like scripts/bench-retrieval.ts (same generator and seeds), runs the search
// `reps` times and prints the best wall time, the best process CPU time, a hash of the
// answer (neighbours, similarities, prior: equal hashes = the same bits) and the time over
// the FMA-probe bound. Built with the kernel test (RAPM_KERNEL_TEST=ON):
//
//   bash scripts/kernel-test.sh -- --quick --dims 1          # configures build-kernel-test/host
//   cmake --build build-kernel-test/host --target rapm_search_profile
//   perf record -e cpu-clock -F 4000 build-kernel-test/host/rapm_search_profile 2316 578 1024 70 1 200
//   perf report --no-children --sort symbol
//
// Arguments: n b d k threads reps (defaults: W1 d = 1024, 2 threads, 50 reps).
// RAPM_SELECT=reservoir|row forces a top-K strategy (core/select.h); RAPM_SIMD picks the level.
// RAPM_PROFILE_FAST=bf16|int8 searches with that fast path (a shadow of the f32 keys; with
// RAPM_PROFILE_PRECISION=bf16|int8 the keys are stored so instead), printing its counters;
// the answer hash then equals the exact search's (an f32 store) when the fast path is exact.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "../core/cpu.h"
#include "../core/datastore.h"
#include "../core/select.h"

namespace {

using namespace rapm;

double cpu_ms() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

// scripts/bench-retrieval.ts uniform(): mulberry32 mapped to [-1, 1).
std::vector<float> uniform(size_t n, uint32_t seed) {
  uint32_t a = seed;
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i) {
    a += 0x6d2b79f5u;
    uint32_t t = (a ^ (a >> 15)) * (a | 1u);
    t ^= t + ((t ^ (t >> 7)) * (t | 61u));
    out[i] = static_cast<float>((t ^ (t >> 14)) / 4294967296.0) * 2 - 1;
  }
  return out;
}

template <typename T>
void mix(uint64_t& h, const std::vector<T>& v) {
  for (const T& x : v) {
    uint32_t u;
    std::memcpy(&u, &x, sizeof u);
    h = (h ^ u) * 1099511628211ull;
  }
}

}  // namespace

int main(int argc, char** argv) {
  auto arg = [&](int i, int def) { return argc > i ? std::atoi(argv[i]) : def; };
  const int n = arg(1, 2316), b = arg(2, 578), d = arg(3, 1024), k = arg(4, 70), threads = arg(5, 2), reps = arg(6, 50);
  const int dv = 101;
  if (n < 1 || b < 1 || d < 1 || k < 1 || k > n || threads < 1 || reps < 1) {
    std::fprintf(stderr, "usage: rapm_search_profile [n b d k threads reps] (k <= n, all >= 1)\n");
    return 2;
  }
  if (const char* s = std::getenv("RAPM_SELECT")) {
    const std::string m = s;
    if (m != "row" && m != "reservoir") {
      std::fprintf(stderr, "RAPM_SELECT must be row or reservoir\n");
      return 2;
    }
    set_select_mode(m == "row" ? SelectMode::kRow : SelectMode::kReservoir);
  }
  FastPath fast = FastPath::kOff;
  KeyPrecision precision = KeyPrecision::kF32;
  if (const char* s = std::getenv("RAPM_PROFILE_FAST")) {
    const std::string m = s;
    if (m != "bf16" && m != "int8" && m != "off") {
      std::fprintf(stderr, "RAPM_PROFILE_FAST must be off, bf16 or int8\n");
      return 2;
    }
    fast = m == "bf16" ? FastPath::kBf16 : m == "int8" ? FastPath::kInt8 : FastPath::kOff;
  }
  if (const char* s = std::getenv("RAPM_PROFILE_PRECISION")) {
    const std::string m = s;
    if (m != "f32" && m != "bf16" && m != "int8") {
      std::fprintf(stderr, "RAPM_PROFILE_PRECISION must be f32, bf16 or int8\n");
      return 2;
    }
    precision = m == "bf16" ? KeyPrecision::kBf16 : m == "int8" ? KeyPrecision::kInt8 : KeyPrecision::kF32;
  }
  ThreadPool pool(threads);
  const Kernels* kern = default_kernels();
  float sink = 0;
  // FLOP/s of all threads: the best of 400 short (~0.5 ms) single-thread rounds, times the
  // threads (as the addon's _fmaPeak: a round another process interrupted does not count).
  double peak = 0;
  for (int r = 0; r < 400; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    const double fl = kern->fma_probe(1 << 18, &sink);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s > 0) peak = std::max(peak, fl / s * threads);
  }
  Datastore ds(d, dv, precision, fast);
  const auto keys = uniform(static_cast<size_t>(n) * d, 1 + d), vals = uniform(static_cast<size_t>(n) * dv, 2),
             qs = uniform(static_cast<size_t>(b) * d, 3 + d);
  std::vector<int32_t> groups(n);
  for (int i = 0; i < n; ++i) groups[i] = i;
  Status st = ds.add(keys.data(), vals.data(), groups.data(), n, pool);
  if (!st.ok()) {
    std::fprintf(stderr, "add failed: %s\n", st.message.c_str());
    return 1;
  }
  const Snapshot snap = ds.snapshot();
  std::vector<float> prior(static_cast<size_t>(b) * dv), w(static_cast<size_t>(b) * k), s(static_cast<size_t>(b) * k);
  std::vector<int32_t> nb(static_cast<size_t>(b) * k);
  SearchParams p;
  p.k = k;
  const SearchOutputs o{prior.data(), nb.data(), w.data(), s.data()};
  double wall = 1e300, cpu = 1e300;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = cpu_ms();
    st = search(snap, *kern, pool, qs.data(), b, p, o);
    cpu = std::min(cpu, cpu_ms() - c0);
    wall = std::min(wall, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    if (!st.ok()) {
      std::fprintf(stderr, "search failed: %s\n", st.message.c_str());
      return 1;
    }
  }
  if (fast != FastPath::kOff) {
    const FastPathCounters& c = ds.fast_counters();
    std::printf("fast path: %lld queries, %lld redone, %.1f candidates per proven query\n",
                static_cast<long long>(c.queries.load()), static_cast<long long>(c.redone.load()),
                static_cast<double>(c.candidates.load()) / std::max<int64_t>(1, c.queries.load() - c.redone.load()));
  }
  uint64_t h = 1469598103934665603ull;
  mix(h, nb);
  mix(h, s);
  mix(h, prior);
  const double bound = 2.0 * b * n * d / peak * 1e3;  // ms on all threads
  std::printf("%s n=%d b=%d d=%d k=%d threads=%d: wall %.3f ms (%.2fx bound), cpu %.3f ms (%.2fx bound x threads); "
              "bound %.3f ms at %.0f GFLOP/s; answer hash %016llx\n",
              kern->name, n, b, d, k, threads, wall, wall / bound, cpu, cpu / (bound * threads), bound, peak / 1e9,
              static_cast<unsigned long long>(h));
  return 0;
}
