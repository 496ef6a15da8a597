// Plain-TypeScript float64 reference of the native MLP step (native/core/mlp.cpp): forward,
// loss = mean(1 - cos), backward through Linear / LayerNorm / GELU / ReLU / dropout, and
// AdamW (torch.optim.AdamW semantics). Row by row, no tricks: slow and obviously correct.
import type { ParamLayout } from '../../src/fusion/layout.js';

const EPS_LN = 1e-5;

/** erf to ~1e-15: Maclaurin series below 2.5, erfc continued fraction above. */
export function erf64(x: number): number {
  const ax = Math.abs(x);
  if (ax < 2.5) {
    const x2 = x * x;
    let term = x, sum = x;
    for (let n = 1; n < 200; n++) {
      term *= -x2 / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  if (ax > 6) return Math.sign(x);
  let f = ax;
  for (let k = 80; k >= 1; k--) f = ax + k / 2 / f;
  return Math.sign(x) * (1 - Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f);
}
const cdf = (u: number) => 0.5 * (1 + erf64(u * Math.SQRT1_2));
const pdf = (u: number) => Math.exp(-0.5 * u * u) / Math.sqrt(2 * Math.PI);

function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}
/** The native counter-based dropout stream (mlp_dropout_bits). */
export function dropoutBits(seed: number, step: number, layer: number, row: number, col: number): number {
  const k = mix32(mix32(mix32(seed ^ 0x9e3779b9) ^ step) ^ layer);
  return mix32(mix32(k ^ row) ^ col);
}
export function dropoutThreshold(p: number): number {
  return Math.max(0, Math.min(4294967295, Math.floor(p * 4294967296)));
}

export interface RefOptions {
  dropout?: number;
  dropoutSeed?: number;
  step?: number;
}

export interface RefResult {
  loss: number;
  /** [size] */
  grad: Float64Array;
  /** [bs, outDim] */
  pred: Float64Array;
}

/** Loss and gradient of one minibatch in float64. */
export function refLossGrad(
  layout: ParamLayout,
  params: ArrayLike<number>,
  x: ArrayLike<number>, // [bs, inputDim]
  residual: ArrayLike<number> | null, // [bs, outDim]
  target: ArrayLike<number>, // [bs, outDim]
  opts: RefOptions = {},
): RefResult {
  const { spec, inputDim, layers } = layout;
  const D = spec.outDim;
  const bs = x.length / inputDim;
  const p = opts.dropout ?? 0, seed = opts.dropoutSeed ?? 0, step = opts.step ?? 1;
  const thr = dropoutThreshold(p), scale = 1 / (1 - p);
  const grad = new Float64Array(layout.size);
  const pred = new Float64Array(bs * D);
  const L = layers.length;
  let loss = 0;
  for (let m = 0; m < bs; m++) {
    // forward, keeping what the backward needs
    const inputs: Float64Array[] = [];
    const cache: { xhat?: Float64Array; rstd?: number; y?: Float64Array; mask?: Float64Array }[] = [];
    let a = Float64Array.from({ length: inputDim }, (_, j) => x[m * inputDim + j]!);
    let z = a;
    for (let l = 0; l < L; l++) {
      const ly = layers[l]!;
      inputs.push(a);
      z = new Float64Array(ly.out);
      for (let o = 0; o < ly.out; o++) {
        let s = 0;
        for (let i = 0; i < ly.in; i++) s += params[ly.w + o * ly.in + i]! * a[i]!;
        z[o] = s + params[ly.b + o]!;
      }
      if (l + 1 === L) break;
      const c: (typeof cache)[number] = {};
      let y = z;
      if (ly.gamma >= 0) {
        let mu = 0;
        for (let o = 0; o < ly.out; o++) mu += z[o]!;
        mu /= ly.out;
        let v = 0;
        for (let o = 0; o < ly.out; o++) v += (z[o]! - mu) ** 2;
        v /= ly.out;
        c.rstd = 1 / Math.sqrt(v + EPS_LN);
        c.xhat = z.map((zz) => (zz - mu) * c.rstd!);
        y = c.xhat.map((xh, o) => xh * params[ly.gamma + o]! + params[ly.beta + o]!);
      }
      c.y = y;
      const act = y.map((u) => (spec.activation === 'gelu' ? u * cdf(u) : Math.max(u, 0)));
      if (p > 0) {
        c.mask = new Float64Array(ly.out);
        for (let o = 0; o < ly.out; o++) c.mask[o] = dropoutBits(seed, step, l, m, o) >= thr ? scale : 0;
        for (let o = 0; o < ly.out; o++) act[o]! *= c.mask[o]!;
      }
      cache.push(c);
      a = act;
    }
    // loss
    const pr = new Float64Array(D);
    let dot = 0, pp = 0, tt = 0;
    for (let j = 0; j < D; j++) {
      pr[j] = z[j]! + (residual ? residual[m * D + j]! : 0);
      const t = target[m * D + j]!;
      dot += pr[j]! * t;
      pp += pr[j]! ** 2;
      tt += t * t;
    }
    pred.set(pr, m * D);
    const w12 = pp * tt;
    const den = Math.sqrt(Math.max(w12, 1e-16));
    const cos = dot / den;
    loss += (1 - cos) / bs;
    const gs = -1 / bs;
    let dz = new Float64Array(D);
    for (let j = 0; j < D; j++) {
      const t = target[m * D + j]!;
      dz[j] = gs * (t / den - (w12 > 1e-16 ? (cos * pr[j]!) / pp : 0));
    }
    // backward
    for (let l = L - 1; l >= 0; l--) {
      const ly = layers[l]!;
      const ain = inputs[l]!;
      for (let o = 0; o < ly.out; o++) {
        const d = dz[o]!;
        grad[ly.b + o]! += d;
        const row = ly.w + o * ly.in;
        for (let i = 0; i < ly.in; i++) grad[row + i]! += d * ain[i]!;
      }
      if (l === 0) break;
      const prev = layers[l - 1]!;
      const c = cache[l - 1]!;
      const da = new Float64Array(ly.in);
      for (let o = 0; o < ly.out; o++) {
        const d = dz[o]!;
        const row = ly.w + o * ly.in;
        for (let i = 0; i < ly.in; i++) da[i]! += params[row + i]! * d;
      }
      const dy = new Float64Array(ly.in);
      for (let i = 0; i < ly.in; i++) {
        const u = c.y![i]!;
        const g = c.mask ? da[i]! * c.mask[i]! : da[i]!;
        dy[i] = spec.activation === 'gelu' ? g * (cdf(u) + u * pdf(u)) : u > 0 ? g : 0;
      }
      if (prev.gamma >= 0) {
        const n = prev.out;
        const dxh = new Float64Array(n);
        let s1 = 0, s2 = 0;
        for (let i = 0; i < n; i++) {
          grad[prev.gamma + i]! += dy[i]! * c.xhat![i]!;
          grad[prev.beta + i]! += dy[i]!;
          dxh[i] = dy[i]! * params[prev.gamma + i]!;
          s1 += dxh[i]!;
          s2 += dxh[i]! * c.xhat![i]!;
        }
        dz = dxh.map((g, i) => c.rstd! * (g - s1 / n - (c.xhat![i]! * s2) / n));
      } else {
        dz = dy;
      }
    }
  }
  return { loss, grad, pred };
}

/** Forward only (no dropout): [n, outDim]. */
export function refForward(layout: ParamLayout, params: ArrayLike<number>, x: ArrayLike<number>, residual: ArrayLike<number> | null): Float64Array {
  const n = x.length / layout.inputDim;
  return refLossGrad(layout, params, x, residual, new Float64Array(n * layout.spec.outDim).fill(1)).pred;
}

/** torch.optim.AdamW (beta1 0.9, beta2 0.999, eps 1e-8) in float64, in place. */
export function refAdamW(
  params: Float64Array,
  m: Float64Array,
  v: Float64Array,
  grad: ArrayLike<number>,
  step: number,
  lr: number,
  weightDecay: number,
): void {
  const b1 = 0.9, b2 = 0.999, eps = 1e-8;
  const bc1 = 1 - b1 ** step, bc2 = 1 - b2 ** step;
  for (let i = 0; i < params.length; i++) {
    const g = grad[i]!;
    params[i] = params[i]! * (1 - lr * weightDecay);
    m[i] = b1 * m[i]! + (1 - b1) * g;
    v[i] = b2 * v[i]! + (1 - b2) * g * g;
    params[i] = params[i]! - ((lr / bc1) * m[i]!) / (Math.sqrt(v[i]!) / Math.sqrt(bc2) + eps);
  }
}
