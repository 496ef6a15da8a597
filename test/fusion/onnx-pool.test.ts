import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fusionSpec, initParams, paramLayout } from '../../src/fusion/layout.js';
import { exportOnnx } from '../../src/fusion/onnx-export.js';
import { FusionPool } from '../../src/fusion/onnx-pool.js';
import { FusionSession } from '../../src/fusion/onnx-session.js';
import { Datastore } from '../../src/retrieval/datastore.js';
import { Predictor } from '../../src/serve/predictor.js';
import { randn } from '../helpers/random.js';

const enDim = 64, outDim = 12;
const bits = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
let dir: string, file: string;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-pool-'));
  file = path.join(dir, 'fusion.onnx');
  const layout = paramLayout(fusionSpec({ enDim, outDim, hidden: [32, 16] }));
  const params = initParams(layout, 5);
  const last = layout.layers[layout.layers.length - 1]!;
  const r = randn(last.in * last.out, 6);
  for (let i = 0; i < r.length; i++) params[last.w + i] = r[i]! * 0.1; // a non-zero delta
  await exportOnnx(layout, params, file);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('FusionPool (ONNX Runtime in worker threads)', () => {
  it('gives the same outputs as an in-thread FusionSession, bit for bit, and reports its provider', async () => {
    const session = await FusionSession.create(file, { enDim, outDim, threads: 1 });
    const pool = await FusionPool.create(file, { enDim, outDim, threads: 1, workers: 2 });
    try {
      expect([pool.provider, pool.fallbackReason, pool.workers]).toEqual(['cpu', null, 2]);
      expect(pool.metadata).toEqual(session.metadata);
      expect(pool.metadataProps).toEqual(session.metadataProps);
      const en = randn(9 * enDim, 7), prior = randn(9 * outDim, 8);
      const want = await session.run(en, prior);
      const runs = await Promise.all([0, 1, 2, 3].map(() => pool.run(en, prior)));
      for (const got of runs) expect(bits(got.pred).equals(bits(want.pred)) && bits(got.delta).equals(bits(want.delta))).toBe(true);
      expect(want.delta.some((x) => x !== 0)).toBe(true);
    } finally {
      await session.release();
      await pool.release();
    }
    expect(pool.released).toBe(true);
    await expect(pool.run(new Float32Array(enDim), new Float32Array(outDim))).rejects.toMatchObject({ code: 'RAPM_STATE' });
  });

  it("keeps device semantics: 'cuda' fails with RAPM_ONNX where there is no CUDA EP, 'auto' falls back to CPU with a warning", async () => {
    const reference = await FusionSession.create(file, { enDim, outDim, device: 'auto', onWarning: () => undefined }).then(
      async (s) => {
        const p = s.provider;
        await s.release();
        return p;
      },
    );
    const warnings: string[] = [];
    const auto = await FusionPool.create(file, { enDim, outDim, device: 'auto', onWarning: (w) => warnings.push(w) });
    try {
      expect(auto.provider).toBe(reference);
      if (reference === 'cpu') {
        expect(auto.fallbackReason).toMatch(/CUDA|cuda/);
        expect(warnings.join('\n')).toMatch(/running on CPU/);
      }
    } finally {
      await auto.release();
    }
    if (reference === 'cpu') await expect(FusionPool.create(file, { enDim, outDim, device: 'cuda' })).rejects.toMatchObject({ code: 'RAPM_ONNX', message: expect.stringMatching(/device 'cuda'/) });
  });

  it('coded errors: a missing file, a wrong interface, bad inputs', async () => {
    await expect(FusionPool.create(path.join(dir, 'nope.onnx'), { enDim, outDim })).rejects.toMatchObject({ code: 'RAPM_IO' });
    await expect(FusionPool.create(file, { enDim: enDim + 1, outDim })).rejects.toMatchObject({ code: 'RAPM_ONNX' });
    await expect(FusionPool.create(file, { workers: 0 })).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG' });
    const pool = await FusionPool.create(file, { enDim, outDim });
    try {
      const nan = randn(enDim, 1);
      nan[4] = NaN;
      await expect(pool.run(nan, new Float32Array(outDim))).rejects.toMatchObject({ code: 'RAPM_NON_FINITE' });
      await expect(pool.run(new Float32Array(enDim + 1), new Float32Array(outDim))).rejects.toMatchObject({ code: 'RAPM_SHAPE_MISMATCH' });
    } finally {
      await pool.release();
    }
  });

  it('serves as the Predictor fusion model: same predictions as the in-thread session', async () => {
    const ds = new Datastore({ keyDim: enDim, valueDim: 20, valueIndices: Array.from({ length: outDim }, (_, i) => i) });
    ds.addSync(randn(200 * enDim, 2), randn(200 * 20, 3));
    const session = await FusionSession.create(file, { enDim, outDim, threads: 1 });
    const pool = await FusionPool.create(file, { enDim, outDim, threads: 1 });
    try {
      const en = randn(4 * enDim, 9);
      const a = await new Predictor(ds, { k: 7, fusion: session }).predict(en);
      const b = await new Predictor(ds, { k: 7, fusion: pool, batching: true }).predict(en);
      expect(bits(a.pred).equals(bits(b.pred))).toBe(true);
    } finally {
      await session.release();
      await pool.release();
    }
  });
});
