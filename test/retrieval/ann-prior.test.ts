// priorFromNeighbors takes neighbour lists from any engine, so it is where bad input arrives:
// ±Infinity similarities gave NaN weights and prior (only NaN was refused), a NaN in a used
// value row gave a NaN prior, a row of -5 was silently taken as "missing" (only -1 means none),
// and an unsorted list with a small tau overflowed softmax to Infinity / Infinity.
import { describe, expect, it } from 'vitest';
import { priorFromNeighbors } from '../../src/retrieval/ann.js';
import { thrown } from '../helpers/random.js';

const dv = 2;
const values = new Float32Array([1, 2, 3, 4, 5, 6]); // 3 rows
const noNaN = (a: Float32Array): boolean => a.every((x) => Number.isFinite(x));

describe('priorFromNeighbors refuses non-finite and malformed input, and never returns NaN for a query with neighbours', () => {
  it('±Infinity similarities: RAPM_NON_FINITE naming similarities and the index', () => {
    for (const bad of [Infinity, -Infinity, NaN]) {
      const e = thrown(() => priorFromNeighbors(new Int32Array([0, 1, 2, 0]), new Float32Array([0.9, 0.5, bad, 0.8]), values, dv, { k: 2 }));
      expect(e.code, String(bad)).toBe('RAPM_NON_FINITE');
      expect(e.message).toContain('similarities[2]');
      expect(e.message).toContain(String(bad));
    }
  });

  it('a non-finite value in a neighbour row: RAPM_NON_FINITE naming values and the index', () => {
    for (const bad of [NaN, Infinity]) {
      const v = values.slice();
      v[3] = bad; // row 1, column 1
      const e = thrown(() => priorFromNeighbors(new Int32Array([0, 1]), new Float32Array([0.9, 0.5]), v, dv, { k: 2 }));
      expect(e.code).toBe('RAPM_NON_FINITE');
      expect(e.message).toContain('values[3]');
      expect(e.message).toContain('row 1');
    }
    // A bad row no neighbour uses is not read.
    const v = values.slice();
    v[5] = NaN;
    expect(noNaN(priorFromNeighbors(new Int32Array([0, 1]), new Float32Array([0.9, 0.5]), v, dv, { k: 2 }).prior)).toBe(true);
  });

  it('rows below -1 are refused (only -1 means missing), naming neighbors and the index', () => {
    const e = thrown(() => priorFromNeighbors(new Int32Array([0, -5]), new Float32Array([0.9, -Infinity]), values, dv, { k: 2 }));
    expect(e.code).toBe('RAPM_INVALID_ARG');
    expect(e.message).toContain('neighbors[1]');
    expect(e.message).toContain('-5');
    // -1 with -Infinity (what AnnIndex reports for an empty slot) is still a missing neighbour.
    const ok = priorFromNeighbors(new Int32Array([0, -1]), new Float32Array([0.9, -Infinity]), values, dv, { k: 2 });
    expect([ok.found[0], ok.missing, Array.from(ok.prior)]).toEqual([1, 1, [1, 2]]);
  });

  it('an unsorted list with a small tau: finite weights summing to 1', () => {
    const r = priorFromNeighbors(new Int32Array([0, 1, 2]), new Float32Array([0, 0.5, 1]), values, dv, { k: 3, tau: 0.001 });
    expect(noNaN(r.weights) && noNaN(r.prior)).toBe(true);
    expect(Array.from(r.weights)).toEqual([0, 0, 1]);
    expect(Array.from(r.prior)).toEqual([5, 6]);
  });
});
