// Exact scan over int8-stored keys, the portable reference (precision 'int8'; see kernels.h
// scan_i8keys_scalar for the definition). No intrinsics, fixed order: p ascending, multiply
// and add rounded separately (on x86-64: this baseline file gets no FMA flags, so GCC cannot
// contract them; note that -std=c++17 does NOT turn contraction off in C++, and aarch64's
// baseline has FMA), then the row's scale.
// Also the default table entry (kernels.h) for a level without its own version: the qpack
// scratch is sized for the calling level's mr, so this reads the queries unpacked.
#include "kernels.h"

namespace rapm {

void scan_i8keys_scalar(const ScanArgs& a) {
  constexpr int kMr = 4;
  const int d = a.d, d4 = (d + 3) / 4;
  float acc[kMr][kPanel];
  float key[kPanel];
  for (int64_t kb = a.panel_begin; kb < a.panel_end; kb += a.block_panels) {
    const int64_t kb_end = kb + a.block_panels < a.panel_end ? kb + a.block_panels : a.panel_end;
    for (int q0 = 0; q0 < a.nq; q0 += kMr) {
      const int mr = a.nq - q0 < kMr ? a.nq - q0 : kMr;
      for (int64_t P = kb; P < kb_end; ++P) {
        for (int i = 0; i < kMr; ++i)
          for (int l = 0; l < kPanel; ++l) acc[i][l] = 0.0f;
        const int8_t* kp = a.keys_i8 + static_cast<size_t>(P) * d4 * kPanel * 4;
        for (int p = 0; p < d; ++p) {
          const int8_t* g = kp + static_cast<size_t>(p / 4) * kPanel * 4 + p % 4;
          for (int l = 0; l < kPanel; ++l) key[l] = static_cast<float>(g[l * 4]);
          for (int i = 0; i < mr; ++i) {
            const float qv = a.queries[static_cast<size_t>(q0 + i) * d + p];
            for (int l = 0; l < kPanel; ++l) acc[i][l] += qv * key[l];
          }
        }
        const int64_t row0 = P * kPanel;
        const int64_t valid = a.n_rows - row0;
        const uint32_t lanes = valid >= kPanel ? 0xFFFFFFFFu : ((1u << valid) - 1u);
        for (int i = 0; i < mr; ++i) {
          for (int l = 0; l < kPanel; ++l) acc[i][l] *= a.key_scale[row0 + l];
          const float t = a.thr[q0 + i];
          uint32_t m = 0;
          for (int l = 0; l < kPanel; ++l) m |= static_cast<uint32_t>(acc[i][l] >= t) << l;
          m &= lanes;
          if (m) a.push(a.push_ctx, q0 + i, acc[i], m, row0);
        }
      }
    }
  }
}

}  // namespace rapm
