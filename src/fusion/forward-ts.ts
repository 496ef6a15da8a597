import { RapmRangeError } from '../errors.js';
import { checkFinite, checkMatrix } from '../validate.js';
import { LAYER_NORM_EPS, type Activation, type ParamLayout } from './layout.js';

/**
 * A plain TypeScript forward pass of the layout.ts networks (inference: no dropout).
 * It is the reference the ONNX export and the native forward are tested against, and a
 * fallback for tiny inputs. Parameters, inputs and every intermediate activation are
 * float32 (stored in Float32Array); dot products, LayerNorm statistics and GELU are
 * computed in float64 and rounded once, so the reference is at least as accurate as any
 * float32 implementation it is compared with.
 */
export interface ForwardResult {
  /** [n, outDim] the prediction: prior + delta (fusion) or the net output (baseline). */
  pred: Float32Array;
  /** [n, outDim] pred - prior: the net output (fusion) or the difference (baseline). */
  delta: Float32Array;
}

const SQRT1_2 = Math.SQRT1_2;
const TWO_OVER_SQRT_PI = 2 / Math.sqrt(Math.PI);
const INV_SQRT_PI = 1 / Math.sqrt(Math.PI);

/** erf(x) to ~1e-15 absolute: Maclaurin series for |x| < 2.5, erfc continued fraction above. */
export function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const ax = Math.abs(x);
  if (ax < 2.5) {
    const x2 = x * x;
    let term = x; // x^(2n+1) (-1)^n / n!
    let sum = x;
    for (let n = 1; n < 200; n++) {
      term *= -x2 / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return TWO_OVER_SQRT_PI * sum;
  }
  if (ax > 6) return Math.sign(x); // erfc(6) ~ 2e-17
  // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))), evaluated backwards.
  let f = ax;
  for (let k = 80; k >= 1; k--) f = ax + k / 2 / f;
  const erfc = (Math.exp(-ax * ax) * INV_SQRT_PI) / f;
  return Math.sign(x) * (1 - erfc);
}

/** Exact GELU, x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)). */
export function gelu(x: number): number {
  return 0.5 * x * (1 + erf(x * SQRT1_2));
}

function activate(a: Float32Array, act: Activation): void {
  if (act === 'relu') {
    for (let i = 0; i < a.length; i++) if (!(a[i]! > 0)) a[i] = 0;
  } else {
    for (let i = 0; i < a.length; i++) a[i] = gelu(a[i]!);
  }
}

/**
 * Run the network described by `layout` on `n` rows.
 * `en` [n, enDim], `prior` [n, outDim]. The baseline ignores `prior` except to form `delta`.
 */
export function forwardMlp(layout: ParamLayout, params: Float32Array, en: Float32Array, prior: Float32Array): ForwardResult {
  const spec = layout.spec;
  if (params.length !== layout.size) {
    throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `Expected params of length ${layout.size} (the layout size) but received length ${params.length}`);
  }
  const n = checkMatrix('en', en, spec.enDim);
  checkMatrix('prior', prior, spec.outDim, n);
  checkFinite('en', en, spec.enDim);
  checkFinite('prior', prior, spec.outDim);

  let x: Float32Array;
  if (spec.kind === 'fusion') {
    x = new Float32Array(n * layout.inputDim);
    for (let r = 0; r < n; r++) {
      x.set(en.subarray(r * spec.enDim, (r + 1) * spec.enDim), r * layout.inputDim);
      x.set(prior.subarray(r * spec.outDim, (r + 1) * spec.outDim), r * layout.inputDim + spec.enDim);
    }
  } else {
    x = en;
  }

  layout.layers.forEach((L, l) => {
    const z = new Float32Array(n * L.out);
    for (let r = 0; r < n; r++) {
      const xo = r * L.in;
      for (let o = 0; o < L.out; o++) {
        const wo = L.w + o * L.in;
        let s = params[L.b + o]!;
        for (let i = 0; i < L.in; i++) s += x[xo + i]! * params[wo + i]!;
        z[r * L.out + o] = s;
      }
    }
    const hidden = l < layout.layers.length - 1;
    if (hidden) {
      if (L.gamma >= 0) {
        for (let r = 0; r < n; r++) {
          const row = z.subarray(r * L.out, (r + 1) * L.out);
          let mean = 0;
          for (let i = 0; i < L.out; i++) mean += row[i]!;
          mean /= L.out;
          let v = 0;
          for (let i = 0; i < L.out; i++) v += (row[i]! - mean) ** 2;
          const inv = 1 / Math.sqrt(v / L.out + LAYER_NORM_EPS);
          for (let i = 0; i < L.out; i++) row[i] = (row[i]! - mean) * inv * params[L.gamma + i]! + params[L.beta + i]!;
        }
      }
      activate(z, spec.activation);
    }
    x = z;
  });

  const out = x;
  const pred = new Float32Array(n * spec.outDim);
  const delta = new Float32Array(n * spec.outDim);
  if (spec.kind === 'fusion') {
    delta.set(out);
    for (let i = 0; i < pred.length; i++) pred[i] = prior[i]! + out[i]!;
  } else {
    pred.set(out);
    for (let i = 0; i < pred.length; i++) delta[i] = out[i]! - prior[i]!;
  }
  return { pred, delta };
}
