import { describe, expect, it } from 'vitest';
import { priorFromNeighbors } from '../../src/retrieval/ann.js';
import { Datastore } from '../../src/retrieval/datastore.js';
import { Predictor, type PredictorNeighborSource } from '../../src/serve/predictor.js';
import { randn } from '../helpers/random.js';

const keyDim = 40, valueDim = 12;
const valueIndices = [0, 3, 4, 7, 11];
const dv = valueIndices.length;
const bits = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

function store(n = 500): { ds: Datastore; values: Float32Array } {
  const ds = new Datastore({ keyDim, valueDim, valueIndices });
  const v = randn(n * valueDim, 2);
  ds.addSync(randn(n * keyDim, 1), v, Array.from({ length: n }, (_, i) => `u${i}`));
  const values = new Float32Array(n * dv);
  for (let r = 0; r < n; r++) valueIndices.forEach((c, j) => (values[r * dv + j] = v[r * valueDim + c]!));
  return { ds, values };
}

/** A source backed by the exact search; optionally drops the last `drop` neighbours of each query. */
function exactSource(ds: Datastore, drop = 0): PredictorNeighborSource & { calls: number[] } {
  const calls: number[] = [];
  return {
    name: 'test-exact',
    keyDim: ds.keyDim,
    size: ds.size,
    calls,
    async search(queries, k) {
      calls.push(queries.length / keyDim);
      const r = ds.searchSync(queries, { k });
      const rows = r.neighbors.slice(), similarities = r.similarities.slice();
      for (let q = 0; q < r.b; q++) for (let i = k - drop; i < k; i++) rows[q * k + i] = -1;
      return { rows, similarities };
    },
  };
}

describe('Predictor over a neighbour source', () => {
  it('uses the source for neighbours and rapm aggregation (priorFromNeighbors) for the prior', async () => {
    const { ds, values } = store();
    const k = 9, tau = 0.05;
    const src = exactSource(ds);
    const p = new Predictor(ds, { k, tau, source: src });
    const en = randn(5 * keyDim, 3);
    const r = await p.predict(en);
    const exact = ds.searchSync(en, { k, tau });
    expect(bits(r.neighbors).equals(bits(exact.neighbors)) && bits(r.similarities).equals(bits(exact.similarities))).toBe(true);
    const agg = priorFromNeighbors(exact.neighbors, exact.similarities, values, dv, { k, tau });
    expect(bits(r.prior).equals(bits(agg.prior)) && bits(r.weights).equals(bits(agg.weights))).toBe(true);
    expect(p.info.source).toBe('test-exact');
    const ex = await p.explain(en.subarray(0, keyDim));
    expect(ex[0]!.map((n) => n.id)).toEqual(Array.from(exact.neighbors.subarray(0, k)).map((row) => `u${row}`));
  });

  it('micro-batching joins concurrent calls into one source search, results equal to unbatched calls', async () => {
    const { ds } = store();
    const src = exactSource(ds);
    const batched = new Predictor(ds, { k: 6, source: src, batching: { maxBatchRows: 64, maxWaitUs: 3000 } });
    const plain = new Predictor(ds, { k: 6, source: exactSource(ds) });
    const inputs = Array.from({ length: 10 }, (_, i) => randn(keyDim, 20 + i));
    const got = await Promise.all(inputs.map((en) => batched.predict(en)));
    expect(src.calls).toEqual([10]);
    for (const [i, en] of inputs.entries()) {
      const want = await plain.predict(en);
      expect(bits(got[i]!.prior).equals(bits(want.prior)) && bits(got[i]!.neighbors).equals(bits(want.neighbors))).toBe(true);
    }
  });

  it('fewer than k neighbours: weights over the found ones, explain lists them; none found or bad rows are coded errors', async () => {
    const { ds } = store();
    const p = new Predictor(ds, { k: 5, source: exactSource(ds, 2) });
    const r = await p.predict(randn(keyDim, 4));
    expect(Array.from(r.neighbors.subarray(3))).toEqual([-1, -1]);
    expect(r.pred.every(Number.isFinite)).toBe(true);
    expect((await p.explain(randn(keyDim, 4)))[0]).toHaveLength(3);
    await expect(new Predictor(ds, { k: 5, source: exactSource(ds, 5) }).predict(randn(keyDim, 4))).rejects.toMatchObject({ code: 'RAPM_K_TOO_LARGE' });
    const bad: PredictorNeighborSource = { name: 'bad', keyDim, size: 10, search: async (_q, k) => ({ rows: new Int32Array(k).fill(ds.size), similarities: new Float32Array(k) }) };
    // A source returning bad rows is the server's fault (RAPM_DATA: HTTP 500, logged), not the caller's 400.
    await expect(new Predictor(ds, { k: 3, source: bad }).predict(randn(keyDim, 4))).rejects.toMatchObject({ code: 'RAPM_DATA', message: expect.stringMatching(/returned row \d+ for query 0, slot 0 but the datastore holds \d+ rows: the source no longer matches the datastore/) });
    const short: PredictorNeighborSource = { name: 'short', keyDim, size: 10, search: async () => ({ rows: new Int32Array(1), similarities: new Float32Array(1) }) };
    await expect(new Predictor(ds, { k: 3, source: short }).predict(randn(keyDim, 4))).rejects.toMatchObject({ code: 'RAPM_DATA' });
    expect(() => new Predictor(ds, { source: { ...bad, keyDim: keyDim + 1 } })).toThrow(expect.objectContaining({ code: 'RAPM_SHAPE_MISMATCH' }));
    expect(() => new Predictor(ds, { source: { ...bad, size: ds.size + 1 } })).toThrow(expect.objectContaining({ code: 'RAPM_SHAPE_MISMATCH' }));
    expect(() => new Predictor(ds, { source: {} as PredictorNeighborSource })).toThrow(expect.objectContaining({ code: 'RAPM_TYPE' }));
  });
});
