// Finite scores whose sums overflow: pairedBootstrap([1e308, 1e308], [-1e308, 1e308]) returned
// Infinity / NaN (diff, interval, se) and bootstrapMean([1e308, ...]) Infinity. Scores beyond
// BOOTSTRAP_MAX_ABS (1e100; cosines are in [-1, 1]) are refused; at the bound every output is finite.
import { describe, expect, it } from 'vitest';
import { BOOTSTRAP_MAX_ABS, bootstrapMean, clusterBootstrap, hierarchicalBootstrap, pairedBootstrap } from '../../src/eval/bootstrap.js';
import { thrown } from '../helpers/random.js';

const allFinite = (r: object): boolean => Object.values(r).every((v) => typeof v !== 'number' || Number.isFinite(v));

describe('bootstraps never return Infinity or NaN for finite scores', () => {
  it('scores with |x| > 1e100 are refused, RAPM_INVALID_ARG naming the argument and index', () => {
    const cases: [string, () => unknown, string][] = [
      ['paired', () => pairedBootstrap([1e308, 1e308], [-1e308, 1e308]), 'a[0]'],
      ['paired b', () => pairedBootstrap([0, 0], [0, -1e101]), 'b[1]'],
      ['mean', () => bootstrapMean([1e308, 1e308, 1e308]), 'x[0]'],
      ['cluster', () => clusterBootstrap([0, 0], [1e300, 0], null), 'fusion[0][0]'],
      ['hierarchical', () => hierarchicalBootstrap([[0, 0]], [[0, -1e300]], null), 'fusion[0][1]'],
    ];
    for (const [name, f, where] of cases) {
      const e = thrown(f);
      expect([e.code, e.name], name).toEqual(['RAPM_INVALID_ARG', 'RangeError']);
      expect(e.message, name).toContain(`${where} is`);
      expect(e.message, name).toContain('1e+100');
    }
  });

  it('at the bound (|x| = 1e100, worst signs) every number is finite', () => {
    const L = BOOTSTRAP_MAX_ABS;
    const n = 64;
    const a = Array.from({ length: n }, (_, i) => (i % 2 ? L : -L));
    const b = a.map((x) => -x);
    expect(allFinite(pairedBootstrap(a, b, { resamples: 200 }))).toBe(true);
    expect(allFinite(bootstrapMean(a, { resamples: 200 }))).toBe(true);
    expect(allFinite(hierarchicalBootstrap([a, b], [b, a], null, { resamples: 200 }))).toBe(true);
    const r = pairedBootstrap(Array(n).fill(-L), Array(n).fill(L), { resamples: 200 });
    for (const v of [r.diff, r.lo, r.hi]) expect(Math.abs(v / (2 * L) - 1)).toBeLessThan(1e-12);
    expect(r.se / L).toBeLessThan(1e-12);
  });
});
