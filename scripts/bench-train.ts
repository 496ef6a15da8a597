// Training / inference throughput of the native MLP engine at batch 32.
//
//   npx tsx scripts/bench-train.ts [--seconds S] [--rows N] [--ref-steps N]
//
// Prints samples/s of mlpTrainStep for the fusion net (1125 -> 256 -> 128 -> 101, LayerNorm +
// GELU) and the baseline (1024 -> 500 -> 250 -> 125 -> 101, ReLU) for 1 and 2 threads on every
// SIMD level, forward-only rates at batch 1 and 1024, and the plain-TypeScript float64
// reference (test/helpers/mlp-reference.ts) as a same-run peer, timed on a few steps.
//
// Those rates cycle 64 minibatches (2,048 rows, cache-resident). The progressive loop trains
// the same net at the same batch size on N rows drawn in a fresh random order every epoch
// (N ~ 180K at the last step, an 800 MB EN matrix), with several training seeds. The section
// "the progressive loop's setting" measures that, in the same run and against the cycled rate
// at the default level: rows gathered in JS per minibatch (the old loop), a whole epoch gathered
// natively off the JS thread (trainMlp now), and 2 nets training at once on one thread each
// (trainFusionSeeds) as aggregate samples/s. --rows sets N (default 50,000; the loop's last
// step is 180,000).
import { baselineSpec, fusionSpec, initParams, paramLayout, type ParamLayout } from '../src/fusion/layout.js';
import { nativeForward, nativeTrainEpoch, nativeTrainStep } from '../src/fusion/native-mlp.js';
import { gatherInput, type MlpData } from '../src/fusion/train.js';
import { Rng } from '../src/rng.js';
import { concurrency, setConcurrency, setSimdLevel, simdLevel, simdLevels } from '../src/native/simd.js';
import { refAdamW, refLossGrad } from '../test/helpers/mlp-reference.js';
import { randn } from '../test/helpers/random.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const seconds = opt('seconds', 1.5);
const BS = 32;
const POOL = 64; // distinct minibatches cycled through (2048 rows)

const nets: [string, ParamLayout][] = [
  ['fusion', paramLayout(fusionSpec({ dropout: 0.1 }))],
  ['baseline', paramLayout(baselineSpec({ dropout: 0.1 }))],
];

function data(layout: ParamLayout, rows: number) {
  const D = layout.spec.outDim;
  return {
    x: randn(rows * layout.inputDim, 1),
    residual: layout.spec.kind === 'fusion' ? randn(rows * D, 2) : null,
    target: randn(rows * D, 3),
  };
}

function trainRate(layout: ParamLayout): number {
  const D = layout.spec.outDim, K = layout.inputDim;
  const { x, residual, target } = data(layout, POOL * BS);
  const params = initParams(layout, 1);
  const m = new Float32Array(layout.size), v = new Float32Array(layout.size);
  let step = 0;
  const one = () => {
    const b = step % POOL;
    step++;
    nativeTrainStep(layout, params, m, v, x.subarray(b * BS * K, (b + 1) * BS * K), residual ? residual.subarray(b * BS * D, (b + 1) * BS * D) : null,
      target.subarray(b * BS * D, (b + 1) * BS * D), { step, lr: 1e-3, weightDecay: 1e-4, dropout: layout.spec.dropout, dropoutSeed: 7 });
  };
  for (let i = 0; i < 20; i++) one();
  let best = 0;
  for (let rep = 0; rep < 3; rep++) {
    const t0 = performance.now();
    let n = 0;
    while (performance.now() - t0 < (seconds * 1000) / 3) {
      for (let i = 0; i < 10; i++) one();
      n += 10;
    }
    best = Math.max(best, (n * BS) / ((performance.now() - t0) / 1000));
  }
  return best;
}

function forwardRate(layout: ParamLayout, rows: number): number {
  const { x, residual } = data(layout, rows);
  const params = initParams(layout, 1);
  const out = new Float32Array(rows * layout.spec.outDim);
  for (let i = 0; i < 5; i++) nativeForward(layout, params, x, residual, out);
  const t0 = performance.now();
  let n = 0;
  while (performance.now() - t0 < seconds * 300) {
    nativeForward(layout, params, x, residual, out);
    n += rows;
  }
  return n / ((performance.now() - t0) / 1000);
}

function referenceRate(layout: ParamLayout, steps: number): number {
  const { x, residual, target } = data(layout, steps * BS);
  const D = layout.spec.outDim, K = layout.inputDim;
  const p = Float64Array.from(initParams(layout, 1)), m = new Float64Array(layout.size), v = new Float64Array(layout.size);
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) {
    const g = refLossGrad(layout, p, x.subarray(s * BS * K, (s + 1) * BS * K), residual ? residual.subarray(s * BS * D, (s + 1) * BS * D) : null,
      target.subarray(s * BS * D, (s + 1) * BS * D), { dropout: layout.spec.dropout, dropoutSeed: 7, step: s + 1 });
    refAdamW(p, m, v, g.grad, s + 1, 1e-3, 1e-4);
  }
  return (steps * BS) / ((performance.now() - t0) / 1000);
}

const fmt = (r: number) => Math.round(r).toLocaleString('en-US').padStart(10);
const initialLevel = simdLevel(), initialThreads = concurrency();
console.log(`rapm bench-train: batch ${BS}, dropout 0.1, AdamW; levels ${simdLevels().join(', ')}; best of 3 x ${(seconds / 3).toFixed(2)} s`);
for (const [name, layout] of nets) console.log(`  ${name}: ${layout.inputDim} -> ${layout.layers.map((l) => l.out).join(' -> ')}, ${layout.size.toLocaleString('en-US')} params`);
console.log('\ntraining samples/s (batch 32)');
console.log(`${'level'.padEnd(8)}${'threads'.padStart(8)}${'fusion'.padStart(11)}${'baseline'.padStart(11)}`);
for (const level of simdLevels()) {
  setSimdLevel(level);
  for (const t of [1, 2]) {
    setConcurrency(t);
    console.log(`${level.padEnd(8)}${String(t).padStart(8)}${fmt(trainRate(nets[0]![1]))} ${fmt(trainRate(nets[1]![1]))}`);
  }
}
setSimdLevel(initialLevel);

// ---- the progressive loop's setting ------------------------------------------------------------
{
  const rows = opt('rows', 50_000);
  const layout = nets[0]![1];
  const D = layout.spec.outDim, K = layout.inputDim;
  const big: MlpData = { en: randn(rows * 1024, 11), prior: randn(rows * D, 12), target: randn(rows * D, 13) };
  const x = new Float32Array(BS * K), res = new Float32Array(BS * D), tgt = new Float32Array(BS * D);
  const net = () => ({ p: initParams(layout, 1), m: new Float32Array(layout.size), v: new Float32Array(layout.size), step: 1, order: new Rng(1, 11).permutation(rows), at: 0 });
  type Net = ReturnType<typeof net>;
  const sliceRows = 200 * BS; // rows per native epoch call while timing (a slice of the epoch's order)
  const nextSlice = (n: Net) => {
    if (n.at + sliceRows > rows) n.at = 0;
    const o = n.order.subarray(n.at, n.at + sliceRows);
    n.at += sliceRows;
    return o;
  };
  const jsGather = (n: Net) => {
    const o = n.order.subarray(n.at, n.at + BS);
    n.at = n.at + 2 * BS > rows ? 0 : n.at + BS;
    gatherInput(layout, big, o, x, res, tgt);
    nativeTrainStep(layout, n.p, n.m, n.v, x, res, tgt, { step: n.step++, lr: 1e-3, weightDecay: 1e-4, dropout: 0.1, dropoutSeed: 7 });
  };
  const epoch = async (n: Net, threads: number) => {
    const o = nextSlice(n);
    await nativeTrainEpoch(layout, n.p, n.m, n.v, big, o, { step: n.step, lr: 1e-3, weightDecay: 1e-4, dropout: 0.1, dropoutSeed: 7, batchSize: BS, threads });
    n.step += o.length / BS;
  };
  // best of 3 windows: rows trained per second of wall time (all nets together)
  const timed = async (run: (nets: Net[]) => Promise<number>, count: number): Promise<number> => {
    const nets = Array.from({ length: count }, net);
    await run(nets); // warm-up
    let best = 0;
    for (let rep = 0; rep < 3; rep++) {
      const t0 = performance.now();
      let done = 0;
      while (performance.now() - t0 < (seconds * 1000) / 3) done += await run(nets);
      best = Math.max(best, done / ((performance.now() - t0) / 1000));
    }
    return best;
  };
  const cores = 2;
  setConcurrency(cores);
  const variants: [string, () => Promise<number>][] = [
    [`cycled 2,048 rows (the table above), ${cores} threads`, () => Promise.resolve(trainRate(layout))],
    [`${rows.toLocaleString('en-US')} rows, gathered in JS per minibatch (old loop), ${cores} threads`, () => timed(async ([n]) => { for (let i = 0; i < 20; i++) jsGather(n!); return 20 * BS; }, 1)],
    [`${rows.toLocaleString('en-US')} rows, native epoch off the JS thread (trainMlp), ${cores} threads`, () => timed(async ([n]) => { await epoch(n!, 0); return sliceRows; }, 1)],
    [`${rows.toLocaleString('en-US')} rows, native epoch, 1 thread`, () => timed(async ([n]) => { await epoch(n!, 1); return sliceRows; }, 1)],
    [`${rows.toLocaleString('en-US')} rows, ${cores} nets at once, 1 thread each (trainFusionSeeds), total`, () => timed(async (ns) => { await Promise.all(ns.map((n) => epoch(n, 1))); return ns.length * sliceRows; }, cores)],
  ];
  const best = new Map<string, number>();
  for (let rep = 0; rep < 2; rep++) for (const [name, run] of variants) best.set(name, Math.max(best.get(name) ?? 0, await run()));
  const ref = best.get(variants[0]![0])!;
  console.log(`\nthe progressive loop's setting: fusion, batch ${BS}, dropout 0.1, ${initialLevel}; a fresh random row order per epoch; samples/s, best of 2 interleaved rounds`);
  for (const [name] of variants) console.log(`  ${name.padEnd(84)}${fmt(best.get(name)!)}  ${((100 * best.get(name)!) / ref).toFixed(0).padStart(4)}%`);
  setConcurrency(initialThreads);
}

console.log(`\ninference rows/s (${initialLevel})`);
console.log(`${'threads'.padEnd(8)}${'rows'.padStart(6)}${'fusion'.padStart(13)}${'baseline'.padStart(13)}`);
for (const t of [1, 2]) {
  setConcurrency(t);
  for (const rows of [1, 1024]) {
    console.log(`${String(t).padEnd(8)}${String(rows).padStart(6)}${fmt(forwardRate(nets[0]![1], rows))}   ${fmt(forwardRate(nets[1]![1], rows))}`);
  }
}
setConcurrency(initialThreads);
const refSteps = opt('ref-steps', 2);
console.log(`\nplain-TS float64 reference (same run, ${refSteps} steps, extrapolated): fusion ${fmt(referenceRate(nets[0]![1], refSteps)).trim()} samples/s, baseline ${fmt(referenceRate(nets[1]![1], refSteps)).trim()} samples/s`);

// ONNX Runtime (onnxruntime-node, CPU) on the same fusion net, exported by rapm: the serving path.
{
  const { exportOnnx } = await import('../src/fusion/onnx-export.js');
  const { FusionSession } = await import('../src/fusion/onnx-session.js');
  const os = await import('node:os');
  const path = await import('node:path');
  const fs = await import('node:fs');
  const layout = nets[0]![1];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-bench-ort-'));
  const file = path.join(dir, 'fusion.onnx');
  await exportOnnx(layout, initParams(layout, 1), file);
  console.log(`\nONNX Runtime inference rows/s (fusion, CPU)`);
  console.log(`${'threads'.padEnd(8)}${'rows'.padStart(6)}${'ORT'.padStart(13)}`);
  for (const threads of [1, 2]) {
    const session = await FusionSession.create(file, { device: 'cpu', threads });
    for (const rows of [1, 1024]) {
      const en = randn(rows * 1024, 5), prior = randn(rows * 101, 6);
      await session.run(en, prior); // warm-up
      let n = 0;
      const t0 = performance.now();
      while (performance.now() - t0 < (seconds * 1000) / 3) {
        await session.run(en, prior);
        n += rows;
      }
      console.log(`${String(threads).padEnd(8)}${String(rows).padStart(6)}${fmt(n / ((performance.now() - t0) / 1000))}`);
    }
    await session.release();
  }
  fs.rmSync(dir, { recursive: true, force: true });
}
