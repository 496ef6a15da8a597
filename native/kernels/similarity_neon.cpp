// NEON kernels (aarch64 baseline; compiled only on arm64). Everything but the table
// getter stays in the anonymous namespace.
#include <arm_neon.h>

#include "kernels.h"
#include "pack_queries.h"

namespace rapm {
namespace {

constexpr int kMr = 4;  // 4 queries x 16 keys (half a panel) = 16 q-register accumulators

template <bool kBf16>
inline float32x4_t load4(const ScanArgs& a, size_t off) {
  if (kBf16) return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(a.keys_bf16 + off), 16));
  return vld1q_f32(a.keys_f32 + off);
}

template <bool kBf16>
void scan_impl(const ScanArgs& a) {
  pack_queries<kMr>(a);
  const int d = a.d;
  const QueryTiles tiles(a.nq, kMr);
  for (int64_t kb = a.panel_begin; kb < a.panel_end; kb += a.block_panels) {
    const int64_t kb_end = kb + a.block_panels < a.panel_end ? kb + a.block_panels : a.panel_end;
    for (int qp = 0; qp < tiles.count; ++qp) {
      const float* q = a.qpack + static_cast<size_t>(qp) * d * kMr;
      const int q0 = tiles.start(qp);
      const int mr = tiles.size(qp);
      for (int64_t P = kb; P < kb_end; ++P) {
        const int64_t row0 = P * kPanel;
        const int64_t valid = a.n_rows - row0;
        const uint32_t lanes = valid >= kPanel ? 0xFFFFFFFFu : ((1u << valid) - 1u);
        for (int h = 0; h < 2; ++h) {
          float32x4_t acc[kMr][4];
          for (int i = 0; i < kMr; ++i)
            for (int j = 0; j < 4; ++j) acc[i][j] = vdupq_n_f32(0.0f);
          const size_t off = static_cast<size_t>(P) * d * kPanel + h * 16;
          for (int p = 0; p < d; ++p) {
            const size_t o = off + static_cast<size_t>(p) * kPanel;
            const float32x4_t k0 = load4<kBf16>(a, o), k1 = load4<kBf16>(a, o + 4);
            const float32x4_t k2 = load4<kBf16>(a, o + 8), k3 = load4<kBf16>(a, o + 12);
            const float32x4_t qv = vld1q_f32(q + p * kMr);
            acc[0][0] = vfmaq_laneq_f32(acc[0][0], k0, qv, 0);
            acc[0][1] = vfmaq_laneq_f32(acc[0][1], k1, qv, 0);
            acc[0][2] = vfmaq_laneq_f32(acc[0][2], k2, qv, 0);
            acc[0][3] = vfmaq_laneq_f32(acc[0][3], k3, qv, 0);
            acc[1][0] = vfmaq_laneq_f32(acc[1][0], k0, qv, 1);
            acc[1][1] = vfmaq_laneq_f32(acc[1][1], k1, qv, 1);
            acc[1][2] = vfmaq_laneq_f32(acc[1][2], k2, qv, 1);
            acc[1][3] = vfmaq_laneq_f32(acc[1][3], k3, qv, 1);
            acc[2][0] = vfmaq_laneq_f32(acc[2][0], k0, qv, 2);
            acc[2][1] = vfmaq_laneq_f32(acc[2][1], k1, qv, 2);
            acc[2][2] = vfmaq_laneq_f32(acc[2][2], k2, qv, 2);
            acc[2][3] = vfmaq_laneq_f32(acc[2][3], k3, qv, 2);
            acc[3][0] = vfmaq_laneq_f32(acc[3][0], k0, qv, 3);
            acc[3][1] = vfmaq_laneq_f32(acc[3][1], k1, qv, 3);
            acc[3][2] = vfmaq_laneq_f32(acc[3][2], k2, qv, 3);
            acc[3][3] = vfmaq_laneq_f32(acc[3][3], k3, qv, 3);
          }
          for (int i = 0; i < mr; ++i) {
            float s[kPanel];
            for (int j = 0; j < 4; ++j) vst1q_f32(s + 16 * h + 4 * j, acc[i][j]);
            const float t = a.thr[q0 + i];
            uint32_t m = 0;
            for (int l = 0; l < 16; ++l) m |= static_cast<uint32_t>(s[16 * h + l] >= t) << (16 * h + l);
            m &= lanes;
            if (m) a.push(a.push_ctx, q0 + i, s, m, row0);
          }
        }
      }
    }
  }
}

void scan(const ScanArgs& a) {
  if (a.keys_bf16 != nullptr) {
    scan_impl<true>(a);
  } else {
    scan_impl<false>(a);
  }
}

double fma_probe(int64_t iters, float* sink) {
  constexpr int kChains = 16;
  float32x4_t x[kChains];
  for (int j = 0; j < kChains; ++j) x[j] = vdupq_n_f32(1.0f + j * 1e-3f);
  const float32x4_t m = vdupq_n_f32(0.9999999f), c = vdupq_n_f32(1e-7f);
  for (int64_t it = 0; it < iters; ++it)
    for (int j = 0; j < kChains; ++j) x[j] = vfmaq_f32(c, x[j], m);
  float32x4_t s = x[0];
  for (int j = 1; j < kChains; ++j) s = vaddq_f32(s, x[j]);
  *sink = vaddvq_f32(s);
  return static_cast<double>(iters) * kChains * 4 * 2;
}

float read_sum(const float* p, size_t n) {
  float32x4_t s0 = vdupq_n_f32(0), s1 = s0, s2 = s0, s3 = s0;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = vaddq_f32(s0, vld1q_f32(p + i));
    s1 = vaddq_f32(s1, vld1q_f32(p + i + 4));
    s2 = vaddq_f32(s2, vld1q_f32(p + i + 8));
    s3 = vaddq_f32(s3, vld1q_f32(p + i + 12));
  }
  float t = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
  for (; i < n; ++i) t += p[i];
  return t;
}

const Kernels kTable = {SimdLevel::kNeon, "neon", kMr, scan, fma_probe, read_sum,
                            scan_bf16_scalar, scan_i8_scalar, false, false,
                            scan_i8keys_neon};  // int8 store: kernels/int8_keys_neon.cpp

}  // namespace

const Kernels* kernels_neon() { return &kTable; }

}  // namespace rapm
