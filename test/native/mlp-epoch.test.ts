import { describe, expect, it } from 'vitest';
import { baselineSpec, fusionSpec, initParams, paramLayout } from '../../src/fusion/layout.js';
import { nativeMlpBackend, nativeTrainEpoch, nativeTrainStep } from '../../src/fusion/native-mlp.js';
import { gatherInput, trainMlp, type MlpBackend, type MlpData } from '../../src/fusion/train.js';
import { Rng } from '../../src/rng.js';
import { randn } from '../helpers/random.js';

// The native backend trains whole epochs off the JS thread (MlpBackend.trainEpoch, rows read in
// place); this is the per-minibatch path it replaces (rows copied by gatherInput, one crossing
// per minibatch). Both must give the same bits.
const perStep: MlpBackend = { trainStep: nativeMlpBackend.trainStep, forward: nativeMlpBackend.forward };

function mlpData(n: number, seed: number, fusion: boolean): MlpData {
  return { en: randn(n * 1024, seed), prior: fusion ? randn(n * 101, seed + 1) : null, target: randn(n * 101, seed + 2) };
}
const same = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

describe('training epochs off the JS thread', () => {
  it('trainMlp: the epoch path equals the per-minibatch path bit for bit (fusion and baseline, any thread count, a short last batch)', async () => {
    const fit = mlpData(1000, 1, true), val = mlpData(120, 5, true);
    const spec = fusionSpec({ dropout: 0.1 });
    const ref = await trainMlp(perStep, spec, fit, val, { epochs: 3, patience: 3, seed: 7 });
    for (const threads of [0, 1, 2]) {
      const r = await trainMlp(nativeMlpBackend, spec, fit, val, { epochs: 3, patience: 3, seed: 7, threads });
      expect(same(r.params, ref.params)).toBe(true);
      expect(r.history.map((e) => e.trainLoss)).toEqual(ref.history.map((e) => e.trainLoss));
      expect(r.history.map((e) => e.valCosine)).toEqual(ref.history.map((e) => e.valCosine));
    }
    // A warm start and a batch size that leaves 1000 % 48 = 40 rows for the last minibatch.
    const warm = await trainMlp(perStep, spec, fit, val, { epochs: 2, patience: 2, seed: 8, batchSize: 48, init: ref.params });
    const warmEpoch = await trainMlp(nativeMlpBackend, spec, fit, val, { epochs: 2, patience: 2, seed: 8, batchSize: 48, init: ref.params, threads: 1 });
    expect(same(warmEpoch.params, warm.params)).toBe(true);
    // Options passed as undefined take their defaults (trainFusionSeeds passes settings straight through).
    const dflt = await trainMlp(nativeMlpBackend, spec, fit, val, { epochs: 1, seed: 7 });
    const undef = await trainMlp(nativeMlpBackend, spec, fit, val, { epochs: 1, seed: 7, lr: undefined, batchSize: undefined, threads: undefined });
    expect(same(undef.params, dflt.params)).toBe(true);
    const bfit = mlpData(300, 11, false), bval = mlpData(60, 15, false);
    const b1 = await trainMlp(perStep, baselineSpec({ dropout: 0.2 }), bfit, bval, { epochs: 2, patience: 2, seed: 3 });
    const b2 = await trainMlp(nativeMlpBackend, baselineSpec({ dropout: 0.2 }), bfit, bval, { epochs: 2, patience: 2, seed: 3 });
    expect(same(b2.params, b1.params)).toBe(true);
  }, 60_000);

  it('nativeTrainEpoch equals nativeTrainStep over gathered minibatches, and returns the sum of their losses', async () => {
    const layout = paramLayout(fusionSpec({ dropout: 0.1 }));
    const d = mlpData(200, 21, true);
    const order = new Rng(3, 11).permutation(200);
    const p1 = initParams(layout, 4), m1 = new Float32Array(layout.size), v1 = new Float32Array(layout.size);
    const p2 = p1.slice(), m2 = m1.slice(), v2 = v1.slice();
    const x = new Float32Array(64 * layout.inputDim), res = new Float32Array(64 * 101), tgt = new Float32Array(64 * 101);
    let loss = 0;
    for (let s = 0, step = 5; s < 200; s += 64, step++) {
      const b = Math.min(64, 200 - s);
      gatherInput(layout, d, order.subarray(s, s + b), x.subarray(0, b * layout.inputDim), res.subarray(0, b * 101), tgt.subarray(0, b * 101));
      loss += nativeTrainStep(layout, p1, m1, v1, x.subarray(0, b * layout.inputDim), res.subarray(0, b * 101), tgt.subarray(0, b * 101), { step, lr: 1e-3, weightDecay: 1e-4, dropout: 0.1, dropoutSeed: 9 });
    }
    const progress = new Int32Array(2);
    const sum = await nativeTrainEpoch(layout, p2, m2, v2, d, order, { step: 5, lr: 1e-3, weightDecay: 1e-4, dropout: 0.1, dropoutSeed: 9, batchSize: 64, threads: 1, progress });
    expect(sum).toBe(loss);
    expect(progress[0]).toBe(200);
    expect(same(p2, p1) && same(m2, m1) && same(v2, v1)).toBe(true);
  });

  it('bad input is a coded error: a row out of range, NaN in a gathered row (named by its source row), missing prior', async () => {
    const layout = paramLayout(fusionSpec());
    const d = mlpData(50, 31, true);
    const arena = () => [initParams(layout, 1), new Float32Array(layout.size), new Float32Array(layout.size)] as const;
    const o = { step: 1, lr: 1e-3, weightDecay: 0, batchSize: 16 };
    await expect(nativeTrainEpoch(layout, ...arena(), d, Int32Array.from([0, 1, 50]), o)).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG' });
    await expect(nativeTrainEpoch(layout, ...arena(), d, Int32Array.from([0, -1]), o)).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG' });
    const bad = { ...d, prior: d.prior!.slice() };
    bad.prior[37 * 101 + 3] = Number.POSITIVE_INFINITY;
    await expect(nativeTrainEpoch(layout, ...arena(), bad, Int32Array.from([4, 37, 2]), o)).rejects.toMatchObject({ code: 'RAPM_NON_FINITE', row: 37 });
    await expect(nativeTrainEpoch(layout, ...arena(), { ...d, prior: null }, Int32Array.from([0]), o)).rejects.toMatchObject({ code: 'RAPM_TYPE' });
    await expect(nativeTrainEpoch(layout, ...arena(), d, Int32Array.from([0]), { ...o, batchSize: 0 })).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG' });
    await expect(nativeTrainEpoch(layout, ...arena(), d, Int32Array.from([0]), { ...o, threads: -1 })).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG' });
  });

  it('a stop request ends the epoch between minibatches, and the event loop runs meanwhile', async () => {
    const layout = paramLayout(fusionSpec());
    const n = 4000;
    const d = mlpData(n, 41, true);
    const order = new Rng(1, 11).permutation(n);
    const progress = new Int32Array(2);
    let ticks = 0;
    const timer = setInterval(() => {
      ticks++;
      if (progress[0]! > 0) progress[1] = 1; // ask to stop once the first minibatch is done
    }, 1);
    await nativeTrainEpoch(layout, initParams(layout, 1), new Float32Array(layout.size), new Float32Array(layout.size), d, order, { step: 1, lr: 1e-3, weightDecay: 0, batchSize: 1, threads: 1, progress });
    clearInterval(timer);
    expect(ticks).toBeGreaterThan(0);
    expect(progress[0]).toBeGreaterThan(0);
    expect(progress[0]).toBeLessThan(n); // stopped early: 4,000 one-row minibatches take far longer than a timer tick
  }, 30_000);
});
