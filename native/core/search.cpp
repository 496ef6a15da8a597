// Top-K search over a snapshot: the exact scan, and the fast paths that reach the same answer.
//
// Fast path (Snapshot::fast, taken only when the kernel level runs the first pass in hardware
// and the searched rows span at least fast_min_panels(k) = 4 (k + 32) key panels; otherwise
// the exact scan runs):
//  1. First pass: every query against the narrow keys (bf16 with VDPBF16PS, or int8 with
//     VPDPBUSD). Per query it keeps the K best and every row within a margin m_q >= 2 E_q of
//     the K-th best (core/candidates.h; E_q bounds |first-pass - exact-scan similarity| for
//     query q and any row, below). K' (the candidates kept) thus adapts to the data; it is
//     capped by a buffer of fast_buffer(K) = 8K + 256 rows.
//  2. Proof, per query: with f the first-pass similarities sorted best first, a row was left
//     out only if its f was below the admission threshold at that time, which never exceeds
//     f_K - m_q; so the gap f_K - f_{K'+1} > m_q >= 2 E_q. Then every row left out has an
//     exact similarity strictly below the exact K-th best (the K best candidates have exact
//     similarity >= f_K - E_q; a row left out has < f_K - m_q + E_q <= f_K - E_q), and the
//     exact top-K lies inside the candidates. A query whose set outgrew the buffer
//     (Candidates::overflow) has no proof and is redone by the exact scan (FastPathCounters::redone).
//  3. Exact re-rank: the candidates' similarities are recomputed on the stored keys (f32,
//     bf16 for a bf16 store, int8 codes and scales for an int8 store) by the level's re-rank
//     kernels (kernels.h: dot_lanes and dot_halves for f32 and bf16 keys, dot_panel_i8 for an
//     int8 store; each the exact scan's own per-lane chain, queries read in place) or, on
//     levels without them, by its scan (scan_i8keys for an int8 store); candidates are
//     bucketed by key panel (rerank() below says which panel goes where). The values are bit
//     for bit the exact scan's; the K best by (similarity, lower row) are then the exact
//     search's neighbours, similarities, weights and prior.
//
// The bound E_q. Let q be the normalised query, k a stored key, q' and k' what the first pass
// multiplies (bf16(q), bf16(k); or s_q*Q, s_k*K for int8), a = q - q', c = k - k'. Then
//   |q.k - q'.k'| <= |a| |k'| + |q| |c| <= |a| (N_k + C) + N_q C
// with N_q = |q|, |a| measured per query (double), N_k = max |k| and C = max |c| over the
// stored rows (core/shadow.cpp). Rounding of the first pass:
//   bf16: products of two bf16 are exact in f32; the d sums round to f32 (taken as faithful,
//         u = 2^-23, to cover any internal order of VDPBF16PS) and denormal inputs/results
//         flush to zero (DAZ/FTZ): <= gamma(d) |q'| |k'| + 3 d 2^-126;
//   int8: the integer sum is exact; int->float, s_q*s_k and the product round once each:
//         <= 4 * 2^-24 |q'| |k'|.
// The exact scan itself rounds d products/sums: <= gamma(d + 1) N_q N_k. E_q is the sum,
// evaluated in double and inflated by 1e-6 relative; gamma(n) = n u / (1 - n u), u = 2^-23.
// An int8 STORE (precision 'int8') has no shadow: the first pass reads the stored s*K, so
// C = 0, and its exact scan (kernels scan_i8keys) obeys the same gamma(d + 1) bound
// (core/int8_store.cpp).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <string>

#include "aggregate.h"
#include "bf16.h"
#include "datastore.h"
#include "select.h"
#include "candidates.h"
#include "topk.h"
#include "uninit.h"

namespace rapm {

namespace {

enum class Pass { kExact, kBf16, kInt8 };

struct PushCtx {
  TopK* heaps;
  float* thr;
  const int32_t* groups;   // segment-local
  int64_t base;            // segment base row
  int64_t first;           // first segment-local row in the searched range
  const int32_t* exclude;  // per task query, or null
};

void push_candidates(void* ctx, int qi, const float* sims, uint32_t mask, int64_t row0) {
  auto* c = static_cast<PushCtx*>(ctx);
  TopK& h = c->heaps[qi];
  const int32_t ex = c->exclude ? c->exclude[qi] : -1;
  while (mask) {
    const int l = __builtin_ctz(mask);
    mask &= mask - 1;
    const int64_t r = row0 + l;
    if (r < c->first || (ex >= 0 && c->groups[r] == ex)) continue;
    h.push(sims[l], static_cast<int32_t>(c->base + r));
  }
  c->thr[qi] = h.thr;
}

// The queries in the forms the passes read.
struct Queries {
  const float* f32 = nullptr;       // [b, d] normalised
  const uint16_t* bf16 = nullptr;   // [b, d]
  const uint8_t* u8 = nullptr;      // [b, d4*4]
  const float* scale = nullptr;     // [b]
  const int32_t* exclude = nullptr; // [b] or null
};

// How a pass splits its work: query chunks (sizes differ by at most one query; the kernels
// then cut each chunk into micro-tiles whose sizes differ by at most one, kernels/pack_queries.h)
// x key chunks (equal runs of key panels; parts merged after).
struct Grid {
  int64_t qtasks = 1, ktasks = 1;
  std::vector<int64_t> q0;  // query chunk qt is [q0[qt], q0[qt + 1])
  int64_t tasks() const { return qtasks * ktasks; }
  int64_t chunk_of(int64_t q) const { return std::upper_bound(q0.begin(), q0.end(), q) - q0.begin() - 1; }
};

// Keys up to this size stay in the last-level cache between the query chunks' sweeps.
constexpr int64_t kCachedKeyBytes = 16 << 20;
// Queries of one chunk kept beside a key block in L2 (the kernels block keys at 384 KiB).
constexpr int64_t kQueryChunkBytes = 512 << 10;

// Each query chunk sweeps every key of its key chunk, so keys are read once per query chunk.
// With at least 4 query tiles per thread, or keys that stay in the last-level cache, the work
// is split by queries alone (up to 4 chunks per thread; keys too only when there are fewer
// query tiles than threads). Keys are not split more than that because every key part admits
// its candidates again from a threshold of -inf (measured with the profile driver, kernels
// branch: a key split cost W2 d = 103's bf16 first pass 60-75% more CPU time, W4 int8 45%).
// Small batches over keys that stream from memory (Config A's 16-query serving batches over
// 0.8 GB of keys) are one query chunk, more only if their queries outgrow their share of L2,
// in key chunks (at least 4 tasks per thread, a multiple of the thread count): the keys are
// read once, not once per query chunk.
Grid plan_grid(int64_t b, int mr, int threads, int64_t key_bytes_total, int64_t query_row_bytes) {
  Grid g;
  const int64_t qtiles = (b + mr - 1) / mr;
  const int64_t per_thread4 = 4 * static_cast<int64_t>(threads);
  if (key_bytes_total <= kCachedKeyBytes || qtiles >= per_thread4) {
    g.qtasks = std::min(qtiles, per_thread4);
    g.ktasks = g.qtasks >= threads ? 1 : (per_thread4 + g.qtasks - 1) / g.qtasks;
  } else {
    const int64_t tiles_fit = std::max<int64_t>(1, kQueryChunkBytes / std::max<int64_t>(1, query_row_bytes * mr));
    g.qtasks = (qtiles + tiles_fit - 1) / tiles_fit;  // <= qtiles < per_thread4
    g.ktasks = (per_thread4 + g.qtasks - 1) / g.qtasks;
    while ((g.qtasks * g.ktasks) % threads != 0) ++g.ktasks;
  }
  g.q0.resize(static_cast<size_t>(g.qtasks) + 1);
  for (int64_t qt = 0; qt <= g.qtasks; ++qt) g.q0[qt] = b * qt / g.qtasks;
  return g;
}

// The key panels a pass searches, segment by segment in row order: key chunk kt of ktasks is
// the run [total kt / ktasks, total (kt + 1) / ktasks) of this sequence, so a store of many
// segments is split like a store of one. (Split segment by segment, every task took a slice of
// every segment: a loaded store holds one segment per ~16 MB block of its file, 53 at Config A,
// so a 16-query batch made ~420 scan calls of 2-3 key blocks, each starting on keys no
// prefetch had asked for, and ran ~1.4x as long as on a store of one segment.)
struct KeySpan {
  const Segment* seg;
  int64_t lr0, lr1;        // searched rows of the segment, segment-local
  int64_t first_panel;     // its first searched panel (segment-local)
  int64_t panels;          // searched panels
  int64_t before;          // searched panels of the segments before it
};

struct KeySpans {
  std::vector<KeySpan> spans;
  int64_t total = 0;
  // Segment-local panels [p0, p1) of span s in key chunk kt; empty when p0 >= p1.
  void chunk(const KeySpan& s, int64_t kt, int64_t ktasks, int64_t* p0, int64_t* p1) const {
    const int64_t g0 = std::max(total * kt / ktasks, s.before), g1 = std::min(total * (kt + 1) / ktasks, s.before + s.panels);
    *p0 = s.first_panel + (g0 - s.before);
    *p1 = s.first_panel + (g1 - s.before);
  }
};

KeySpans key_spans(const Snapshot& snap, int64_t rb, int64_t re) {
  KeySpans ks;
  for (const auto& seg : snap.segments) {
    const int64_t lr0 = std::max<int64_t>(rb - seg->base, 0), lr1 = std::min<int64_t>(re - seg->base, seg->n);
    if (lr0 >= lr1) continue;
    const int64_t first_panel = lr0 / kPanel, panels = (lr1 + kPanel - 1) / kPanel - first_panel;
    ks.spans.push_back(KeySpan{seg.get(), lr0, lr1, first_panel, panels, ks.total});
    ks.total += panels;
  }
  return ks;
}

// The best k rows of [rb, re) per query, best first: out[q*keep + i], count[q] of them.
// Exact pass: keep = k, margins null. First pass: margins[q] > 0 keeps every row within
// margins[q] of the k-th best too (TopK::margin), up to keep = the buffer length; overflow[q]
// is set when a query's set outgrew it.
Status topk_pass(const Snapshot& snap, const Kernels& kern, ThreadPool& pool, Pass pass, const Queries& qs, int64_t b,
                 int k, int keep, const float* margins, int64_t rb, int64_t re, std::vector<TopKEntry>& out,
                 std::vector<int>& count, std::vector<char>& overflow) {
  const int d = snap.d, d4 = (snap.d + 3) / 4;
  const int64_t key_bytes = pass == Pass::kInt8 || snap.int8 ? 1 : pass == Pass::kBf16 || snap.bf16 ? 2 : 4;
  const int64_t query_bytes = pass == Pass::kInt8 ? 1 : pass == Pass::kBf16 ? 2 : 4;
  const Grid grid = plan_grid(b, kern.mr, pool.threads(), (re - rb) * d * key_bytes, d * query_bytes);
  const int64_t ktasks = grid.ktasks;
  // Exact passes keeping many rows per query select from whole similarity rows (core/select.h).
  int64_t most_queries = 0;
  for (int64_t qt = 0; qt < grid.qtasks; ++qt) most_queries = std::max(most_queries, grid.q0[qt + 1] - grid.q0[qt]);
  const bool by_row = pass == Pass::kExact && !margins && ktasks == 1 && select_by_row(re - rb, k, most_queries);
  const int64_t block_panels = std::max<int64_t>(1, (384 * 1024) / (static_cast<int64_t>(d) * kPanel * key_bytes));
  void (*scan)(const ScanArgs&) = pass == Pass::kExact ? (snap.int8 ? kern.scan_i8keys : kern.scan)  // int8 store hook
                                  : pass == Pass::kBf16 ? kern.scan_bf16 : kern.scan_i8;

  const int cap = margins ? keep : topk_capacity(k);
  std::vector<TopKEntry> entries;
  std::vector<char> task_overflow;
  try {
    entries.resize(by_row ? 0 : static_cast<size_t>(ktasks) * b * cap);
    out.assign(static_cast<size_t>(b) * keep, 0);
    count.assign(static_cast<size_t>(b), 0);
    overflow.assign(static_cast<size_t>(b), 0);
    task_overflow.assign(static_cast<size_t>(ktasks) * b, 0);
  } catch (const std::bad_alloc&) {
    return Status::Error(StatusCode::kOutOfMemory, "out of memory for top-k buffers");
  }
  std::vector<int> heap_sizes(static_cast<size_t>(ktasks) * b, 0);
  std::atomic<bool> row_oom{false};
  const KeySpans spans = key_spans(snap, rb, re);

  pool.parallel_for(grid.tasks(), [&](int64_t task) {
    const int64_t qt = task / ktasks, kt = task % ktasks;
    const int64_t q0 = grid.q0[qt];
    const int nq = static_cast<int>(grid.q0[qt + 1] - q0);
    std::vector<TopK> heaps(by_row ? 0 : static_cast<size_t>(nq));
    std::vector<float> thr(static_cast<size_t>(nq), -std::numeric_limits<float>::infinity());
    for (int i = 0; i < static_cast<int>(heaps.size()); ++i) {
      const size_t o = (static_cast<size_t>(kt) * b + q0 + i) * cap;
      heaps[i] = TopK{entries.data() + o, 0, k, cap, -std::numeric_limits<float>::infinity()};
      if (margins) heaps[i].margin = margins[q0 + i];
    }
    const int64_t packed_rows = (nq + kern.mr - 1) / kern.mr * kern.mr;
    UninitVector<float> qpack(pass == Pass::kExact ? static_cast<size_t>(packed_rows) * d : 0);  // the kernel packs
    PushCtx ctx{heaps.data(), thr.data(), nullptr, 0, 0, qs.exclude ? qs.exclude + q0 : nullptr};
    std::unique_ptr<float[]> rows(by_row ? new (std::nothrow) float[static_cast<size_t>(nq) * (re - rb)] : nullptr);
    if (by_row && !rows) {
      row_oom = true;
      return;
    }
    RowSink sink{rows.get(), re - rb, rb, ctx.exclude};
    for (const KeySpan& span : spans.spans) {
      const Segment* seg = span.seg;
      const int64_t lr0 = span.lr0, lr1 = span.lr1;
      int64_t p0, p1;
      spans.chunk(span, kt, ktasks, &p0, &p1);
      if (p0 >= p1) continue;
      ctx.groups = seg->groups.data();
      ctx.base = seg->base;
      ctx.first = lr0;
      // Lanes at or past lr1 are masked by the kernel; rows before lr0 by push_candidates.
      ScanArgs a{qs.f32 + q0 * d, nq, d, seg->keys_f32.get(), seg->keys_bf16.get(), p0, p1, lr1,
                 block_panels, qpack.data(), thr.data(), push_candidates, &ctx};
      if (snap.int8) {  // int8 store hook: the stored keys (core/int8_store.cpp)
        a.keys_i8 = seg->keys_i8.get();
        a.key_scale = seg->i8_scale.data();
      }
      if (rows) {  // thr stays -inf: every row reaches push_row
        sink.groups = ctx.groups;
        sink.base = ctx.base;
        a.push = push_row;
        a.push_ctx = &sink;
        // Levels that store whole rows themselves skip the push per query and panel (~3% of a
        // W1 search: a call and a copy of 32 values each); push_row still marks excluded rows.
        if (kern.scan_rows && !ctx.exclude && pass == Pass::kExact && !snap.int8) {
          a.row_out = rows.get();
          a.row_out_stride = re - rb;
          a.row_out_at = seg->base - rb;
        }
      }
      if (pass == Pass::kBf16) {
        a.keys_f32 = nullptr;
        a.keys_bf16 = seg->shadow_bf16 ? seg->shadow_bf16.get() : seg->keys_bf16.get();
        a.queries_bf16 = qs.bf16 + q0 * d;
      } else if (pass == Pass::kInt8) {
        a.keys_f32 = nullptr;
        a.keys_bf16 = nullptr;
        a.keys_i8 = seg->keys_i8.get();
        a.key_scale = seg->i8_scale.data();
        a.key_sum = seg->i8_sum.data();
        a.queries_u8 = qs.u8 + q0 * d4 * 4;
        a.query_scale = qs.scale + q0;
      }
      scan(a);
    }
    if (rows) {  // the k best of each whole row, best first, straight into out
      SelectScratch scratch;
      for (int i = 0; i < nq; ++i) {
        count[q0 + i] = select_row(*kern.row_select, rows.get() + static_cast<size_t>(i) * (re - rb), re - rb, k, rb,
                                   out.data() + (q0 + i) * keep, scratch);
      }
      return;
    }
    for (int i = 0; i < nq; ++i) {
      heaps[i].select();
      heap_sizes[static_cast<size_t>(kt) * b + q0 + i] = heaps[i].size;
      task_overflow[static_cast<size_t>(kt) * b + q0 + i] = heaps[i].overflow;
    }
  });

  if (row_oom) return Status::Error(StatusCode::kOutOfMemory, "out of memory for similarity rows");
  if (by_row) return Status::Ok();
  // Merge key chunks, best first.
  const int64_t ftasks = std::min<int64_t>(b, 64);
  pool.parallel_for(ftasks, [&](int64_t t) {
    std::vector<TopKEntry> merged(static_cast<size_t>(cap));
    for (int64_t q = b * t / ftasks; q < b * (t + 1) / ftasks; ++q) {
      TopK h{merged.data(), 0, k, cap, -std::numeric_limits<float>::infinity()};
      if (margins) h.margin = margins[q];
      for (int64_t kt = 0; kt < ktasks; ++kt) {
        h.overflow = h.overflow || task_overflow[static_cast<size_t>(kt) * b + q];
        const TopKEntry* e = entries.data() + (static_cast<size_t>(kt) * b + q) * cap;
        const int sz = heap_sizes[static_cast<size_t>(kt) * b + q];
        for (int i = 0; i < sz; ++i) h.push(topk_value(e[i]), topk_id(e[i]));
      }
      h.sort_desc();
      const int m = std::min(h.size, keep);
      std::copy(merged.begin(), merged.begin() + m, out.begin() + q * keep);
      count[q] = m;
      overflow[q] = h.overflow;
    }
  });
  return Status::Ok();
}

struct FirstPushCtx {
  Candidates* sets;
  float* thr;
  const int32_t* groups;   // segment-local
  int64_t base;            // segment base row
  int64_t first;           // first segment-local row in the searched range
  const int32_t* exclude;  // per task query, or null
};

void push_first(void* ctx, int qi, const float* sims, uint32_t mask, int64_t row0) {
  auto* c = static_cast<FirstPushCtx*>(ctx);
  Candidates& h = c->sets[qi];
  // Lanes before the searched range (only in its first panel) and of the query's exclusion
  // group leave the mask first; the rest go in as push() would take them.
  if (row0 < c->first) mask &= c->first - row0 >= 32 ? 0u : ~((1u << (c->first - row0)) - 1u);
  const int32_t ex = c->exclude ? c->exclude[qi] : -1;
  if (ex >= 0) {
    for (uint32_t m = mask; m; m &= m - 1) {
      const int l = __builtin_ctz(m);
      if (c->groups[row0 + l] == ex) mask &= ~(1u << l);
    }
  }
  h.push_lanes(sims, mask, static_cast<int32_t>(c->base + row0));
  c->thr[qi] = h.thr;
}

// The first pass's candidate sets (core/candidates.h), compact: query q's are
// cand[start[q], start[q + 1]), with kth[q] / last[q] the k-th best and the smallest
// first-pass similarity among them, and overflow[q] set when the set outgrew its buffer.
struct FirstPass {
  std::vector<TopKEntry> cand;
  std::vector<int64_t> start;
  std::vector<float> kth, last;
  std::vector<char> overflow;
};

// First pass over rows [rb, re) with the narrow keys (pass kBf16 or kInt8), margins[q] per query.
Status first_pass(const Snapshot& snap, const Kernels& kern, ThreadPool& pool, Pass pass, const Queries& qs, int64_t b,
                  int k, const float* margins, int64_t rb, int64_t re, FirstPass& fp) {
  const int d = snap.d, d4 = (snap.d + 3) / 4;
  const int64_t key_bytes = pass == Pass::kInt8 ? 1 : 2;
  const Grid grid = plan_grid(b, kern.mr, pool.threads(), (re - rb) * d * key_bytes, pass == Pass::kInt8 ? d4 * 4 : d * 2);
  const int64_t ktasks = grid.ktasks;
  const int64_t block_panels = std::max<int64_t>(1, (384 * 1024) / (static_cast<int64_t>(d) * kPanel * key_bytes));
  void (*scan)(const ScanArgs&) = pass == Pass::kBf16 ? kern.scan_bf16 : kern.scan_i8;
  const int cap = fast_buffer(k);
  const int64_t ntasks = grid.tasks();

  // Per task its queries' kept sets back to back; per (key part, query) where and how many.
  std::vector<std::vector<TopKEntry>> kept(static_cast<size_t>(ntasks));
  std::vector<int64_t> part_off(static_cast<size_t>(ktasks * b), 0);
  std::vector<int> part_n(static_cast<size_t>(ktasks * b), 0);
  std::vector<float> part_kth(static_cast<size_t>(ktasks * b), 0), part_last(static_cast<size_t>(ktasks * b), 0);
  std::vector<char> part_ovf(static_cast<size_t>(ktasks * b), 0);
  std::vector<char> task_oom(static_cast<size_t>(ntasks), 0);
  const KeySpans spans = key_spans(snap, rb, re);
  pool.parallel_for(ntasks, [&](int64_t task) {
    const int64_t qt = task / ktasks, kt = task % ktasks;
    const int64_t q0 = grid.q0[qt];
    const int nq = static_cast<int>(grid.q0[qt + 1] - q0);
    std::unique_ptr<TopKEntry[]> buf(new (std::nothrow) TopKEntry[static_cast<size_t>(nq) * cap]);  // uninitialised
    if (!buf) {
      task_oom[task] = 1;
      return;
    }
    std::vector<Candidates> sets;
    sets.reserve(static_cast<size_t>(nq));
    for (int i = 0; i < nq; ++i) {
      sets.emplace_back(buf.get() + static_cast<size_t>(i) * cap, cap, k, margins[q0 + i]);
      sets.back().kth_of = kern.row_select->kth_largest;
    }
    std::vector<float> thr(static_cast<size_t>(nq), -std::numeric_limits<float>::infinity());
    FirstPushCtx ctx{sets.data(), thr.data(), nullptr, 0, 0, qs.exclude ? qs.exclude + q0 : nullptr};
    for (const KeySpan& span : spans.spans) {
      const Segment* seg = span.seg;
      const int64_t lr0 = span.lr0, lr1 = span.lr1;
      int64_t p0, p1;
      spans.chunk(span, kt, ktasks, &p0, &p1);
      if (p0 >= p1) continue;
      ctx.groups = seg->groups.data();
      ctx.base = seg->base;
      ctx.first = lr0;
      // Lanes at or past lr1 are masked by the kernel; rows before lr0 by push_first.
      ScanArgs a{nullptr, nq, d, nullptr, nullptr, p0, p1, lr1, block_panels, nullptr, thr.data(), push_first, &ctx};
      if (pass == Pass::kBf16) {
        a.keys_bf16 = seg->shadow_bf16 ? seg->shadow_bf16.get() : seg->keys_bf16.get();
        a.queries_bf16 = qs.bf16 + q0 * d;
      } else {
        a.keys_i8 = seg->keys_i8.get();
        a.key_scale = seg->i8_scale.data();
        a.key_sum = seg->i8_sum.data();
        a.queries_u8 = qs.u8 + q0 * d4 * 4;
        a.query_scale = qs.scale + q0;
      }
      scan(a);
    }
    std::vector<TopKEntry>& out = kept[task];
    int64_t total = 0;
    for (int i = 0; i < nq; ++i) {
      sets[i].select();
      total += sets[i].size;
    }
    try {
      out.reserve(static_cast<size_t>(total));
    } catch (const std::bad_alloc&) {
      task_oom[task] = 1;
      return;
    }
    for (int i = 0; i < nq; ++i) {
      const size_t at = static_cast<size_t>(kt) * b + q0 + i;
      part_off[at] = static_cast<int64_t>(out.size());
      part_n[at] = sets[i].size;
      part_kth[at] = sets[i].kth();
      part_last[at] = sets[i].last();
      part_ovf[at] = sets[i].overflow;
      out.insert(out.end(), sets[i].buf, sets[i].buf + sets[i].size);
    }
  });
  for (char oom : task_oom)
    if (oom) return Status::Error(StatusCode::kOutOfMemory, "out of memory for the fast path's candidate buffers");

  const auto part = [&](int64_t kt, int64_t q) {
    return kept[static_cast<size_t>(grid.chunk_of(q) * ktasks + kt)].data() + part_off[static_cast<size_t>(kt * b + q)];
  };
  try {
    fp.start.assign(static_cast<size_t>(b) + 1, 0);
    fp.kth.assign(static_cast<size_t>(b), 0);
    fp.last.assign(static_cast<size_t>(b), 0);
    fp.overflow.assign(static_cast<size_t>(b), 0);
    if (ktasks == 1) {
      for (int64_t q = 0; q < b; ++q) {
        fp.start[q + 1] = fp.start[q] + part_n[q];
        fp.kth[q] = part_kth[q];
        fp.last[q] = part_last[q];
        fp.overflow[q] = part_ovf[q];
      }
      fp.cand.resize(static_cast<size_t>(fp.start[b]));
      for (int64_t q = 0; q < b; ++q) std::copy(part(0, q), part(0, q) + part_n[q], fp.cand.begin() + fp.start[q]);
    } else {
      // Keys were split: merge each query's parts (queries in parallel), then compact.
      std::vector<TopKEntry> mbuf(static_cast<size_t>(b) * cap);
      std::vector<int> msize(static_cast<size_t>(b));
      const int64_t mtasks = std::min<int64_t>(b, 64);
      pool.parallel_for(mtasks, [&](int64_t t) {
        for (int64_t q = b * t / mtasks; q < b * (t + 1) / mtasks; ++q) {
          Candidates h(mbuf.data() + q * cap, cap, k, margins[q]);
          h.kth_of = kern.row_select->kth_largest;
          for (int64_t kt = 0; kt < ktasks; ++kt) {
            h.overflow = h.overflow || part_ovf[kt * b + q];
            const TopKEntry* e = part(kt, q);
            for (int i = 0; i < part_n[kt * b + q]; ++i) h.push(topk_value(e[i]), topk_id(e[i]));
          }
          h.select();
          msize[q] = h.size;
          fp.kth[q] = h.kth();
          fp.last[q] = h.last();
          fp.overflow[q] = h.overflow;
        }
      });
      for (int64_t q = 0; q < b; ++q) fp.start[q + 1] = fp.start[q] + msize[q];
      fp.cand.resize(static_cast<size_t>(fp.start[b]));
      for (int64_t q = 0; q < b; ++q) std::copy(mbuf.begin() + q * cap, mbuf.begin() + q * cap + msize[q], fp.cand.begin() + fp.start[q]);
    }
  } catch (const std::bad_alloc&) {
    return Status::Error(StatusCode::kOutOfMemory, "out of memory for the fast path's candidates");
  }
  return Status::Ok();
}

struct RerankRef {
  int32_t q;
  int64_t at;  // index into fp.cand / sims
};

// rerank()'s bucket arrays, one set per calling thread, reused by its next call (rerank never
// runs twice at once on one thread: a parallel_for caller runs only its own job's tasks,
// core/thread_pool.h, and search() is not called from pool tasks). A set that
// grew past kRerankScratchKeep bytes (a store of more than about 4M key panels, or a batch with
// millions of candidates) is released after the call instead of kept.
constexpr size_t kRerankScratchKeep = 32u << 20;
struct RerankScratch {
  std::vector<int64_t> first;
  std::vector<RerankRef> refs;
  std::vector<uint8_t> lanes;
  void trim() {
    const size_t bytes = first.capacity() * sizeof(int64_t) + refs.capacity() * sizeof(RerankRef) + lanes.capacity();
    if (bytes > kRerankScratchKeep) *this = RerankScratch{};
  }
};
RerankScratch& rerank_scratch() {
  thread_local RerankScratch s;
  return s;
}

// Exact similarities of the candidates fp.cand[i] with pick[i] set -> sims[i], bit for bit
// the exact scan's values (kernels.h, "The fast paths' exact re-rank"). The candidates are
// bucketed by key panel (counting sort, queries ascending within a panel), and each panel
// goes one way (the routes below): f32 and bf16 keys, a panel holding at least kLaneRefs
// candidates (a W2 batch: ~17-22 per panel) one candidate per vector lane (dot_lanes), a
// sparser one as (query, half panel) dots side by side (dot_halves; a 16-query serving batch:
// nearly every panel); an int8 store, each panel once with the queries holding a candidate in
// it, a query whose candidates there all sit in one half of the panel (lanes 0-15 or 16-31)
// with that half only (dot_panel_i8: the same values, half the reads and the multiply-adds),
// while the lines of the next panel the task visits are prefetched (the candidates are
// scattered over the store, so without it every panel starts with a run of cache misses).
void rerank(const Snapshot& snap, const Kernels& kern, ThreadPool& pool, const float* qn, int64_t b,
            const FirstPass& fp, const std::vector<char>& pick, std::vector<float>& sims) {
  const int d = snap.d, d4 = (snap.d + 3) / 4;
  const size_t nseg = snap.segments.size();
  std::vector<int64_t> seg_panel(nseg + 1, 0);  // first global panel of each segment
  for (size_t s = 0; s < nseg; ++s) seg_panel[s + 1] = seg_panel[s] + snap.segments[s]->npanels;
  const int64_t npanels = seg_panel[nseg];
  // Candidate row -> its global panel and lane.
  const auto locate = [&](int64_t row, int64_t& panel, uint8_t& lane) {
    size_t si = 0;
    if (nseg > 1) {
      auto it = std::upper_bound(snap.segments.begin(), snap.segments.end(), row,
                                 [](int64_t r, const std::shared_ptr<const Segment>& s) { return r < s->base; });
      si = static_cast<size_t>(it - snap.segments.begin() - 1);
    }
    const int64_t lr = row - snap.segments[si]->base;
    panel = seg_panel[si] + lr / kPanel;
    lane = static_cast<uint8_t>(lr % kPanel);
  };
  // The refs bucketed by panel (counting sort, stable: queries ascending within a panel):
  // panel P's are refs[first[P], first[P + 1]). The arrays are the calling thread's, kept
  // between calls (RerankScratch): freshly allocated they cost a page fault per 4 KiB on
  // every search (first alone is 8 bytes a panel: 500 KB at 2M rows), more than the dots.
  RerankScratch& sc = rerank_scratch();
  std::vector<int64_t>& first = sc.first;
  std::vector<RerankRef>& refs = sc.refs;
  std::vector<uint8_t>& lanes = sc.lanes;
  int64_t nrefs = 0;
  for (char c : pick) nrefs += c != 0;
  first.assign(static_cast<size_t>(npanels) + 1, 0);
  refs.resize(static_cast<size_t>(nrefs));
  lanes.resize(static_cast<size_t>(nrefs));
  // fn(q, i, panel, lane) for every picked candidate, queries ascending (the locate is redone by
  // the second pass rather than kept: 9 bytes a candidate the scratch need not hold).
  const auto each_pick = [&](auto&& fn) {
    for (int64_t q = 0; q < b; ++q) {
      for (int64_t i = fp.start[q]; i < fp.start[q + 1]; ++i) {
        if (!pick[i]) continue;
        int64_t P;
        uint8_t lane;
        locate(topk_id(fp.cand[i]), P, lane);
        fn(q, i, P, lane);
      }
    }
  };
  each_pick([&](int64_t, int64_t, int64_t P, uint8_t) { ++first[P + 1]; });
  for (int64_t P = 0; P < npanels; ++P) first[P + 1] += first[P];
  // Fill, first[P] as panel P's cursor: it ends at the old first[P + 1], so one shift right
  // restores the starts.
  each_pick([&](int64_t q, int64_t i, int64_t P, uint8_t lane) {
    const int64_t at = first[P]++;
    refs[at] = RerankRef{static_cast<int32_t>(q), i};
    lanes[at] = lane;
  });
  std::copy_backward(first.begin(), first.end() - 1, first.end());
  first[0] = 0;
  // Tasks: runs of panels holding about the same number of refs.
  const int64_t tasks = std::max<int64_t>(1, std::min<int64_t>(nrefs / 64, 16 * pool.threads()));
  pool.parallel_for(tasks, [&](int64_t t) {
    // This task's panels: those whose refs start in [nrefs t / tasks, nrefs (t + 1) / tasks).
    const auto pend = first.begin() + npanels;
    const int64_t P0 = std::lower_bound(first.begin(), pend, nrefs * t / tasks) - first.begin();
    const int64_t P1 = std::lower_bound(first.begin(), pend, nrefs * (t + 1) / tasks) - first.begin();
    std::vector<const float*> qptr;
    std::vector<float> out, qbuf, qpack, thr;
    std::vector<int> slot;  // per query of the panel (in ref order): its row of out
    const auto segment_at = [&](int64_t P) {
      return static_cast<size_t>(std::upper_bound(seg_panel.begin(), seg_panel.end(), P) - seg_panel.begin() - 1);
    };
    // Panel P's keys: f32, bf16 for a bf16 store, int8 codes for an int8 store (whose
    // panels are d4 groups of kPanel * 4 bytes).
    const auto keys_at = [&](int64_t P) -> const void* {
      const size_t si = segment_at(P);
      const Segment& seg = *snap.segments[si];
      const size_t lp = static_cast<size_t>(P - seg_panel[si]);
      if (snap.int8) return seg.keys_i8.get() + lp * d4 * kPanel * 4;
      return snap.bf16 ? static_cast<const void*>(seg.keys_bf16.get() + lp * d * kPanel) : seg.keys_f32.get() + lp * d * kPanel;
    };
    // Panel P's row scales (int8 store).
    const auto scales_at = [&](int64_t P) {
      const size_t si = segment_at(P);
      return snap.segments[si]->i8_scale.data() + static_cast<size_t>(P - seg_panel[si]) * kPanel;
    };
    // The half of refs [r0, r1) of one panel: 0 or 1, or -1 when they sit in both.
    const auto half_of = [&](int64_t r0, int64_t r1) {
      bool low = false, high = false;
      for (int64_t r = r0; r < r1; ++r) (lanes[r] < kPanel / 2 ? low : high) = true;
      return low && high ? -1 : high ? 1 : 0;
    };
    // The routes (kernels.h, "The fast paths' exact re-rank"). f32 and bf16 keys: a panel
    // holding at least kLaneRefs refs goes to kern.dot_lanes, one (query, lane) job per ref (up
    // to 16 side by side, so a ref costs about a sixteenth of a lane-wide dot), each writing its
    // sims entry directly; the jobs are queued in panel order, which is the order the kernel
    // wants them in, and run kLaneJobs at a time. A sparser panel (so held by at most
    // kFewQueries queries) is queued as (query, half) dots for kern.dot_halves, which runs
    // several side by side (kernels.h: a lone query's chain waits on the FMA latency); their
    // values land in pout (per queued panel nq rows of kPanel, as `out` below) and are scattered
    // when the queue is run. That queue runs once it holds kQueueDots dots; a panel adds at
    // least 1 and at most 2 kFewQueries, so at most kQueueDots panels of kFewQueries rows are
    // ever queued: pout is sized for that once and never moves, and each dot's out points into
    // it directly. An int8 store: each panel once through kern.dot_panel_i8 per class of its
    // queries (below). A level without these kernels: each panel through its scan.
    constexpr int64_t kLaneRefs = 4;
    constexpr int kFewQueries = kLaneRefs - 1;
    constexpr size_t kLaneJobs = 512;
    constexpr size_t kQueueDots = 24;
    const bool by_lanes = !snap.int8 && kern.dot_lanes != nullptr;  // and dot_halves (a level has both)
    const bool by_i8_dot = snap.int8 && kern.dot_panel_i8 != nullptr;
    std::vector<DotLane> lane_jobs;
    if (by_lanes) lane_jobs.reserve(kLaneJobs);
    const auto run_lanes = [&] {
      kern.dot_lanes(lane_jobs.data(), static_cast<int>(lane_jobs.size()), d, snap.bf16);
      lane_jobs.clear();
    };
    struct Queued {
      int64_t r0, r1;  // the panel's refs
      size_t out0;     // its first row in pout
      size_t slot0;    // its slots in qslot
    };
    std::vector<Queued> queued;
    std::vector<float> pout(by_lanes ? kQueueDots * kFewQueries * kPanel : 0);
    size_t pout_used = 0;
    std::vector<int> qslot;
    std::vector<DotHalf> halves;
    // sims of the refs [r0, r1) of one panel from its rows (slots in ref order, as `slot`).
    const auto scatter = [&](int64_t r0, int64_t r1, const int* slots, const float* rows) {
      int i = -1;
      for (int64_t r = r0; r < r1; ++r) {
        if (r == r0 || refs[r].q != refs[r - 1].q) ++i;
        sims[refs[r].at] = rows[static_cast<size_t>(slots[i]) * kPanel + lanes[r]];
      }
    };
    const auto run_queue = [&] {
      kern.dot_halves(halves.data(), static_cast<int>(halves.size()), d, snap.bf16);
      for (const Queued& u : queued) scatter(u.r0, u.r1, qslot.data() + u.slot0, pout.data() + u.out0);
      queued.clear();
      pout_used = 0;
      qslot.clear();
      halves.clear();
    };
    const auto next_after = [&](int64_t P) {  // the next panel with refs after P, or P1
      do ++P;
      while (P < P1 && first[P] == first[P + 1]);
      return P;
    };
    for (int64_t P = next_after(P0 - 1); P < P1; P = next_after(P)) {
      const int64_t r0 = first[P], r1 = first[P + 1];
      if (by_lanes && r1 - r0 >= kLaneRefs) {
        const void* keys = keys_at(P);
        for (int64_t r = r0; r < r1; ++r) {
          lane_jobs.push_back(DotLane{qn + static_cast<size_t>(refs[r].q) * d, keys, lanes[r], &sims[refs[r].at]});
        }
        if (lane_jobs.size() >= kLaneJobs) run_lanes();
        continue;
      }
      // The panel's queries by the lanes they need: one half (0, 1) or the whole panel (2),
      // out rows grouped so (low half, high half, whole). The scan computes whole panels only.
      slot.clear();
      int nclass[3] = {0, 0, 0};
      for (int64_t r = r0, e; r < r1; r = e) {
        for (e = r + 1; e < r1 && refs[e].q == refs[r].q;) ++e;
        const int h = by_lanes || by_i8_dot ? half_of(r, e) : -1;
        slot.push_back(h < 0 ? 2 : h);
        ++nclass[slot.back()];
      }
      const int nq = static_cast<int>(slot.size());
      int at[3] = {0, nclass[0], nclass[0] + nclass[1]};
      qptr.resize(static_cast<size_t>(nq));
      for (int64_t r = r0, i = 0; r < r1; ++r) {
        if (r > r0 && refs[r].q == refs[r - 1].q) continue;
        int& s = slot[static_cast<size_t>(i++)];
        s = at[s]++;
        qptr[static_cast<size_t>(s)] = qn + static_cast<size_t>(refs[r].q) * d;
      }
      if (by_lanes) {  // fewer than kLaneRefs refs: nq <= kFewQueries
        const void* keys = keys_at(P);
        const size_t rows = static_cast<size_t>(nq) * kPanel;
        if (pout_used + rows > pout.size()) run_queue();  // never, by the count above; kept as the guard
        const size_t out0 = pout_used;
        pout_used += rows;
        for (int s = 0; s < nq; ++s) {
          // Out row s holds a class-0 (low half), class-1 (high half) or class-2 (both) query.
          const int c = s < nclass[0] ? 0 : s < nclass[0] + nclass[1] ? 1 : 2;
          const int h0 = c == 1 ? 1 : 0, h1 = c == 0 ? 0 : 1;
          for (int h = h0; h <= h1; ++h)
            halves.push_back(DotHalf{qptr[static_cast<size_t>(s)], keys, h, pout.data() + out0 + s * kPanel + 16 * h});
        }
        queued.push_back(Queued{r0, r1, out0, qslot.size()});
        qslot.insert(qslot.end(), slot.begin(), slot.end());
        if (halves.size() >= kQueueDots) run_queue();
        continue;
      }
      out.resize(static_cast<size_t>(nq) * kPanel);
      if (by_i8_dot) {
        const auto* keys = static_cast<const int8_t*>(keys_at(P));
        const int64_t next = next_after(P);
        bool prefetch = next < P1;
        for (int c = 0, q0 = 0; c < 3; q0 += nclass[c++]) {
          if (nclass[c] == 0) continue;
          DotPanelArgs a{qptr.data() + q0, nclass[c], d, keys, scales_at(P), c == 2 ? -1 : c,
                         out.data() + static_cast<size_t>(q0) * kPanel};
          if (prefetch) {  // once, with the first dot
            a.next = keys_at(next);
            a.next_half = half_of(first[next], first[next + 1]);
            a.next_scale = scales_at(next);
            prefetch = false;
          }
          kern.dot_panel_i8(a);
        }
      } else {
        // Through the level's scan: the queries copied side by side, every lane pushed.
        const size_t si = segment_at(P);
        const Segment& seg = *snap.segments[si];
        const int64_t lp = P - seg_panel[si];
        qbuf.resize(static_cast<size_t>(nq) * d);
        for (int i = 0; i < nq; ++i) std::copy(qptr[i], qptr[i] + d, qbuf.begin() + static_cast<size_t>(i) * d);
        qpack.resize(static_cast<size_t>((nq + kern.mr - 1) / kern.mr * kern.mr) * d);
        thr.assign(static_cast<size_t>(nq), -std::numeric_limits<float>::infinity());
        auto push = [](void* o, int qi, const float* sv, uint32_t, int64_t) {
          std::copy(sv, sv + kPanel, static_cast<float*>(o) + static_cast<size_t>(qi) * kPanel);
        };
        ScanArgs a{qbuf.data(), nq, d, seg.keys_f32.get(), seg.keys_bf16.get(), lp, lp + 1, seg.n, 1,
                   qpack.data(), thr.data(), push, out.data()};
        if (snap.int8) {  // int8 store hook: re-rank with its exact scan (core/int8_store.cpp)
          a.keys_i8 = seg.keys_i8.get();
          a.key_scale = seg.i8_scale.data();
          kern.scan_i8keys(a);
        } else {
          kern.scan(a);
        }
      }
      scatter(r0, r1, slot.data(), out.data());
    }
    if (!halves.empty()) run_queue();
    if (!lane_jobs.empty()) run_lanes();
  });
  sc.trim();
}

double gamma_n(double n) {
  const double u = std::ldexp(1.0, -23);
  return n * u / (1 - n * u);
}

}  // namespace

Status search(const Snapshot& snap, const Kernels& kern, ThreadPool& pool, const float* queries, int64_t b,
              const SearchParams& params, const SearchOutputs& out) {
  const int d = snap.d, dv = snap.dv, k = params.k;
  if (b <= 0) return Status::Ok();
  const int64_t rb = params.row_begin, re = params.row_end < 0 ? snap.n : params.row_end;
  if (rb < 0 || rb >= re || re > snap.n) {
    return Status::Error(StatusCode::kInvalidArg, "row range [" + std::to_string(rb) + ", " + std::to_string(re) +
                                                      ") is empty or outside [0, " + std::to_string(snap.n) + ")");
  }
  if (k < 1 || k > re - rb) {
    return Status::Error(StatusCode::kKTooLarge,
                         "k = " + std::to_string(k) + " but only " + std::to_string(re - rb) + " rows are searched");
  }
  UninitVector<float> qn;  // written in full by normalize_rows
  try {
    qn.resize(static_cast<size_t>(b) * d);
  } catch (const std::bad_alloc&) {
    return Status::Error(StatusCode::kOutOfMemory, "out of memory normalising queries");
  }
  Status st = normalize_rows(queries, qn.data(), b, d, pool);
  if (!st.ok()) return st;
  const Status short_of_k = Status::Error(StatusCode::kKTooLarge,
                                          "fewer than k = " + std::to_string(k) + " rows remain after exclusion");

  // The re-rank dots every key panel holding a candidate with the queries that hold one
  // there: per query about min(K', panels) panel dots, K' typically 1.5 K - 4 K. Below
  // ~4 K' panels that is no longer small next to the first pass's saving, so small stores
  // and ranges (and large k) are searched exactly from the start.
  const int64_t searched_panels = (re - rb) / kPanel;
  const bool fast = ((snap.fast == FastPath::kBf16 && kern.fast_bf16) ||
                     (snap.fast == FastPath::kInt8 && kern.fast_i8 && d <= kMaxI8Dim)) &&
                    fast_min_panels(k) <= searched_panels;
  std::vector<TopKEntry> best;  // [b, k] exact top-k, best first
  std::vector<int> nbest;
  Queries qs;
  qs.f32 = qn.data();
  qs.exclude = params.exclude_groups;
  if (!fast) {
    std::vector<char> unused;
    st = topk_pass(snap, kern, pool, Pass::kExact, qs, b, k, k, nullptr, rb, re, best, nbest, unused);
    if (!st.ok()) return st;
  } else {
    const Pass pass = snap.fast == FastPath::kBf16 ? Pass::kBf16 : Pass::kInt8;
    const int d4 = (d + 3) / 4;
    double key_norm = 0, key_err = 0;
    for (const auto& seg : snap.segments) {
      key_norm = std::max(key_norm, seg->key_norm_max);
      key_err = std::max(key_err, seg->shadow_err_max);
    }
    UninitVector<uint16_t> qb;  // written in full below
    std::vector<uint8_t> qu;
    std::vector<float> qscale;
    std::vector<double> bound(static_cast<size_t>(b));
    try {
      if (pass == Pass::kBf16) qb.resize(static_cast<size_t>(b) * d);
      if (pass == Pass::kInt8) {
        qu.assign(static_cast<size_t>(b) * d4 * 4, 128);
        qscale.resize(static_cast<size_t>(b));
      }
    } catch (const std::bad_alloc&) {
      return Status::Error(StatusCode::kOutOfMemory, "out of memory for the fast-path queries");
    }
    // Quantised queries and the per-query bound E_q (see the top of this file).
    const double g_first = pass == Pass::kBf16 ? gamma_n(d) : 4 * std::ldexp(1.0, -24);
    const double g_exact = gamma_n(d + 1.0);
    const double tiny = pass == Pass::kBf16 ? 3.0 * d * std::ldexp(1.0, -126) : 0.0;
    pool.parallel_for(b, [&](int64_t q) {
      const float* x = qn.data() + q * d;
      double n2 = 0, a2 = 0;
      if (pass == Pass::kBf16) {
        for (int p = 0; p < d; ++p) {
          const uint16_t h = to_bf16(x[p]);
          qb[q * d + p] = h;
          const double e = static_cast<double>(x[p]) - bf16_to_f32(h);
          n2 += static_cast<double>(x[p]) * x[p];
          a2 += e * e;
        }
      } else {
        float amax = 0;
        for (int p = 0; p < d; ++p) amax = std::max(amax, std::fabs(x[p]));
        const float step = amax / 127.0f;  // > 0: the query is normalised
        qscale[q] = step;
        for (int p = 0; p < d; ++p) {
          const int v = static_cast<int>(std::clamp(std::nearbyint(x[p] / step), -127.0f, 127.0f));
          qu[q * d4 * 4 + p] = static_cast<uint8_t>(v + 128);
          const double e = static_cast<double>(x[p]) - static_cast<double>(step) * v;
          n2 += static_cast<double>(x[p]) * x[p];
          a2 += e * e;
        }
      }
      const double nq = std::sqrt(n2), a = std::sqrt(a2);
      const double e = a * (key_norm + key_err) + nq * key_err + g_first * (nq + a) * (key_norm + key_err) +
                       g_exact * nq * key_norm + tiny;
      bound[q] = e * (1 + 1e-6);
    });
    qs.bf16 = qb.data();
    qs.u8 = qu.data();
    qs.scale = qscale.data();

    // First pass keeping every row within 2 E_q of the k-th best (as float, rounded up).
    std::vector<float> margins(static_cast<size_t>(b));
    for (int64_t q = 0; q < b; ++q) margins[q] = static_cast<float>(2 * bound[q] * (1 + 1e-6) + 1e-6);
    FirstPass fp;
    st = first_pass(snap, kern, pool, pass, qs, b, k, margins.data(), rb, re, fp);
    if (!st.ok()) return st;
    // The proof, per query: the candidates are all rows whose first-pass similarity f is
    // >= f_K - margin (core/candidates.h), so the best row left out is below
    // f_K - margin <= f_K - 2 E_q: the gap condition holds unless the set overflowed.
    std::vector<char> proven(static_cast<size_t>(b), 0);
    int64_t redo = 0;
    for (int64_t q = 0; q < b; ++q) {
      if (fp.start[q + 1] - fp.start[q] < k) return Status::Error(short_of_k.code, short_of_k.message, q);
      const double fk = fp.kth[q], last = fp.last[q];
      proven[q] = !fp.overflow[q] && fk - last <= margins[q] && margins[q] > 2 * bound[q];
      redo += !proven[q];
    }
    // Exact re-rank in two rounds (the second skips candidates that cannot be among the K
    // best). Round 1: per proven query the candidates with f >= f_K (its K best by first pass,
    // ties included: at least K). Their K-th best exact similarity s_q is at most the exact
    // K-th best over all rows (the K-th best of a subset). Round 2: the other candidates with
    // f + E_q >= s_q. A candidate left out has exact similarity <= f + E_q < s_q, strictly
    // below the exact K-th best: neither among the K best nor tied with the K-th. (f + E_q is
    // summed in double; its rounding error, about 2^-53 N_q N_k at most, is far inside the
    // 1e-6 relative inflation of E_q >= gamma(d + 1) N_q N_k.) So the K best of the
    // re-ranked candidates are the K best of all rows. The first-pass error is mostly far
    // below its bound E_q, so s_q is about f_K and round 2 skips roughly the lower half of
    // the margin band [f_K - 2 E_q, f_K).
    //
    // The skip saves visiting key panels only when candidates are sparse over the store. When
    // there are at least 2 candidates per searched panel (a large batch: W2's 1,024 queries
    // hold ~20 per panel), both rounds visit nearly every panel, and a visit costs at least
    // reading the panel from memory: measured at W2 d = 1024 with bf16 keys, 19 + 13 ms for the
    // two rounds (the second, ~4 candidates a panel, waits on memory), 23-25 ms for one round
    // over all candidates. Then every candidate is re-ranked in one round: a superset of what
    // the two rounds re-rank, so the K best of the re-ranked candidates are the same rows with
    // the same values.
    std::vector<float> exact(fp.cand.size(), 0.0f);
    std::vector<char> pick(fp.cand.size(), 0);
    const bool one_round = static_cast<int64_t>(fp.cand.size()) >= 2 * std::max<int64_t>(1, searched_panels);
    for (int64_t q = 0; q < b; ++q) {
      if (!proven[q]) continue;
      for (int64_t i = fp.start[q]; i < fp.start[q + 1]; ++i) pick[i] = one_round || topk_value(fp.cand[i]) >= fp.kth[q];
    }
    rerank(snap, kern, pool, qn.data(), b, fp, pick, exact);
    const int64_t ftasks = std::min<int64_t>(b, 64);
    if (!one_round) pool.parallel_for(ftasks, [&](int64_t t) {
      std::vector<float> e;
      for (int64_t q = b * t / ftasks; q < b * (t + 1) / ftasks; ++q) {
        if (!proven[q]) continue;
        e.clear();
        for (int64_t i = fp.start[q]; i < fp.start[q + 1]; ++i)
          if (pick[i]) e.push_back(exact[i]);
        double s_q = -std::numeric_limits<double>::infinity();  // (fewer than k: skip none)
        if (static_cast<int64_t>(e.size()) >= k) {
          std::nth_element(e.begin(), e.begin() + (k - 1), e.end(), std::greater<float>());
          s_q = e[k - 1];
        }
        for (int64_t i = fp.start[q]; i < fp.start[q + 1]; ++i)
          pick[i] = !pick[i] && static_cast<double>(topk_value(fp.cand[i])) + bound[q] >= s_q ? 2 : pick[i] ? 1 : 0;
      }
    });
    if (!one_round) {
      std::vector<char> pick2(pick.size());
      for (size_t i = 0; i < pick.size(); ++i) pick2[i] = pick[i] == 2;
      rerank(snap, kern, pool, qn.data(), b, fp, pick2, exact);
    }
    best.assign(static_cast<size_t>(b) * k, 0);
    nbest.assign(static_cast<size_t>(b), k);
    pool.parallel_for(ftasks, [&](int64_t t) {
      std::vector<TopKEntry> e;
      for (int64_t q = b * t / ftasks; q < b * (t + 1) / ftasks; ++q) {
        if (!proven[q]) continue;
        e.clear();
        for (int64_t i = fp.start[q]; i < fp.start[q + 1]; ++i)
          if (pick[i]) e.push_back(topk_pack(exact[i], topk_id(fp.cand[i])));
        // The entries are distinct (ids differ), so this is partial_sort's order; its heap
        // sort of the k kept was ~2% of a W2 d = 103 search, an introsort of them is cheaper.
        std::nth_element(e.begin(), e.begin() + (k - 1), e.end(), std::greater<TopKEntry>());
        std::sort(e.begin(), e.begin() + k, std::greater<TopKEntry>());
        std::copy(e.begin(), e.begin() + k, best.begin() + q * k);
      }
    });
    if (redo > 0) {
      // The exact scan for the queries the first pass could not settle.
      std::vector<int64_t> ids;
      std::vector<float> sub(static_cast<size_t>(redo) * d);
      std::vector<int32_t> ex(params.exclude_groups ? static_cast<size_t>(redo) : 0);
      for (int64_t q = 0; q < b; ++q) {
        if (proven[q]) continue;
        std::copy(qn.begin() + q * d, qn.begin() + (q + 1) * d, sub.begin() + static_cast<int64_t>(ids.size()) * d);
        if (!ex.empty()) ex[ids.size()] = params.exclude_groups[q];
        ids.push_back(q);
      }
      Queries rq;
      rq.f32 = sub.data();
      rq.exclude = ex.empty() ? nullptr : ex.data();
      std::vector<TopKEntry> rbest;
      std::vector<int> rn;
      std::vector<char> unused;
      st = topk_pass(snap, kern, pool, Pass::kExact, rq, redo, k, k, nullptr, rb, re, rbest, rn, unused);
      if (!st.ok()) return st;
      for (size_t i = 0; i < ids.size(); ++i) {
        std::copy(rbest.begin() + i * k, rbest.begin() + (i + 1) * k, best.begin() + ids[i] * k);
        nbest[ids[i]] = rn[i];
      }
    }
    if (snap.counters) {
      int64_t kept = 0, dotted = 0;
      for (int64_t q = 0; q < b; ++q) kept += proven[q] ? fp.start[q + 1] - fp.start[q] : 0;
      for (char c : pick) dotted += c != 0;  // unproven queries pick none
      snap.counters->queries += b;
      snap.counters->redone += redo;
      snap.counters->candidates += kept;
      snap.counters->reranked += dotted;
    }
  }

  // Aggregate.
  for (int64_t q = 0; q < b; ++q) {
    if (nbest[q] < k) return Status::Error(short_of_k.code, short_of_k.message, q);
  }
  const int64_t ftasks = std::min<int64_t>(b, 64);
  // The neighbours' value rows are scattered over the store (mostly cache misses in a large
  // one): the rows of the next query are prefetched while this one is summed. Values that fit
  // in L2 twice over (the paper's 2,316 rows: 0.9 MB) are read from cache anyway; there the
  // prefetch loop was ~half of this pass's own time (perf, W1), so it is skipped.
  const Segment* only = snap.segments.size() == 1 ? snap.segments[0].get() : nullptr;
  const auto value_row = [&](int32_t row) {
    const Segment* seg = only ? only : segment_of(snap, row);
    return seg->values.data() + (row - seg->base) * dv;
  };
  const bool prefetch = snap.n * static_cast<int64_t>(dv) * 4 > (int64_t{2} << 20);
  const auto prefetch_rows = [&](int64_t q) {
    for (int i = 0; i < k; ++i) {
      const char* v = reinterpret_cast<const char*>(value_row(topk_id(best[q * k + i])));
      for (int64_t o = 0; o < static_cast<int64_t>(dv) * 4; o += 64) __builtin_prefetch(v + o);
    }
  };
  pool.parallel_for(ftasks, [&](int64_t t) {
    std::vector<const float*> vrows(static_cast<size_t>(k));
    const int64_t qb = b * t / ftasks, qe = b * (t + 1) / ftasks;
    const bool blend = out.prior != nullptr;  // null: neighbour lists only (no value rows read)
    if (blend && prefetch && qb < qe) prefetch_rows(qb);
    for (int64_t q = qb; q < qe; ++q) {
      if (blend && prefetch && q + 1 < qe) prefetch_rows(q + 1);
      const TopKEntry* e = best.data() + q * k;
      float* w = out.weights + q * k;
      float* s = out.similarities + q * k;
      int32_t* nb = out.neighbors + q * k;
      for (int i = 0; i < k; ++i) {
        s[i] = topk_value(e[i]);
        nb[i] = topk_id(e[i]);
      }
      aggregate_weights(s, k, params.tau, params.aggregate, w);
      if (!blend) continue;
      for (int i = 0; i < k; ++i) {
        vrows[i] = value_row(nb[i]);
      }
      kern.blend(vrows.data(), w, k, dv, out.prior + q * dv);
    }
  });
  return Status::Ok();
}

int fast_buffer(int k) { return 8 * k + 256; }

int64_t fast_min_panels(int k) { return 4 * (static_cast<int64_t>(k) + 32); }

}  // namespace rapm
