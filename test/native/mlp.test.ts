// Native MLP arithmetic (native/core/mlp.cpp, native/kernels/mlp_*.cpp) against the float64
// reference in test/helpers/mlp-reference.ts, on every SIMD level.
import { afterAll, describe, expect, it } from 'vitest';
import { baselineSpec, fusionSpec, paramLayout, type MlpSpec, type ParamLayout } from '../../src/fusion/layout.js';
import { encodeMlpSpec, nativeForward, nativeGradient, nativeMlpBackend, nativeTrainStep } from '../../src/fusion/native-mlp.js';
import { loadBinding } from '../../src/native/binding.js';
import { concurrency, setConcurrency, setSimdLevel, simdLevel, simdLevels } from '../../src/native/simd.js';
import { dropoutBits, refAdamW, refForward, refLossGrad } from '../helpers/mlp-reference.js';
import { randn } from '../helpers/random.js';

const initialLevel = simdLevel();
const initialThreads = concurrency();
afterAll(() => {
  setSimdLevel(initialLevel);
  setConcurrency(initialThreads);
});

/** Random parameters: W, b ~ N(0, 1/in), gamma ~ 1 + N(0, 0.2^2), beta ~ N(0, 0.1^2). */
function randomParams(layout: ParamLayout, seed: number): Float32Array {
  const p = randn(layout.size, seed);
  for (const l of layout.layers) {
    const s = 1 / Math.sqrt(l.in);
    for (let i = l.w; i < l.b + l.out; i++) p[i]! *= s;
    if (l.gamma >= 0) {
      for (let i = 0; i < l.out; i++) {
        p[l.gamma + i] = 1 + 0.2 * p[l.gamma + i]!;
        p[l.beta + i]! *= 0.1;
      }
    }
  }
  return p;
}

function batch(layout: ParamLayout, bs: number, seed: number) {
  const D = layout.spec.outDim;
  return {
    x: randn(bs * layout.inputDim, seed),
    residual: layout.spec.kind === 'fusion' ? randn(bs * D, seed + 1) : null,
    target: randn(bs * D, seed + 2),
  };
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}
function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
function widest(layout: ParamLayout): number {
  return Math.max(layout.inputDim, ...layout.layers.map((l) => l.out));
}

const CONFIGS: [string, MlpSpec][] = [
  ['fusion GELU + LayerNorm', fusionSpec({ enDim: 19, outDim: 7, hidden: [17, 9] })],
  ['baseline ReLU', baselineSpec({ enDim: 21, outDim: 5, hidden: [16, 11, 8] })],
  ['baseline GELU, no LayerNorm', baselineSpec({ enDim: 10, outDim: 6, hidden: [12], activation: 'gelu' })],
  ['fusion ReLU + LayerNorm', fusionSpec({ enDim: 9, outDim: 4, hidden: [33], activation: 'relu' })],
  ['fusion, no hidden layer', fusionSpec({ enDim: 5, outDim: 3, hidden: [] })],
];

describe('spec encoding and the parameter arena', () => {
  it('native arena size and offsets equal layout.ts, including the two paper nets', () => {
    const b = loadBinding();
    const fusion = paramLayout(fusionSpec());
    const baseline = paramLayout(baselineSpec());
    expect(fusion.size).toBe(334_949);
    expect(baseline.size).toBe(681_851);
    for (const layout of [fusion, baseline, ...CONFIGS.map(([, s]) => paramLayout(s))]) {
      const spec = encodeMlpSpec(layout);
      expect(b.mlpParamCount(spec)).toBe(layout.size);
      const nat = Array.from(b._mlpLayout(spec));
      expect(nat.slice(0, 2)).toEqual([layout.size, layout.inputDim]);
      layout.layers.forEach((l, i) => expect(nat.slice(2 + 6 * i, 8 + 6 * i)).toEqual([l.in, l.out, l.w, l.b, l.gamma, l.beta]));
    }
  });

  it('the TS dropout stream equals the native one', () => {
    const b = loadBinding();
    for (const [seed, step, layer, row, col] of [[0, 1, 0, 0, 0], [7, 123, 2, 31, 255], [4294967295, 2147483647, 63, 65535, 65535], [12345, 9, 1, 5, 100]]) {
      expect(b._mlpDropoutBits(seed!, step!, layer!, row!, col!)).toBe(dropoutBits(seed!, step!, layer!, row!, col!));
    }
  });
});

describe('float64 reference: central differences for every layer type', () => {
  const cases: [string, MlpSpec, number][] = [
    ...CONFIGS.map(([n, s]): [string, MlpSpec, number] => [n, s, 0]),
    ['dropout 0.3 (fixed mask), GELU + LayerNorm', fusionSpec({ enDim: 8, outDim: 5, hidden: [10, 7] }), 0.3],
    ['dropout 0.5 (fixed mask), ReLU', baselineSpec({ enDim: 8, outDim: 5, hidden: [10, 7] }), 0.5],
  ];
  for (const [name, spec, dropout] of cases) {
    it(`${name}: analytic gradient = central difference within 1e-7 (relative to max(1, |g|))`, () => {
      const layout = paramLayout(spec);
      const params = Float64Array.from(randomParams(layout, 11));
      const { x, residual, target } = batch(layout, 5, 21);
      const opts = { dropout, dropoutSeed: 3, step: 2 };
      const { grad } = refLossGrad(layout, params, x, residual, target, opts);
      const h = 1e-6;
      let worst = 0;
      for (let i = 0; i < layout.size; i++) {
        const keep = params[i]!;
        params[i] = keep + h;
        const lp = refLossGrad(layout, params, x, residual, target, opts).loss;
        params[i] = keep - h;
        const lm = refLossGrad(layout, params, x, residual, target, opts).loss;
        params[i] = keep;
        worst = Math.max(worst, Math.abs((lp - lm) / (2 * h) - grad[i]!) / Math.max(1, Math.abs(grad[i]!)));
      }
      expect(worst).toBeLessThan(1e-7);
      expect(maxAbs(grad)).toBeGreaterThan(1e-3);
    });
  }
});

describe('native gradient', () => {
  for (const [name, spec] of CONFIGS) {
    for (const dropout of [0, 0.25]) {
      it(`${name}, dropout ${dropout}: every level = scalar = float64 reference (bs 1, 5, 16, 17, 33)`, () => {
        const layout = paramLayout(spec);
        const params = randomParams(layout, 5);
        const tol = 2e-6 * widest(layout);
        for (const bs of [1, 5, 16, 17, 33]) {
          const { x, residual, target } = batch(layout, bs, 100 + bs);
          const opts = { dropout, dropoutSeed: 9, step: 4 };
          const ref = refLossGrad(layout, params, x, residual, target, opts);
          const scale = maxAbs(ref.grad);
          setSimdLevel('scalar');
          const scalar = nativeGradient(layout, params, x, residual, target, opts);
          for (const level of simdLevels()) {
            setSimdLevel(level);
            const got = nativeGradient(layout, params, x, residual, target, opts);
            expect(Math.abs(got.loss - ref.loss)).toBeLessThan(1e-6);
            expect(maxAbsDiff(got.grad, ref.grad) / scale, `${level} vs reference, bs ${bs}`).toBeLessThan(tol);
            expect(maxAbsDiff(got.grad, scalar.grad) / scale, `${level} vs scalar, bs ${bs}`).toBeLessThan(tol);
          }
        }
      });
    }
  }

  it('central differences on the native float32 loss agree (h 1e-3, 3% + 1e-4 where |g| > 1e-3)', () => {
    for (const [, spec] of CONFIGS.slice(0, 4)) {
      const layout = paramLayout(spec);
      const params = randomParams(layout, 8);
      const { x, residual, target } = batch(layout, 7, 3);
      for (const level of simdLevels()) {
        setSimdLevel(level);
        const { grad } = nativeGradient(layout, params, x, residual, target);
        let checked = 0;
        for (let i = 0; i < layout.size; i += 3) {
          if (Math.abs(grad[i]!) < 1e-3) continue;
          const keep = params[i]!, h = 1e-3;
          params[i] = keep + h;
          const lp = nativeGradient(layout, params, x, residual, target).loss;
          params[i] = keep - h;
          const lm = nativeGradient(layout, params, x, residual, target).loss;
          params[i] = keep;
          const fd = (lp - lm) / (2 * h);
          expect(Math.abs(fd - grad[i]!), `${level} param ${i}`).toBeLessThan(0.03 * Math.abs(grad[i]!) + 1e-4);
          checked++;
        }
        expect(checked).toBeGreaterThan(10);
      }
    }
  });

  it('dims 1..1024: every level = scalar = reference, tolerance proportional to the dimension', () => {
    for (const d of [1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 101, 103, 1024]) {
      const layout = paramLayout(fusionSpec({ enDim: d, outDim: Math.max(2, Math.min(d, 13)), hidden: [Math.min(d, 70) + 2] }));
      const params = randomParams(layout, d);
      const { x, residual, target } = batch(layout, 3, d);
      const ref = refLossGrad(layout, params, x, residual, target);
      const tol = 2e-6 * widest(layout);
      setSimdLevel('scalar');
      const scalar = nativeGradient(layout, params, x, residual, target).grad;
      for (const level of simdLevels()) {
        setSimdLevel(level);
        const got = nativeGradient(layout, params, x, residual, target).grad;
        expect(maxAbsDiff(got, ref.grad) / maxAbs(ref.grad), `${level} d=${d}`).toBeLessThan(tol);
        expect(maxAbsDiff(got, scalar) / maxAbs(ref.grad), `${level} d=${d}`).toBeLessThan(tol);
      }
    }
  });
});

describe('native forward', () => {
  it('every level = float64 reference; rows split over threads give the same bits as one row at a time', () => {
    for (const [, spec] of CONFIGS) {
      const layout = paramLayout(spec);
      const params = randomParams(layout, 2);
      const n = 200; // several 64-row chunks
      const { x, residual } = batch(layout, n, 4);
      const ref = refForward(layout, params, x, residual);
      for (const level of simdLevels()) {
        setSimdLevel(level);
        setConcurrency(2);
        const two = nativeForward(layout, params, x, residual);
        setConcurrency(1);
        const one = nativeForward(layout, params, x, residual);
        expect(Array.from(two)).toEqual(Array.from(one));
        expect(maxAbsDiff(one, ref) / maxAbs(ref)).toBeLessThan(2e-6 * widest(layout));
        const D = layout.spec.outDim, k = layout.inputDim;
        for (const r of [0, 63, 64, 199]) {
          const single = nativeForward(layout, params, x.subarray(r * k, (r + 1) * k), residual ? residual.subarray(r * D, (r + 1) * D) : null);
          expect(Array.from(single)).toEqual(Array.from(one.subarray(r * D, (r + 1) * D)));
        }
      }
    }
  });

  it('the train-step loss (no dropout) is mean(1 - cos) of the forward output', () => {
    const layout = paramLayout(CONFIGS[0]![1]);
    const params = randomParams(layout, 1);
    const { x, residual, target } = batch(layout, 9, 1);
    const pred = nativeForward(layout, params, x, residual);
    const D = layout.spec.outDim;
    let want = 0;
    for (let m = 0; m < 9; m++) {
      let d = 0, a = 0, b = 0;
      for (let j = 0; j < D; j++) {
        d += pred[m * D + j]! * target[m * D + j]!;
        a += pred[m * D + j]! ** 2;
        b += target[m * D + j]! ** 2;
      }
      want += (1 - d / Math.sqrt(a * b)) / 9;
    }
    const loss = nativeTrainStep(layout, params.slice(), new Float32Array(layout.size), new Float32Array(layout.size), x, residual, target, { step: 1, lr: 1e-3, weightDecay: 0 });
    expect(loss).toBeCloseTo(want, 5);
  });
});

describe('native train step (AdamW)', () => {
  // The small net has only partial weight-gradient tiles; the wide one (first layer 137 inputs x
  // 23 outputs) also has full ones, whose AdamW updates the AVX-512 kernels run inside the next
  // tile's loop, plus a row tail and a column tail. Batch 13 is fewer minibatch rows than a
  // tile's queued updates (the rest run after the loop), 33 more.
  it.each([
    ['small', CONFIGS[0]![1], 13],
    ['wide, batch 13', fusionSpec({ enDim: 130, outDim: 7, hidden: [23, 9] }), 13],
    ['wide, batch 33', fusionSpec({ enDim: 130, outDim: 7, hidden: [23, 9] }), 33],
  ] as const)('equals torch-style AdamW (float64) applied to the native gradient, on every level (%s)', (_name, spec, bs) => {
    const layout = paramLayout(spec);
    for (const level of simdLevels()) {
      setSimdLevel(level);
      const params = randomParams(layout, 3);
      const m = new Float32Array(layout.size), v = new Float32Array(layout.size);
      const p64 = Float64Array.from(params), m64 = new Float64Array(layout.size), v64 = new Float64Array(layout.size);
      const lr = 1e-2, wd = 0.05;
      for (let step = 1; step <= 3; step++) {
        const { x, residual, target } = batch(layout, bs, 50 + step);
        const opts = { dropout: 0.2, dropoutSeed: 77, step };
        const { grad, loss } = nativeGradient(layout, params, x, residual, target, opts);
        const l2 = nativeTrainStep(layout, params, m, v, x, residual, target, { ...opts, lr, weightDecay: wd });
        expect(l2).toBe(loss);
        refAdamW(p64, m64, v64, grad, step, lr, wd);
        // Restart the float64 state from float32 values, so only one step's rounding counts.
        for (let i = 0; i < layout.size; i++) {
          expect(Math.abs(params[i]! - p64[i]!), `${level} step ${step} param ${i}`).toBeLessThan(4e-7 * Math.abs(p64[i]!) + 2e-5 * lr);
          p64[i] = params[i]!;
          m64[i] = m[i]!;
          v64[i] = v[i]!;
        }
      }
    }
  });

  it('same seed -> bit-identical params after 25 steps with dropout; 1 and 2 threads agree bit for bit', () => {
    const layout = paramLayout(fusionSpec({ enDim: 40, outDim: 11, hidden: [64, 32], dropout: 0.1 }));
    const run = (threads: number) => {
      setConcurrency(threads);
      const params = randomParams(layout, 4);
      const m = new Float32Array(layout.size), v = new Float32Array(layout.size);
      for (let step = 1; step <= 25; step++) {
        const { x, residual, target } = batch(layout, 32, step);
        nativeTrainStep(layout, params, m, v, x, residual, target, { step, lr: 3e-3, weightDecay: 1e-4, dropout: 0.1, dropoutSeed: 5 });
      }
      return params;
    };
    for (const level of simdLevels()) {
      setSimdLevel(level);
      const a = run(1), b = run(1), c = run(2);
      expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
      expect(Buffer.from(a.buffer).equals(Buffer.from(c.buffer))).toBe(true);
    }
  });

  it('a few hundred steps on a learnable task reduce the loss (fusion and baseline)', () => {
    setSimdLevel(initialLevel);
    for (const spec of [fusionSpec({ enDim: 24, outDim: 8, hidden: [32, 16] }), baselineSpec({ enDim: 24, outDim: 8, hidden: [40, 20, 12] })]) {
      const layout = paramLayout(spec);
      const D = 8, K = 24, n = 512;
      const A = randn(D * K, 99);
      const x = randn(n * layout.inputDim, 98);
      const target = new Float32Array(n * D);
      for (let r = 0; r < n; r++) {
        for (let j = 0; j < D; j++) {
          let s = 0;
          for (let i = 0; i < K; i++) s += A[j * K + i]! * x[r * layout.inputDim + i]!;
          target[r * D + j] = Math.tanh(s / 3);
        }
      }
      const residual = spec.kind === 'fusion' ? randn(n * D, 97).map((e, i) => 0.5 * target[i]! + 0.5 * e) : null;
      if (residual) for (let r = 0; r < n; r++) x.set(residual.subarray(r * D, (r + 1) * D), r * layout.inputDim + K);
      const params = randomParams(layout, 1);
      const m = new Float32Array(layout.size), v = new Float32Array(layout.size);
      const losses: number[] = [];
      let step = 0;
      for (let epoch = 0; epoch < 20; epoch++) {
        let sum = 0;
        for (let r = 0; r < n; r += 32) {
          step++;
          sum += nativeMlpBackend.trainStep(layout, params, m, v, step, 3e-3, 1e-4,
            x.subarray(r * layout.inputDim, (r + 32) * layout.inputDim), residual ? residual.subarray(r * D, (r + 32) * D) : null,
            target.subarray(r * D, (r + 32) * D), 0.05, 1);
        }
        losses.push(sum / (n / 32));
      }
      expect(step).toBe(320);
      expect(losses.at(-1)!).toBeLessThan(0.5 * losses[0]!);
    }
  });
});

describe('bad input never crashes', () => {
  const layout = paramLayout(CONFIGS[0]![1]);
  const params = randomParams(layout, 1);
  const m = new Float32Array(layout.size), v = new Float32Array(layout.size);
  const { x, residual, target } = batch(layout, 4, 1);
  const ok = { step: 1, lr: 1e-3, weightDecay: 0.01 };
  const expectError = (fn: () => unknown, ctor: typeof TypeError | typeof RangeError, code: string, msg?: RegExp) => {
    let caught: unknown;
    try {
      fn();
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(ctor);
    expect((caught as { code: string }).code).toBe(code);
    if (msg) expect((caught as Error).message).toMatch(msg);
    return caught as Error & { row?: number };
  };

  it('wrapper: kinds, lengths, ranges and NaN rows', () => {
    expectError(() => nativeTrainStep(layout, Float64Array.from(params) as never, m, v, x, residual, target, ok), TypeError, 'RAPM_TYPE');
    expectError(() => nativeTrainStep(layout, params, m, v, Array.from(x) as never, residual, target, ok), TypeError, 'RAPM_TYPE');
    expectError(() => nativeTrainStep(layout, params, m, v, x, null, target, ok), TypeError, 'RAPM_TYPE');
    expectError(() => nativeTrainStep(layout, params.subarray(1), m, v, x, residual, target, ok), RangeError, 'RAPM_SHAPE_MISMATCH');
    expectError(() => nativeTrainStep(layout, params, m, v, x.subarray(1), residual, target, ok), RangeError, 'RAPM_SHAPE_MISMATCH');
    expectError(() => nativeTrainStep(layout, params, m, v, x, residual, target.subarray(7), ok), RangeError, 'RAPM_SHAPE_MISMATCH');
    for (const lr of [0, -1, 2, NaN, Infinity]) expectError(() => nativeTrainStep(layout, params, m, v, x, residual, target, { ...ok, lr }), RangeError, 'RAPM_INVALID_ARG', /lr/);
    for (const weightDecay of [-0.1, 1.5, NaN]) expectError(() => nativeTrainStep(layout, params, m, v, x, residual, target, { ...ok, weightDecay }), RangeError, 'RAPM_INVALID_ARG', /weightDecay/);
    expectError(() => nativeTrainStep(layout, params, m, v, x, residual, target, { ...ok, step: 0 }), RangeError, 'RAPM_INVALID_ARG');
    expectError(() => nativeTrainStep(layout, params, m, v, x, residual, target, { ...ok, dropout: 1 }), RangeError, 'RAPM_INVALID_ARG');
    const bad = x.slice();
    bad[2 * layout.inputDim + 3] = NaN;
    const before = params.slice();
    const e = expectError(() => nativeTrainStep(layout, params, m, v, bad, residual, target, ok), RangeError, 'RAPM_NON_FINITE', /x row 2/);
    expect(e.row).toBe(2);
    expect(e.stack).toContain('mlp.test.ts');
    expect(Array.from(params)).toEqual(Array.from(before)); // nothing applied
    const badT = target.slice();
    badT[3 * 7] = Infinity;
    expectError(() => nativeTrainStep(layout, params, m, v, x, residual, badT, ok), RangeError, 'RAPM_NON_FINITE', /target row 3/);
    expectError(() => nativeForward(layout, params, bad, residual), RangeError, 'RAPM_NON_FINITE', /x row 2/);
    expectError(() => nativeForward(layout, params, x, residual, new Float32Array(3)), RangeError, 'RAPM_SHAPE_MISMATCH');
  });

  it('raw binding: the native side re-checks kinds, lengths, spec and ranges', () => {
    const b = loadBinding();
    const spec = encodeMlpSpec(layout);
    const args = () => [spec, params.slice(), m.slice(), v.slice(), 1, 1e-3, 0, x, residual, target, 0, 0] as unknown[];
    const call = (a: unknown[]) => () => (b.mlpTrainStep as (...z: unknown[]) => number)(...a);
    const with_ = (i: number, val: unknown) => {
      const a = args();
      a[i] = val;
      return call(a);
    };
    expect(typeof call(args())()).toBe('number');
    expectError(with_(0, new Float32Array(8)), TypeError, 'RAPM_TYPE');
    expectError(with_(0, Int32Array.from([0, 0, 1, 26, 2, 17])), RangeError, 'RAPM_SHAPE_MISMATCH');
    expectError(with_(0, Int32Array.from([5, 0, 1, 26, 1, 7])), RangeError, 'RAPM_INVALID_ARG');
    expectError(with_(0, Int32Array.from([0, 0, 1, 0, 1, 7])), RangeError, 'RAPM_INVALID_ARG');
    expectError(with_(1, new Float64Array(layout.size)), TypeError, 'RAPM_TYPE');
    expectError(with_(2, new Float32Array(layout.size + 1)), RangeError, 'RAPM_SHAPE_MISMATCH');
    expectError(with_(4, 0), RangeError, 'RAPM_INVALID_ARG');
    expectError(with_(4, 'one'), TypeError, 'RAPM_TYPE');
    expectError(with_(5, -1), RangeError, 'RAPM_INVALID_ARG');
    expectError(with_(5, NaN), RangeError, 'RAPM_INVALID_ARG');
    expectError(with_(6, 3), RangeError, 'RAPM_INVALID_ARG');
    expectError(with_(7, x.subarray(3)), RangeError, 'RAPM_SHAPE_MISMATCH');
    expectError(with_(7, new Float32Array(0)), RangeError, 'RAPM_SHAPE_MISMATCH');
    expectError(with_(8, null), TypeError, 'RAPM_TYPE');
    expectError(with_(9, target.subarray(1)), RangeError, 'RAPM_SHAPE_MISMATCH');
    expectError(with_(10, 1), RangeError, 'RAPM_INVALID_ARG');
    expectError(with_(11, -1), RangeError, 'RAPM_INVALID_ARG');
    const a = args();
    a[2] = a[1];
    expectError(call(a), RangeError, 'RAPM_INVALID_ARG');
    expectError(() => (b.mlpForward as (...z: unknown[]) => void)(spec, params, x, residual), TypeError, 'RAPM_TYPE');
    const baseSpec = encodeMlpSpec(paramLayout(CONFIGS[1]![1]));
    expectError(() => (b.mlpForward as (...z: unknown[]) => void)(baseSpec, new Float32Array(b.mlpParamCount(baseSpec)), new Float32Array(21), new Float32Array(5), new Float32Array(5)), TypeError, 'RAPM_TYPE');
  });
});
