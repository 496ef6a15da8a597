import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generateDataset } from '../../src/data/generate.js';
import { selectColumns, valueIndices } from '../../src/data/indices.js';
import { evaluatePoint, poolOf } from '../../src/experiments/evaluate.js';
import { buildTestSets } from '../../src/experiments/evaluate.js';
import { subsetDataset } from '../../src/data/dataset.js';
import { officialSplit } from '../../src/data/split.js';
import { baselineSpec, fusionSpec } from '../../src/fusion/layout.js';
import { nativeMlpBackend } from '../../src/fusion/native-mlp.js';
import { exportOnnx } from '../../src/fusion/onnx-export.js';
import { FusionSession } from '../../src/fusion/onnx-session.js';
import { predict, trainMlp, type MlpData } from '../../src/fusion/train.js';
import { randn } from '../helpers/random.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-train-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const ds = generateDataset({ pairs: 1400, testPairs: 200, seed: 3 });
const split = officialSplit(ds);
const train = subsetDataset(ds, split.train);
const v = valueIndices();
const data = (d: typeof train, prior: Float32Array | null): MlpData => ({ en: d.en, prior, target: selectColumns(d.es, 1024, v) });
const fitRows = 1000;
const cut = (d: MlpData, s: number, e: number): MlpData => ({
  en: d.en.subarray(s * 1024, e * 1024),
  prior: d.prior ? d.prior.subarray(s * 101, e * 101) : null,
  target: d.target.subarray(s * 101, e * 101),
});

describe('trainMlp with the native backend', () => {
  it('same seed, same weights, bit for bit', async () => {
    const all = data(train, null);
    const run = () => trainMlp(nativeMlpBackend, baselineSpec({ dropout: 0.2 }), cut(all, 0, fitRows), cut(all, fitRows, train.n), { epochs: 2, seed: 9 });
    const [a, b] = [await run(), await run()];
    expect(Buffer.from(a.params.buffer).equals(Buffer.from(b.params.buffer))).toBe(true);
    const c = await trainMlp(nativeMlpBackend, baselineSpec({ dropout: 0.2 }), cut(all, 0, fitRows), cut(all, fitRows, train.n), { epochs: 2, seed: 10 });
    expect(Buffer.from(a.params.buffer).equals(Buffer.from(c.params.buffer))).toBe(false);
  });

  it('warm start: init is where training starts (copied, not modified), and a wrong arena is a coded error', async () => {
    const all = data(train, null);
    const fit = cut(all, 0, fitRows), val = cut(all, fitRows, train.n);
    const first = await trainMlp(nativeMlpBackend, baselineSpec(), fit, val, { epochs: 6, patience: 6, seed: 1 });
    const init = first.params.slice();
    const warm = await trainMlp(nativeMlpBackend, baselineSpec(), fit, val, { epochs: 1, patience: 1, seed: 2, init });
    // The untrained validation score of the warm run is the first run's best, not a fresh net's.
    expect(warm.initialValCosine).toBeCloseTo(first.bestValCosine, 5);
    expect(warm.initialValCosine).toBeGreaterThan(first.initialValCosine + 0.02);
    expect(Buffer.from(init.buffer).equals(Buffer.from(first.params.buffer))).toBe(true);
    await expect(trainMlp(nativeMlpBackend, baselineSpec(), fit, val, { epochs: 1, init: init.subarray(1) })).rejects.toMatchObject({ code: 'RAPM_SHAPE_MISMATCH' });
    const bad = init.slice();
    bad[5] = Number.NaN;
    await expect(trainMlp(nativeMlpBackend, baselineSpec(), fit, val, { epochs: 1, init: bad })).rejects.toMatchObject({ code: 'RAPM_NON_FINITE' });
  });

  it('samples/s counts minibatch time only; validation time is reported beside it', async () => {
    const all = data(train, null);
    const r = await trainMlp(nativeMlpBackend, baselineSpec(), cut(all, 0, fitRows), cut(all, fitRows, train.n), { epochs: 2, seed: 1 });
    for (const e of r.history) {
      expect(e.valSeconds).toBeGreaterThan(0);
      expect(e.valSeconds).toBeLessThan(e.seconds);
      expect(e.samplesPerSecond).toBeGreaterThan(fitRows / e.seconds);
    }
  });

  it('training reduces validation loss on generated data (the systematic EN->ES part is learnable)', async () => {
    const all = data(train, null);
    const r = await trainMlp(nativeMlpBackend, baselineSpec(), cut(all, 0, fitRows), cut(all, fitRows, train.n), { epochs: 15, patience: 5, seed: 1 });
    expect(r.bestValCosine).toBeGreaterThan(r.initialValCosine + 0.05);
    expect(r.history[0]!.trainLoss).toBeGreaterThan(r.history.at(-1)!.trainLoss);
  });

  it('fusion on leave-one-out priors beats plain retrieval on the paper-sized generated set', async () => {
    const paper = generateDataset({ pairs: 2894, testPairs: 578, seed: 1 });
    const sp = officialSplit(paper);
    const tr = subsetDataset(paper, sp.train);
    const tests = buildTestSets(subsetDataset(paper, sp.test), new Set(tr.speakers ?? []));
    const p = await evaluatePoint(poolOf(tr), tests, { config: 'A', k: 90, tau: 0.04, aggregate: 'softmax', hidden: [256, 128], dropout: 0.1, seed: 1, leaveOneOut: true, epochs: 40, patience: 5, batchSize: 32, lr: 1e-3, weightDecay: 1e-4, valFraction: 0.1, resamples: 1000, trainSeeds: 1, backend: nativeMlpBackend }, 1, 'test');
    // Early stopping restores the best epoch, and epoch 0 is the prior itself.
    expect(p.valFusion).toBeGreaterThanOrEqual(p.valPlain);
    expect(p.tests[0]!.gain.lo).toBeGreaterThan(0);
  }, 60_000);

  it('bad training data is refused with coded errors before any step', async () => {
    const all = data(train, null);
    const bad = { ...cut(all, 0, 50), en: cut(all, 0, 50).en.slice() };
    bad.en[3 * 1024 + 7] = Number.NaN;
    await expect(trainMlp(nativeMlpBackend, baselineSpec(), bad, cut(all, 50, 80))).rejects.toMatchObject({ code: 'RAPM_NON_FINITE' });
    await expect(trainMlp(nativeMlpBackend, fusionSpec(), cut(all, 0, 50), cut(all, 50, 80))).rejects.toThrow(/prior/);
    await expect(trainMlp(nativeMlpBackend, baselineSpec(), cut(all, 0, 50), cut(all, 50, 80), { lr: 0 })).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG' });
    // A misspelt option is refused, not ignored ({ epoch: 3 } trained the default 100 epochs).
    await expect(trainMlp(nativeMlpBackend, baselineSpec(), cut(all, 0, 50), cut(all, 50, 80), { epoch: 3 } as never)).rejects.toMatchObject({
      code: 'RAPM_INVALID_ARG',
      message: expect.stringMatching(/'epoch' for trainMlp \(did you mean 'epochs'\?\)/),
    });
  });
});

describe('ONNX Runtime equals the native forward pass', () => {
  for (const kind of ['fusion', 'baseline'] as const) {
    it(`${kind}: a trained net exported to ONNX predicts what the native forward predicts (1e-5)`, async () => {
      const prior = randn(train.n * 101, 4).map((x) => x * 0.1 + 1);
      const all = data(train, kind === 'fusion' ? prior : null);
      const spec = kind === 'fusion' ? fusionSpec({ dropout: 0.1 }) : baselineSpec();
      const r = await trainMlp(nativeMlpBackend, spec, cut(all, 0, fitRows), cut(all, fitRows, train.n), { epochs: 2, seed: 2 });
      const file = path.join(tmp, `${kind}.onnx`);
      await exportOnnx(r.layout, r.params, file);
      const session = await FusionSession.create(file, { device: 'cpu' });
      const n = 300;
      const q = cut(all, 0, n);
      const testPrior = q.prior ?? new Float32Array(n * 101);
      const ort = await session.run(q.en, testPrior);
      const native = predict(nativeMlpBackend, r.layout, r.params, { ...q, prior: q.prior });
      let err = 0;
      for (let i = 0; i < native.length; i++) err = Math.max(err, Math.abs(ort.pred[i]! - native[i]!));
      expect(err).toBeLessThan(1e-5);
      await session.release();
    });
  }
});
