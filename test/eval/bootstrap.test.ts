import { describe, expect, it } from 'vitest';
import { bootstrapMean, pairedBootstrap, resampleMeans, sortedQuantile } from '../../src/eval/bootstrap.js';
import { Rng } from '../../src/rng.js';

/** Exact bootstrap distribution of the mean of a 3-item sample: all 27 equally likely resamples. */
function exactMeans3(x: number[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const i of x) for (const j of x) for (const k of x) {
    const v = (i + j + k) / 3;
    m.set(v, (m.get(v) ?? 0) + 1 / 27);
  }
  return m;
}

/** Smallest value whose exact CDF reaches p (the population quantile of a discrete law). */
function exactQuantile(dist: Map<number, number>, p: number): number {
  let c = 0;
  for (const v of [...dist.keys()].sort((a, b) => a - b)) {
    c += dist.get(v)!;
    if (c >= p - 1e-12) return v;
  }
  return Number.NaN;
}

describe('bootstrap on a 3-item sample (27 enumerable resamples)', () => {
  const x = [0, 1, 5];
  const exact = exactMeans3(x);

  it('draws every resample with its exact probability', () => {
    const R = 270_000;
    const means = resampleMeans(Float64Array.from(x), R, 11);
    const counts = new Map<number, number>();
    for (const v of means) {
      // Means are sums of integers divided by 3; key on the sum to avoid float keys.
      const s = Math.round(v * 3);
      counts.set(s, (counts.get(s) ?? 0) + 1);
    }
    expect(counts.size).toBe(exact.size);
    let chi2 = 0;
    for (const [v, p] of exact) {
      const got = counts.get(Math.round(v * 3)) ?? 0;
      const expected = p * R;
      // Each frequency within 5 binomial standard deviations of the exact one.
      expect(Math.abs(got - expected)).toBeLessThan(5 * Math.sqrt(R * p * (1 - p)));
      chi2 += (got - expected) ** 2 / expected;
    }
    // 10 distinct sums -> 9 degrees of freedom; P(chi2 > 33) < 1e-4.
    expect(exact.size).toBe(10);
    expect(chi2).toBeLessThan(33);
  });

  it('percentile interval equals the exact quantiles of the 27-point law', () => {
    // level 0.8: P(mean = 0) = 1/27 < 10% < P(mean <= 1/3) = 4/27, and symmetrically at the top,
    // so the 10% / 90% quantiles sit inside atoms and sampling error cannot move them.
    const r = bootstrapMean(x, { resamples: 20_000, seed: 3, level: 0.8 });
    expect(exactQuantile(exact, 0.1)).toBe(1 / 3);
    expect(exactQuantile(exact, 0.9)).toBe(11 / 3);
    expect(r.lo).toBe(1 / 3);
    expect(r.hi).toBe(11 / 3);
    expect(r.mean).toBe(2);
    expect(r.n).toBe(3);
    // 95%: the extreme atoms (1/27 each) hold more than 2.5%, so the interval is [min, max].
    const r95 = bootstrapMean(x, { resamples: 20_000, seed: 3 });
    expect([r95.lo, r95.hi]).toEqual([0, 5]);
    // Exact bootstrap SE of the mean: population sd of x / sqrt(3).
    const pm = 2;
    const sd = Math.sqrt(((0 - pm) ** 2 + (1 - pm) ** 2 + (5 - pm) ** 2) / 3);
    expect(r.se).toBeCloseTo(sd / Math.sqrt(3), 1);
  });

  it('paired: pAboveZero is the share of positive resampled differences (exact 26/27)', () => {
    const r = pairedBootstrap([1, 1, 1], [1, 2, 6], { resamples: 54_000, seed: 5, level: 0.8 });
    expect(r.diff).toBe(2);
    expect(r.meanA).toBe(1);
    expect(r.meanB).toBe(3);
    expect(r.lo).toBe(1 / 3);
    expect(r.hi).toBe(11 / 3);
    const p = 26 / 27;
    expect(Math.abs(r.pAboveZero - p)).toBeLessThan(5 * Math.sqrt((p * (1 - p)) / 54_000));
  });
});

describe('pairedBootstrap', () => {
  function scores(n: number, seed: number): Float64Array {
    const rng = new Rng(seed);
    const v = new Float64Array(n);
    for (let i = 0; i < n; i++) v[i] = 0.8 + 0.05 * rng.normal();
    return v;
  }

  it('collapses to the constant when every pair differs by the same amount', () => {
    const a = scores(500, 1);
    const b = a.map((v) => v + 0.0021);
    const r = pairedBootstrap(a, b, { seed: 9 });
    expect(r.diff).toBeCloseTo(0.0021, 12);
    expect(r.lo).toBeCloseTo(0.0021, 12);
    expect(r.hi).toBeCloseTo(0.0021, 12);
    expect(r.se).toBeLessThan(1e-12);
    expect(r.pAboveZero).toBe(1);
    expect(r.meanB - r.meanA).toBeCloseTo(r.diff, 12);
  });

  it('matches normal theory on a large sample and reports its settings', () => {
    const n = 4000;
    const a = scores(n, 2);
    const noise = scores(n, 3);
    const b = a.map((v, i) => v + 0.001 + (noise[i]! - 0.8) * 0.2); // diff sd = 0.01
    const r = pairedBootstrap(a, b, { seed: 1, resamples: 4000 });
    let m = 0;
    for (let i = 0; i < n; i++) m += b[i]! - a[i]!;
    m /= n;
    let ss = 0;
    for (let i = 0; i < n; i++) ss += (b[i]! - a[i]! - m) ** 2;
    const se = Math.sqrt(ss / (n - 1) / n);
    expect(r.diff).toBeCloseTo(m, 14);
    expect(r.se / se).toBeGreaterThan(0.93);
    expect(r.se / se).toBeLessThan(1.07);
    expect(Math.abs(r.lo - (m - 1.96 * se))).toBeLessThan(0.15 * 1.96 * se);
    expect(Math.abs(r.hi - (m + 1.96 * se))).toBeLessThan(0.15 * 1.96 * se);
    expect(r.lo).toBeLessThan(r.diff);
    expect(r.hi).toBeGreaterThan(r.diff);
    expect(r).toMatchObject({ n, resamples: 4000, seed: 1, level: 0.95 });
    // Narrower level -> narrower interval (same draws).
    const r50 = pairedBootstrap(a, b, { seed: 1, resamples: 4000, level: 0.5 });
    expect(r50.lo).toBeGreaterThan(r.lo);
    expect(r50.hi).toBeLessThan(r.hi);
  });

  it('is deterministic per seed and accepts plain arrays and typed arrays alike', () => {
    const a = scores(300, 4);
    const b = scores(300, 5);
    const r1 = pairedBootstrap(a, b, { seed: 42 });
    const r2 = pairedBootstrap(Array.from(a), Array.from(b), { seed: 42 });
    expect(r2).toEqual(r1);
    const r3 = pairedBootstrap(a, b, { seed: 43 });
    expect(r3.lo).not.toBe(r1.lo);
    expect(r3.diff).toBe(r1.diff);
    expect(pairedBootstrap(a, b)).toEqual(pairedBootstrap(a, b, { seed: 0 }));
    // Float32 scores are widened, not rejected.
    expect(pairedBootstrap(Float32Array.from(a), Float32Array.from(b), { seed: 42 }).n).toBe(300);
  });

  // Speed is measured by `npm run bench:eval` (peers in the same run), not by a timed unit test.
  it('handles 40,000 pairs x 2,000 resamples: finite interval around the observed difference, reproducible', () => {
    const a = scores(40_000, 6);
    const b = scores(40_000, 7);
    const r = pairedBootstrap(a, b, { resamples: 2000, seed: 1 });
    expect(r.n).toBe(40_000);
    expect(Number.isFinite(r.lo) && Number.isFinite(r.hi)).toBe(true);
    expect(r.lo).toBeLessThanOrEqual(r.diff);
    expect(r.hi).toBeGreaterThanOrEqual(r.diff);
    expect(pairedBootstrap(a, b, { resamples: 2000, seed: 1 })).toEqual(r);
  });

  it('rejects bad input with coded errors', () => {
    const ok = [0.1, 0.2, 0.3];
    const code = (f: () => unknown): string | undefined => {
      try {
        f();
      } catch (e) {
        return `${(e as Error).name}:${(e as { code?: string }).code}`;
      }
      return undefined;
    };
    expect(code(() => pairedBootstrap(ok, [0.1, 0.2]))).toBe('RangeError:RAPM_SHAPE_MISMATCH');
    expect(code(() => pairedBootstrap([1], [2]))).toBe('RangeError:RAPM_INVALID_ARG');
    expect(code(() => pairedBootstrap([], []))).toBe('RangeError:RAPM_INVALID_ARG');
    expect(code(() => pairedBootstrap(ok, [0.1, Number.NaN, 0.3]))).toBe('RangeError:RAPM_NON_FINITE');
    expect(code(() => pairedBootstrap([0.1, Infinity, 0.3], ok))).toBe('RangeError:RAPM_NON_FINITE');
    expect(code(() => pairedBootstrap(ok, [0.1, '0.2', 0.3] as unknown as number[]))).toBe('TypeError:RAPM_TYPE');
    expect(code(() => pairedBootstrap(ok, null as unknown as number[]))).toBe('TypeError:RAPM_TYPE');
    expect(code(() => pairedBootstrap(ok, 3 as unknown as number[]))).toBe('TypeError:RAPM_TYPE');
    expect(code(() => pairedBootstrap(ok, ok, { resamples: 99 }))).toBe('RangeError:RAPM_INVALID_ARG');
    expect(code(() => pairedBootstrap(ok, ok, { resamples: 150.5 }))).toBe('RangeError:RAPM_INVALID_ARG');
    expect(code(() => pairedBootstrap(ok, ok, { level: 0 }))).toBe('RangeError:RAPM_INVALID_ARG');
    expect(code(() => pairedBootstrap(ok, ok, { level: 1 }))).toBe('RangeError:RAPM_INVALID_ARG');
    expect(code(() => pairedBootstrap(ok, ok, { level: Number.NaN }))).toBe('RangeError:RAPM_INVALID_ARG');
    expect(code(() => pairedBootstrap(ok, ok, { level: '0.9' as unknown as number }))).toBe('TypeError:RAPM_TYPE');
    expect(code(() => pairedBootstrap(ok, ok, { seed: -1 }))).toBe('RangeError:RAPM_INVALID_ARG');
    expect(code(() => bootstrapMean([1]))).toBe('RangeError:RAPM_INVALID_ARG');
    expect(code(() => bootstrapMean([1, Number.NaN]))).toBe('RangeError:RAPM_NON_FINITE');
    expect(() => pairedBootstrap(ok, [0.1, 0.2])).toThrow(/equal length.*3 and 2/);
    expect(() => pairedBootstrap(ok, [0.1, Number.NaN, 0.3])).toThrow(/b\[1\] is NaN/);
    expect(() => pairedBootstrap(ok, ok, { resamples: 10 })).toThrow(/options\.resamples/);
  });
});

describe('resampleMeans and sortedQuantile', () => {
  it('draws uniformly on the modulo path used above 2^21 items', () => {
    const n = (1 << 21) + 3;
    const x = new Float64Array(n);
    for (let i = 0; i < n; i++) x[i] = i < n / 2 ? 0 : 1;
    const m = resampleMeans(x, 3, 1);
    // Each mean is a share of draws from the upper half: 0.5 +- 0.00035 (1 sd).
    for (const v of m) expect(Math.abs(v - 0.5)).toBeLessThan(0.003);
  });

  it('interpolates linearly between order statistics (type 7)', () => {
    const s = [1, 2, 4, 8];
    expect(sortedQuantile(s, 0)).toBe(1);
    expect(sortedQuantile(s, 1)).toBe(8);
    expect(sortedQuantile(s, 0.5)).toBe(3);
    expect(sortedQuantile(s, 0.25)).toBeCloseTo(1.75, 14);
    expect(sortedQuantile([], 0.5)).toBeNaN();
  });
});
