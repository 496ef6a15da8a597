import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  AnnIndex,
  annSearchWithValues,
  annSearchWithValuesSync,
  faissAvailable,
  priorFromNeighbors,
  readIndexHeader,
  recallAtK,
} from '../../src/retrieval/ann.js';
import { Datastore, type SearchResult } from '../../src/retrieval/datastore.js';
import { AnnSource, datastoreValues, predictFromSource } from '../../src/retrieval/neighbor-source.js';
import { Predictor } from '../../src/serve/predictor.js';
import { maxRelErr } from '../helpers/compare.js';
import { clustered as clusteredRows, randn, thrown } from '../helpers/random.js';

const n = 5000, d = 16, dv = 4, b = 40, k = 20, centres = 40;

/** Clustered keys: centre + noise (ANN on uniform noise would say nothing). */
const clustered = (rows: number, seed: number): Float32Array => clusteredRows(rows, d, seed, centres, 0.35);

/** Same neighbours as exact, except where both lists hold equal similarities (ties). */
function expectSameUpToTies(got: { neighbors: Int32Array; similarities: Float32Array }, want: SearchResult): void {
  expect(maxRelErr(got.similarities, want.similarities)).toBeLessThan(1e-5);
  for (let i = 0; i < want.neighbors.length; i++) {
    if (got.neighbors[i] !== want.neighbors[i]) expect(Math.abs(got.similarities[i]! - want.similarities[i]!)).toBeLessThan(1e-6);
  }
  expect(recallAtK(got.neighbors, want.neighbors, want.k)).toBeGreaterThan(0.995);
}

describe.skipIf(!faissAvailable())('AnnIndex (faiss-node)', () => {
  const keys = clustered(n, 1);
  const values = randn(n * dv, 2);
  const queries = clustered(b, 3);
  let exact: SearchResult;
  let ivf: AnnIndex; // IVF32,Flat, trained and filled, nprobe 1

  beforeAll(async () => {
    const ds = new Datastore({ keyDim: d, valueDim: dv });
    ds.addSync(keys, values);
    exact = ds.searchSync(queries, { k });
    ivf = AnnIndex.create({ d, factory: 'IVF32,Flat' });
    ivf.train(keys);
    await ivf.add(keys);
  });

  it('Flat equals exact rapm search (ids up to ties, prior and weights)', async () => {
    const flat = AnnIndex.create({ d, factory: 'Flat' });
    expect([flat.kind, flat.isTrained, flat.needsTraining]).toEqual(['flat', true, false]);
    flat.train(keys); // no-op
    flat.addSync(keys);
    expect(flat.ntotal).toBe(n);
    const got = await annSearchWithValues(flat, values, queries, { k });
    expectSameUpToTies(got, exact);
    expect(got.missing).toBe(0);
    expect(maxRelErr(got.prior, exact.prior)).toBeLessThan(1e-4);
    expect(maxRelErr(got.weights, exact.weights)).toBeLessThan(1e-4);
  });

  it('IVF with nprobe = nlist equals exact search', () => {
    const full = AnnIndex.fromBuffer(ivf.toBuffer(), { factory: 'IVF32,Flat' });
    expect([full.kind, full.nlist, full.nprobe, full.ntotal]).toEqual(['ivf', 32, 1, n]);
    full.setSearchParams({ nprobe: 32 });
    expect(full.nprobe).toBe(32);
    const got = annSearchWithValuesSync(full, values, queries, { k });
    expectSameUpToTies(got, exact);
    expect(maxRelErr(got.prior, exact.prior)).toBeLessThan(1e-4);
  });

  it('save() / load() round-trip through a file (no faiss-node buffer leak) with nprobe kept', () => {
    const file = path.join(os.tmpdir(), `rapm-ann-test-${process.pid}.faissindex`);
    try {
      const ix = AnnIndex.fromBuffer(ivf.toBuffer());
      ix.setSearchParams({ nprobe: 4 });
      // A temporary left by a save killed mid-write (its pid dead: 2^22 + 1 is above the largest pid
      // Linux allows) is removed by the next save, as for every file rapm writes.
      const stale = `${file}.tmp-4194305-0123abcd`;
      fs.writeFileSync(stale, 'partial');
      ix.save(file);
      expect(fs.existsSync(stale)).toBe(false);
      expect(ix.serializedBytes()).toBe(fs.statSync(file).size);
      const back = AnnIndex.load(file);
      expect([back.kind, back.nlist, back.nprobe, back.ntotal, back.d]).toEqual(['ivf', 32, 4, n, d]);
      expect(Array.from(back.search(queries, k).neighbors)).toEqual(Array.from(ix.search(queries, k).neighbors));
      expect(thrown(() => AnnIndex.load(file + '.missing')).code).toBe('RAPM_IO');
    } finally {
      fs.rmSync(file, { force: true });
    }
  });

  it('recall@k is in [0, 1] and non-decreasing in nprobe', () => {
    const ix = AnnIndex.fromBuffer(ivf.toBuffer());
    let prev = -1;
    const seen: number[] = [];
    for (const nprobe of [1, 2, 4, 8, 16, 32]) {
      ix.setSearchParams({ nprobe });
      const r = recallAtK(ix.search(queries, k).neighbors, exact.neighbors, k);
      expect(r).toBeGreaterThanOrEqual(0);
      expect(r).toBeLessThanOrEqual(1);
      expect(r).toBeGreaterThanOrEqual(prev);
      prev = r;
      seen.push(r);
    }
    expect(seen[0]).toBeLessThan(1); // nprobe 1 is really approximate on this data
    expect(seen[seen.length - 1]).toBe(1);
  });

  it('the nprobe set at create() goes through faiss ParameterSpace and survives train/add and serialisation', async () => {
    // A misspelt parameter is refused, not ignored (nprob: 8 left faiss's default nprobe of 1).
    expect(() => AnnIndex.create({ d, factory: 'IVF32,Flat', nprob: 8 } as never)).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG', message: expect.stringMatching(/'nprob' for AnnIndex.create \(did you mean 'nprobe'\?\)/) }));
    const ix = AnnIndex.create({ d, factory: 'IVF32,Flat', nprobe: 8 });
    expect([ix.kind, ix.nlist, ix.nprobe]).toEqual(['ivf', 32, 8]);
    ix.train(keys);
    await ix.add(keys.subarray(0, 1000 * d));
    expect(ix.nprobe).toBe(8);
    const back = AnnIndex.fromBuffer(ix.toBuffer());
    expect([back.kind, back.nlist, back.nprobe, back.ntotal]).toEqual(['ivf', 32, 8, 1000]);
    expect(readIndexHeader(ix.toBuffer(), { d, ntotal: 1000 }).fourcc).toBe('IwFl');
    // nprobe changes the result set in place (no copy of the index): 1 vs 32 differ on this data.
    ix.setSearchParams({ nprobe: 1 });
    const one = ix.search(queries, k).neighbors;
    ix.setSearchParams({ nprobe: 32 });
    expect(Array.from(ix.search(queries, k).neighbors)).not.toEqual(Array.from(one));
  });

  it('reports -1 labels for missing results instead of hiding them', () => {
    // 32 lists of ~156 rows, nprobe 1, k = 400: every query gets fewer than k.
    const r = annSearchWithValuesSync(ivf, values, queries.subarray(0, 4 * d), { k: 400 });
    expect(r.missing).toBeGreaterThan(0);
    for (let q = 0; q < 4; q++) {
      const f = r.found[q]!;
      expect(f).toBeLessThan(400);
      expect(f).toBeGreaterThan(0);
      expect(r.neighbors[q * 400 + f]).toBe(-1);
      expect(r.similarities[q * 400 + f]).toBe(-Infinity);
      expect(r.weights[q * 400 + f]).toBe(0);
      let s = 0;
      for (let i = 0; i < f; i++) s += r.weights[q * 400 + i]!;
      expect(s).toBeCloseTo(1, 5);
      expect(Number.isFinite(r.prior[q * dv]!)).toBe(true);
    }
  });

  it('priorFromNeighbors aggregates neighbours found by another engine (Milvus, Qdrant) like Datastore.search', () => {
    const got = priorFromNeighbors(exact.neighbors, exact.similarities, values, dv, { k });
    expect(maxRelErr(got.prior, exact.prior)).toBeLessThan(1e-5);
    expect(got.missing).toBe(0);
    const nb = Int32Array.from([3, 1, -1, 2, -1, -1]), sims = Float32Array.from([0.9, 0.8, -Infinity, 0.7, -Infinity, -Infinity]);
    const r = priorFromNeighbors(nb, sims, values, dv, { k: 3, aggregate: 'mean' });
    expect(Array.from(r.found)).toEqual([2, 1]);
    expect(r.missing).toBe(3);
    expect(r.prior[0]).toBeCloseTo((values[3 * dv]! + values[1 * dv]!) / 2, 6);
    expect(r.prior[dv]).toBeCloseTo(values[2 * dv]!, 6);
    // A query with no neighbour at all has no prior: refused, naming it (it was a NaN row).
    const none = thrown(() => priorFromNeighbors(Int32Array.from([3, 1, -1, -1, -1, -1]), sims, values, dv, { k: 3 }, 'Milvus'));
    expect([none.code, none.message]).toEqual(['RAPM_K_TOO_LARGE', expect.stringMatching(/^Milvus found no neighbours for query row 1/)]);
    expect(thrown(() => priorFromNeighbors(Int32Array.from([-1, 2]), Float32Array.from([0, 0.5]), values, dv, { k: 2 })).code).toBe('RAPM_INVALID_ARG');
    expect(thrown(() => priorFromNeighbors(Int32Array.from([n, 2]), Float32Array.from([0.6, 0.5]), values, dv, { k: 2 })).code).toBe('RAPM_INVALID_ARG');
  });

  it('HNSW: efSearch set through ParameterSpace, read back, and raising it does not lower recall', async () => {
    const ix = AnnIndex.create({ d, factory: 'HNSW8,Flat' });
    expect([ix.kind, ix.efSearch, ix.nprobe]).toEqual(['hnsw', 16, 0]);
    await ix.add(keys);
    const low = recallAtK(ix.search(queries, k).neighbors, exact.neighbors, k);
    ix.setSearchParams({ efSearch: 256 });
    expect(ix.efSearch).toBe(256);
    const high = recallAtK(ix.search(queries, k).neighbors, exact.neighbors, k);
    expect(high).toBeGreaterThanOrEqual(low);
    expect(high).toBeGreaterThan(0.95);
    expect(AnnIndex.fromBuffer(ix.toBuffer()).efSearch).toBe(256);
    const ix2 = AnnIndex.create({ d, factory: 'HNSW16,Flat', efSearch: 48 });
    expect(ix2.efSearch).toBe(48);
    expect(thrown(() => ix2.setSearchParams({ efSearch: 0 })).code).toBe('RAPM_INVALID_ARG');
    expect(thrown(() => ivf.setSearchParams({ nprobe: 33 })).code).toBe('RAPM_INVALID_ARG');
  });

  // Under `npm run test:asan` (libasan preloaded) freed memory sits in ASan's quarantine, so RSS
  // cannot show whether it was freed; the plain `npm test` run measures it.
  const underAsan = /libasan/.test(process.env.LD_PRELOAD ?? '');
  it.skipIf(underAsan)('toBuffer() / fromBuffer() free their native copies (faiss-node 0.5.1 leaked one per call)', async () => {
    // 40K x 64 floats = 10 MB per copy; 0.5.1 kept one copy per toBuffer() and one per fromBuffer() (>= 120 MB here).
    const big = AnnIndex.create({ d: 64, factory: 'Flat' });
    const rows = new Float32Array(40_000 * 64);
    for (let r = 0; r < 40_000; r++) rows[r * 64 + (r % 64)] = 1;
    big.addSync(rows);
    const buf = big.toBuffer();
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const settle = async (): Promise<void> => {
      for (let i = 0; i < 2; i++) {
        gc();
        await new Promise((r) => setImmediate(r));
      }
    };
    await settle();
    const rss0 = process.memoryUsage().rss;
    for (let i = 0; i < 6; i++) {
      expect(big.toBuffer().length).toBe(buf.length);
      expect(AnnIndex.fromBuffer(buf).ntotal).toBe(40_000);
      await settle();
    }
    expect((process.memoryUsage().rss - rss0) / 1e6).toBeLessThan(50);
  });

  it('coded errors: bad factory, untrained index, k > ntotal, wrong lengths, NaN, misplaced params', async () => {
    const bad = thrown(() => AnnIndex.create({ d, factory: 'IVF4,Flatx' }));
    expect([bad.code, bad.name]).toEqual(['RAPM_INVALID_ARG', 'RangeError']);
    expect(bad.message).toContain('IVF4,Flatx');
    expect(thrown(() => AnnIndex.create({ d, factory: '' })).code).toBe('RAPM_INVALID_ARG');
    expect(thrown(() => AnnIndex.create({ d, factory: 5 as unknown as string })).code).toBe('RAPM_TYPE');
    expect(thrown(() => AnnIndex.create({ d: 0, factory: 'Flat' })).code).toBe('RAPM_INVALID_ARG');

    const untrained = AnnIndex.create({ d, factory: 'IVF8,Flat' });
    expect(untrained.isTrained).toBe(false);
    expect(thrown(() => untrained.addSync(keys)).code).toBe('RAPM_STATE');
    await expect(untrained.add(keys)).rejects.toMatchObject({ code: 'RAPM_STATE' });
    expect(thrown(() => untrained.search(queries, 5)).code).toBe('RAPM_STATE');
    expect(thrown(() => untrained.train(keys.subarray(0, 4 * d))).code).toBe('RAPM_INVALID_ARG'); // fewer rows than lists
    expect(thrown(() => ivf.train(keys)).code).toBe('RAPM_STATE'); // already trained

    const small = AnnIndex.create({ d, factory: 'Flat' });
    expect(thrown(() => small.search(queries, 1)).code).toBe('RAPM_STATE'); // empty
    small.addSync(keys.subarray(0, 10 * d));
    expect(thrown(() => small.search(queries, 11)).code).toBe('RAPM_K_TOO_LARGE');
    expect(thrown(() => small.search(queries.subarray(0, d + 3), 5)).code).toBe('RAPM_SHAPE_MISMATCH');
    expect(thrown(() => small.addSync(new Float32Array(d + 1))).code).toBe('RAPM_SHAPE_MISMATCH');
    expect(thrown(() => small.search([1, 2] as unknown as Float32Array, 1)).code).toBe('RAPM_TYPE');
    const nan = queries.slice(0, 2 * d);
    nan[d + 3] = NaN;
    const e = thrown(() => small.search(nan, 2));
    expect(e.code).toBe('RAPM_NON_FINITE');
    expect(e.message).toContain('row 1, column 3');
    expect(thrown(() => small.addSync(new Float32Array(d))).code).toBe('RAPM_ZERO_NORM');
    expect(small.ntotal).toBe(10);
    expect(thrown(() => annSearchWithValuesSync(small, new Float32Array(7), queries, { k: 2 })).code).toBe('RAPM_SHAPE_MISMATCH');

    expect(thrown(() => small.setSearchParams({ nprobe: 4 })).code).toBe('RAPM_INVALID_ARG');
    expect(thrown(() => AnnIndex.create({ d, factory: 'IVF8,Flat', efSearch: 4 })).code).toBe('RAPM_INVALID_ARG');
    expect(thrown(() => AnnIndex.create({ d, factory: 'IVF8,Flat', nprobe: 9 })).code).toBe('RAPM_INVALID_ARG');
    expect(thrown(() => recallAtK(new Int32Array(4), new Int32Array(6), 2)).code).toBe('RAPM_SHAPE_MISMATCH');
  });
});

describe.skipIf(!faissAvailable())('AnnSource and Predictor with a neighbour source', () => {
  it('AnnSource over a key-selected datastore: IVF at nprobe = nlist equals exact; Predictor serves through it', async () => {
    const keyDim = 24, rows = 2000, sel = Array.from({ length: d }, (_, i) => 23 - i);
    const ds = new Datastore({ keyDim, valueDim: dv, keyIndices: sel });
    const wide = randn(rows * keyDim, 21);
    ds.addSync(wide, randn(rows * dv, 22), Array.from({ length: rows }, (_, r) => `utt${r}`));
    const src = await AnnSource.fromDatastore(ds, { factory: 'IVF16,Flat', nprobe: 16, block: 300 });
    expect([src.name, src.size, src.keyDim, src.index.nprobe]).toEqual(['ann', rows, keyDim, 16]);
    const q = randn(8 * keyDim, 23);
    const want = ds.searchSync(q, { k: 10 });
    const got = await predictFromSource(src, datastoreValues(ds), q, { k: 10 });
    expectSameUpToTies({ neighbors: got.neighbors, similarities: got.similarities }, want);
    const exactP = new Predictor(ds, { k: 10 });
    const annP = new Predictor(ds, { k: 10, source: src });
    expect([annP.info.source, exactP.info.source]).toEqual(['ann', 'exact']);
    const [a, e] = [await annP.explain(q), await exactP.explain(q)];
    expect(a.map((l) => l.map((x) => x.id))).toEqual(e.map((l) => l.map((x) => x.id)));
    expect(maxRelErr((await annP.predict(q)).pred, (await exactP.predict(q)).pred)).toBeLessThan(1e-4);
    // A source over other rows is refused.
    const small = new Datastore({ keyDim, valueDim: dv, keyIndices: sel });
    small.addSync(wide.subarray(0, 100 * keyDim), randn(100 * dv, 24));
    expect(() => new Predictor(small, { source: src })).toThrow(expect.objectContaining({ code: 'RAPM_SHAPE_MISMATCH' }));
    expect(() => AnnSource.over(small, src.index)).toThrow(expect.objectContaining({ code: 'RAPM_DATA' }));
    expect(() => new Predictor(ds, { source: {} as never })).toThrow(expect.objectContaining({ code: 'RAPM_TYPE' }));
  });

  it('explain() lists only the neighbours an approximate source found; a query with none is an error, not NaN', async () => {
    const ds = new Datastore({ keyDim: d, valueDim: dv });
    ds.addSync(clustered(n, 1), randn(n * dv, 2));
    const src = await AnnSource.fromDatastore(ds, { factory: 'IVF32,Flat' }); // nprobe 1: ~156 rows per probe
    const p = new Predictor(ds, { k: 400, source: src });
    const q = clustered(2, 3);
    const lists = await p.explain(q);
    for (const l of lists) {
      expect(l.length).toBeGreaterThan(0);
      expect(l.length).toBeLessThan(400);
      expect(l.every((x) => x.row >= 0 && x.id === ds.idOf(x.row))).toBe(true);
    }
    const pr = await p.predict(q);
    expect(pr.pred.every((x) => Number.isFinite(x))).toBe(true);
    const empty = { name: 'empty', keyDim: d, size: n, search: async (x: Float32Array, k: number) => ({ rows: new Int32Array((x.length / d) * k).fill(-1), similarities: new Float32Array((x.length / d) * k).fill(-Infinity) }) };
    // Predictor's code for a query without any neighbour (README: Neighbour sources).
    await expect(new Predictor(ds, { k: 5, source: empty }).predict(q)).rejects.toMatchObject({ code: 'RAPM_K_TOO_LARGE' });
  });
});
