// Exact scan over int8-stored keys with NEON (precision 'int8'; definition in kernels.h,
// reference: int8_keys_scalar.cpp). aarch64 baseline, compiled only on arm64; everything but
// scan_i8keys_neon (called only through the neon table) stays in the anonymous namespace.
//
// Half a panel (16 key rows) at a time, as similarity_neon.cpp: per group of 4 dims, four
// 16-byte loads hold the 16 lanes' codes (one int32 lane per key row, byte j = dim 4g + j);
// each dim is sign-extended by a shift pair, converted to f32 and FMA'd with 4 queries.
// p ascending with FMA, then the row's scale.
#include <arm_neon.h>

#include "kernels.h"
#include "pack_queries.h"

namespace rapm {
namespace {

constexpr int kMr = 4;  // as the neon table (a.qpack holds round_up(nq, 4) * d floats)

template <int J>
inline float32x4_t dim_of(int32x4_t v) {
  if (J == 3) return vcvtq_f32_s32(vshrq_n_s32(v, 24));
  return vcvtq_f32_s32(vshrq_n_s32(vshlq_n_s32(v, 24 - 8 * J), 24));
}

template <int J>
inline void fma_dim(const float* q, const int32x4_t* k, float32x4_t (*acc)[4]) {
  const float32x4_t qv = vld1q_f32(q);
  for (int c = 0; c < 4; ++c) {
    const float32x4_t f = dim_of<J>(k[c]);
    acc[0][c] = vfmaq_laneq_f32(acc[0][c], f, qv, 0);
    acc[1][c] = vfmaq_laneq_f32(acc[1][c], f, qv, 1);
    acc[2][c] = vfmaq_laneq_f32(acc[2][c], f, qv, 2);
    acc[3][c] = vfmaq_laneq_f32(acc[3][c], f, qv, 3);
  }
}

}  // namespace

void scan_i8keys_neon(const ScanArgs& a) {
  pack_queries<kMr>(a);
  const int d = a.d, d4 = (d + 3) / 4, full = d / 4, rest = d % 4;
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
            for (int c = 0; c < 4; ++c) acc[i][c] = vdupq_n_f32(0.0f);
          const int8_t* kp = a.keys_i8 + static_cast<size_t>(P) * d4 * kPanel * 4 + h * 64;
          for (int g = 0; g < d4; ++g) {
            const int8_t* kg = kp + static_cast<size_t>(g) * kPanel * 4;
            int32x4_t k[4];
            for (int c = 0; c < 4; ++c) k[c] = vreinterpretq_s32_s8(vld1q_s8(kg + 16 * c));
            const float* qg = q + static_cast<size_t>(4 * g) * kMr;
            const int dims = g < full ? 4 : rest;  // the last, partial group: only its real dims
            fma_dim<0>(qg, k, acc);
            if (dims > 1) fma_dim<1>(qg + kMr, k, acc);
            if (dims > 2) fma_dim<2>(qg + 2 * kMr, k, acc);
            if (dims > 3) fma_dim<3>(qg + 3 * kMr, k, acc);
          }
          for (int i = 0; i < mr; ++i) {
            float s[kPanel];
            for (int c = 0; c < 4; ++c) {
              const float32x4_t sc = vld1q_f32(a.key_scale + row0 + 16 * h + 4 * c);
              vst1q_f32(s + 16 * h + 4 * c, vmulq_f32(acc[i][c], sc));
            }
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

}  // namespace rapm
