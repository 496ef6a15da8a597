import { describe, expect, it } from 'vitest';
import { simdLevel } from '../../src/native/simd.js';
import { Datastore } from '../../src/retrieval/datastore.js';
import { IncrementalPriors } from '../../src/retrieval/priors.js';
import { randn, rng } from '../helpers/random.js';

/** The TypeScript blend IncrementalPriors.priors() ran before the native one: the reference, bit for bit. */
function blendPriorsReference(rows: Int32Array, weights: Float32Array, values: Float32Array, n: number, k: number, dv: number): Float32Array {
  const prior = new Float32Array(n * dv);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < k; j++) {
      const wj = weights[i * k + j]!;
      if (wj === 0) continue;
      const row = rows[i * k + j]!;
      for (let c = 0; c < dv; c++) prior[i * dv + c] = prior[i * dv + c]! + wj * values[row * dv + c]!;
    }
  }
  return prior;
}

const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

/** Values spanning many binades (and signs), so that double-then-f32 rounding differs from f32 arithmetic. */
function wideValues(m: number, dv: number, seed: number): Float32Array {
  const z = randn(m * dv, seed), r = rng(seed + 1);
  return Float32Array.from(z, (x) => x * 2 ** Math.floor(r() * 40 - 20));
}

describe('native priors blend (Datastore._blendPriors)', () => {
  it('equals the TypeScript loop bit for bit (widths around the vector lengths, repeated rows, zero weights)', () => {
    for (const dv of [1, 7, 8, 16, 17, 101]) {
      for (const k of [1, 5, 90]) {
        const m = 300, n = 600;
        const ds = new Datastore({ keyDim: 4, valueDim: dv });
        const values = wideValues(m, dv, dv * 31 + k);
        const r = rng(dv * 7 + k);
        const rows = Int32Array.from({ length: n * k }, () => Math.floor(r() * m));
        // Softmax-like weights, some exactly 0 (top1 / underflowed exp), some tiny.
        const weights = Float32Array.from({ length: n * k }, (_, i) => (i % 11 === 3 ? 0 : r() * 2 ** -Math.floor(r() * 30)));
        const prior = new Float32Array(n * dv).fill(Number.NaN); // overwritten in full
        ds._blendPriors(rows, weights, values, n, k, prior);
        expect(bits(prior)).toEqual(bits(blendPriorsReference(rows, weights, values, n, k, dv)));
      }
    }
  });

  it('IncrementalPriors.priors() gives the reference blend of its own neighbours and weights', async () => {
    const d = 16, dv = 101, k = 20, n = 900;
    const keys = randn(n * d, 5), values = wideValues(n, dv, 6);
    const ids = Array.from({ length: n }, (_, i) => `u${i}`);
    const ds = new Datastore({ keyDim: d, valueDim: dv });
    await ds.add(keys, values, ids);
    for (const aggregate of ['softmax', 'mean', 'top1'] as const) {
      const inc = new IncrementalPriors(ds, { k, tau: 0.05, aggregate });
      await inc.update({ en: keys, ids });
      // Longer than the datastore's rows: only the first ds.size rows are read.
      const longer = new Float32Array(values.length + 5 * dv);
      longer.set(values);
      const got = inc.priors(longer);
      expect(bits(got.prior)).toEqual(bits(blendPriorsReference(got.neighbors, got.weights, values, n, k, dv)));
    }
  });

  it('refuses rows outside the values and arrays of the wrong length, naming the argument', () => {
    const ds = new Datastore({ keyDim: 4, valueDim: 3 });
    const values = new Float32Array(5 * 3);
    const prior = new Float32Array(2 * 3);
    expect(() => ds._blendPriors(Int32Array.from([0, 5]), new Float32Array(2), values, 2, 1, prior)).toThrow(/rows\[1\] between 0 and 4/);
    expect(() => ds._blendPriors(Int32Array.from([0, -1]), new Float32Array(2), values, 2, 1, prior)).toThrow(/rows\[1\]/);
    expect(() => ds._blendPriors(Int32Array.from([0, 1]), new Float32Array(3), values, 2, 1, prior)).toThrow(/weights/);
    expect(() => ds._blendPriors(Int32Array.from([0, 1]), new Float32Array(2), new Float32Array(14), 2, 1, prior)).toThrow(/multiple of 3/);
    expect(() => ds._blendPriors(Int32Array.from([0, 1]), new Float32Array(2), values, 2, 1, new Float32Array(5))).toThrow(/prior/);
  });
});

describe('Datastore._searchNeighbors (the prior phase\'s search: no blend)', () => {
  it("returns search()'s neighbours, similarities and weights, exact scan and fast path, with rowRange and excludeIds", async () => {
    const n = 6000, d = 32, dv = 7, b = 300;
    const keys = randn(n * d, 11), values = randn(n * dv, 12);
    const ids = Array.from({ length: n }, (_, i) => `u${i % 5000}`);
    for (const fastPath of ['off', 'bf16'] as const) {
      const ds = new Datastore({ keyDim: d, valueDim: dv, fastPath });
      await ds.add(keys, values, ids);
      for (const [k, rowRange] of [[5, undefined], [20, [1000, 6000]], [3, [5990, 6000]]] as const) {
        const opts = { k, tau: 0.05, excludeIds: ids.slice(0, b), ...(rowRange ? { rowRange } : {}) };
        const want = await ds.search(keys.subarray(0, b * d), opts);
        const got = await ds._searchNeighbors(keys.subarray(0, b * d), opts);
        expect('prior' in got).toBe(false);
        expect([got.b, got.k]).toEqual([b, k]);
        expect(Array.from(got.neighbors)).toEqual(Array.from(want.neighbors));
        expect(bits(got.similarities)).toEqual(bits(want.similarities));
        expect(bits(got.weights)).toEqual(bits(want.weights));
      }
      // The bf16 first pass runs only on a CPU with AVX512_BF16; elsewhere the same answers come
      // from the exact scan and the counters stay 0 (datastore.ts fastPathStats).
      if (fastPath === 'bf16' && simdLevel() === 'avx512bf16') expect(ds.fastPathStats.queries).toBeGreaterThan(0);
      else expect(ds.fastPathStats.queries).toBe(0);
    }
  });
});

