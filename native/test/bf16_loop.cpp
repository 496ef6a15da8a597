// The bf16 first-pass micro-kernel's instruction mix on keys in L1, against the FMA loop of the
// peak probe: is the kernel (kernels/similarity_avx512bf16.cpp tile<12>) limited by its
// instructions, or by where its keys come from? Per dim pair it issues 2 key loads, 2 VPUNPCK,
// 12 broadcasts and 24 VDPBF16PS; "nounpack" drops the two unpacks (timing only: wrong sums).
// Prints instructions per ns (VDPBF16PS or FMA), three rounds. Not part of any build:
//   g++ -O2 -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 native/test/bf16_loop.cpp -o /tmp/bf16_loop && /tmp/bf16_loop
// (run two copies at once to see both cores). Measured here (AMD Zen 5), several runs:
// FMA, tile 12 with unpacks and without all 6.3-7.0 per ns: the kernel runs at the FMA
// instruction rate in cache, so the time it loses inside the search is in feeding it keys.
#include <immintrin.h>

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

template <int MR, bool kUnpack>
double tile_rate(const uint16_t* keys, const uint32_t* q, int steps, int reps) {
  __m512 lo[MR], hi[MR];
  for (int i = 0; i < MR; ++i) lo[i] = hi[i] = _mm512_setzero_ps();
  const auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < reps; ++r) {
    for (int h = 0; h < steps; ++h) {
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
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  float sink = 0;
  for (int i = 0; i < MR; ++i) sink += _mm512_reduce_add_ps(_mm512_add_ps(lo[i], hi[i]));
  if (sink == 12345.0f) std::printf(" ");
  return 2.0 * MR * steps * static_cast<double>(reps) / s / 1e9;
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
  return 0;
}
