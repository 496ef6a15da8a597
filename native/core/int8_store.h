// Int8 key storage (precision 'int8'): the stored key of a row is s * K, with K its int8 codes
// and s a per-row f32 scale. Declarations only; see int8_store.cpp.
#pragma once
#include <cstdint>

#include "datastore.h"

namespace rapm {

// Zeroed int8 storage (codes in the kernels.h keys_i8 panel layout, scales, code sums) for
// seg.npanels panels. Status kOutOfMemory on failure.
Status i8_allocate(Segment& seg, int d);

// Quantises m normalised rows [m, d] into rows [first, first + m) of seg.
void i8_quantize_rows(const float* normed, int64_t m, int d, Segment& seg, int64_t first, ThreadPool& pool);

// Copies every row of src into dst from row dst_row0 on (codes, scales, sums).
void i8_copy_rows(const Segment& src, Segment& dst, int64_t dst_row0, int d);

// Stores m rows given in stored form (codes [m, d] row-major, scales [m]) at rows [0, m).
void i8_import_rows(const int8_t* codes, const float* scales, int64_t m, int d, Segment& seg, ThreadPool& pool);

// Row lr of seg in stored form: codes [d] and its scale (either may be null).
void i8_export_row(const Segment& seg, int64_t lr, int d, int8_t* codes, float* scale);

// The numbers the fast path's error bound needs (core/search.cpp): key_norm_max = max ||s K||
// (double), shadow_err_max = 0 (the first pass reads the stored key itself).
void i8_key_stats(Segment& seg, int d, ThreadPool& pool);

}  // namespace rapm
