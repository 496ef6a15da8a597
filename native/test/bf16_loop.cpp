// The bf16 first-pass micro-kernel's instruction mix on keys in L1, against the FMA loop of the
// peak probe: is the kernel (kernels/similarity_avx512bf16.cpp tile<12>) limited by its
// instructions, or by where its keys come from? Per dim pair it issues 2 key loads, 2 VPUNPCK,
// 12 broadcasts and 24 VDPBF16PS; "nounpack" drops the two unpacks (timing only: wrong sums).
// Prints instructions per ns (VDPBF16PS or FMA), three rounds. Not part of any build:
//   g++ -O2 -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 native/test/bf16_loop.cpp -o /tmp/bf16_loop && /tmp/bf16_loop
// (run two copies at once to see both cores). Measured here (AMD Zen 5), several runs:
// FMA, tile 12 with unpacks and without all 6.3-7.0 per ns: the kernel runs at the FMA
// instruction rate in cache, so the time it loses inside the search is in feeding it keys.
// The second part runs tile 12 the way the scan does, panel after panel (accumulators zeroed
// and summed per panel), over keys in L1 (one panel, or 24 KB) or streaming from L2 (a 384 KB
// key block, the scan's block size), at d = 104 (W2's 103 rounded to pairs) and d = 1024.
// Measured here (several runs, one copy or two at once): d = 104 ~5.6-6.15 per ns wherever
// the keys are, d = 1024 ~6.5-6.9 per ns, the two ~11% apart within a run. So reading a key
// block from L2 costs nothing measurable, and a short panel costs ~11% (per-panel zeroing and
// sums). With 32 bf16 products per VDPBF16PS against 16 per FMA (the FMA loop: ~7.0 per ns),
// those rates put the micro-kernel alone at ~0.51-0.54x (d = 1024) and ~0.58-0.63x (d = 103,
// computed as 104) of the f32 bound: what remains of the W2 bf16 targets (0.6x, 0.8x) for
// admission, re-rank and everything around the kernel. The last column starts each panel from
// a zero register instead of zeroed accumulators (what the scan does since): d = 104 5.5 ->
// 5.9-6.0 per ns, d = 1024 6.6 -> 6.7.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace {

__m512bh as_bh(__m512i v) {
  __m512bh r;
  std::memcpy(&r, &v, sizeof r);
  return r;
}

// One step of the micro-kernel: dims (2h, 2h+1) of a 32-key panel (unpacked into pairs, or
// not: timing only) against MR packed queries.
template <int MR, bool kUnpack>
inline void dim_pair(const uint16_t* keys, const uint32_t* q, int h, __m512* lo, __m512* hi) {
  const __m512i ka = _mm512_loadu_si512(keys + static_cast<size_t>(2 * h) * 32);
  const __m512i kb = _mm512_loadu_si512(keys + static_cast<size_t>(2 * h + 1) * 32);
  const __m512bh k0 = as_bh(kUnpack ? _mm512_unpacklo_epi16(ka, kb) : ka);
  const __m512bh k1 = as_bh(kUnpack ? _mm512_unpackhi_epi16(ka, kb) : kb);
  const uint32_t* qq = q + static_cast<size_t>(h) * MR;
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    const __m512bh qv = as_bh(_mm512_set1_epi32(static_cast<int>(qq[i])));
    lo[i] = _mm512_dpbf16_ps(lo[i], qv, k0);
    hi[i] = _mm512_dpbf16_ps(hi[i], qv, k1);
  }
}

template <int MR, bool kUnpack>
double tile_rate(const uint16_t* keys, const uint32_t* q, int steps, int reps) {
  __m512 lo[MR], hi[MR];
  for (int i = 0; i < MR; ++i) lo[i] = hi[i] = _mm512_setzero_ps();
  const auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < reps; ++r) {
    for (int h = 0; h < steps; ++h) dim_pair<MR, kUnpack>(keys, q, h, lo, hi);
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  float sink = 0;
  for (int i = 0; i < MR; ++i) sink += _mm512_reduce_add_ps(_mm512_add_ps(lo[i], hi[i]));
  if (sink == 12345.0f) std::printf(" ");
  return 2.0 * MR * steps * static_cast<double>(reps) / s / 1e9;
}

// VDPBF16PS per ns of tile 12 as the scan runs it: `panels` panels of d dims (d even, 32 keys
// per panel, dims side by side), each started from zero and summed at its end, `reps` times.
// kZeroReg: the 24 accumulators start as copies of a register the compiler cannot see is zero
// instead of being zeroed per panel (the scan's first dim pair adds to that register directly;
// both compile to register copies).
template <bool kZeroReg>
double panel_rate(const uint16_t* keys, const uint32_t* q, int d, int panels, long reps, float* sink) {
  constexpr int MR = 12;
  const int steps = d / 2;
  float s = 0;
  __m512 zero = _mm512_setzero_ps();
  __asm__("" : "+v"(zero));
  const auto t0 = std::chrono::steady_clock::now();
  for (long r = 0; r < reps; ++r) {
    for (int P = 0; P < panels; ++P) {
      __m512 lo[MR], hi[MR];
      const uint16_t* kp = keys + static_cast<size_t>(P) * d * 32;
      if (kZeroReg) {
        for (int i = 0; i < MR; ++i) lo[i] = hi[i] = zero;
      } else {
        for (int i = 0; i < MR; ++i) lo[i] = hi[i] = _mm512_setzero_ps();
      }
      for (int h = 0; h < steps; ++h) dim_pair<MR, true>(kp, q, h, lo, hi);
      __m512 t = _mm512_setzero_ps();
      for (int i = 0; i < MR; ++i) t = _mm512_add_ps(t, _mm512_add_ps(lo[i], hi[i]));
      s += _mm512_reduce_add_ps(t);
    }
  }
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  *sink += s;
  return 2.0 * MR * steps * static_cast<double>(panels) * reps / sec / 1e9;
}

double fma_rate(int reps) {
  __m512 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(i * 0.001f);
  const __m512 m = _mm512_set1_ps(0.9999f), c = _mm512_set1_ps(0.0001f);
  const auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < reps; ++r) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) a[i] = _mm512_fmadd_ps(a[i], m, c);
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  float sink = 0;
  for (int i = 0; i < 12; ++i) sink += _mm512_reduce_add_ps(a[i]);
  if (sink == 1.0f) std::printf(" ");
  return 12.0 * reps / s / 1e9;
}

}  // namespace

int main() {
  constexpr int kSteps = 64;  // 128 dims of one 32-key panel: 8 KB of keys, in L1
  static uint16_t keys[2 * kSteps * 32];
  static uint32_t q[kSteps * 12];
  for (auto& k : keys) k = 0x3f80;  // 1.0
  for (auto& x : q) x = 0x3f803f80u;
  for (int round = 0; round < 3; ++round) {
    std::printf("FMA %.2f/ns  tile12 %.2f/ns  tile12 nounpack %.2f/ns\n", fma_rate(100000000),
                tile_rate<12, true>(keys, q, kSteps, 1000000), tile_rate<12, false>(keys, q, kSteps, 1000000));
  }
  static uint16_t block[384 * 1024 / 2];  // one key block of the scan
  static uint32_t qd[512 * 12];           // query panel of a 12-query tile, up to d = 1024
  for (auto& k : block) k = 0x3f80;
  for (auto& x : qd) x = 0x3f803f80u;
  float sink = 0;
  for (int round = 0; round < 3; ++round) {
    for (const int d : {104, 1024}) {
      const int panel_bytes = d * 32 * 2;
      const int in_l1 = std::max(1, 24576 / panel_bytes), in_l2 = 393216 / panel_bytes;
      const auto reps = [&](int panels) { return std::max(1L, 200000000L / (24L * (d / 2) * panels)); };
      std::printf("d=%d panels: keys in 24 KB or one panel (%d) %.2f/ns  from L2 (384 KB, %d panels) %.2f/ns"
                  "  from L2, zero register %.2f/ns\n",
                  d, in_l1, panel_rate<false>(block, qd, d, in_l1, reps(in_l1), &sink), in_l2,
                  panel_rate<false>(block, qd, d, in_l2, reps(in_l2), &sink), panel_rate<true>(block, qd, d, in_l2, reps(in_l2), &sink));
    }
  }
  if (sink == 1.0f) std::printf(" ");
  return 0;
}
