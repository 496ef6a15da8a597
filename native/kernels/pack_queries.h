// The scan kernels' query tiles and packing.
//
// QueryTiles: nq queries in ceil(nq / MR) micro-tiles whose sizes differ by at most one
// (16 queries with MR = 12 run as 8 + 8, not 12 + 4; 74 as 11 x 4 + 10 x 3). A short tile has
// too few independent accumulator chains to cover the FMA / VDPBF16PS latency and pays the
// key loads for few queries: measured on 16-query bf16 batches, tile<4> cost ~1.6x per query
// what tile<12> does. Tile t holds queries [start(t), start(t) + size(t)); it is packed at
// panel t of the scratch (stride MR queries), so scratch sizes stay round_up(nq, MR) rows.
// Tiling never changes a result: every lane's sum is its own chain, whatever the tile.
//
// pack_queries: nq query rows [d] -> tile panels interleaved by dim
// (qpack[t * d * MR + p * MR + i] = query start(t) + i, dim p; zero past size(t)).
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

struct QueryTiles {
  int count, base, extra;  // tiles; the first `extra` hold base + 1 queries, the rest base
  QueryTiles(int nq, int mr) : count((nq + mr - 1) / mr), base(count ? nq / count : 0), extra(count ? nq % count : 0) {}
  int size(int t) const { return base + (t < extra ? 1 : 0); }
  int start(int t) const { return t * base + (t < extra ? t : extra); }
};

template <int MR>
void pack_queries(const ScanArgs& a) {
  const QueryTiles tiles(a.nq, MR);
  // Dim-major: each dim's MR values are written side by side, read from MR rows at once (one
  // sequential stream per row). Query-major writes strode MR floats at a time through the whole
  // panel once per query: at d = 1024 a 48 KB panel, swept MR times, did not stay in L1.
  for (int t = 0; t < tiles.count; ++t) {
    float* dst = a.qpack + static_cast<size_t>(t) * a.d * MR;
    const int q0 = tiles.start(t), mr = tiles.size(t);
    const float* src[MR];
    for (int i = 0; i < mr; ++i) src[i] = a.queries + static_cast<size_t>(q0 + i) * a.d;
    for (int p = 0; p < a.d; ++p) {
      float* row = dst + static_cast<size_t>(p) * MR;
      for (int i = 0; i < mr; ++i) row[i] = src[i][p];
      for (int i = mr; i < MR; ++i) row[i] = 0.0f;
    }
  }
}

}  // namespace
}  // namespace rapm
