import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fusionSpec, initParams, paramLayout } from '../../src/fusion/layout.js';
import { exportOnnx } from '../../src/fusion/onnx-export.js';
import { FusionSession } from '../../src/fusion/onnx-session.js';
import { Datastore } from '../../src/retrieval/datastore.js';
import { Predictor, type FusionModel } from '../../src/serve/predictor.js';
import { randn } from '../helpers/random.js';

const keyDim = 48, valueDim = 16;
const valueIndices = [0, 3, 5, 8, 13, 15];
const dv = valueIndices.length;

function store(n = 400, seed = 1): Datastore {
  const ds = new Datastore({ keyDim, valueDim, keyIndices: Array.from({ length: 20 }, (_, i) => i * 2), valueIndices });
  ds.addSync(randn(n * keyDim, seed), randn(n * valueDim, seed + 1), Array.from({ length: n }, (_, i) => `u${i}`));
  return ds;
}

const bits = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** A fusion stand-in: delta = 0.5 * prior + 0.01 * en[:, 0]; records its inputs. */
class FakeFusion implements FusionModel {
  calls: { en: Float32Array; prior: Float32Array }[] = [];
  async run(en: Float32Array, prior: Float32Array) {
    this.calls.push({ en, prior });
    const b = prior.length / dv;
    const delta = new Float32Array(prior.length), pred = new Float32Array(prior.length);
    for (let q = 0; q < b; q++) {
      for (let j = 0; j < dv; j++) {
        delta[q * dv + j] = 0.5 * prior[q * dv + j]! + 0.01 * en[q * keyDim]!;
        pred[q * dv + j] = prior[q * dv + j]! + delta[q * dv + j]!;
      }
    }
    return { pred, delta };
  }
}

async function rejection(p: Promise<unknown>): Promise<{ code?: string; message: string }> {
  try {
    await p;
  } catch (e) {
    return e as { code?: string; message: string };
  }
  throw new Error('expected a rejection');
}

describe('Predictor', () => {
  it('without fusion: pred = prior = a direct datastore search, bit for bit', async () => {
    const ds = store();
    const p = new Predictor(ds, { k: 9, tau: 0.07 });
    const en = randn(7 * keyDim, 5);
    const r = await p.predict(en);
    const s = ds.searchSync(en, { k: 9, tau: 0.07 });
    expect([r.b, r.dv, r.k]).toEqual([7, dv, 9]);
    expect(bits(r.prior).equals(bits(s.prior)) && bits(r.pred).equals(bits(s.prior))).toBe(true);
    expect(bits(r.neighbors).equals(bits(s.neighbors)) && bits(r.weights).equals(bits(s.weights))).toBe(true);
    expect(p.info).toMatchObject({ rows: 400, keyDim, d: 20, dv, k: 9, tau: 0.07, aggregate: 'softmax', fusion: false });
  });

  it('with a fusion model: pred is its output on (en, prior)', async () => {
    const ds = store();
    const fusion = new FakeFusion();
    const p = new Predictor(ds, { k: 5, aggregate: 'mean', fusion });
    const en = randn(3 * keyDim, 6);
    const r = await p.predict(en);
    const s = ds.searchSync(en, { k: 5, aggregate: 'mean' });
    expect(fusion.calls).toHaveLength(1);
    expect(bits(fusion.calls[0]!.en).equals(bits(en)) && bits(fusion.calls[0]!.prior).equals(bits(s.prior))).toBe(true);
    const want = (await new FakeFusion().run(en, s.prior)).pred;
    expect(bits(r.pred).equals(bits(want)) && bits(r.prior).equals(bits(s.prior))).toBe(true);
    expect(p.info.fusion).toBe(true);
  });

  it('explain: ids, rows, weights and similarities of the neighbours, best first', async () => {
    const ds = store();
    const p = new Predictor(ds, { k: 4 });
    const en = randn(2 * keyDim, 8);
    const ex = await p.explain(en);
    const s = ds.searchSync(en, { k: 4 });
    expect(ex).toHaveLength(2);
    ex.forEach((list, q) =>
      list.forEach((nb, j) => {
        expect(nb).toEqual({ id: `u${s.neighbors[q * 4 + j]}`, row: s.neighbors[q * 4 + j], weight: s.weights[q * 4 + j], similarity: s.similarities[q * 4 + j] });
      }),
    );
    expect(ex[0]![0]!.similarity).toBeGreaterThanOrEqual(ex[0]![3]!.similarity);
  });

  it('coded errors for bad input, options and fusion output', async () => {
    const ds = store(50);
    const p = new Predictor(ds, { k: 5 });
    expect((await rejection(p.predict(new Float32Array(keyDim + 1)))).code).toBe('RAPM_SHAPE_MISMATCH');
    expect((await rejection(p.predict(new Float32Array(0)))).code).toBe('RAPM_SHAPE_MISMATCH');
    const nan = randn(keyDim, 1);
    nan[3] = NaN;
    expect((await rejection(p.explain(nan))).code).toBe('RAPM_NON_FINITE');
    expect((await rejection(p.predict(new Float32Array(keyDim)))).code).toBe('RAPM_ZERO_NORM');
    expect((await rejection(new Predictor(ds, { k: 51 }).predict(randn(keyDim, 2)))).code).toBe('RAPM_K_TOO_LARGE');
    expect(() => new Predictor(ds, { tau: -1 })).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG' }));
    expect(() => new Predictor({} as Datastore)).toThrow(expect.objectContaining({ code: 'RAPM_TYPE' }));
    expect(() => new Predictor(ds, { fusion: {} as FusionModel })).toThrow(expect.objectContaining({ code: 'RAPM_TYPE' }));
    // Misspelt keys are refused, not ignored (tua: the default tau was used silently).
    expect(() => new Predictor(ds, { k: 5, tua: 0.1 } as never)).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG', message: expect.stringMatching(/'tua' for new Predictor \(did you mean 'tau'\?\)/) }));
    expect(() => new Predictor(ds, { batching: { maxBatchRow: 8 } as never })).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG', message: expect.stringMatching(/'maxBatchRow' for batching \(did you mean 'maxBatchRows'\?\)/) }));
    const short: FusionModel = { run: async () => ({ pred: new Float32Array(1), delta: new Float32Array(1) }) };
    expect((await rejection(new Predictor(ds, { k: 5, fusion: short }).predict(randn(keyDim, 2)))).code).toBe('RAPM_ONNX');
    const broken: FusionModel = { run: async () => Promise.reject(new Error('boom')) };
    const e = await rejection(new Predictor(ds, { k: 5, fusion: broken }).predict(randn(keyDim, 2)));
    expect([e.code, e.message]).toEqual(['RAPM_ONNX', 'The fusion model failed: boom']);
  });

  it('concurrent predictions while appending: every result is a search over some prefix of the rows', async () => {
    const n0 = 300, m = 200, adds = 6;
    const ds = store(n0, 11);
    const p = new Predictor(ds, { k: 8 });
    const chunks = Array.from({ length: adds }, (_, a) => ({ keys: randn(m * keyDim, 100 + a), values: randn(m * valueDim, 200 + a) }));
    // Queries near rows that arrive later, so the prefix a search saw changes its answer.
    const queries = chunks.map((c) => c.keys.slice(0, 4 * keyDim).map((x, i) => x + 0.01 * Math.sin(i)));
    const jobs: Promise<{ q: number; r: Awaited<ReturnType<Predictor['predict']>> }>[] = [];
    let adding = true;
    const added = (async () => {
      for (let a = 0; a < adds; a++) await ds.add(chunks[a]!.keys, chunks[a]!.values, Array.from({ length: m }, (_, i) => `a${a}-${i}`));
      adding = false;
    })();
    for (let i = 0; adding || i < 8; i++) {
      const q = i % adds;
      jobs.push(p.predict(queries[q]!).then((r) => ({ q, r })));
      if (i % 2) await new Promise((r) => setImmediate(r));
    }
    const results = await Promise.all(jobs);
    await added;
    const prefixes = Array.from({ length: adds + 1 }, (_, a) => n0 + a * m);
    const seen = new Set<number>();
    for (const { q, r } of results) {
      const match = prefixes.find((end) => {
        const s = ds.searchSync(queries[q]!, { k: 8, rowRange: [0, end] });
        return bits(s.prior).equals(bits(r.prior)) && bits(s.neighbors).equals(bits(r.neighbors)) && bits(s.weights).equals(bits(r.weights));
      });
      expect(match, `query ${q}`).toBeDefined();
      seen.add(match!);
    }
    expect(ds.size).toBe(n0 + adds * m);
    expect(seen.size, 'searches saw several prefixes').toBeGreaterThan(1);
    expect(results.length).toBeGreaterThanOrEqual(8);
  });

  it('input checks in one pass keep their precedence: a NaN or infinity anywhere is named before an overflowing norm', async () => {
    const p = new Predictor(store(60), { k: 5 });
    const en = randn(3 * keyDim, 21);
    en[2] = 3e38; // row 0: finite values, squared norm beyond float32
    en[2 * keyDim + 7] = Number.NaN; // row 2, column 7
    const e = await rejection(p.predict(en));
    expect([e.code, e.message]).toEqual(['RAPM_NON_FINITE', 'Expected finite values in en but row 2, column 7 is NaN']);
    en[2 * keyDim + 7] = Number.NEGATIVE_INFINITY;
    expect((await rejection(p.predict(en))).message).toBe('Expected finite values in en but row 2, column 7 is -Infinity');
    en[2 * keyDim + 7] = 0;
    expect((await rejection(p.predict(en))).message).toMatch(/^Expected rows of en whose squared L2 norm fits float32 .* but row 0 has squared norm 9\.00e\+76/);
  });

  it('finite or refused (issue 10 item 4): huge inputs and a fusion output with NaN get RAPM_NON_FINITE', async () => {
    const ds = store(60);
    // A real exported fusion model: 3e38 overflows its first Linear, and the old Predictor returned pred full of NaN.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-pred-'));
    try {
      const layout = paramLayout(fusionSpec({ enDim: keyDim, outDim: dv, hidden: [8] }));
      const file = path.join(dir, 'f.onnx');
      await exportOnnx(layout, initParams(layout, 3), file);
      const session = await FusionSession.create(file, { enDim: keyDim, outDim: dv, threads: 1 });
      try {
        const p = new Predictor(ds, { k: 5, fusion: session });
        const ok = await p.predict(randn(keyDim, 9));
        expect(ok.pred.every(Number.isFinite)).toBe(true);
        const huge = randn(2 * keyDim, 9);
        huge[keyDim + 3] = 3e38; // finite in float32, row 1
        const e = await rejection(p.predict(huge));
        expect(e.code).toBe('RAPM_NON_FINITE');
        expect(e.message).toContain('row 1');
        // Without fusion too: the contract does not depend on the model.
        expect((await rejection(new Predictor(ds, { k: 5 }).explain(huge))).code).toBe('RAPM_NON_FINITE');
        // Values large but with a float32 squared norm still pass.
        const big = randn(keyDim, 10).map((x) => x * 1e17);
        expect((await p.predict(big)).pred.every(Number.isFinite)).toBe(true);
      } finally {
        await session.release();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    const nanModel: FusionModel = { run: async (_en, prior) => ({ pred: prior.map((x, i) => (i === dv + 2 ? NaN : x)), delta: new Float32Array(prior.length) }) };
    const e = await rejection(new Predictor(ds, { k: 5, fusion: nanModel }).predict(randn(2 * keyDim, 11)));
    expect([e.code, e.message]).toEqual(['RAPM_NON_FINITE', expect.stringContaining('row 1, column 2')]);
    const infModel: FusionModel = { run: async (_en, prior) => ({ pred: prior.map(() => -Infinity), delta: new Float32Array(prior.length) }) };
    expect((await rejection(new Predictor(ds, { k: 5, fusion: infModel, batching: true }).predict(randn(keyDim, 12)))).code).toBe('RAPM_NON_FINITE');
  });
});
