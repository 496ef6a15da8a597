import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { setConcurrency, concurrency } from '../../src/native/simd.js';
import { Datastore } from '../../src/retrieval/datastore.js';
import { K_MAX, TAU_MAX, TAU_MIN } from '../../src/retrieval/search-options.js';
import { l2normalizeRows, referenceSearch } from '../../src/retrieval/reference.js';
import { expectSameSearch } from '../helpers/compare.js';
import { randn } from '../helpers/random.js';

const d = 24, dv = 6;
function filled(n = 200, seed = 1, ids?: string[]) {
  const ds = new Datastore({ keyDim: d, valueDim: dv });
  const keys = randn(n * d, seed), values = randn(n * dv, seed + 1);
  ds.addSync(keys, values, ids);
  return { ds, keys, values };
}

/** Run fn, return what it threw (fails the test if nothing was thrown). */
function thrown(fn: () => unknown): Error & { code?: string; row?: number } {
  try {
    fn();
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected a throw');
}

describe('Datastore: construction and add', () => {
  it('selects key and value columns (Config B style) before storing', () => {
    const keyIndices = [0, 5, 7, 11], valueIndices = [1, 2];
    const ds = new Datastore({ keyDim: d, valueDim: dv, keyIndices, valueIndices });
    expect([ds.d, ds.dv]).toEqual([4, 2]);
    const n = 50, keys = randn(n * d, 3), values = randn(n * dv, 4), q = randn(5 * d, 5);
    ds.addSync(keys, values);
    const pick = (m: Float32Array, w: number, idx: number[]) => Float32Array.from({ length: (m.length / w) * idx.length }, (_, i) => m[Math.floor(i / idx.length) * w + idx[i % idx.length]!]!);
    const ref = referenceSearch({ keys: l2normalizeRows(pick(keys, d, keyIndices), 4), values: pick(values, dv, valueIndices), n, d: 4, dv: 2, queries: pick(q, d, keyIndices), k: 7, tau: 0.04, aggregate: 'softmax' });
    expectSameSearch(ds.searchSync(q, { k: 7 }), ref, 1e-5);
  });

  it('rejects bad options with coded errors', () => {
    expect(thrown(() => new Datastore({ keyDim: 0 })).code).toBe('RAPM_INVALID_ARG');
    expect(thrown(() => new Datastore({ keyDim: 1.5 })).code).toBe('RAPM_INVALID_ARG');
    expect(thrown(() => new Datastore({ keyDim: 4, keyIndices: [0, 4] })).message).toMatch(/keyIndices\[1\].*between 0 and 3/);
    expect(thrown(() => new Datastore({ keyDim: 4, keyIndices: [1, 1] })).message).toMatch(/distinct/);
    expect(thrown(() => new Datastore({ precision: 'f16' as never })).message).toMatch(/precision/);
  });

  it('wrong kinds are TypeErrors, wrong lengths RangeErrors, each with a code and a stack into this file', () => {
    const ds = new Datastore({ keyDim: d, valueDim: dv });
    const e1 = thrown(() => ds.addSync([1, 2, 3] as never, new Float32Array(dv)));
    expect(e1).toBeInstanceOf(TypeError);
    expect(e1.code).toBe('RAPM_TYPE');
    expect(e1.stack).toContain('datastore.test.ts');
    const e2 = thrown(() => ds.addSync(new Float32Array(d * 2 + 1), new Float32Array(dv * 2)));
    expect(e2).toBeInstanceOf(RangeError);
    expect(e2.code).toBe('RAPM_SHAPE_MISMATCH');
    expect(e2.message).toMatch(/whole rows of 24/);
    const e3 = thrown(() => ds.addSync(new Float32Array(d * 2), new Float32Array(dv * 3)));
    expect(e3.code).toBe('RAPM_SHAPE_MISMATCH');
    expect(e3.message).toMatch(/values of length 12/);
    const e4 = thrown(() => ds.addSync(new Float32Array(d), new Float32Array(dv), ['a', 'b']));
    expect(e4.message).toMatch(/Expected 1 ids/);
    expect(thrown(() => ds.addSync(new Float32Array(0), new Float32Array(0))).message).toMatch(/empty/);
  });

  it('NaN, Infinity and zero-norm rows are refused naming the row, and nothing is added', () => {
    const ds = new Datastore({ keyDim: d, valueDim: dv });
    const keys = randn(10 * d, 1), values = randn(10 * dv, 2);
    keys[7 * d + 3] = Number.NaN;
    const e = thrown(() => ds.addSync(keys, values));
    expect(e).toBeInstanceOf(RangeError);
    expect(e.code).toBe('RAPM_NON_FINITE');
    expect(e.row).toBe(7);
    expect(e.message).toMatch(/keys row 7/);
    expect(e.stack).toContain('datastore.test.ts');
    expect(ds.size).toBe(0);
    keys[7 * d + 3] = 0;
    keys.fill(0, 4 * d, 5 * d);
    const z = thrown(() => ds.addSync(keys, values));
    expect([z.code, z.row]).toEqual(['RAPM_ZERO_NORM', 4]);
    keys[4 * d] = 1;
    values[9 * dv] = Number.POSITIVE_INFINITY;
    const v = thrown(() => ds.addSync(keys, values));
    expect([v.code, v.row]).toEqual(['RAPM_NON_FINITE', 9]);
    expect(v.message).toMatch(/values row 9/);
    expect(ds.size).toBe(0);
    // A finite value so large that a float32 blend of it overflows (FLT_MAX weighted by weights
    // summing to a touch above 1 was an Infinity prior): refused like Infinity, at the limit's edge.
    values[9 * dv] = -3.4e38;
    const o = thrown(() => ds.addSync(keys, values));
    expect([o.code, o.row]).toEqual(['RAPM_NON_FINITE', 9]);
    expect(o.message).toMatch(/values row 9: .*beyond \+-1e30/);
    expect(ds.size).toBe(0);
    values[9 * dv] = Math.fround(1e30);
    ds.addSync(keys, values);
    expect(ds.size).toBe(10);
    const { prior } = ds.searchSync(keys.subarray(9 * d, 10 * d), { k: 10, tau: 0.04 });
    expect(prior.every(Number.isFinite)).toBe(true);
  });

  it('a bad key past the first normalisation block (2048 rows) is named by its own row, and nothing is added', () => {
    const dd = 4, m = 5000;
    const ds = new Datastore({ keyDim: dd, valueDim: 1 });
    ds.addSync(randn(40 * dd, 1), randn(40, 2));
    const keys = randn(m * dd, 3), values = randn(m, 4);
    keys[4100 * dd + 1] = Number.NaN;
    const e = thrown(() => ds.addSync(keys, values));
    expect([e.code, e.row]).toEqual(['RAPM_NON_FINITE', 4100]);
    keys[4100 * dd + 1] = 0.5;
    keys.fill(0, 2048 * dd, 2049 * dd);
    expect([thrown(() => ds.addSync(keys, values)).row, ds.size]).toEqual([2048, 40]);
    keys[2048 * dd] = 1;
    ds.addSync(keys, values);
    expect(ds.size).toBe(40 + m);
  });

  it('segments of 16384 rows and more are not merged again; answers do not depend on the segments', () => {
    const dd = 8, dvv = 2, chunk = 17000;
    const keys = randn(3 * chunk * dd, 5), values = randn(3 * chunk * dvv, 6);
    const oneGo = new Datastore({ keyDim: dd, valueDim: dvv });
    oneGo.addSync(keys, values);
    const chunked = new Datastore({ keyDim: dd, valueDim: dvv });
    // A small first segment merges into the first big chunk; the big chunks then stay apart.
    const cuts = [0, 100, chunk, 2 * chunk, 3 * chunk];
    for (let c = 0; c + 1 < cuts.length; c++) chunked.addSync(keys.subarray(cuts[c]! * dd, cuts[c + 1]! * dd), values.subarray(cuts[c]! * dvv, cuts[c + 1]! * dvv));
    expect([oneGo._segmentCount, chunked._segmentCount]).toEqual([1, 3]);
    const q = randn(50 * dd, 7);
    for (const opts of [{ k: 7 }, { k: 5, rowRange: [chunk - 30, 2 * chunk + 30] as [number, number] }]) {
      const a = oneGo.searchSync(q, opts), b = chunked.searchSync(q, opts);
      expect(Array.from(b.neighbors)).toEqual(Array.from(a.neighbors));
      expect(Array.from(b.similarities)).toEqual(Array.from(a.similarities));
      expect(Array.from(b.prior)).toEqual(Array.from(a.prior));
    }
  });

  it('async add rejects the same way and leaves earlier rows intact', async () => {
    const { ds } = filled(40);
    const keys = randn(5 * d, 9);
    keys[2 * d] = Number.NaN;
    await expect(ds.add(keys, randn(5 * dv, 3))).rejects.toMatchObject({ code: 'RAPM_NON_FINITE', row: 2 });
    expect(ds.size).toBe(40);
    await ds.add(randn(5 * d, 4), randn(5 * dv, 5));
    expect(ds.size).toBe(45);
  });
});

describe('Datastore: search options and bad input', () => {
  const { ds } = filled(200);
  const q = randn(3 * d, 77);

  it('k, tau and aggregate are validated with coded errors naming the values', () => {
    expect(thrown(() => ds.searchSync(q, { k: 0 })).message).toMatch(/^k must be an integer in \[1, 2147483647\], got 0$/);
    expect(thrown(() => ds.searchSync(q, { k: 2.5 })).code).toBe('RAPM_INVALID_ARG');
    const big = thrown(() => ds.searchSync(q, { k: 201 }));
    expect([big.name, big.code]).toEqual(['RangeError', 'RAPM_K_TOO_LARGE']);
    expect(big.message).toMatch(/k <= 200.*k = 201/);
    for (const tau of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      const e = thrown(() => ds.searchSync(q, { tau }));
      expect(e).toBeInstanceOf(RangeError);
      expect(e.message).toMatch(/tau/);
    }
    expect(thrown(() => ds.searchSync(q, { tau: '1' as never })).code).toBe('RAPM_TYPE');
  });

  it('an option key nothing reads is refused, naming it and the likely intended one, not ignored', async () => {
    // { K: 3 } used to search with the default k = 90 and say nothing.
    const e = thrown(() => ds.searchSync(q, { K: 3 } as never));
    expect([e.name, e.code]).toEqual(['RangeError', 'RAPM_INVALID_ARG']);
    expect(e.message).toMatch(/Unknown option 'K' for search options \(did you mean 'k'\?\)/);
    await expect(ds.search(q, { k: 5, topK: 3 } as never)).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG', message: expect.stringMatching(/'topK'/) });
    expect(thrown(() => new Datastore({ keyDim: d, precison: 'bf16' } as never)).message).toMatch(/'precison' for new Datastore \(did you mean 'precision'\?\)/);
    // Keys set to undefined (spread objects) and every real key pass.
    expect(ds.searchSync(q, { k: 4, tau: 0.1, aggregate: 'softmax', rowRange: [0, 200], excludeRows: [-1, -1, -1], extra: undefined } as never).k).toBe(4);
  });

  it('tau must be a normal float32 (1e-46 rounds to 0 and gave NaN weights), k an int32', async () => {
    for (const tau of [1e-46, 1e-40, TAU_MIN / 2, 1e39]) {
      for (const e of [thrown(() => ds.searchSync(q, { tau })), await ds.search(q, { tau }).then(() => new Error('resolved') as Error & { code?: string }, (x: Error & { code?: string }) => x)]) {
        expect(e.code).toBe('RAPM_INVALID_ARG');
        expect(e.message).toMatch(/tau must be a number in \[1\.1754944e-38 \(FLT_MIN\), 3\.4028235e38 \(FLT_MAX\)\], a normal float32/);
      }
    }
    expect(thrown(() => ds.searchSync(q, { tau: 1e-46 })).message).toMatch(/rounds or flushes to 0 in float32/);
    // The bounds themselves are accepted and give finite weights summing to 1.
    for (const tau of [TAU_MIN, 1e-30, TAU_MAX]) {
      const res = ds.searchSync(q, { tau, k: 5 });
      expect(res.weights.every(Number.isFinite)).toBe(true);
      expect(res.prior.every(Number.isFinite)).toBe(true);
      for (let i = 0; i < 3; i++) expect(res.weights.subarray(i * 5, i * 5 + 5).reduce((x, y) => x + y)).toBeCloseTo(1, 5);
    }
    expect(thrown(() => ds.searchSync(q, { k: K_MAX + 1 })).message).toMatch(/k must be an integer in \[1, 2147483647\], got 2147483648/);
    // The native side refuses a tau that is not a normal float32 too (defence in depth).
    const { loadBinding } = await import('../../src/native/binding.js');
    const raw = new (loadBinding().Datastore)(4, 1, false);
    raw.addSync(new Float32Array([1, 0, 0, 0, 0, 1, 0, 0]), new Float32Array([1, 2]), new Int32Array([0, 1]), 2);
    const o = [new Float32Array(1), new Int32Array(2), new Float32Array(2), new Float32Array(2)] as const;
    expect(() => raw.searchSync(new Float32Array([1, 0, 0, 0]), 1, 2, 1e-46, 0, null, ...o)).toThrow(/normal float32.*1e-46/);
    expect(thrown(() => ds.searchSync(q, { aggregate: 'max' as never })).message).toMatch(/one of softmax, mean, top1/);
    expect(thrown(() => ds.searchSync(q, { excludeRows: [0, 1, 2], excludeIds: ['a', 'b', 'c'] })).message).toMatch(/at most one/);
  });

  it('queries: wrong kind, length, NaN and zero norm', () => {
    expect(thrown(() => ds.searchSync(new Float64Array(d) as never)).code).toBe('RAPM_TYPE');
    expect(thrown(() => ds.searchSync(new Float32Array(d + 1))).code).toBe('RAPM_SHAPE_MISMATCH');
    const bad = randn(4 * d, 1);
    bad[2 * d + 5] = Number.NaN;
    const e = thrown(() => ds.searchSync(bad));
    expect([e.code, e.row]).toEqual(['RAPM_NON_FINITE', 2]);
    expect(e.message).toMatch(/queries row 2/);
    const z = new Float32Array(2 * d);
    z[0] = 1;
    expect(thrown(() => ds.searchSync(z)).row).toBe(1);
  });

  it('async search rejects with the code and a stack into this file', async () => {
    const bad = randn(2 * d, 1);
    bad[d] = Number.NEGATIVE_INFINITY;
    const err = await ds.search(bad).then(() => null, (e: Error & { code?: string }) => e);
    expect(err?.code).toBe('RAPM_NON_FINITE');
    expect(err?.stack).toContain('datastore.test.ts');
  });

  it('an empty datastore refuses to search', () => {
    const empty = new Datastore({ keyDim: d, valueDim: dv });
    expect(thrown(() => empty.searchSync(q)).code).toBe('RAPM_STATE');
  });

  it('excludeRows and excludeIds are validated', () => {
    expect(thrown(() => ds.searchSync(q, { excludeRows: [1, 2] })).message).toMatch(/length 3/);
    expect(thrown(() => ds.searchSync(q, { excludeRows: [1, 2, 200] })).message).toMatch(/excludeRows\[2\] between -1 and 199/);
    expect(thrown(() => ds.searchSync(q, { excludeIds: 'a' as never })).code).toBe('RAPM_TYPE');
  });
});

describe('Datastore: leave-one-out', () => {
  it('excluded rows are never returned, on any query', () => {
    const n = 150;
    const { ds, keys } = filled(n, 5);
    // Query with the stored keys themselves: without exclusion each finds itself first.
    const plain = ds.searchSync(keys, { k: 5 });
    for (let i = 0; i < n; i++) expect(plain.neighbors[i * 5]).toBe(i);
    const loo = ds.searchSync(keys, { k: 5, excludeRows: Int32Array.from({ length: n }, (_, i) => i) });
    for (let i = 0; i < n; i++) expect(Array.from(loo.neighbors.subarray(i * 5, i * 5 + 5))).not.toContain(i);
  });

  it('excludes every copy of a duplicated utterance, by row or by id', () => {
    // Rows 0..59 are utterances u0..u19, each three times (sampling with replacement).
    const n = 60, base = randn(20 * d, 8), keys = new Float32Array(n * d);
    const ids: string[] = [];
    for (let r = 0; r < n; r++) {
      keys.set(base.subarray((r % 20) * d, (r % 20) * d + d), r * d);
      ids.push(`u${r % 20}`);
    }
    const ds = new Datastore({ keyDim: d, valueDim: dv });
    ds.addSync(keys, randn(n * dv, 9), ids);
    expect(ds.countOf('u3')).toBe(3);
    const q = base; // one query per utterance
    const byRow = ds.searchSync(q, { k: 10, excludeRows: Int32Array.from({ length: 20 }, (_, i) => i) });
    const byId = ds.searchSync(q, { k: 10, excludeIds: ids.slice(0, 20) });
    for (let u = 0; u < 20; u++) {
      const got = Array.from(byRow.neighbors.subarray(u * 10, u * 10 + 10)).map((r) => ds.idOf(r));
      expect(got).not.toContain(`u${u}`);
    }
    expect(Array.from(byId.neighbors)).toEqual(Array.from(byRow.neighbors));
    // K must fit in what is left after exclusion: 60 - 3.
    const e = thrown(() => ds.searchSync(q, { k: 58, excludeIds: ids.slice(0, 20) }));
    expect(e.code).toBe('RAPM_K_TOO_LARGE');
    expect(e.message).toMatch(/k <= 57/);
    expect(ds.searchSync(q, { k: 57, excludeIds: ids.slice(0, 20) }).neighbors.length).toBe(20 * 57);
  });

  it('an unknown id or -1 excludes nothing', () => {
    const { ds, keys } = filled(30, 2);
    const q = keys.subarray(0, 2 * d);
    const none = ds.searchSync(q, { k: 3 });
    expect(Array.from(ds.searchSync(q, { k: 3, excludeIds: ['nope', null] }).neighbors)).toEqual(Array.from(none.neighbors));
    expect(Array.from(ds.searchSync(q, { k: 3, excludeRows: [-1, -1] }).neighbors)).toEqual(Array.from(none.neighbors));
  });
});

describe('Datastore: async, threads, concurrency', () => {
  it('search() equals searchSync() for every thread count', async () => {
    const { ds } = filled(1000, 3);
    const q = randn(100 * d, 4);
    const before = concurrency();
    try {
      const want = ds.searchSync(q, { k: 25 });
      for (const t of [1, 2, 3, 7]) {
        setConcurrency(t);
        expectSameSearch(await ds.search(q, { k: 25 }), want, 0);
        expectSameSearch(ds.searchSync(q.subarray(0, d), { k: 25 }), { ...want, b: 1, prior: want.prior.subarray(0, dv), neighbors: want.neighbors.subarray(0, 25), weights: want.weights.subarray(0, 25), similarities: want.similarities.subarray(0, 25) }, 0);
      }
    } finally {
      setConcurrency(before);
    }
  });

  it('appends while searches run: no crash, every search sees a consistent prefix', async () => {
    const n0 = 300;
    const { ds } = filled(n0, 6);
    const q = randn(8 * d, 7);
    const extra = randn(2000 * d, 8), extraV = randn(2000 * dv, 9);
    const searches: Promise<unknown>[] = [];
    const adds: Promise<void>[] = [];
    for (let i = 0; i < 20; i++) {
      adds.push(ds.add(extra.subarray(i * 100 * d, (i + 1) * 100 * d), extraV.subarray(i * 100 * dv, (i + 1) * 100 * dv)));
      searches.push(ds.search(q, { k: 50 }).then((r) => {
        for (const id of r.neighbors) expect(id).toBeGreaterThanOrEqual(0);
        return r;
      }));
    }
    await Promise.all([...adds, ...searches]);
    expect(ds.size).toBe(n0 + 2000);
    // After all appends, the result equals a fresh datastore built in one go.
    const fresh = new Datastore({ keyDim: d, valueDim: dv });
    fresh.addSync(randn(n0 * d, 6), randn(n0 * dv, 7));
    fresh.addSync(extra, extraV);
    expectSameSearch(await ds.search(q, { k: 50 }), fresh.searchSync(q, { k: 50 }), 0);
  });

  it('loads and searches inside a worker thread, next to the main thread', async () => {
    const code = `
      const { parentPort } = require('node:worker_threads');
      const addon = require(process.env.RAPM_ADDON);
      const ds = new addon.Datastore(4, 1, false);
      ds.addSync(new Float32Array([1,0,0,0, 0,1,0,0, 0,0,1,0]), new Float32Array([10, 20, 30]), new Int32Array([0,1,2]), 3);
      const prior = new Float32Array(1), nb = new Int32Array(1), w = new Float32Array(1), s = new Float32Array(1);
      ds.search(new Float32Array([0,0.1,1,0]), 1, 1, 0.04, 0, null, prior, nb, w, s).then(() => {
        parentPort.postMessage({ nb: nb[0], prior: prior[0], level: addon.simdLevel() });
      });`;
    const { packageRoot } = await import('../../src/native/binding.js');
    const path = await import('node:path');
    const addonPath = process.env.RAPM_NATIVE ?? path.join(packageRoot, 'build', 'Release', 'rapm.node');
    const result = await new Promise<{ nb: number; prior: number; level: string }>((resolve, reject) => {
      const w = new Worker(code, { eval: true, env: { ...process.env, RAPM_ADDON: addonPath } });
      w.once('message', (m) => {
        void w.terminate();
        resolve(m);
      });
      w.once('error', reject);
    });
    expect(result.nb).toBe(2);
    expect(result.prior).toBe(30);
    // The main thread's instance still works after the worker's is torn down.
    const { ds } = filled(20, 1);
    expect(ds.searchSync(randn(d, 2), { k: 3 }).neighbors.length).toBe(3);
  });
});

describe('Datastore: rowRange', () => {
  it('searches only [start, end), equal to a datastore holding just those rows', () => {
    const n = 400, { ds, keys, values } = filled(n, 31);
    const q = randn(11 * d, 32);
    for (const [s0, s1] of [[0, 400], [0, 40], [33, 97], [250, 400], [399, 400]] as const) {
      const k = Math.min(15, s1 - s0);
      const part = new Datastore({ keyDim: d, valueDim: dv });
      part.addSync(keys.subarray(s0 * d, s1 * d), values.subarray(s0 * dv, s1 * dv));
      const want = part.searchSync(q, { k });
      const got = ds.searchSync(q, { k, rowRange: [s0, s1] });
      expect(Array.from(got.neighbors)).toEqual(Array.from(want.neighbors).map((r) => r + s0));
      expect(Array.from(got.prior)).toEqual(Array.from(want.prior));
    }
  });

  it('rejects empty or out-of-bounds ranges and k above the range size', () => {
    const { ds } = filled(100, 3);
    const q = randn(d, 4);
    expect(thrown(() => ds.searchSync(q, { k: 1, rowRange: [5, 5] })).message).toMatch(/0 <= start < end <= 100/);
    expect(thrown(() => ds.searchSync(q, { k: 1, rowRange: [90, 101] })).code).toBe('RAPM_INVALID_ARG');
    expect(thrown(() => ds.searchSync(q, { k: 11, rowRange: [90, 100] })).message).toMatch(/k <= 10 \(rows in rowRange\)/);
  });
});
