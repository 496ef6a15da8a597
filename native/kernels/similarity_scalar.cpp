// Portable baseline kernels: no intrinsics, fixed accumulation order (p ascending).
#include <cstring>

#include "kernels.h"
#include "pack_queries.h"

namespace rapm {
namespace {

constexpr int kMr = 4;

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

template <bool kBf16>
void scan_impl(const ScanArgs& a) {
  pack_queries<kMr>(a);
  const int d = a.d;
  const QueryTiles tiles(a.nq, kMr);
  float acc[kMr][kPanel];
  float key[kPanel];
  for (int64_t kb = a.panel_begin; kb < a.panel_end; kb += a.block_panels) {
    const int64_t kb_end = kb + a.block_panels < a.panel_end ? kb + a.block_panels : a.panel_end;
    for (int qp = 0; qp < tiles.count; ++qp) {
      const float* q = a.qpack + static_cast<size_t>(qp) * d * kMr;
      const int mr = tiles.size(qp);
      for (int64_t P = kb; P < kb_end; ++P) {
        for (int i = 0; i < kMr; ++i)
          for (int l = 0; l < kPanel; ++l) acc[i][l] = 0.0f;
        const size_t off = static_cast<size_t>(P) * d * kPanel;
        for (int p = 0; p < d; ++p) {
          if (kBf16) {
            for (int l = 0; l < kPanel; ++l) key[l] = bf16_to_f32(a.keys_bf16[off + p * kPanel + l]);
          } else {
            for (int l = 0; l < kPanel; ++l) key[l] = a.keys_f32[off + p * kPanel + l];
          }
          for (int i = 0; i < kMr; ++i) {
            const float qv = q[p * kMr + i];
            for (int l = 0; l < kPanel; ++l) acc[i][l] += qv * key[l];
          }
        }
        const int64_t row0 = P * kPanel;
        const int64_t valid = a.n_rows - row0;
        const uint32_t lanes = valid >= kPanel ? 0xFFFFFFFFu : ((1u << valid) - 1u);
        for (int i = 0; i < mr; ++i) {
          const int qi = tiles.start(qp) + i;
          const float t = a.thr[qi];
          uint32_t m = 0;
          for (int l = 0; l < kPanel; ++l) m |= static_cast<uint32_t>(acc[i][l] >= t) << l;
          m &= lanes;
          if (m) a.push(a.push_ctx, qi, acc[i], m, row0);
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
  float x[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  const float m = 0.9999999f, c = 1e-7f;
  for (int64_t it = 0; it < iters; ++it) {
    for (int j = 0; j < 8; ++j) x[j] = x[j] * m + c;
#if defined(__GNUC__)
    __asm__ __volatile__("" : : "r"(x) : "memory");  // keep every round: no folding of the chains
#endif
  }
  float s = 0;
  for (float v : x) s += v;
  *sink = s;
  return static_cast<double>(iters) * 8 * 2;
}

float read_sum(const float* p, size_t n) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) s[j] += p[i + j];
  for (; i < n; ++i) s[0] += p[i];
  float t = 0;
  for (float v : s) t += v;
  return t;
}

const Kernels kTable = {SimdLevel::kScalar, "scalar", kMr, scan, fma_probe, read_sum,
                        scan_bf16_scalar, scan_i8_scalar, false, false};

inline uint32_t lanes_of(const ScanArgs& a, int64_t row0) {
  const int64_t valid = a.n_rows - row0;
  return valid >= kPanel ? 0xFFFFFFFFu : ((1u << valid) - 1u);
}

}  // namespace

// bf16 first pass, the reference: products of two bf16 values are exact in f32, the sum
// runs p ascending in f32 (an FMA contraction would give the same bits: the product is exact).
void scan_bf16_scalar(const ScanArgs& a) {
  const int d = a.d;
  float acc[kPanel];
  for (int64_t P = a.panel_begin; P < a.panel_end; ++P) {
    const size_t off = static_cast<size_t>(P) * d * kPanel;
    const int64_t row0 = P * kPanel;
    const uint32_t lanes = lanes_of(a, row0);
    for (int qi = 0; qi < a.nq; ++qi) {
      const uint16_t* q = a.queries_bf16 + static_cast<size_t>(qi) * d;
      for (int l = 0; l < kPanel; ++l) acc[l] = 0.0f;
      for (int p = 0; p < d; ++p) {
        const float qv = bf16_to_f32(q[p]);
        const uint16_t* k = a.keys_bf16 + off + static_cast<size_t>(p) * kPanel;
        for (int l = 0; l < kPanel; ++l) acc[l] += qv * bf16_to_f32(k[l]);
      }
      const float t = a.thr[qi];
      uint32_t m = 0;
      for (int l = 0; l < kPanel; ++l) m |= static_cast<uint32_t>(acc[l] >= t) << l;
      m &= lanes;
      if (m) a.push(a.push_ctx, qi, acc, m, row0);
    }
  }
}

// int8 first pass, the reference (bit-exact with every other level, see kernels.h).
void scan_i8_scalar(const ScanArgs& a) {
  const int d4 = (a.d + 3) / 4;
  int32_t acc[kPanel];
  float sims[kPanel];
  for (int64_t P = a.panel_begin; P < a.panel_end; ++P) {
    const int8_t* kp = a.keys_i8 + static_cast<size_t>(P) * d4 * kPanel * 4;
    const int64_t row0 = P * kPanel;
    const uint32_t lanes = lanes_of(a, row0);
    for (int qi = 0; qi < a.nq; ++qi) {
      const uint8_t* q = a.queries_u8 + static_cast<size_t>(qi) * d4 * 4;
      for (int l = 0; l < kPanel; ++l) acc[l] = 0;
      for (int g = 0; g < d4; ++g) {
        for (int l = 0; l < kPanel; ++l) {
          const int8_t* k = kp + (static_cast<size_t>(g) * kPanel + l) * 4;
          for (int j = 0; j < 4; ++j) acc[l] += (static_cast<int32_t>(q[g * 4 + j]) - 128) * k[j];
        }
      }
      const float qs = a.query_scale[qi];
      for (int l = 0; l < kPanel; ++l) sims[l] = static_cast<float>(acc[l]) * (qs * a.key_scale[row0 + l]);
      const float t = a.thr[qi];
      uint32_t m = 0;
      for (int l = 0; l < kPanel; ++l) m |= static_cast<uint32_t>(sims[l] >= t) << l;
      m &= lanes;
      if (m) a.push(a.push_ctx, qi, sims, m, row0);
    }
  }
}

const Kernels* kernels_scalar() { return &kTable; }

}  // namespace rapm
