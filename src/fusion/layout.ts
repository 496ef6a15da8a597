import { RapmRangeError } from '../errors.js';
import { Rng } from '../rng.js';
import { checkInteger } from '../validate.js';

/**
 * The two networks rapm trains, described by one spec, and the layout of their
 * parameters in one TypeScript-owned Float32Array (the "arena"). Native training,
 * ONNX export and checkpoints all read the arena through this offset table: nothing
 * is copied between them.
 *
 * Layer l (0 <= l < L, L = hidden.length + 1) maps in_l -> out_l:
 *   z = x W_l^T + b_l                       W_l [out_l, in_l] row-major (PyTorch Linear), b_l [out_l]
 *   hidden layers: z = LayerNorm(z) * gamma_l + beta_l   (when layerNorm; eps 1e-5)
 *                  a = GELU(z) (exact, erf form) | ReLU(z); dropout(p) while training
 * Fusion (eq. 2):  input = concat[x_en (1024), prior (dv)], pred = prior + out
 * Baseline MLP:    input = x_en (1024),                      pred = out
 * Loss: mean over the batch of 1 - cos(pred, target).
 *
 * Arena order: W_0, b_0, [gamma_0, beta_0], W_1, b_1, [gamma_1, beta_1], ..., W_{L-1}, b_{L-1}.
 */
export type MlpKind = 'fusion' | 'baseline';
export type Activation = 'gelu' | 'relu';

export interface MlpSpec {
  kind: MlpKind;
  /** Width of x_en (1024 for HuBERT-large features). */
  enDim: number;
  /** Width of the prior and of the output (101 spanish_winners dims). */
  outDim: number;
  hidden: number[];
  activation: Activation;
  layerNorm: boolean;
  /** Dropout probability after each hidden activation, while training. */
  dropout: number;
}

export interface LayerOffsets {
  in: number;
  out: number;
  w: number;
  b: number;
  gamma: number; // -1 when the layer has no LayerNorm
  beta: number;
}

export interface ParamLayout {
  spec: MlpSpec;
  /** Width of the network input: enDim + outDim for fusion, enDim for the baseline. */
  inputDim: number;
  layers: LayerOffsets[];
  /** Total parameters (the arena length). */
  size: number;
}

export const LAYER_NORM_EPS = 1e-5;

/** The fusion net of the system description: 1125 -> 256 -> 128 -> 101, LayerNorm + GELU. */
export function fusionSpec(over: Partial<Omit<MlpSpec, 'kind'>> = {}): MlpSpec {
  return checkSpec({ kind: 'fusion', enDim: 1024, outDim: 101, hidden: [256, 128], activation: 'gelu', layerNorm: true, dropout: 0, ...over });
}

/** The official baseline: 1024 -> 500 -> 250 -> 125 -> 101 with ReLU, no prior. */
export function baselineSpec(over: Partial<Omit<MlpSpec, 'kind'>> = {}): MlpSpec {
  return checkSpec({ kind: 'baseline', enDim: 1024, outDim: 101, hidden: [500, 250, 125], activation: 'relu', layerNorm: false, dropout: 0, ...over });
}

export function checkSpec(spec: MlpSpec): MlpSpec {
  if (spec.kind !== 'fusion' && spec.kind !== 'baseline') throw new RapmRangeError('RAPM_INVALID_ARG', `Expected kind 'fusion' or 'baseline' but received ${String(spec.kind)}`);
  checkInteger('enDim', spec.enDim, 1, 1 << 16);
  checkInteger('outDim', spec.outDim, 1, 1 << 16);
  if (!Array.isArray(spec.hidden)) throw new RapmRangeError('RAPM_INVALID_ARG', 'Expected hidden to be an array of layer widths');
  spec.hidden.forEach((h, i) => checkInteger(`hidden[${i}]`, h, 1, 1 << 16));
  if (spec.activation !== 'gelu' && spec.activation !== 'relu') throw new RapmRangeError('RAPM_INVALID_ARG', `Expected activation 'gelu' or 'relu' but received ${String(spec.activation)}`);
  if (!(spec.dropout >= 0 && spec.dropout < 1)) throw new RapmRangeError('RAPM_INVALID_ARG', `Expected dropout in [0, 1) but received ${String(spec.dropout)}`);
  return { ...spec, hidden: [...spec.hidden] };
}

export function paramLayout(spec: MlpSpec): ParamLayout {
  const inputDim = spec.kind === 'fusion' ? spec.enDim + spec.outDim : spec.enDim;
  const dims = [inputDim, ...spec.hidden, spec.outDim];
  const layers: LayerOffsets[] = [];
  let at = 0;
  for (let l = 0; l + 1 < dims.length; l++) {
    const i = dims[l]!, o = dims[l + 1]!;
    const hiddenLayer = l + 2 < dims.length;
    const w = at;
    at += i * o;
    const b = at;
    at += o;
    let gamma = -1, beta = -1;
    if (hiddenLayer && spec.layerNorm) {
      gamma = at;
      at += o;
      beta = at;
      at += o;
    }
    layers.push({ in: i, out: o, w, b, gamma, beta });
  }
  return { spec, inputDim, layers, size: at };
}

/**
 * PyTorch's default initialisation, seeded: W, b ~ U(-1/sqrt(in), 1/sqrt(in)); gamma 1,
 * beta 0. The fusion net's last Linear is zero, so training starts at pred = prior.
 */
export function initParams(layout: ParamLayout, seed: number): Float32Array {
  const p = new Float32Array(layout.size);
  const rng = new Rng(seed, 7);
  layout.layers.forEach((L, l) => {
    const last = l === layout.layers.length - 1;
    if (!(last && layout.spec.kind === 'fusion')) {
      const bound = 1 / Math.sqrt(L.in);
      for (let i = 0; i < L.in * L.out; i++) p[L.w + i] = (rng.next() * 2 - 1) * bound;
      for (let i = 0; i < L.out; i++) p[L.b + i] = (rng.next() * 2 - 1) * bound;
    }
    if (L.gamma >= 0) p.fill(1, L.gamma, L.gamma + L.out);
  });
  return p;
}
