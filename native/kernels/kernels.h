// Kernel table: one implementation per instruction set, chosen at run time.
// Declarations only: nothing here may be compiled inline into an ISA translation unit
// and then merged into baseline code (that is how a SIGILL reaches an older CPU).
#pragma once
#include <cstddef>
#include <cstdint>

namespace rapm {

enum class SimdLevel : int { kScalar = 0, kNeon = 1, kAvx2 = 2, kAvx512 = 3 };

// Keys live in panels of kPanel rows, stored dimension-major: panel P holds
// key[P*kPanel + lane][p] at offset P*d*kPanel + p*kPanel + lane. The layout is
// the same for every ISA, so the level can change at run time.
constexpr int kPanel = 32;
constexpr int kMaxMr = 16;

// Called (from baseline code) for every key panel row that some lane of a query
// reached the threshold in: sims[32] are that query's similarities to rows
// local_row0 .. local_row0 + 31 of the segment; bit l of mask marks candidate lane l.
using PushFn = void (*)(void* ctx, int qi, const float* sims, uint32_t mask, int64_t local_row0);

struct ScanArgs {
  const float* queries;      // [nq, d] L2-normalised, row-major
  int nq;
  int d;
  const float* keys_f32;     // panels, or nullptr when keys are bf16
  const uint16_t* keys_bf16; // panels, or nullptr when keys are f32
  int64_t panel_begin;       // panels of this segment to scan: [panel_begin, panel_end)
  int64_t panel_end;
  int64_t n_rows;            // valid rows of the segment; lanes at or past it are padding
  int64_t block_panels;      // key panels per cache block (>= 1)
  float* qpack;              // scratch, >= round_up(nq, mr) * d floats
  const float* thr;          // [nq] current admission threshold per query (updated by push)
  PushFn push;
  void* push_ctx;
};

struct Kernels {
  SimdLevel level;
  const char* name;
  int mr;  // queries per micro-tile
  // Scan key panels for nq queries; candidates go through args.push.
  void (*scan)(const ScanArgs& args);
  // Peak-FMA probe: runs `iters` rounds of independent FMA chains and returns the
  // number of floating-point operations done (2 per lane per FMA). `sink` defeats DCE.
  double (*fma_probe)(int64_t iters, float* sink);
  // Bandwidth probe: sum of n floats.
  float (*read_sum)(const float* p, size_t n);
};

const Kernels* kernels_scalar();
// Defined only where the ISA exists: x86-64 for AVX, aarch64 for NEON (see core/cpu.cpp).
const Kernels* kernels_avx2();
const Kernels* kernels_avx512();
const Kernels* kernels_neon();

}  // namespace rapm
