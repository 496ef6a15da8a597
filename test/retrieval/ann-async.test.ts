/**
 * AnnIndex.searchAsync: faiss's search on a libuv worker thread (the searchAsync of our
 * faiss-node patch, scripts/faiss-node/rapm-faiss-node.patch). Same answers as the
 * synchronous search bit for bit, the event loop turns meanwhile, bad input is a coded error,
 * concurrent searches agree with sequential ones, and mutations wait or are refused while a
 * search is in flight.
 */
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { RapmError, RapmRangeError, RapmTypeError } from '../../src/errors.js';
import { AnnIndex, annSearchWithValues, annSearchWithValuesSync, faissAvailable, loadFaiss, type AnnSearchResult } from '../../src/retrieval/ann.js';
import { clustered as clusteredRows, randn, thrown } from '../helpers/random.js';

const d = 16, n = 4000, b = 64, k = 10;

/** Clustered keys (centre + noise), so IVF / HNSW neighbourhoods mean something. */
const clustered = (rows: number, dim: number, seed: number): Float32Array => clusteredRows(rows, dim, seed, 24, 0.4);

/** Bit-level equality of two search results (Float32Array toEqual would treat -0 / NaN loosely). */
function expectIdentical(got: AnnSearchResult, want: AnnSearchResult): void {
  expect([got.b, got.k, got.missing]).toEqual([want.b, want.k, want.missing]);
  expect(Buffer.from(got.neighbors.buffer)).toEqual(Buffer.from(want.neighbors.buffer));
  expect(Buffer.from(got.similarities.buffer)).toEqual(Buffer.from(want.similarities.buffer));
  expect(Buffer.from(got.found.buffer)).toEqual(Buffer.from(want.found.buffer));
}

/** rapm's coded errors: RapmError, RapmTypeError or RapmRangeError. */
function isRapm(e: unknown): boolean {
  return e instanceof RapmError || e instanceof RapmTypeError || e instanceof RapmRangeError;
}

async function rejection(p: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await p;
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected a rejection');
}

/** A Flat index big enough that one searchAsync of `queries` rows takes far longer than one loop turn. */
function bigFlat(): { index: AnnIndex; queries: Float32Array } {
  const dim = 64, rows = 40_000;
  const index = AnnIndex.create({ d: dim, factory: 'Flat' });
  index.addSync(randn(rows * dim, 11));
  return { index, queries: randn(1000 * dim, 12) };
}

describe.skipIf(!faissAvailable())('AnnIndex.searchAsync (faiss on a libuv worker thread)', () => {
  const keys = clustered(n, d, 1);
  const queries = clustered(b, d, 3);
  const values = randn(n * 4, 2);

  function built(factory: string): AnnIndex {
    const index = AnnIndex.create({ d, factory });
    if (index.needsTraining) index.train(keys);
    index.addSync(keys);
    return index;
  }

  it('returns exactly what the synchronous search returns (ids and similarities, bit for bit) on Flat, IVF and HNSW', async () => {
    const ivf = built('IVF32,Flat');
    ivf.setSearchParams({ nprobe: 3 });
    const hnsw = built('HNSW16,Flat');
    hnsw.setSearchParams({ efSearch: 24 });
    for (const index of [built('Flat'), ivf, hnsw]) {
      const want = index.search(queries, k);
      const got = await index.searchAsync(queries, k);
      expectIdentical(got, want);
      expect(got.neighbors.some((r, i) => r !== i % n)).toBe(true); // a real answer, not an identity fill
    }
    // An IVF probe too narrow for k: the -1 / -Infinity slots agree as well.
    ivf.setSearchParams({ nprobe: 1 });
    const want = ivf.search(queries, 400);
    expect(want.missing).toBeGreaterThan(0);
    expectIdentical(await ivf.searchAsync(queries, 400), want);
    // And through the values drop-in.
    const vs = annSearchWithValuesSync(hnsw, values, queries, { k });
    const va = await annSearchWithValues(hnsw, values, queries, { k });
    expect(Buffer.from(va.prior.buffer)).toEqual(Buffer.from(vs.prior.buffer));
    expect(Buffer.from(va.weights.buffer)).toEqual(Buffer.from(vs.weights.buffer));
  });

  it('the event loop turns while a large search runs (the search had not finished at the first turn)', async () => {
    const { index, queries: many } = bigFlat();
    let done = false;
    let turns = 0;
    let doneAtFirstTurn: boolean | null = null;
    let stop = false;
    const spin = (): void => {
      if (turns === 0) doneAtFirstTurn = done;
      turns++;
      if (!stop) setImmediate(spin);
    };
    setImmediate(spin);
    const p = index.searchAsync(many, 5).then((r) => {
      done = true;
      return r;
    });
    const turnsBefore = turns; // searchAsync normalised the queries and queued the search synchronously
    const got = await p;
    const turnsDuring = turns - turnsBefore;
    stop = true;
    expect(turnsBefore).toBe(0);
    expect(doneAtFirstTurn).toBe(false);
    expect(turnsDuring).toBeGreaterThanOrEqual(2); // kept turning, not one turn squeezed in at the end
    expectIdentical(got, index.search(many, 5));
  });

  it('bad input is a coded RapmError (rejected promise), never a crash', async () => {
    const small = built('Flat');
    const cases: [string, () => Promise<unknown>, string][] = [
      ['wrong dims', () => small.searchAsync(queries.subarray(0, d + 3), 2), 'RAPM_SHAPE_MISMATCH'],
      ['empty queries', () => small.searchAsync(new Float32Array(0), 2), 'RAPM_SHAPE_MISMATCH'],
      ['not a Float32Array', () => small.searchAsync([1, 2] as unknown as Float32Array, 1), 'RAPM_TYPE'],
      ['k = 0', () => small.searchAsync(queries, 0), 'RAPM_INVALID_ARG'],
      ['k < 0', () => small.searchAsync(queries, -3), 'RAPM_INVALID_ARG'],
      ['k not an integer', () => small.searchAsync(queries, 2.5), 'RAPM_INVALID_ARG'],
      ['k > ntotal', () => small.searchAsync(queries, n + 1), 'RAPM_K_TOO_LARGE'],
    ];
    for (const [what, call, code] of cases) {
      const e = await rejection(call());
      expect(isRapm(e), what).toBe(true);
      expect(e.code, what).toBe(code);
    }
    const nan = queries.slice(0, 3 * d);
    nan[2 * d + 5] = NaN;
    const e = await rejection(small.searchAsync(nan, 2));
    expect([isRapm(e), e.code]).toEqual([true, 'RAPM_NON_FINITE']);
    expect(e.message).toContain('row 2, column 5');
    const inf = queries.slice(0, d);
    inf[0] = Infinity;
    expect((await rejection(small.searchAsync(inf, 2))).code).toBe('RAPM_NON_FINITE');
    const empty = AnnIndex.create({ d, factory: 'Flat' });
    expect((await rejection(empty.searchAsync(queries, 1))).code).toBe('RAPM_STATE');
    // The index still answers afterwards.
    expectIdentical(await small.searchAsync(queries, k), small.search(queries, k));
  });

  it('the native searchAsync refuses bad arguments itself (RangeError / TypeError thrown synchronously, no crash)', () => {
    const faiss = loadFaiss();
    const raw = faiss.Index.fromFactory(4, 'Flat', faiss.MetricType.METRIC_INNER_PRODUCT);
    raw.addFloat32(new Float32Array([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0]));
    const q = new Float32Array([0.5, 0.5, 0, 0]);
    const bad: [string, () => unknown, string][] = [
      ['wrong length', () => raw.searchAsync(new Float32Array(5), 1), 'RangeError'],
      ['empty', () => raw.searchAsync(new Float32Array(0), 1), 'RangeError'],
      ['k = 0', () => raw.searchAsync(q, 0), 'RangeError'],
      ['k = -1', () => raw.searchAsync(q, -1), 'RangeError'],
      ['k = 1.5', () => raw.searchAsync(q, 1.5), 'RangeError'],
      ['k = NaN', () => raw.searchAsync(q, NaN), 'RangeError'],
      ['k > ntotal', () => raw.searchAsync(q, 4), 'RangeError'],
      ['NaN query', () => raw.searchAsync(new Float32Array([0, NaN, 0, 0]), 1), 'RangeError'],
      ['not typed', () => raw.searchAsync([0, 1, 0, 0] as unknown as Float32Array, 1), 'TypeError'],
      ['Float64Array', () => raw.searchAsync(new Float64Array(4) as unknown as Float32Array, 1), 'TypeError'],
      ['no k', () => (raw.searchAsync as (x: Float32Array) => unknown)(q), 'TypeError'],
    ];
    for (const [what, call, name] of bad) expect(thrown(call).name, what).toBe(name);
    expect(raw.searchesInFlight()).toBe(0); // nothing was queued
  });

  it('concurrent searches (async and sync, on one index) give the same answers as sequential ones', async () => {
    const ivf = built('IVF32,Flat');
    ivf.setSearchParams({ nprobe: 4 });
    const batches = Array.from({ length: 8 }, (_, i) => clustered(b, d, 100 + i));
    const sequential = batches.map((q) => ivf.search(q, k));
    const pending = batches.map((q) => ivf.searchAsync(q, k));
    const syncMeanwhile = ivf.search(batches[0]!, k); // a synchronous search while the workers run
    const concurrent = await Promise.all(pending);
    concurrent.forEach((r, i) => expectIdentical(r, sequential[i]!));
    expectIdentical(syncMeanwhile, sequential[0]!);
  });

  it('while a search is in flight: add() waits for it, addSync / train / setSearchParams are refused, the native side refuses too', async () => {
    const { index, queries: many } = bigFlat();
    const before = index.search(many, 3);
    const ntotal = index.ntotal;
    const more = randn(500 * index.d, 13);
    const search = index.searchAsync(many, 3);
    const adding = index.add(more);
    expect(index.ntotal).toBe(ntotal); // the add waits (unwaited, its only block would be in already)
    for (const call of [() => index.addSync(more), () => index.train(more), () => index.setSearchParams({})]) {
      const e = thrown(call);
      expect([e instanceof RapmError, e.code]).toEqual([true, 'RAPM_STATE']);
      expect(e.message).toContain('in flight');
    }
    expectIdentical(await search, before); // the search saw the index as it was
    await adding; // and the add, run after it, was not refused by the native side
    expect(index.ntotal).toBe(ntotal + 500);
    // A search started while a multi-block add() is in progress (it yields between blocks of
    // 65,536 rows) waits for the whole add and sees its last row.
    const big = randn(70_000 * index.d, 14);
    const adding2 = index.add(big);
    expect(index.ntotal).toBe(ntotal + 500 + 65_536); // first block in, the add is in progress
    const after = index.searchAsync(big.slice(69_999 * index.d), 1);
    await adding2;
    expect(index.ntotal).toBe(ntotal + 70_500);
    expect((await after).neighbors[0]).toBe(ntotal + 500 + 69_999);

    // The faiss-node level, without AnnIndex's bookkeeping.
    const faiss = loadFaiss();
    const raw = faiss.Index.fromFactory(64, 'Flat', faiss.MetricType.METRIC_INNER_PRODUCT);
    raw.addFloat32(randn(40_000 * 64, 11));
    const p = raw.searchAsync(many, 2);
    expect(raw.searchesInFlight()).toBe(1);
    for (const call of [() => raw.addFloat32(more.subarray(0, 64)), () => raw.setSearchParam('nprobe', 1), () => raw.trainFloat32(more)]) {
      expect((thrown(call) as { code?: string }).code).toBe('FAISS_INDEX_BUSY');
    }
    const r = await p;
    expect(raw.searchesInFlight()).toBe(0);
    expect(Buffer.from(r.labels.buffer)).toEqual(Buffer.from(raw.searchFloat32(many, 2).labels.buffer));
    raw.addFloat32(more.subarray(0, 64)); // accepted once idle
    expect(raw.ntotal()).toBe(40_001);
  });

  it('the index outlives its JS wrapper while a search runs (wrapper collected mid-search, results intact)', () => {
    // A child process with --expose-gc: the JS wrapper is dropped and collected while its
    // searchAsync runs; the worker holds the faiss index (shared_ptr), so the search completes
    // with the right answer instead of reading freed memory.
    // The addon the library loads (RAPM_FAISS_NODE: the sanitizer build under npm run test:asan).
    const faissPath = process.env.RAPM_FAISS_NODE ? path.resolve(process.env.RAPM_FAISS_NODE) : createRequire(import.meta.url).resolve('faiss-node');
    const script = `
      const f = require(${JSON.stringify(faissPath)});
      const dim = 64, rows = 50000, nq = 1200;
      const rnd = (len, seed) => { const a = new Float32Array(len); let s = seed; for (let i = 0; i < len; i++) { s = (s * 1103515245 + 12345) >>> 0; a[i] = s / 2 ** 32 - 0.5; } return a; };
      const keys = rnd(rows * dim, 1), q = rnd(nq * dim, 2);
      const reference = f.Index.fromFactory(dim, 'Flat', 0 /* METRIC_INNER_PRODUCT */);
      reference.addFloat32(keys);
      const want = reference.searchFloat32(q, 4);
      let collected = false, done = false, collectedBeforeDone = null;
      const registry = new FinalizationRegistry(() => { collected = true; collectedBeforeDone = !done; });
      const start = () => {
        const ix = f.Index.fromFactory(dim, 'Flat', 0 /* METRIC_INNER_PRODUCT */);
        ix.addFloat32(keys);
        registry.register(ix, 'ix');
        return ix.searchAsync(q, 4);
      };
      const p = start().then((r) => { done = true; return r; });
      (async () => {
        while (!collected && !done) { globalThis.gc(); await new Promise((r) => setImmediate(r)); }
        for (let i = 0; i < 20 && !done; i++) { globalThis.gc(); await new Promise((r) => setImmediate(r)); }
        const r = await p;
        const same = Buffer.compare(Buffer.from(r.labels.buffer), Buffer.from(want.labels.buffer)) === 0 &&
          Buffer.compare(Buffer.from(r.distances.buffer), Buffer.from(want.distances.buffer)) === 0;
        console.log(JSON.stringify({ collected, collectedBeforeDone, same }));
      })();
    `;
    const out = execFileSync(process.execPath, ['--expose-gc', '-e', script], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, OMP_NUM_THREADS: '1' } });
    expect(JSON.parse(out.trim().split('\n').pop()!)).toEqual({ collected: true, collectedBeforeDone: true, same: true });
  });
});
