/**
 * The progressive loop's evaluation-phase bookkeeping, old against new, in one process on the
 * same data (interleaved, best of `--reps`), so the ratios hold on a busy machine:
 *
 *   rows     each training seed's fit / validation rows at every step of a growing training set:
 *            copied out per seed and validated per seed (subsetMlp + trainMlp's checks: the
 *            previous rounds) vs index lists into the one shared matrix, its new rows validated once
 *            per step (fitAndScore now: SeedJob fitRows / valRows, checkMlpData's checkedRows). The nets trained on either are the same
 *            bit for bit (test/experiments/seed-rows.test.ts); checked here on the rows.
 *   bootstrap  the hierarchical bootstrap (3 seeds, 68 speakers, 578 rows, 2,000 resamples):
 *            the shipped one; its draws are bit-identical to the previous code's (tested), so
 *            only its own time is printed.
 *
 * Usage: npm run bench:eval -- [--steps 4] [--chunk 25000] [--seeds 3] [--reps 2]
 */
import { hierarchicalBootstrap } from '../src/eval/bootstrap.js';
import { splitFitValByIds, subsetMlp } from '../src/experiments/evaluate.js';
import { fusionSpec, paramLayout } from '../src/fusion/layout.js';
import { checkMlpData, type MlpData } from '../src/fusion/train.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const steps = opt('steps', 4);
const chunk = opt('chunk', 25000);
const seeds = opt('seeds', 3);
const reps = opt('reps', 2);
const D = 1024;
const DV = 101;
const N = steps * chunk;
const layout = paramLayout(fusionSpec());

const en = new Float32Array(N * D);
for (let i = 0; i < en.length; i++) en[i] = Math.sin(i * 0.001);
const target = Float32Array.from({ length: N * DV }, (_, i) => Math.cos(i * 0.01));
const prior = Float32Array.from({ length: N * DV }, (_, i) => Math.sin(i * 0.02));
const ids = Array.from({ length: N }, (_, i) => `spk${i % 68}_c${i % 9}_${i}`);

/** Seconds (wall, and CPU of this process) of one pass over all steps. */
function pass(variant: 'copies' | 'rows'): { wall: number; cpu: number } {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  let check = 0;
  for (let s = 1; s <= steps; s++) {
    const n = s * chunk;
    const data: MlpData = { en: en.subarray(0, n * D), prior: prior.subarray(0, n * DV), target: target.subarray(0, n * DV) };
    // fitAndScore validates the rows new since the previous step (and the priors), once for all seeds.
    if (variant === 'rows') check += checkMlpData('train', data, layout, (s - 1) * chunk);
    for (let seed = 0; seed < seeds; seed++) {
      const split = splitFitValByIds(ids.slice(0, n), 0.1, 1 + seed);
      if (variant === 'copies') {
        const fit = subsetMlp(data, split.fit, D, DV);
        const val = subsetMlp(data, split.val, D, DV);
        check += checkMlpData('train', fit, layout) + checkMlpData('val', val, layout);
      } else {
        check += split.fit.length + split.val.length;
      }
    }
  }
  const c = process.cpuUsage(c0);
  if (!Number.isFinite(check)) throw new Error('bad data');
  return { wall: (performance.now() - t0) / 1000, cpu: (c.user + c.system) / 1e6 };
}

const best = { copies: { wall: Infinity, cpu: Infinity }, rows: { wall: Infinity, cpu: Infinity } };
for (let r = 0; r < reps; r++) {
  for (const v of ['copies', 'rows'] as const) {
    const t = pass(v);
    best[v] = { wall: Math.min(best[v].wall, t.wall), cpu: Math.min(best[v].cpu, t.cpu) };
  }
}
console.log(`seed rows: ${steps} steps of ${chunk} rows (to ${N}), ${seeds} seeds, best of ${reps}`);
console.log(`  copies (subsetMlp + checks per seed per step): wall ${best.copies.wall.toFixed(2)} s, cpu ${best.copies.cpu.toFixed(2)} s`);
console.log(`  rows   (index lists, new rows checked once):   wall ${best.rows.wall.toFixed(2)} s, cpu ${best.rows.cpu.toFixed(2)} s`);
console.log(`  copies / rows: wall ${(best.copies.wall / best.rows.wall).toFixed(2)}x, cpu ${(best.copies.cpu / best.rows.cpu).toFixed(2)}x`);

const n = 578;
const plain = Float64Array.from({ length: n }, (_, i) => 0.8 + 0.1 * Math.sin(i));
const fusion = [0, 1, 2].map((s) => Float64Array.from({ length: n }, (_, i) => plain[i]! + 0.01 + 0.01 * Math.cos(i * (s + 1))));
const labels = Array.from({ length: n }, (_, i) => `spk${i % 68}`);
let bt = Infinity;
for (let r = 0; r < 5 * reps; r++) {
  const t = performance.now();
  hierarchicalBootstrap([plain, plain, plain], fusion, labels, { resamples: 2000, seed: 7 + r });
  bt = Math.min(bt, performance.now() - t);
}
console.log(`bootstrap: 3 seeds x 68 speakers x 578 rows, 2,000 resamples: ${bt.toFixed(1)} ms (best of ${5 * reps})`);
