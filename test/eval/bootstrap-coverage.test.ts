import { describe, expect, it } from 'vitest';
import { clusterBootstrap, hierarchicalBootstrap, pairedBootstrap } from '../../src/eval/bootstrap.js';
import { Rng } from '../../src/data/rng.js';

/**
 * Coverage by simulation. Each simulated test set has C speakers with 5..35 rows each (about
 * the shape of the seen-speaker test set); a row's gain is
 *   trueGain + u_speaker + e_row,  u ~ N(0, 0.01^2), e ~ N(0, 0.02^2)
 * so rows of one speaker are correlated (intra-class correlation 0.2). Over SIMS data sets the
 * 95% interval should contain trueGain about 95% of the time. The row bootstrap treats the
 * rows as independent and so covers far less often.
 *
 * Bounded for CI: SIMS x RESAMPLES x ~600 rows, a few seconds.
 */
const SIMS = 300;
const RESAMPLES = 1000;
const TRUE_GAIN = 0.004;

function simulate(seed: number, speakers: number): { plain: Float64Array; fusion: Float64Array; labels: string[] } {
  const rng = new Rng(seed, 7);
  const labels: string[] = [];
  const gains: number[] = [];
  for (let c = 0; c < speakers; c++) {
    const u = 0.01 * rng.normal();
    const rows = 5 + rng.int(31);
    for (let k = 0; k < rows; k++) {
      labels.push(`s${c}`);
      gains.push(TRUE_GAIN + u + 0.02 * rng.normal());
    }
  }
  const n = gains.length;
  const plain = new Float64Array(n);
  const fusion = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    plain[i] = 0.8 + 0.05 * rng.normal(); // the common part cancels in the pairing
    fusion[i] = plain[i]! + gains[i]!;
  }
  return { plain, fusion, labels };
}

describe('cluster bootstrap coverage (simulated speaker effects)', () => {
  it(`covers the true gain close to 95% over ${SIMS} simulated test sets; the row bootstrap falls short`, () => {
    let clusterHits = 0;
    let rowHits = 0;
    let clusterWidth = 0;
    let rowWidth = 0;
    for (let sim = 0; sim < SIMS; sim++) {
      const { plain, fusion, labels } = simulate(1000 + sim, 30);
      const c = clusterBootstrap(plain, fusion, labels, { resamples: RESAMPLES, seed: sim });
      const r = pairedBootstrap(plain, fusion, { resamples: RESAMPLES, seed: sim });
      expect(c.clusters).toBe(30);
      if (c.lo <= TRUE_GAIN && TRUE_GAIN <= c.hi) clusterHits++;
      if (r.lo <= TRUE_GAIN && TRUE_GAIN <= r.hi) rowHits++;
      clusterWidth += c.hi - c.lo;
      rowWidth += r.hi - r.lo;
    }
    const clusterCoverage = clusterHits / SIMS;
    const rowCoverage = rowHits / SIMS;
    // Binomial standard error of a 95% coverage over 300 draws: 1.3 points; the band is about +-3 se.
    console.log(`coverage over ${SIMS} simulated sets: speaker-clustered ${(100 * clusterCoverage).toFixed(1)}%, row ${(100 * rowCoverage).toFixed(1)}%; mean width ${(clusterWidth / SIMS).toFixed(4)} vs ${(rowWidth / SIMS).toFixed(4)}`);
    expect(clusterCoverage).toBeGreaterThanOrEqual(0.91);
    expect(clusterCoverage).toBeLessThanOrEqual(0.99);
    expect(rowCoverage).toBeLessThan(0.8);
    expect(clusterWidth).toBeGreaterThan(1.5 * rowWidth);
  });

  it('without correlation (no speaker effect) cluster and row intervals agree', () => {
    const rng = new Rng(3, 1);
    const n = 600;
    const labels = Array.from({ length: n }, (_, i) => `s${i % 30}`);
    const plain = Float64Array.from({ length: n }, () => 0.8);
    const fusion = Float64Array.from(plain, (p) => p + TRUE_GAIN + 0.02 * rng.normal());
    const c = clusterBootstrap(plain, fusion, labels, { resamples: 4000, seed: 1 });
    const r = pairedBootstrap(plain, fusion, { resamples: 4000, seed: 1 });
    expect(c.diff).toBeCloseTo(r.diff, 12);
    // Two-stage resampling adds the within-cluster variance once more: slightly wider, never narrower by much.
    expect((c.hi - c.lo) / (r.hi - r.lo)).toBeGreaterThan(0.9);
    expect((c.hi - c.lo) / (r.hi - r.lo)).toBeLessThan(1.6);
  });
});

describe('hierarchical bootstrap over training seeds', () => {
  const { plain, fusion, labels } = simulate(42, 30);

  it('reports each seed gain and their mean; identical seeds give the one-seed interval width', () => {
    const one = clusterBootstrap(plain, fusion, labels, { resamples: 2000, seed: 5 });
    const three = hierarchicalBootstrap([plain, plain, plain], [fusion, fusion, fusion], labels, { resamples: 2000, seed: 5 });
    expect(three.seeds).toBe(3);
    expect(three.seedGains).toHaveLength(3);
    expect(three.diff).toBeCloseTo(one.diff, 12);
    expect(three.hi - three.lo).toBeCloseTo(one.hi - one.lo, 3);
  });

  it('seeds that disagree widen the combined interval beyond any single seed', () => {
    const shifted = [-0.006, 0, 0.006].map((s) => Float64Array.from(fusion, (f) => f + s));
    const h = hierarchicalBootstrap([plain, plain, plain], shifted, labels, { resamples: 2000, seed: 5 });
    const one = clusterBootstrap(plain, fusion, labels, { resamples: 2000, seed: 5 });
    expect(h.seedGains[2]! - h.seedGains[0]!).toBeCloseTo(0.012, 9);
    expect(h.hi - h.lo).toBeGreaterThan(1.3 * (one.hi - one.lo));
    expect(h.unit).toBe('speaker');
  });

  it('rejects mismatched seeds, labels and lengths with coded errors', () => {
    expect(() => hierarchicalBootstrap([plain], [fusion, fusion], labels)).toThrow(expect.objectContaining({ code: 'RAPM_SHAPE_MISMATCH' }));
    expect(() => hierarchicalBootstrap([plain], [fusion.subarray(1)], labels)).toThrow(expect.objectContaining({ code: 'RAPM_SHAPE_MISMATCH' }));
    expect(() => hierarchicalBootstrap([plain], [fusion], labels.slice(1))).toThrow(expect.objectContaining({ code: 'RAPM_SHAPE_MISMATCH' }));
    const bad = Float64Array.from(fusion);
    bad[3] = Number.NaN;
    expect(() => hierarchicalBootstrap([plain], [bad], labels)).toThrow(expect.objectContaining({ code: 'RAPM_NON_FINITE' }));
    expect(() => hierarchicalBootstrap([], [], null)).toThrow(expect.objectContaining({ code: 'RAPM_SHAPE_MISMATCH' }));
  });

  it('is deterministic per seed', () => {
    const a = hierarchicalBootstrap([plain, plain], [fusion, plain], labels, { resamples: 500, seed: 9 });
    const b = hierarchicalBootstrap([plain, plain], [fusion, plain], labels, { resamples: 500, seed: 9 });
    expect(a).toEqual(b);
  });
});
