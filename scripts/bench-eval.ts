/**
 * The progressive loop's evaluation-phase bookkeeping, old against new, in one process on the
 * same data (interleaved, best of `--reps`), so the ratios hold on a busy machine:
 *
 *   subsets  each training seed's fit / validation rows at every step of a growing training set:
 *            a fresh subsetMlp per seed per step (before) vs SeedSubsets, which keeps them
 *            between steps and copies only the new rows (after). Same MlpData, checked.
 *   bootstrap  the hierarchical bootstrap (3 seeds, 68 speakers, 578 rows, 2,000 resamples):
 *            the shipped one; its draws are bit-identical to the previous code's (tested), so
 *            only its own time is printed.
 *
 * Usage: npm run bench:eval -- [--steps 4] [--chunk 25000] [--seeds 3] [--reps 2]
 */
import { hierarchicalBootstrap } from '../src/eval/bootstrap.js';
import { SeedSubsets, splitFitValByIds, subsetMlp } from '../src/experiments/evaluate.js';
import type { MlpData } from '../src/fusion/train.js';

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

const en = new Float32Array(N * D);
for (let i = 0; i < en.length; i++) en[i] = Math.sin(i * 0.001);
const target = Float32Array.from({ length: N * DV }, (_, i) => Math.cos(i * 0.01));
const prior = Float32Array.from({ length: N * DV }, (_, i) => Math.sin(i * 0.02));
const ids = Array.from({ length: N }, (_, i) => `spk${i % 68}_c${i % 9}_${i}`);

/** Seconds (wall, and CPU of this process) of one pass over all steps. */
function pass(variant: 'before' | 'after'): { wall: number; cpu: number } {
  const cache = new SeedSubsets(N, 0.1);
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  let check = 0;
  for (let s = 1; s <= steps; s++) {
    const n = s * chunk;
    const data: MlpData = { en: en.subarray(0, n * D), prior: prior.subarray(0, n * DV), target: target.subarray(0, n * DV) };
    for (let seed = 0; seed < seeds; seed++) {
      const split = splitFitValByIds(ids.slice(0, n), 0.1, 1 + seed);
      const r = variant === 'before' ? { fitData: subsetMlp(data, split.fit, D, DV), valData: subsetMlp(data, split.val, D, DV) } : cache.take(seed, data, split, D, DV);
      check += r.fitData.en[r.fitData.en.length - 1]! + r.valData.target[0]!;
    }
  }
  const c = process.cpuUsage(c0);
  if (!Number.isFinite(check)) throw new Error('bad data');
  return { wall: (performance.now() - t0) / 1000, cpu: (c.user + c.system) / 1e6 };
}

// The two give the same rows (also tested in test/experiments/seed-subsets.test.ts).
{
  const n = 2 * chunk;
  const data: MlpData = { en: en.subarray(0, n * D), prior: prior.subarray(0, n * DV), target: target.subarray(0, n * DV) };
  const cache = new SeedSubsets(N, 0.1);
  cache.take(0, { en: en.subarray(0, chunk * D), prior: prior.subarray(0, chunk * DV), target: target.subarray(0, chunk * DV) }, splitFitValByIds(ids.slice(0, chunk), 0.1, 1), D, DV);
  const split = splitFitValByIds(ids.slice(0, n), 0.1, 1);
  const a = cache.take(0, data, split, D, DV).fitData.en;
  const b = subsetMlp(data, split.fit, D, DV).en;
  if (a.length !== b.length || a.some((x, i) => x !== b[i])) throw new Error('SeedSubsets and subsetMlp disagree');
}

const best = { before: { wall: Infinity, cpu: Infinity }, after: { wall: Infinity, cpu: Infinity } };
for (let r = 0; r < reps; r++) {
  for (const v of ['before', 'after'] as const) {
    const t = pass(v);
    best[v] = { wall: Math.min(best[v].wall, t.wall), cpu: Math.min(best[v].cpu, t.cpu) };
  }
}
console.log(`subsets: ${steps} steps of ${chunk} rows (to ${N}), ${seeds} seeds, best of ${reps}`);
console.log(`  before (subsetMlp per seed per step): wall ${best.before.wall.toFixed(2)} s, cpu ${best.before.cpu.toFixed(2)} s`);
console.log(`  after  (SeedSubsets):                 wall ${best.after.wall.toFixed(2)} s, cpu ${best.after.cpu.toFixed(2)} s`);
console.log(`  before / after: wall ${(best.before.wall / best.after.wall).toFixed(2)}x, cpu ${(best.before.cpu / best.after.cpu).toFixed(2)}x`);

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
