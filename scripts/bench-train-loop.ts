/**
 * Where the progressive loop's training time goes, against bench:train's bare minibatch rate.
 * Every variant runs in this process on the same data, interleaved and best of `--reps`, so the
 * ratios hold on a busy machine even when the absolute numbers do not:
 *
 *   bare         nativeTrainStep over a small cycled pool (what bench:train measures)
 *   gather       + gathering each minibatch's rows from an n-row training set (random rows)
 *   turn/batch   + an event-loop turn (setImmediate) after every minibatch (the loop before this change)
 *   epoch        a whole epoch slice gathered natively off the JS thread (nativeTrainEpoch)
 *   trainMlp     the loop's trainer as shipped: native epochs (the per-minibatch path with a turn
 *                every 10 ms when the backend has no trainEpoch), shuffling, validation excluded
 *                from samples/s (reported separately as the share of epoch time)
 *   3 seeds      trainFusionSeeds on 3 nets: one after another on the whole pool, and at once
 *                (one thread each while more nets than one are left): aggregate samples/s,
 *                validation included (what the loop's training phase sees)
 *
 * Usage: npm run bench:train-loop -- [--rows 20000] [--seconds 1] [--reps 3]
 */
import { setImmediate as turn } from 'node:timers/promises';
import { fusionSpec, initParams, paramLayout } from '../src/fusion/layout.js';
import { nativeMlpBackend, nativeTrainEpoch, nativeTrainStep } from '../src/fusion/native-mlp.js';
import { trainFusionSeeds } from '../src/experiments/train-seeds.js';
import { gatherInput, trainMlp, type MlpBackend, type MlpData } from '../src/fusion/train.js';
import { Rng } from '../src/data/rng.js';
import { concurrency, simdLevel } from '../src/native/simd.js';
import { randn } from '../test/helpers/random.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const rows = opt('rows', 20000);
const seconds = opt('seconds', 1);
const reps = opt('reps', 3);
const BS = 32;
const layout = paramLayout(fusionSpec({ dropout: 0.1 }));
const D = layout.spec.outDim;
const K = layout.inputDim;
const data: MlpData = { en: randn(rows * 1024, 1), prior: randn(rows * D, 2), target: randn(rows * D, 3) };
const val: MlpData = { en: randn(Math.ceil(rows / 9) * 1024, 4), prior: randn(Math.ceil(rows / 9) * D, 5), target: randn(Math.ceil(rows / 9) * D, 6) };

async function loop(variant: 'bare' | 'gather' | 'turn' | 'epoch'): Promise<number> {
  const params = initParams(layout, 1);
  const m = new Float32Array(layout.size), v = new Float32Array(layout.size);
  const x = new Float32Array(BS * K), res = new Float32Array(BS * D), tgt = new Float32Array(BS * D);
  const pool = 64;
  const px = randn(pool * BS * K, 7), pr = randn(pool * BS * D, 8), pt = randn(pool * BS * D, 9);
  const order = new Rng(1, 11).permutation(rows);
  let step = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    for (let i = 0; i < 10; i++) {
      if (variant === 'epoch') {
        const s = (step * BS) % (rows - 20 * BS);
        await nativeTrainEpoch(layout, params, m, v, data, order.subarray(s, s + 20 * BS), { step: step + 1, lr: 1e-3, weightDecay: 1e-4, dropout: 0.1, dropoutSeed: 7, batchSize: BS });
        step += 20;
        break;
      } else if (variant === 'bare') {
        const b = step % pool;
        nativeTrainStep(layout, params, m, v, px.subarray(b * BS * K, (b + 1) * BS * K), pr.subarray(b * BS * D, (b + 1) * BS * D), pt.subarray(b * BS * D, (b + 1) * BS * D), { step: step + 1, lr: 1e-3, weightDecay: 1e-4, dropout: 0.1, dropoutSeed: 7 });
      } else {
        const s = (step * BS) % (rows - BS);
        gatherInput(layout, data, order.subarray(s, s + BS), x, res, tgt);
        nativeTrainStep(layout, params, m, v, x, res, tgt, { step: step + 1, lr: 1e-3, weightDecay: 1e-4, dropout: 0.1, dropoutSeed: 7 });
        if (variant === 'turn') await turn();
      }
      step++;
    }
  }
  return (step * BS) / ((performance.now() - t0) / 1000);
}

// The per-minibatch trainer (what trainMlp does with a backend that has no trainEpoch).
const perStep: MlpBackend = { trainStep: nativeMlpBackend.trainStep, forward: nativeMlpBackend.forward };

async function trainer(backend: MlpBackend): Promise<{ rate: number; valShare: number }> {
  const epochs = Math.max(1, Math.round((seconds * 60000) / rows));
  const r = await trainMlp(backend, fusionSpec({ dropout: 0.1 }), data, val, { epochs, patience: 1000, seed: 1 });
  const train = r.history.reduce((a, e) => a + e.seconds - e.valSeconds, 0);
  const all = r.history.reduce((a, e) => a + e.seconds, 0);
  return { rate: (r.history.length * rows) / train, valShare: 1 - train / all };
}

async function seeds(parallel: number): Promise<number> {
  const epochs = Math.max(1, Math.round((seconds * 40000) / rows));
  const jobs = [1, 2, 3].map((seed) => ({ seed, fit: data, val }));
  const r = await trainFusionSeeds(nativeMlpBackend, fusionSpec({ dropout: 0.1 }), jobs, { epochs, patience: 1000, parallel });
  return r.samplesPerSecond;
}

console.log(`rapm bench-train-loop: fusion ${K} -> 256 -> 128 -> ${D}, batch ${BS}, ${rows} training rows, ${simdLevel()} kernels, ${concurrency()} threads; best of ${reps} interleaved`);
const best: Record<string, number> = {};
let valShare = 0;
for (let r = 0; r < reps; r++) {
  for (const v of ['bare', 'gather', 'turn', 'epoch'] as const) best[v] = Math.max(best[v] ?? 0, await loop(v));
  const t = await trainer(nativeMlpBackend);
  best.trainMlp = Math.max(best.trainMlp ?? 0, t.rate);
  valShare = t.valShare;
  const t0 = await trainer(perStep);
  best['trainMlp per minibatch'] = Math.max(best['trainMlp per minibatch'] ?? 0, t0.rate);
  best['3 seeds, one at a time'] = Math.max(best['3 seeds, one at a time'] ?? 0, await seeds(1));
  best['3 seeds at once'] = Math.max(best['3 seeds at once'] ?? 0, await seeds(concurrency()));
}
console.log(`\n${'variant'.padEnd(22)}${'samples/s'.padStart(12)}${'vs bare'.padStart(10)}`);
for (const [k, v] of Object.entries(best)) console.log(`${k.padEnd(22)}${Math.round(v).toLocaleString('en-US').padStart(12)}${((100 * v) / best.bare!).toFixed(0).padStart(9)}%`);
console.log(`\nvalidation (${val.target.length / D} rows scored after every epoch): ${(100 * valShare).toFixed(1)}% of epoch time (excluded above)`);
