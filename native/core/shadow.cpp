// Fast-path shadows of a segment's keys, and the numbers the search's error bound needs.
//
// kBf16 on an f32 store: every key element rounded to bf16 (RNE), same panel layout.
// kBf16 on a bf16 store: no shadow; the stored keys are the first-pass keys.
// kInt8: per row, step s = max|k_p| / 127 (float) and K_p = clamp(round(k_p / s), -127, 127),
//   in the int8 panel layout of kernels.h, with sum_p K_p per row.
// For both, key_norm_max = max ||k|| and shadow_err_max = max ||k - k'|| over the rows, where
// k is the stored key and k' the key the first pass sees (bf16(k), or s*K), in double.
#include <algorithm>
#include <cmath>
#include <new>
#include <string>

#include "bf16.h"
#include "datastore.h"

namespace rapm {

namespace {

// Stored key element p of the lanes of panel P, as float.
inline float stored(const Segment& seg, size_t off) {
  return seg.keys_f32 ? seg.keys_f32.get()[off] : bf16_to_f32(seg.keys_bf16.get()[off]);
}

}  // namespace

int64_t shadow_bytes(const Segment& seg, int d) {
  const int64_t rows = seg.npanels * kPanel;
  int64_t bytes = 0;
  if (seg.shadow_bf16) bytes += rows * d * 2;
  if (seg.keys_i8) bytes += rows * ((d + 3) / 4 * 4) + rows * static_cast<int64_t>(sizeof(float) + sizeof(int32_t));
  return bytes;
}

Status build_shadow(Segment& seg, int d, bool bf16_store, FastPath fast, ThreadPool& pool) {
  if (fast == FastPath::kOff) return Status::Ok();
  const int64_t np = seg.npanels;
  const int d4 = (d + 3) / 4;
  try {
    if (fast == FastPath::kBf16 && !bf16_store) {
      seg.shadow_bf16 = aligned_zeroed<uint16_t>(static_cast<size_t>(np) * d * kPanel);
      if (!seg.shadow_bf16) throw std::bad_alloc();
    }
    if (fast == FastPath::kInt8) {
      if (d > kMaxI8Dim) {
        return Status::Error(StatusCode::kInvalidArg, "the int8 fast path needs d <= " + std::to_string(kMaxI8Dim) +
                                                          " but d = " + std::to_string(d));
      }
      seg.keys_i8 = aligned_zeroed<int8_t>(static_cast<size_t>(np) * d4 * kPanel * 4);
      if (!seg.keys_i8) throw std::bad_alloc();
      seg.i8_scale.assign(static_cast<size_t>(np) * kPanel, 0.0f);
      seg.i8_sum.assign(static_cast<size_t>(np) * kPanel, 0);
    }
  } catch (const std::bad_alloc&) {
    return Status::Error(StatusCode::kOutOfMemory, "out of memory for the fast-path shadow of " +
                                                       std::to_string(seg.n) + " rows");
  }
  std::vector<double> norm_max(static_cast<size_t>(np), 0.0), err_max(static_cast<size_t>(np), 0.0);
  pool.parallel_for(np, [&](int64_t P) {
    const size_t off = static_cast<size_t>(P) * d * kPanel;
    double norm2[kPanel] = {}, err2[kPanel] = {};
    if (fast == FastPath::kInt8) {
      float amax[kPanel] = {};
      for (int p = 0; p < d; ++p)
        for (int l = 0; l < kPanel; ++l) amax[l] = std::max(amax[l], std::fabs(stored(seg, off + p * kPanel + l)));
      float step[kPanel];
      int32_t sum[kPanel] = {};
      for (int l = 0; l < kPanel; ++l) step[l] = amax[l] / 127.0f;
      int8_t* dst = seg.keys_i8.get() + static_cast<size_t>(P) * d4 * kPanel * 4;
      for (int p = 0; p < d; ++p) {
        for (int l = 0; l < kPanel; ++l) {
          const float x = stored(seg, off + p * kPanel + l);
          int q = 0;
          if (step[l] > 0) q = static_cast<int>(std::clamp(std::nearbyint(x / step[l]), -127.0f, 127.0f));
          dst[(static_cast<size_t>(p / 4) * kPanel + l) * 4 + p % 4] = static_cast<int8_t>(q);
          sum[l] += q;
          const double e = static_cast<double>(x) - static_cast<double>(step[l]) * q;
          norm2[l] += static_cast<double>(x) * x;
          err2[l] += e * e;
        }
      }
      for (int l = 0; l < kPanel; ++l) {
        seg.i8_scale[static_cast<size_t>(P) * kPanel + l] = step[l];
        seg.i8_sum[static_cast<size_t>(P) * kPanel + l] = sum[l];
      }
    } else {
      for (int p = 0; p < d; ++p) {
        for (int l = 0; l < kPanel; ++l) {
          const size_t o = off + p * kPanel + l;
          const float x = stored(seg, o);
          norm2[l] += static_cast<double>(x) * x;
          if (seg.shadow_bf16) {
            const uint16_t h = to_bf16(x);
            seg.shadow_bf16.get()[o] = h;
            const double e = static_cast<double>(x) - bf16_to_f32(h);
            err2[l] += e * e;
          }
        }
      }
    }
    for (int l = 0; l < kPanel; ++l) {
      norm_max[P] = std::max(norm_max[P], std::sqrt(norm2[l]));
      err_max[P] = std::max(err_max[P], std::sqrt(err2[l]));
    }
  });
  seg.key_norm_max = np > 0 ? *std::max_element(norm_max.begin(), norm_max.end()) : 0.0;
  seg.shadow_err_max = np > 0 ? *std::max_element(err_max.begin(), err_max.end()) : 0.0;
  return Status::Ok();
}

}  // namespace rapm
