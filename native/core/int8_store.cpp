// Int8 key storage (precision 'int8'). A datastore row's key is kept as d int8 codes K and one
// f32 scale s, and the key searched is s * K (its "dequantised" form):
//
//   K_p = clamp(round(x_p * 127 / max_p |x_p|), -127, 127)   (x the L2-normalised key)
//   s   = float(1 / ||K||)                                     (||K|| in double)
//
// so the dequantised key has unit norm (within one f32 rounding) and the similarity is the
// cosine of the query with K's direction: rounding changes the key's direction only, never
// its length. The codes live once, in the int8 panel layout of kernels.h (keys_i8), which
// both the exact int8-key scan (kernels scan_i8keys) and the VNNI first pass (scan_i8) read;
// per row there are also the scale and the sum of the codes (the VNNI u8 offset term).
// Bytes per row: 4 * ceil(d / 4) + 8 (1,032 at d = 1,024, against 4,096 for f32 keys).
//
// "Exact" for an int8 store means the exact scan of the stored (dequantised) keys, as 'bf16'
// means the scan of the bf16 keys. The fast path's proof (core/search.cpp) holds unchanged:
// the key the first pass multiplies is the stored key, so C = shadow_err_max = 0, and the
// exact int8-key scan rounds no worse than the f32 one: the d products and sums of q_p * K_p
// (K_p exact in f32) and the final multiply by s stay within gamma(d + 1) |q| |s K|.
//
// Quantisation cannot fail on a row that normalised: normalize_rows (in double) has already
// refused NaN, Infinity and zero rows by row number, every finite f32 row normalises, and
// max |x_p| >= 1 / sqrt(d) keeps the step far from underflow.
#include "int8_store.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>

namespace rapm {

namespace {

// Offset of code p of segment row r in the keys_i8 panel layout (kernels.h).
inline size_t i8_offset(int64_t r, int p, int d4) {
  return (static_cast<size_t>(r / kPanel) * d4 + p / 4) * kPanel * 4 + static_cast<size_t>(r % kPanel) * 4 + p % 4;
}

constexpr int64_t kRowsPerTask = 256;

}  // namespace

Status i8_allocate(Segment& seg, int d) {
  const int d4 = (d + 3) / 4;
  try {
    seg.keys_i8 = aligned_zeroed<int8_t>(static_cast<size_t>(seg.npanels) * d4 * kPanel * 4);
    if (!seg.keys_i8) throw std::bad_alloc();
    seg.i8_scale.assign(static_cast<size_t>(seg.npanels) * kPanel, 0.0f);
    seg.i8_sum.assign(static_cast<size_t>(seg.npanels) * kPanel, 0);
  } catch (const std::bad_alloc&) {
    return Status::Error(StatusCode::kOutOfMemory, "out of memory for the int8 keys of " + std::to_string(seg.n) + " rows");
  }
  return Status::Ok();
}

void i8_quantize_rows(const float* normed, int64_t m, int d, Segment& seg, int64_t first, ThreadPool& pool) {
  const int d4 = (d + 3) / 4;
  const int64_t tasks = (m + kRowsPerTask - 1) / kRowsPerTask;
  pool.parallel_for(tasks, [&](int64_t t) {
    const int64_t r1 = std::min(m, (t + 1) * kRowsPerTask);
    for (int64_t r = t * kRowsPerTask; r < r1; ++r) {
      const float* x = normed + r * d;
      float amax = 0;
      for (int p = 0; p < d; ++p) amax = std::max(amax, std::fabs(x[p]));
      const float inv_step = 127.0f / amax;  // amax >= 1/sqrt(d): the row is unit-norm
      const int64_t row = first + r;
      double n2 = 0;
      int32_t sum = 0;
      for (int p = 0; p < d; ++p) {
        const int q = static_cast<int>(std::clamp(std::nearbyint(x[p] * inv_step), -127.0f, 127.0f));
        seg.keys_i8.get()[i8_offset(row, p, d4)] = static_cast<int8_t>(q);
        n2 += static_cast<double>(q) * q;
        sum += q;
      }
      seg.i8_scale[static_cast<size_t>(row)] = static_cast<float>(1.0 / std::sqrt(n2));  // n2 >= 127^2
      seg.i8_sum[static_cast<size_t>(row)] = sum;
    }
  });
}

void i8_copy_rows(const Segment& src, Segment& dst, int64_t dst_row0, int d) {
  const int d4 = (d + 3) / 4;
  if (dst_row0 % kPanel == 0) {  // panel-aligned: whole panels at once
    const size_t bytes = static_cast<size_t>(src.npanels) * d4 * kPanel * 4;
    std::memcpy(dst.keys_i8.get() + static_cast<size_t>(dst_row0 / kPanel) * d4 * kPanel * 4, src.keys_i8.get(), bytes);
  } else {
    for (int64_t r = 0; r < src.n; ++r)
      for (int p = 0; p < d; ++p) dst.keys_i8.get()[i8_offset(dst_row0 + r, p, d4)] = src.keys_i8.get()[i8_offset(r, p, d4)];
  }
  std::copy(src.i8_scale.begin(), src.i8_scale.begin() + src.n, dst.i8_scale.begin() + dst_row0);
  std::copy(src.i8_sum.begin(), src.i8_sum.begin() + src.n, dst.i8_sum.begin() + dst_row0);
}

void i8_import_rows(const int8_t* codes, const float* scales, int64_t m, int d, Segment& seg, ThreadPool& pool) {
  const int d4 = (d + 3) / 4;
  const int64_t tasks = (m + kRowsPerTask - 1) / kRowsPerTask;
  pool.parallel_for(tasks, [&](int64_t t) {
    const int64_t r1 = std::min(m, (t + 1) * kRowsPerTask);
    for (int64_t r = t * kRowsPerTask; r < r1; ++r) {
      int32_t sum = 0;
      for (int p = 0; p < d; ++p) {
        const int8_t q = codes[r * d + p];
        seg.keys_i8.get()[i8_offset(r, p, d4)] = q;
        sum += q;
      }
      seg.i8_scale[static_cast<size_t>(r)] = scales[r];
      seg.i8_sum[static_cast<size_t>(r)] = sum;
    }
  });
}

void i8_export_row(const Segment& seg, int64_t lr, int d, int8_t* codes, float* scale) {
  const int d4 = (d + 3) / 4;
  if (codes != nullptr)
    for (int p = 0; p < d; ++p) codes[p] = seg.keys_i8.get()[i8_offset(lr, p, d4)];
  if (scale != nullptr) *scale = seg.i8_scale[static_cast<size_t>(lr)];
}

void i8_key_stats(Segment& seg, int d, ThreadPool& pool) {
  const int d4 = (d + 3) / 4;
  const int64_t tasks = (seg.n + kRowsPerTask - 1) / kRowsPerTask;
  std::vector<double> norm_max(static_cast<size_t>(tasks), 0.0);
  pool.parallel_for(tasks, [&](int64_t t) {
    const int64_t r1 = std::min(seg.n, (t + 1) * kRowsPerTask);
    for (int64_t r = t * kRowsPerTask; r < r1; ++r) {
      double n2 = 0;
      for (int p = 0; p < d; ++p) {
        const double v = static_cast<double>(seg.i8_scale[static_cast<size_t>(r)]) * seg.keys_i8.get()[i8_offset(r, p, d4)];
        n2 += v * v;
      }
      norm_max[t] = std::max(norm_max[t], std::sqrt(n2));
    }
  });
  seg.key_norm_max = tasks > 0 ? *std::max_element(norm_max.begin(), norm_max.end()) : 0.0;
  seg.shadow_err_max = 0.0;
}

}  // namespace rapm
