// Training / inference throughput of the native MLP engine at batch 32.
//
//   npx tsx scripts/bench-train.ts [--steps N] [--seconds S]
//
// Prints samples/s of mlpTrainStep for the fusion net (1125 -> 256 -> 128 -> 101, LayerNorm +
// GELU) and the baseline (1024 -> 500 -> 250 -> 125 -> 101, ReLU) for 1 and 2 threads on every
// SIMD level, forward-only rates at batch 1 and 1024, and the plain-TypeScript float64
// reference (test/helpers/mlp-reference.ts) as a same-run peer, timed on a few steps.
import { baselineSpec, fusionSpec, initParams, paramLayout, type ParamLayout } from '../src/fusion/layout.js';
import { nativeForward, nativeTrainStep } from '../src/fusion/native-mlp.js';
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
