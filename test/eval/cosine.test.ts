// rowCosines validates d and the target rows: d = 2.5 returned [1, 0] (rows read at fractional
// offsets), d = -1 threw a bare RangeError from the Float64Array constructor, and targetRows
// [0.5] read half of row 0 and half of row 1.
import { describe, expect, it } from 'vitest';
import { meanCosine, rowCosines } from '../../src/eval/cosine.js';
import { thrown } from '../helpers/random.js';

const f = (a: number[]): Float32Array => Float32Array.from(a);

describe('rowCosines: d and targetRows are checked, coded errors name them', () => {
  it('d must be a positive integer dividing the lengths', () => {
    for (const d of [2.5, -1, 0, NaN, Infinity]) {
      const e = thrown(() => rowCosines(f([1, 2, 3, 4, 5]), f([1, 2, 3, 4, 5]), d));
      expect(e.code, String(d)).toBe('RAPM_INVALID_ARG');
      expect(e.message).toMatch(/^Expected integer >= 1 for d /);
    }
    expect(thrown(() => rowCosines(f([1, 2]), f([1, 2]), '2' as unknown as number)).code).toBe('RAPM_TYPE');
    expect(thrown(() => rowCosines(f([1, 2, 3]), f([1, 2, 3]), 2)).code).toBe('RAPM_SHAPE_MISMATCH');
    expect(thrown(() => meanCosine(f([1, 2]), f([1, 2]), 1.5)).code).toBe('RAPM_INVALID_ARG');
  });

  it('targetRows entries must be integer rows of target', () => {
    for (const [rows, bad] of [[[0.5], '0.5'], [[-1], '-1'], [[2], '2'], [[NaN], 'NaN']] as [number[], string][]) {
      const e = thrown(() => rowCosines(f([1, 2]), f([1, 2, 3, 4]), 2, rows));
      expect(e.code, bad).toBe('RAPM_INVALID_ARG');
      expect(e.message).toContain(`targetRows[0]`);
      expect(e.message).toContain(`received ${bad}`);
    }
    expect(thrown(() => rowCosines(f([1, 2]), f([1, 2]), 2, 5 as unknown as number[])).code).toBe('RAPM_TYPE');
    expect(thrown(() => rowCosines([1, 2] as unknown as Float32Array, f([1, 2]), 2)).code).toBe('RAPM_TYPE');
  });

  it('valid input: unchanged numbers', () => {
    expect(Array.from(rowCosines(f([1, 0, 0, 2]), f([2, 0, 0, -1]), 2))).toEqual([1, -1]);
    expect(Array.from(rowCosines(f([0, 1]), f([1, 0, 0, 3]), 2, Int32Array.from([1])))).toEqual([1]);
    expect(Array.from(rowCosines(f([0, 0]), f([1, 0]), 2))).toEqual([0]);
  });
});

describe('rowCosines: non-finite rows', () => {
  it('refuses a NaN or infinite value in pred or target, naming the row (a NaN row scored 0 silently)', () => {
    const good = Float32Array.from([1, 0, 0, 1]);
    for (const bad of [NaN, Infinity, -Infinity]) {
      expect(() => rowCosines(Float32Array.from([1, 0, bad, 1]), good, 2)).toThrow(expect.objectContaining({ code: 'RAPM_NON_FINITE', message: expect.stringMatching(/pred row 1/) }));
      expect(() => rowCosines(good, Float32Array.from([bad, 0, 0, 1]), 2)).toThrow(expect.objectContaining({ code: 'RAPM_NON_FINITE', message: expect.stringMatching(/target row 0/) }));
    }
    // Large finite values: still the cosine (pp * tt would overflow float64 only far beyond float32).
    expect(Array.from(rowCosines(Float32Array.from([3e38, 3e38]), Float32Array.from([3e38, 3e38]), 2))[0]).toBeCloseTo(1, 12);
  });
});
