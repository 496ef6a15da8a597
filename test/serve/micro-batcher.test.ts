import { afterAll, describe, expect, it } from 'vitest';
import { Datastore, type KeyPrecision } from '../../src/retrieval/datastore.js';
import { setSimdLevel, simdLevel, simdLevels } from '../../src/native/simd.js';
import { MicroBatcher, type BatchEvent } from '../../src/serve/micro-batcher.js';
import { Predictor, type PredictResult } from '../../src/serve/predictor.js';
import { randn } from '../helpers/random.js';

const keyDim = 64, valueDim = 24;
const bits = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const original = simdLevel();
afterAll(() => void setSimdLevel(original));

function store(precision: KeyPrecision, n = 2500): Datastore {
  // Config-B-like: a key column subset, so the batch goes through column selection too.
  const ds = new Datastore({ keyDim, valueDim, keyIndices: Array.from({ length: 40 }, (_, i) => (i * 3) % keyDim), valueIndices: [0, 2, 5, 7, 11, 13, 17, 23], precision });
  ds.addSync(randn(n * keyDim, 3), randn(n * valueDim, 4), Array.from({ length: n }, (_, i) => `u${i % 2000}`));
  return ds;
}

function sameResult(a: PredictResult, b: PredictResult): boolean {
  return (
    bits(a.pred).equals(bits(b.pred)) &&
    bits(a.prior).equals(bits(b.prior)) &&
    bits(a.neighbors).equals(bits(b.neighbors)) &&
    bits(a.weights).equals(bits(b.weights)) &&
    bits(a.similarities).equals(bits(b.similarities))
  );
}

describe('micro-batching', () => {
  for (const level of simdLevels()) {
    for (const precision of ['f32', 'bf16'] as const) {
      it(`concurrent calls joined into batches equal unbatched calls bit for bit (${level}, ${precision})`, async () => {
        setSimdLevel(level);
        const ds = store(precision);
        const plain = new Predictor(ds, { k: 13, tau: 0.05 });
        const batched = new Predictor(ds, { k: 13, tau: 0.05, batching: { maxBatchRows: 32, maxWaitUs: 2000 } });
        const events: BatchEvent[] = [];
        batched.batcher!.observe((e) => events.push(e));
        // 60 callers of 1-3 rows each; a few rows repeat so ties inside one batch are covered.
        const inputs = Array.from({ length: 60 }, (_, i) => randn((1 + (i % 3)) * keyDim, 100 + (i % 45)));
        const want = await Promise.all(inputs.map((en) => plain.predict(en)));
        const got = await Promise.all(inputs.map((en) => batched.predict(en)));
        const explained = await Promise.all(inputs.slice(0, 10).map((en) => batched.explain(en)));
        got.forEach((g, i) => expect(sameResult(g, want[i]!), `caller ${i}`).toBe(true));
        explained.forEach((list, i) => expect(list.flat().map((n) => n.row)).toEqual(Array.from(want[i]!.neighbors)));
        // The batching really happened: batches of many callers, none above maxBatchRows.
        expect(Math.max(...events.map((e) => e.requests))).toBeGreaterThan(5);
        expect(Math.max(...events.map((e) => e.rows))).toBeLessThanOrEqual(32);
        expect(events.reduce((s, e) => s + e.rows, 0)).toBe(inputs.reduce((s, en) => s + en.length / keyDim, 0) + explainedRows(inputs.slice(0, 10)));
      });
    }
  }

  it('a bad row fails only its own caller; the batch partners still get their results', async () => {
    const ds = store('f32', 300);
    const p = new Predictor(ds, { k: 5, batching: { maxBatchRows: 64, maxWaitUs: 5000 } });
    const events: BatchEvent[] = [];
    p.batcher!.observe((e) => events.push(e));
    const good = [randn(keyDim, 1), randn(2 * keyDim, 2)];
    const zeroOnKeys = randn(keyDim, 3);
    for (const c of ds.keyIndices) zeroOnKeys[c] = 0; // non-zero row, zero norm after key selection
    const results = await Promise.allSettled([p.predict(good[0]!), p.predict(zeroOnKeys), p.predict(good[1]!)]);
    expect(events[0]).toMatchObject({ requests: 3, rows: 4 });
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(((results[1] as PromiseRejectedResult).reason as { code: string }).code).toBe('RAPM_ZERO_NORM');
    const plain = new Predictor(ds, { k: 5 });
    expect(sameResult((results[2] as PromiseFulfilledResult<PredictResult>).value, await plain.predict(good[1]!))).toBe(true);
  });

  it('a full queue refuses at once with RAPM_BUSY; the queued calls still finish', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let calls = 0;
    const b = new MicroBatcher(2, async (x, rows) => {
      calls++;
      await gate;
      return { b: rows, k: 1, prior: x.slice(), neighbors: new Int32Array(rows), weights: new Float32Array(rows), similarities: new Float32Array(rows) };
    }, { maxBatchRows: 4, maxQueueRows: 6, maxWaitUs: 0 });
    const first = b.submit(Float32Array.of(1, 2), 1); // dispatched on the next turn, then blocks
    await new Promise((r) => setImmediate(r));
    expect([calls, b.running]).toEqual([1, 1]);
    const queued = [b.submit(new Float32Array(6).fill(3), 3), b.submit(new Float32Array(6).fill(4), 3)];
    expect(b.queuedRows).toBe(6);
    await expect(b.submit(Float32Array.of(5, 5), 1)).rejects.toMatchObject({ code: 'RAPM_BUSY' });
    release();
    const [r0, r1, r2] = await Promise.all([first, ...queued]);
    expect(Array.from(r0.prior)).toEqual([1, 2]);
    expect([Array.from(r1.prior), Array.from(r2.prior)]).toEqual([[3, 3, 3, 3, 3, 3], [4, 4, 4, 4, 4, 4]]);
    expect(calls).toBe(3); // 3 + 3 rows > maxBatchRows 4: two batches
  });

  it('starts the next batch as soon as a search returns, before answering its callers; a failed batch keeps its slot while its requests are retried', async () => {
    const log: string[] = [];
    const gates: (() => void)[] = [];
    const b = new MicroBatcher(1, async (x, rows) => {
      log.push(`run ${Array.from(x).join(',')}`);
      await new Promise<void>((r) => gates.push(r));
      if (x[0] === 9 && rows > 1) throw new Error('batch failed');
      return { b: rows, k: 1, prior: x.slice(), neighbors: new Int32Array(rows), weights: new Float32Array(rows), similarities: new Float32Array(rows) };
    }, { maxBatchRows: 4, maxWaitUs: 0 });
    const first = b.submit(Float32Array.of(1), 1).then(() => log.push('answered 1'));
    await new Promise((r) => setImmediate(r));
    const second = [b.submit(Float32Array.of(2), 1), b.submit(Float32Array.of(3), 1)].map((p) => p.then(() => log.push('answered 2,3')));
    gates.shift()!();
    await first;
    // The queued batch was dispatched before the first caller's continuation ran.
    expect(log).toEqual(['run 1', 'run 2,3', 'answered 1']);
    expect(b.running).toBe(1);
    gates.shift()!();
    await Promise.all(second);
    expect(b.running).toBe(0);
    // A failing batch: its requests are retried one by one inside its slot, so a request
    // queued meanwhile waits for them (maxConcurrent 1 holds).
    log.length = 0;
    const failing = [b.submit(Float32Array.of(9), 1), b.submit(Float32Array.of(9), 1)];
    await new Promise((r) => setImmediate(r));
    const later = b.submit(Float32Array.of(7), 1);
    gates.shift()!(); // the joint batch throws; the two retries start
    await new Promise((r) => setImmediate(r));
    expect(log).toEqual(['run 9,9', 'run 9', 'run 9']);
    expect(b.running).toBe(1);
    gates.shift()!();
    gates.shift()!();
    await Promise.all(failing);
    await new Promise((r) => setImmediate(r));
    expect(log).toEqual(['run 9,9', 'run 9', 'run 9', 'run 7']);
    gates.shift()!();
    expect(Array.from((await later).prior)).toEqual([7]);
  });

  it('rejects bad batching limits with coded errors', () => {
    const ds = store('f32', 100);
    expect(() => new Predictor(ds, { batching: { maxBatchRows: 0 } })).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG' }));
    expect(() => new Predictor(ds, { batching: { maxWaitUs: -1 } })).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG' }));
    expect(() => new Predictor(ds, { batching: { maxQueueRows: 1.5 } })).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG' }));
    expect(() => new Predictor(ds, { batching: 'yes' as never })).toThrow(expect.objectContaining({ code: 'RAPM_TYPE' }));
    expect(new Predictor(ds, { batching: true }).info.batching).toEqual({ maxBatchRows: 64, maxWaitUs: 500, maxQueueRows: 4096, maxConcurrent: 1 });
  });
});

function explainedRows(inputs: Float32Array[]): number {
  return inputs.reduce((s, en) => s + en.length / keyDim, 0);
}
