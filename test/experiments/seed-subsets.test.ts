import { describe, expect, it } from 'vitest';
import { SeedSubsets, splitFitValByIds, subsetMlp } from '../../src/experiments/evaluate.js';
import type { MlpData } from '../../src/fusion/train.js';

const D = 8;
const DV = 3;

/** A training set of n rows whose first rows never change as it grows (the progressive loop's). */
function grown(n: number, priorShift: number): { data: MlpData; ids: string[] } {
  const en = Float32Array.from({ length: n * D }, (_, i) => Math.sin(i * 0.37));
  const target = Float32Array.from({ length: n * DV }, (_, i) => Math.cos(i * 1.3));
  // Priors change at every step (the datastore grew): they must be gathered afresh.
  const prior = Float32Array.from({ length: n * DV }, (_, i) => Math.sin(i + priorShift));
  return { data: { en, prior, target }, ids: Array.from({ length: n }, (_, i) => `s${i % 5}_c${i % 3}_${i}`) };
}

describe('SeedSubsets (each seed’s fit/validation rows kept across steps)', () => {
  it('equals a fresh subsetMlp at every step while copying only the new rows', () => {
    const cache = new SeedSubsets(50, 0.2);
    for (const [step, n] of [40, 90, 200, 201].entries()) {
      const { data, ids } = grown(n, step);
      for (let s = 0; s < 3; s++) {
        const split = splitFitValByIds(ids, 0.2, 7 + s);
        const got = cache.take(s, data, split, D, DV);
        const want = { fitData: subsetMlp(data, split.fit, D, DV), valData: subsetMlp(data, split.val, D, DV) };
        expect(got.fitData.en).toEqual(want.fitData.en);
        expect(got.fitData.target).toEqual(want.fitData.target);
        expect(got.fitData.prior).toEqual(want.fitData.prior);
        expect(got.valData.en).toEqual(want.valData.en);
        expect(got.valData.target).toEqual(want.valData.target);
        expect(got.valData.prior).toEqual(want.valData.prior);
      }
    }
  });

  it('copies from scratch when the rows are not an extension of the previous call', () => {
    const cache = new SeedSubsets(10, 0.2);
    const { data } = grown(30, 0);
    cache.take(0, data, { fit: Int32Array.from([0, 1, 2, 5]), val: Int32Array.from([3]) }, D, DV);
    // Row 2 left the fit side: a prefix check must notice and rebuild.
    const split = { fit: Int32Array.from([0, 1, 4, 5, 9]), val: Int32Array.from([2, 3]) };
    const got = cache.take(0, data, split, D, DV);
    expect(got.fitData.en).toEqual(subsetMlp(data, split.fit, D, DV).en);
    expect(got.valData.target).toEqual(subsetMlp(data, split.val, D, DV).target);
  });
});
