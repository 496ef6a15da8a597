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
  // First-pass inputs (scan_bf16 / scan_i8 only; see core/datastore.cpp for the error bound).
  const uint16_t* queries_bf16 = nullptr;  // [nq, d] queries rounded to bf16 (RNE), row-major
  const uint8_t* queries_u8 = nullptr;     // [nq, d4*4] quantised queries + 128 (pad dims: 128)
  const float* query_scale = nullptr;      // [nq] int8 step of each query
  const int8_t* keys_i8 = nullptr;         // int8 panels: panel P, dim group g = p/4, lane l, byte p%4
                                           // at offset (P*d4 + g)*kPanel*4 + l*4 + p%4 (d4 = ceil(d/4))
  const float* key_scale = nullptr;        // [npanels*kPanel] int8 step of each key row (0 for padding)
  const int32_t* key_sum = nullptr;        // [npanels*kPanel] sum of the row's int8 values
  // Whole similarity rows (scan of levels with Kernels::scan_rows only; core/select.h): when
  // set, every threshold is -inf and the kernel stores query qi's similarity to segment row r
  // at row_out[qi * row_out_stride + row_out_at + r] itself, for each valid lane r with
  // row_out_at + r >= 0, instead of pushing it (push is still called for a panel whose first
  // lanes fall before index 0, as it would be without row_out).
  float* row_out = nullptr;
  int64_t row_out_stride = 0;
  int64_t row_out_at = 0;
};

// int8 first pass: the int8 similarity of query q and row r is, bit for bit on every level,
//   float(sum_p (u8[q][p] - 128) * i8[r][p]) * (query_scale[q] * key_scale[r])
// with the integer sum exact (d <= kMaxI8Dim keeps it inside int32).
constexpr int kMaxI8Dim = 65536;

// Exact scan over int8-STORED keys (precision 'int8', core/int8_store.cpp): f32 queries against
// the dequantised keys, in the same int8 panel layout as keys_i8 above. For query q and row r:
//   sim = key_scale[r] * (sum_p queries[q][p] * float(i8[r][p]))
// the sum in f32, p ascending (scalar: separate multiply and add; AVX-512: FMA), then one
// multiply. Reads args.queries (row-major), keys_i8 and key_scale; same push protocol as scan.
// Every level has its own (kernels/int8_keys_<isa>.cpp); a table that leaves the field out
// gets the scalar one (the default below).
void scan_i8keys_scalar(const ScanArgs& args);
#if defined(__x86_64__) || defined(_M_X64)
void scan_i8keys_avx2(const ScanArgs& args);    // kernels/int8_keys_avx2.cpp (avx2 table only)
void scan_i8keys_avx512(const ScanArgs& args);  // kernels/int8_keys_avx512.cpp (avx512 tables only)
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
void scan_i8keys_neon(const ScanArgs& args);    // kernels/int8_keys_neon.cpp (neon table only)
#endif

// The fast paths' exact re-rank. Every re-rank kernel computes, per (query, key row), bit for
// bit the value the exact scan of its level computes: each lane's sum is an independent chain
// (in the AVX-512 kernels acc = fma(q[p], k[p], acc) from 0, p ascending, bf16 keys widened
// exactly; for an int8 store then one multiply by the row scale), so neither packing nor tile shape nor the order of the jobs changes it. Queries
// are row pointers, each [d], normalised, read in place. core/search.cpp routes a store's
// candidates, panel by panel:
//   f32 or bf16 keys: panels holding many candidates to dot_lanes, the others to dot_halves
//     (a level has both or neither; without them, the level's scan);
//   an int8 STORE (precision 'int8'): dot_panel_i8 (without it, the level's scan_i8keys).
//
// dot_panel_i8: similarities of nq queries to the rows of ONE int8 panel (keys_i8, layout of
// ScanArgs::keys_i8; key_scale its 32 row scales): out[i * kPanel + l], bit for bit the value
// scan_i8keys of the same level computes. half = 0 or 1 computes lanes 16 half .. 16 half + 15
// only (the other lanes of out are not written): the same values from the first (half 0) or
// second (half 1) 64-byte line of each dim group of 4. next, when set, is the int8 panel the
// caller dots after this one; the lines of next_half (-1: all lanes) and next_scale are
// prefetched while this one is dotted.
struct DotPanelArgs {
  const float* const* queries;
  int nq;
  int d;
  const int8_t* keys_i8;    // the panel's codes
  const float* key_scale;   // the panel's [kPanel] row scales
  int half;                 // -1: all 32 lanes; 0: lanes 0-15; 1: lanes 16-31
  float* out;
  const void* next = nullptr;
  int next_half = -1;
  const float* next_scale = nullptr;  // next's scales
};
// dot_halves: the re-rank of a panel that few queries hold candidates in. One query's dot of a
// half panel is a single FMA chain d FMAs long, which waits on the FMA latency rather than on
// memory or the FMA units (measured: ~4 cycles per dim for a lone query). dot_halves runs n
// independent (query, panel half) dots side by side, each with its own chain: out[l] is the
// value of lane 16 * half + l for that query. keys: the panel (f32, or bf16 for a bf16
// store), not offset by the half.
struct DotHalf {
  const float* query;  // [d], normalised
  const void* keys;
  int half;            // 0: lanes 0-15; 1: lanes 16-31
  float* out;          // [16]
};

// dot_lanes: the re-rank of panels that many queries hold candidates in, one (query, key row)
// pair per job: *out is the value of lane `lane` of the panel `keys` for that query. The
// kernel runs up to 16 jobs side by side, one per vector lane: per dim it permutes the panels'
// dim rows into the jobs' lanes and dots them with the jobs' queries, transposed 16 dims at a
// time. It cuts the jobs, in order, into runs of at most 16 that touch
// at most two panels, so jobs sorted by panel fill its lanes; any order gives the same values.
// keys: the panel (f32, or bf16 for a bf16 store); lane in [0, kPanel).
struct DotLane {
  const float* query;  // [d], normalised
  const void* keys;
  int lane;
  float* out;
};

#if defined(__x86_64__) || defined(_M_X64)
void dot_panel_i8_avx512(const DotPanelArgs& args);  // kernels/int8_keys_avx512.cpp (avx512 tables only)
#endif

// The prior blend (core/aggregate.h blend_rows): out[j] = the float sum over i = 0..m-1, in
// order, of w[i] * rows[i][j], each product and each sum rounded to float (no FMA), rows of
// weight 0 skipped; so every level gives the same bits. blend_rows is the portable one.
void blend_rows(const float* const* rows, const float* w, int m, int dv, float* out);

// The selection passes of select_row (core/select.h) and of the fast path's candidate sets
// (core/candidates.h). Every level's give the same results; a level without its own uses the
// portable ones (core/select.cpp: SSE2 on x86-64, plain loops elsewhere).
//   count_at_least: how many of row[0, n) are >= t (a float compare: NaN never, -0 == +0).
//   compress_at_least: the indices of those rows, ascending, into idx; returns how many. idx
//     needs room for 16 entries past the count (they may be written, their values unspecified).
//   rank: for each i < c, how many entries of v[0, c) rank above v[i]: those >= v[i] at a lower
//     index and those > v[i] at a higher one, into rank[i]. v holds `padded` entries (a multiple
//     of 16, >= c), those past c -inf; v[0, c) finite.
//   kth_largest: the k-th largest of x[0, n) (1 <= k <= n, no NaN; -0 and +0 count as equal,
//     so either may be returned for a zero); x is scratch (its contents after are unspecified).
//     Used by the fast path's candidate sets (core/candidates.h).
struct RowSelect {
  int64_t (*count_at_least)(const float* row, int64_t n, float t);
  int64_t (*compress_at_least)(const float* row, int64_t n, float t, uint64_t* idx);
  void (*rank)(const float* v, int64_t c, int64_t padded, int32_t* rank);
  float (*kth_largest)(float* x, int n, int k);
};
extern const RowSelect kRowSelectPortable;  // core/select.cpp
#if defined(__x86_64__) || defined(_M_X64)
extern const RowSelect kRowSelectAvx512;    // kernels/select_avx512.cpp (avx512 tables only)
#endif

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
  // First passes of the fast search paths (approximate similarities, same push protocol):
  // scan_bf16 dots args.queries_bf16 with args.keys_bf16 (products exact, f32 sums);
  // scan_i8 computes the int8 similarity above from queries_u8/keys_i8.
  // Every level has both (the scalar versions are the reference); fast_bf16 / fast_i8 say
  // whether this level runs them in hardware (VDPBF16PS / VPDPBUSD). The datastore only
  // takes a fast path when the flag is set, and otherwise searches exactly.
  void (*scan_bf16)(const ScanArgs& args);
  void (*scan_i8)(const ScanArgs& args);
  bool fast_bf16;
  bool fast_i8;
  // Exact scan of an int8 store (see scan_i8keys_scalar above); the re-rank of its fast path too.
  void (*scan_i8keys)(const ScanArgs& args) = scan_i8keys_scalar;
  // The int8 store's re-rank (DotPanelArgs above); null on levels without one (core/search.cpp
  // then goes through scan_i8keys).
  void (*dot_panel_i8)(const DotPanelArgs& args) = nullptr;
  // The prior blend (blend_rows above); the portable one unless the level has its own.
  void (*blend)(const float* const* rows, const float* w, int m, int dv, float* out) = blend_rows;
  // Independent (query, half panel) re-rank dots (DotHalf above; keys bf16 when bf16 is set);
  // null on levels without one. A level has both dot_halves and dot_lanes or neither
  // (kernel_test checks it); without them core/search.cpp re-ranks f32 and bf16 keys by scan.
  void (*dot_halves)(const DotHalf* jobs, int n, int d, bool bf16) = nullptr;
  // Selection passes (RowSelect above).
  const RowSelect* row_select = &kRowSelectPortable;
  // Whether scan stores whole similarity rows itself (ScanArgs::row_out); otherwise they go
  // through push (core/select.h push_row).
  bool scan_rows = false;
  // (query, key row) re-rank dots side by side (DotLane above; keys bf16 when bf16 is set);
  // null on levels without one (see dot_halves).
  void (*dot_lanes)(const DotLane* jobs, int n, int d, bool bf16) = nullptr;
};

const Kernels* kernels_scalar();
// Defined only where the ISA exists: x86-64 for AVX, aarch64 for NEON (see core/cpu.cpp).
const Kernels* kernels_avx2();
const Kernels* kernels_avx512();
const Kernels* kernels_avx512vnni();  // avx512 + VPDPBUSD int8 first pass
const Kernels* kernels_avx512bf16();  // avx512vnni + VDPBF16PS bf16 first pass
const Kernels* kernels_neon();
// The scalar first passes, for tables of levels without their own (NEON, AVX2, AVX-512F).
void scan_bf16_scalar(const ScanArgs& args);
void scan_i8_scalar(const ScanArgs& args);

}  // namespace rapm
