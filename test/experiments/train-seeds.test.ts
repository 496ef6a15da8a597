import { describe, expect, it } from 'vitest';
import { fusionSpec } from '../../src/fusion/layout.js';
import { nativeMlpBackend } from '../../src/fusion/native-mlp.js';
import type { MlpBackend, MlpData } from '../../src/fusion/train.js';
import { trainFusionSeeds, type SeedJob } from '../../src/experiments/train-seeds.js';
import { randn } from '../helpers/random.js';

const data = (n: number, seed: number): MlpData => ({ en: randn(n * 1024, seed), prior: randn(n * 101, seed + 1), target: randn(n * 101, seed + 2) });
const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

describe('trainFusionSeeds: the training seeds of a point, several at once', () => {
  const spec = fusionSpec({ dropout: 0.1 });
  const jobs: SeedJob[] = [11, 12, 13].map((seed, i) => ({ seed, fit: data(700 + 37 * i, 100 * i + 1), val: data(90, 100 * i + 50) }));
  const opts = { epochs: 3, patience: 3, batchSize: 32, lr: 1e-3, weightDecay: 1e-4 };

  it('nets trained at once are bit-identical to the same nets trained one after another', async () => {
    const seq = await trainFusionSeeds(nativeMlpBackend, spec, jobs, { ...opts, parallel: 1 });
    expect(seq.parallel).toBe(1);
    for (const parallel of [2, 3]) {
      const order: number[] = [];
      // Epochs in flight at once (each runs off the JS thread): counted at the backend, so the
      // proof of overlap does not depend on how the OS shares 2 cores between the nets' threads.
      let inFlight = 0;
      let maxInFlight = 0;
      const counting: MlpBackend = {
        ...nativeMlpBackend,
        trainEpoch: async (...args: Parameters<NonNullable<MlpBackend['trainEpoch']>>) => {
          maxInFlight = Math.max(maxInFlight, ++inFlight);
          try {
            return await nativeMlpBackend.trainEpoch!(...args);
          } finally {
            inFlight--;
          }
        },
      };
      const par = await trainFusionSeeds(counting, spec, jobs, { ...opts, parallel, onEpoch: (s) => order.push(s) });
      expect(par.parallel).toBe(parallel);
      par.results.forEach((r, s) => {
        expect(bits(r.params).equals(bits(seq.results[s]!.params))).toBe(true);
        expect(r.history.map((e) => [e.trainLoss, e.valCosine])).toEqual(seq.results[s]!.history.map((e) => [e.trainLoss, e.valCosine]));
        expect(r.seed).toBe(jobs[s]!.seed);
      });
      // They really overlapped: epochs of different nets were in flight at the same time. (The
      // order in which epochs finish is the OS's business: on 2 shared cores one net can finish
      // all its epochs before another finishes one, which made an order-based check flaky.)
      expect(maxInFlight).toBeGreaterThanOrEqual(2);
      expect(order.length).toBe(9);
    }
    const samples = jobs.reduce((a, j) => a + 3 * (j.fit.target.length / 101), 0);
    expect(seq.samplesPerSecond).toBeCloseTo(samples / seq.seconds, 6);
  }, 60_000);

  it('afterNet runs once per net, in its lane, with its result, and its time is not training time', async () => {
    for (const parallel of [1, 3]) {
      const seen: number[] = [];
      const t0 = performance.now();
      const r = await trainFusionSeeds(nativeMlpBackend, spec, jobs, {
        ...opts,
        epochs: 1,
        parallel,
        afterNet: async (s, res, threads) => {
          expect(threads).toBe(parallel === 1 ? 0 : 1);
          expect(res.history.length).toBe(1);
          seen.push(s);
          await new Promise((done) => setTimeout(done, 400));
        },
      });
      const wall = (performance.now() - t0) / 1000;
      expect([...seen].sort()).toEqual([0, 1, 2]);
      r.results.forEach((res, s) => expect(res.seed).toBe(jobs[s]!.seed));
      // At least the last net's 0.4 s of afterNet came after its training ended.
      expect(wall - r.seconds).toBeGreaterThanOrEqual(0.39);
    }
  }, 60_000);

  it('warm starts go to their own net; a backend without off-thread epochs trains one net at a time', async () => {
    const first = await trainFusionSeeds(nativeMlpBackend, spec, jobs.slice(0, 2), { ...opts, epochs: 1, patience: 1 });
    const warmJobs = jobs.slice(0, 2).map((j, s) => ({ ...j, init: first.results[s]!.params }));
    const a = await trainFusionSeeds(nativeMlpBackend, spec, warmJobs, { ...opts, epochs: 1, patience: 1, parallel: 2 });
    const perStep: MlpBackend = { trainStep: nativeMlpBackend.trainStep, forward: nativeMlpBackend.forward };
    const b = await trainFusionSeeds(perStep, spec, warmJobs, { ...opts, epochs: 1, patience: 1, parallel: 2 });
    expect(b.parallel).toBe(1);
    a.results.forEach((r, s) => {
      expect(r.initialValCosine).toBe(first.results[s]!.bestValCosine);
      expect(bits(r.params).equals(bits(b.results[s]!.params))).toBe(true);
    });
  }, 60_000);
});
