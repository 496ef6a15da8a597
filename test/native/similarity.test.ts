// Every SIMD level against scalar and against the plain TypeScript reference.
import { afterAll, describe, expect, it } from 'vitest';
import { setSimdLevel, simdLevel, simdLevels } from '../../src/native/simd.js';
import { Datastore } from '../../src/retrieval/datastore.js';
import { l2normalizeRows, referenceSearch } from '../../src/retrieval/reference.js';
import { expectSameSearch } from '../helpers/compare.js';
import { randn } from '../helpers/random.js';

const DIMS = [1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 101, 103, 1024];
const initial = simdLevel();
afterAll(() => {
  setSimdLevel(initial);
});

function dataset(d: number, n: number, b: number, dv: number, seed: number) {
  return { keys: randn(n * d, seed), values: randn(n * dv, seed + 1), queries: randn(b * d, seed + 2) };
}

describe('similarity kernels', () => {
  it('this machine offers at least scalar, and the default level is the best one', () => {
    const levels = simdLevels();
    expect(levels.at(-1)).toBe('scalar');
    expect(initial).toBe(process.env.RAPM_SIMD && levels.includes(process.env.RAPM_SIMD as never) ? process.env.RAPM_SIMD : levels[0]);
  });

  for (const d of DIMS) {
    it(`d=${d}: every level matches scalar and the TS reference (ids exact, prior 1e-5)`, () => {
      // n not a multiple of the 32-row panel, b not a multiple of any micro-tile height.
      const n = 331, b = 29, dv = 13, k = Math.min(17, n);
      const { keys, values, queries } = dataset(d, n, b, dv, 1000 + d);
      const ref = referenceSearch({ keys: l2normalizeRows(keys, d), values, n, d, dv, queries, k, tau: 0.05, aggregate: 'softmax' });
      setSimdLevel('scalar');
      const ds = new Datastore({ keyDim: d, valueDim: dv });
      ds.addSync(keys, values);
      const scalar = ds.searchSync(queries, { k, tau: 0.05 });
      expectSameSearch(scalar, ref, 1e-5);
      for (const level of simdLevels()) {
        setSimdLevel(level);
        const got = ds.searchSync(queries, { k, tau: 0.05 });
        expectSameSearch(got, scalar, 1e-5);
        expectSameSearch(got, ref, 1e-5);
      }
    });
  }

  it('mean and top1 aggregation match the reference on every level', () => {
    const d = 40, n = 200, b = 9, dv = 5, k = 12;
    const { keys, values, queries } = dataset(d, n, b, dv, 7);
    const ds = new Datastore({ keyDim: d, valueDim: dv });
    ds.addSync(keys, values);
    for (const aggregate of ['mean', 'top1'] as const) {
      const ref = referenceSearch({ keys: l2normalizeRows(keys, d), values, n, d, dv, queries, k, tau: 1, aggregate });
      for (const level of simdLevels()) {
        setSimdLevel(level);
        expectSameSearch(ds.searchSync(queries, { k, aggregate }), ref, 1e-5);
      }
    }
  });

  it('ties break on the lower row id, as a sort-based reference does', () => {
    // 4 distinct keys, each repeated 25 times: every similarity is tied 25 ways.
    const d = 8, dv = 2, n = 100, b = 5, k = 37;
    const base = randn(4 * d, 3);
    const keys = new Float32Array(n * d);
    for (let r = 0; r < n; r++) keys.set(base.subarray((r % 4) * d, (r % 4) * d + d), r * d);
    const values = randn(n * dv, 4);
    const queries = randn(b * d, 5);
    const ds = new Datastore({ keyDim: d, valueDim: dv });
    ds.addSync(keys, values);
    const ref = referenceSearch({ keys: l2normalizeRows(keys, d), values, n, d, dv, queries, k, tau: 0.1, aggregate: 'softmax' });
    for (const level of simdLevels()) {
      setSimdLevel(level);
      const got = ds.searchSync(queries, { k, tau: 0.1 });
      expect(Array.from(got.neighbors)).toEqual(Array.from(ref.neighbors));
    }
  });

  it('bf16 keys stay within the documented tolerance (similarity 4e-3, same top-1 on separated data)', () => {
    const d = 103, n = 600, b = 31, dv = 7, k = 10;
    const { keys, values, queries } = dataset(d, n, b, dv, 11);
    const f32 = new Datastore({ keyDim: d, valueDim: dv });
    const bf = new Datastore({ keyDim: d, valueDim: dv, precision: 'bf16' });
    f32.addSync(keys, values);
    bf.addSync(keys, values);
    expect(bf.memoryBytes).toBeLessThan(f32.memoryBytes);
    const exact = f32.searchSync(queries, { k, tau: 0.05 });
    for (const level of simdLevels()) {
      setSimdLevel(level);
      const got = bf.searchSync(queries, { k, tau: 0.05 });
      // Each returned similarity is the bf16 dot of the same pair: compare via the exact
      // similarity of the row returned, and require the kept set to be near-optimal.
      for (let q = 0; q < b; q++) {
        expect(Math.abs(got.similarities[q * k]! - exact.similarities[q * k]!)).toBeLessThan(4e-3);
        expect(Math.abs(got.similarities[q * k + k - 1]! - exact.similarities[q * k + k - 1]!)).toBeLessThan(4e-3);
      }
    }
  });

  it('stores larger than the cache: few-query batches split over key ranges, larger ones over queries too, match the TS reference', { timeout: 180_000 }, () => {
    // 4,500 x 1024 f32 keys = 18 MB, past the 16 MB a pass treats as cache-resident
    // (native/core/search.cpp plan_grid): 3 queries run as one query chunk in key chunks,
    // 160 queries (at least 4 query tiles per thread) in query chunks alone.
    const d = 1024, n = 4500, dv = 5, k = 17;
    const { keys, values } = dataset(d, n, 0, dv, 51);
    const ds = new Datastore({ keyDim: d, valueDim: dv });
    ds.addSync(keys.subarray(0, 1000 * d), values.subarray(0, 1000 * dv)); // two segments: key chunks cross them
    ds.addSync(keys.subarray(1000 * d), values.subarray(1000 * dv));
    const normed = l2normalizeRows(keys, d);
    for (const b of [3, 160]) {
      const queries = randn(b * d, 60 + b);
      const ref = referenceSearch({ keys: normed, values, n, d, dv, queries, k, tau: 0.05, aggregate: 'softmax' });
      for (const level of [simdLevels()[0]!, 'scalar' as const]) {
        setSimdLevel(level);
        expectSameSearch(ds.searchSync(queries, { k, tau: 0.05 }), ref, 1e-5);
      }
    }
  });

  it('segments appended in pieces give the same result as one add', () => {
    const d = 17, dv = 3, n = 500, b = 13, k = 20;
    const { keys, values, queries } = dataset(d, n, b, dv, 21);
    const whole = new Datastore({ keyDim: d, valueDim: dv });
    whole.addSync(keys, values);
    const pieces = new Datastore({ keyDim: d, valueDim: dv });
    // Uneven pieces, several not panel-aligned, to exercise segment merging.
    const cuts = [0, 1, 33, 40, 100, 101, 250, 499, 500];
    for (let i = 0; i + 1 < cuts.length; i++) {
      pieces.addSync(keys.subarray(cuts[i]! * d, cuts[i + 1]! * d), values.subarray(cuts[i]! * dv, cuts[i + 1]! * dv));
    }
    expect(pieces.size).toBe(n);
    for (const level of simdLevels()) {
      setSimdLevel(level);
      expectSameSearch(pieces.searchSync(queries, { k }), whole.searchSync(queries, { k }), 0);
    }
  });
});
