import { mulberry32 } from '../../src/rng.js';

/** Deterministic test data: mulberry32 (src/rng.ts) + Box-Muller. */
export const rng = mulberry32;

export function randn(n: number, seed: number): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = Math.max(r(), 1e-12);
    const v = r();
    const m = Math.sqrt(-2 * Math.log(u));
    out[i] = m * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = m * Math.sin(2 * Math.PI * v);
  }
  return out;
}

/**
 * Clustered rows [rows, d]: row r = centre ((r * 7919 + seed) mod centres) + noise x N(0, 1),
 * centres drawn with seed 7. Approximate-search tests need neighbourhoods (noise has none).
 */
export function clustered(rows: number, d: number, seed: number, centres: number, noise: number): Float32Array {
  const c = randn(centres * d, 7);
  const z = randn(rows * d, seed);
  const out = new Float32Array(rows * d);
  for (let r = 0; r < rows; r++) {
    const j = (r * 7919 + seed) % centres;
    for (let t = 0; t < d; t++) out[r * d + t] = c[j * d + t]! + noise * z[r * d + t]!;
  }
  return out;
}

/** The error `fn` throws (fails the test when it returns). */
export function thrown(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected a throw');
}
