/**
 * Plain TypeScript exact retrieval: the reference the native kernels are tested
 * against and the "plain TypeScript" peer of the benchmark. Deliberately simple:
 * full similarity row per query, partial sort, softmax over K. No validation here;
 * callers validate.
 */
import { aggregateWeights, type Aggregate } from './aggregate.js';

// Re-exported for the tests and benchmarks that import them from here.
export { aggregateWeights, type Aggregate };

export interface ReferenceSearchInput {
  keys: Float32Array; // [n, d] already L2-normalised
  values: Float32Array; // [n, dv]
  n: number;
  d: number;
  dv: number;
  queries: Float32Array; // [b, d] (normalised here)
  k: number;
  tau: number;
  aggregate: Aggregate;
  /** Per row, its exclusion group (utterance); defaults to the row index. */
  rowGroups?: Int32Array; // [n]
  /** Per query, a group to skip (-1: none). */
  excludeGroups?: Int32Array; // [b]
}

export interface ReferenceSearchResult {
  prior: Float32Array; // [b, dv]
  neighbors: Int32Array; // [b, k]
  weights: Float32Array; // [b, k]
  similarities: Float32Array; // [b, k]
}

export function l2normalizeRows(m: Float32Array, d: number): Float32Array {
  const out = new Float32Array(m.length);
  for (let r = 0; r < m.length / d; r++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += m[r * d + j]! * m[r * d + j]!;
    const inv = 1 / Math.sqrt(s);
    for (let j = 0; j < d; j++) out[r * d + j] = m[r * d + j]! * inv;
  }
  return out;
}

export function referenceSearch(inp: ReferenceSearchInput): ReferenceSearchResult {
  const { keys, values, n, d, dv, k, tau, aggregate } = inp;
  const b = inp.queries.length / d;
  const q = l2normalizeRows(inp.queries, d);
  const prior = new Float32Array(b * dv);
  const neighbors = new Int32Array(b * k);
  const weights = new Float32Array(b * k);
  const similarities = new Float32Array(b * k);
  const sims = new Float64Array(n);
  const order = new Int32Array(n);
  for (let qi = 0; qi < b; qi++) {
    const ex = inp.excludeGroups ? inp.excludeGroups[qi]! : -1;
    let m = 0;
    for (let r = 0; r < n; r++) {
      const g = inp.rowGroups ? inp.rowGroups[r]! : r;
      if (ex >= 0 && g === ex) continue;
      let s = 0;
      for (let j = 0; j < d; j++) s += q[qi * d + j]! * keys[r * d + j]!;
      sims[r] = Math.fround(s);
      order[m++] = r;
    }
    const cand = Array.from(order.subarray(0, m));
    cand.sort((a, c) => sims[c]! - sims[a]! || a - c);
    const top = cand.slice(0, k);
    const w = weights.subarray(qi * k, qi * k + k);
    const s = top.map((r) => sims[r]!);
    aggregateWeights(s, tau, aggregate, w);
    for (let i = 0; i < k; i++) {
      const r = top[i]!;
      neighbors[qi * k + i] = r;
      similarities[qi * k + i] = s[i]!;
      const wi = w[i]!;
      for (let j = 0; j < dv; j++) prior[qi * dv + j] = prior[qi * dv + j]! + wi * values[r * dv + j]!;
    }
  }
  return { prior, neighbors, weights, similarities };
}
