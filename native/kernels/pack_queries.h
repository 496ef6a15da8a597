// The scan kernels' query packing: nq query rows [d] -> panels of MR queries interleaved by dim
// (qpack[qp * d * MR + p * MR + i] = query qp * MR + i, dim p; zero past nq).
//
// Plain scalar code, but included by files compiled with different ISA flags (-mavx2, -mavx512f,
// ...). It therefore sits in an anonymous namespace: each kernel file gets its own copy, so the
// linker can never hand an AVX2 file an instance compiled for AVX-512 (an ODR merge of one
// inline template across those files would).
#pragma once

#include <cstddef>

#include "kernels.h"

namespace rapm {
namespace {

template <int MR>
void pack_queries(const ScanArgs& a) {
  const int panels = (a.nq + MR - 1) / MR;
  for (int qp = 0; qp < panels; ++qp) {
    float* dst = a.qpack + static_cast<size_t>(qp) * a.d * MR;
    for (int i = 0; i < MR; ++i) {
      const int q = qp * MR + i;
      if (q < a.nq) {
        const float* src = a.queries + static_cast<size_t>(q) * a.d;
        for (int p = 0; p < a.d; ++p) dst[p * MR + i] = src[p];
      } else {
        for (int p = 0; p < a.d; ++p) dst[p * MR + i] = 0.0f;
      }
    }
  }
}

}  // namespace
}  // namespace rapm
