import { RapmError, RapmRangeError, RapmTypeError, describe } from '../errors.js';
import { loadBinding, nativeError } from '../native/binding.js';
import { checkInteger, checkMatrix } from '../validate.js';
import type { ParamLayout } from './layout.js';
import type { MlpBackend, MlpData } from './train.js';

/**
 * Typed wrapper over the native MLP entry points (native/mlp_wrap.cpp): one synchronous
 * crossing per minibatch. Arguments are validated here (kinds, lengths, ranges); the native
 * side re-checks kinds and lengths and scans x/residual/target for NaN or Infinity (it
 * reports the first bad row as a RangeError with code RAPM_NON_FINITE and `.row`).
 *
 * Spec encoding (Int32Array), shared with native/core/mlp.h:
 *   [kind (0 fusion, 1 baseline), activation (0 gelu, 1 relu), layerNorm (0/1),
 *    inputDim, nLayers, out_0, ..., out_{nLayers-1}]
 * with out_{nLayers-1} = outDim; the native side derives the arena offsets exactly as
 * paramLayout() does (checked once per layout against layout.size).
 *
 * Dropout masks come from a counter-based hash of (dropoutSeed, step, layer, row, unit), so a
 * step is bit-reproducible for a given SIMD level, whatever the thread count.
 */

const specs = new WeakMap<ParamLayout, Int32Array>();

export function encodeMlpSpec(layout: ParamLayout): Int32Array {
  let spec = specs.get(layout);
  if (spec) return spec;
  const s = layout.spec;
  spec = Int32Array.from([
    s.kind === 'fusion' ? 0 : 1,
    s.activation === 'gelu' ? 0 : 1,
    s.layerNorm ? 1 : 0,
    layout.inputDim,
    layout.layers.length,
    ...layout.layers.map((l) => l.out),
  ]);
  const native = loadBinding().mlpParamCount(spec);
  if (native !== layout.size) {
    throw new RapmError('RAPM_NATIVE', `The native MLP arena has ${native} parameters but layout.ts says ${layout.size}; rebuild the addon`);
  }
  specs.set(layout, spec);
  return spec;
}

function checkArena(name: string, v: unknown, size: number): Float32Array {
  if (!(v instanceof Float32Array)) throw new RapmTypeError('RAPM_TYPE', `Expected Float32Array for ${name} but received ${describe(v)}`);
  if (v.length !== size) {
    throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `Expected ${name} of length ${size} (the parameter arena) but received length ${v.length}`);
  }
  return v;
}

function checkReal(name: string, v: unknown, lo: number, hi: number, loOpen: boolean): number {
  if (typeof v !== 'number') throw new RapmTypeError('RAPM_TYPE', `Expected number for ${name} but received ${describe(v)}`);
  if (!Number.isFinite(v) || v > hi || (loOpen ? v <= lo : v < lo)) {
    throw new RapmRangeError('RAPM_INVALID_ARG', `Expected finite number in ${loOpen ? '(' : '['}${lo}, ${hi}] for ${name} but received ${describe(v)}`);
  }
  return v;
}

/** Rows of x and the matching residual/target checks; returns the row count. */
function checkBatch(layout: ParamLayout, x: unknown, residual: unknown, target: unknown | undefined, minRows: number): number {
  const rows = checkMatrix('x', x, layout.inputDim);
  if (rows < minRows) throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `Expected at least ${minRows} row(s) in x but received ${rows}`);
  if (layout.spec.kind === 'fusion') {
    if (residual === null || residual === undefined) {
      throw new RapmTypeError('RAPM_TYPE', `Expected Float32Array for residual (the fusion net adds the prior) but received ${describe(residual)}`);
    }
    checkMatrix('residual', residual, layout.spec.outDim, rows);
  } else if (residual !== null && residual !== undefined) {
    throw new RapmTypeError('RAPM_TYPE', `Expected null for residual (the baseline net has no prior) but received ${describe(residual)}`);
  }
  if (target !== undefined) checkMatrix('target', target, layout.spec.outDim, rows);
  return rows;
}

export interface MlpStepOptions {
  /** 1-based AdamW step (bias correction; also keys the dropout stream). */
  step: number;
  /** Learning rate in (0, 1]. */
  lr: number;
  /** Decoupled weight decay in [0, 1]. */
  weightDecay: number;
  /** Dropout probability after each hidden activation, in [0, 0.99]; default 0. */
  dropout?: number;
  /** Dropout seed, an integer in [0, 2^32); default 0. */
  dropoutSeed?: number;
}

function checkStep(o: MlpStepOptions) {
  return {
    step: checkInteger('step', o.step, 1, 2 ** 31 - 1),
    lr: checkReal('lr', o.lr, 0, 1, true),
    weightDecay: checkReal('weightDecay', o.weightDecay, 0, 1, false),
    dropout: checkReal('dropout', o.dropout ?? 0, 0, 0.99, false),
    dropoutSeed: checkInteger('dropoutSeed', o.dropoutSeed ?? 0, 0, 2 ** 32 - 1),
  };
}

/**
 * One minibatch: forward, loss = mean(1 - cos(pred, target)), backward, AdamW (beta 0.9/0.999,
 * eps 1e-8, decoupled decay) on params/adamM/adamV in place. Returns the loss before the update.
 */
export function nativeTrainStep(
  layout: ParamLayout,
  params: Float32Array,
  adamM: Float32Array,
  adamV: Float32Array,
  x: Float32Array, // [bs, inputDim]
  residual: Float32Array | null, // [bs, outDim]
  target: Float32Array, // [bs, outDim]
  options: MlpStepOptions,
): number {
  const spec = encodeMlpSpec(layout);
  checkArena('params', params, layout.size);
  checkArena('adamM', adamM, layout.size);
  checkArena('adamV', adamV, layout.size);
  const o = checkStep(options);
  checkBatch(layout, x, residual, target, 1);
  try {
    return loadBinding().mlpTrainStep(spec, params, adamM, adamV, o.step, o.lr, o.weightDecay, x, residual, target, o.dropout, o.dropoutSeed);
  } catch (e) {
    throw nativeError(e, new Error().stack);
  }
}

/** Inference (no dropout): out [n, outDim] = residual + net(x) (fusion) or net(x); rows split over the pool. */
export function nativeForward(
  layout: ParamLayout,
  params: Float32Array,
  x: Float32Array, // [n, inputDim]
  residual: Float32Array | null, // [n, outDim]
  out?: Float32Array, // [n, outDim]
): Float32Array {
  const spec = encodeMlpSpec(layout);
  checkArena('params', params, layout.size);
  const n = checkBatch(layout, x, residual, undefined, 1);
  const dst = out ?? new Float32Array(n * layout.spec.outDim);
  checkMatrix('out', dst, layout.spec.outDim, n);
  try {
    loadBinding().mlpForward(spec, params, x, residual, dst);
  } catch (e) {
    throw nativeError(e, new Error().stack);
  }
  return dst;
}

export interface MlpEpochOptions extends MlpStepOptions {
  /** Rows per minibatch; the last one of the epoch takes the rest. */
  batchSize: number;
  /**
   * Threads of this epoch: 0 (default) the addon's pool (setConcurrency); t >= 1 a pool of its
   * own with t threads, so several nets can train at once. The result does not depend on it.
   */
  threads?: number;
  /** [2]: [0] rows trained so far (updated after every minibatch); set [1] nonzero to stop early. */
  progress?: Int32Array | null;
}

/**
 * One epoch of minibatches off the JS thread: batch i trains on rows order[i*bs, (i+1)*bs) of
 * `data`, read in place (no copies), AdamW step `step + i`. Bit-identical to gathering each
 * minibatch (gatherInput) and calling {@link nativeTrainStep} with the same steps. Resolves to
 * the sum of the minibatch losses. params/adamM/adamV (and the data) must not change until it
 * settles.
 */
export async function nativeTrainEpoch(
  layout: ParamLayout,
  params: Float32Array,
  adamM: Float32Array,
  adamV: Float32Array,
  data: MlpData,
  order: Int32Array, // [nOrder] rows of data
  options: MlpEpochOptions,
): Promise<number> {
  const spec = encodeMlpSpec(layout);
  checkArena('params', params, layout.size);
  checkArena('adamM', adamM, layout.size);
  checkArena('adamV', adamV, layout.size);
  const o = checkStep(options);
  const fusion = layout.spec.kind === 'fusion';
  const enDim = fusion ? layout.inputDim - layout.spec.outDim : layout.inputDim;
  const n = checkMatrix('en', data.en, enDim);
  if (fusion) {
    if (!(data.prior instanceof Float32Array)) throw new RapmTypeError('RAPM_TYPE', `Expected Float32Array for prior (the fusion net's input and residual) but received ${describe(data.prior)}`);
    checkMatrix('prior', data.prior, layout.spec.outDim, n);
  } else if (data.prior !== null && data.prior !== undefined) {
    throw new RapmTypeError('RAPM_TYPE', `Expected null for prior (the baseline net has no prior) but received ${describe(data.prior)}`);
  }
  checkMatrix('target', data.target, layout.spec.outDim, n);
  if (!(order instanceof Int32Array)) throw new RapmTypeError('RAPM_TYPE', `Expected Int32Array for order but received ${describe(order)}`);
  const batchSize = checkInteger('batchSize', options.batchSize, 1, 65536);
  const threads = checkInteger('threads', options.threads ?? 0, 0, 1024);
  const progress = options.progress ?? null;
  if (progress !== null && !(progress instanceof Int32Array && progress.length === 2)) throw new RapmTypeError('RAPM_TYPE', `Expected an Int32Array of length 2 for progress but received ${describe(progress)}`);
  const out = new Float64Array(1);
  try {
    await loadBinding().mlpTrainEpoch(spec, params, adamM, adamV, o.step, o.lr, o.weightDecay, data.en, fusion ? data.prior : null, data.target, order, batchSize, o.dropout, o.dropoutSeed, threads, out, progress);
  } catch (e) {
    throw nativeError(e, new Error().stack);
  }
  return out[0]!;
}

/**
 * Inference off the JS thread on rows of `data` read in place: out [n, outDim] row m is the net's
 * prediction for row rows[m] (default: every row), the prior added for fusion. Bit-identical to
 * {@link nativeForward} on those rows copied out (concat[en, prior] and the prior as residual).
 * Values are checked for NaN/Infinity as they are read (RAPM_NON_FINITE naming en or prior and
 * the source row). `threads` 0: the addon's pool; t >= 1 a pool of its own (several nets scoring at
 * once). The arrays must not change until it settles.
 */
export async function nativeForwardRows(
  layout: ParamLayout,
  params: Float32Array,
  data: Pick<MlpData, 'en' | 'prior'>,
  rows: Int32Array | null,
  options: { threads?: number; out?: Float32Array } = {},
): Promise<Float32Array> {
  const spec = encodeMlpSpec(layout);
  checkArena('params', params, layout.size);
  const fusion = layout.spec.kind === 'fusion';
  const src = checkMatrix('en', data.en, layout.spec.enDim);
  if (fusion) {
    if (!(data.prior instanceof Float32Array)) throw new RapmTypeError('RAPM_TYPE', `Expected Float32Array for prior (the fusion net's input and residual) but received ${describe(data.prior)}`);
    checkMatrix('prior', data.prior, layout.spec.outDim, src);
  } else if (data.prior !== null && data.prior !== undefined) {
    throw new RapmTypeError('RAPM_TYPE', `Expected null for prior (the baseline net has no prior) but received ${describe(data.prior)}`);
  }
  if (rows !== null && !(rows instanceof Int32Array)) throw new RapmTypeError('RAPM_TYPE', `Expected an Int32Array of rows or null but received ${describe(rows)}`);
  const n = rows ? rows.length : src;
  const out = options.out ?? new Float32Array(n * layout.spec.outDim);
  checkMatrix('out', out, layout.spec.outDim, n);
  const threads = checkInteger('threads', options.threads ?? 0, 0, 1024);
  if (n === 0) return out;
  try {
    await loadBinding().mlpForwardRows(spec, params, data.en, fusion ? data.prior : null, rows, out, threads);
  } catch (e) {
    throw nativeError(e, new Error().stack);
  }
  return out;
}

export interface MlpGradientResult {
  loss: number;
  /** [layout.size] dLoss/dparams, in arena order. */
  grad: Float32Array;
}

/** The full gradient of one minibatch without any update (checks and diagnostics). */
export function nativeGradient(
  layout: ParamLayout,
  params: Float32Array,
  x: Float32Array, // [bs, inputDim]
  residual: Float32Array | null, // [bs, outDim]
  target: Float32Array, // [bs, outDim]
  options: { dropout?: number; dropoutSeed?: number; step?: number } = {},
): MlpGradientResult {
  const spec = encodeMlpSpec(layout);
  checkArena('params', params, layout.size);
  const o = checkStep({ step: options.step ?? 1, lr: 1, weightDecay: 0, dropout: options.dropout, dropoutSeed: options.dropoutSeed });
  checkBatch(layout, x, residual, target, 1);
  const grad = new Float32Array(layout.size);
  try {
    const loss = loadBinding()._mlpGradient(spec, params, x, residual, target, o.dropout, o.dropoutSeed, o.step, grad);
    return { loss, grad };
  } catch (e) {
    throw nativeError(e, new Error().stack);
  }
}

/** The native engine as the trainer's backend (src/fusion/train.ts). */
export const nativeMlpBackend: MlpBackend = {
  trainStep(layout, params, adamM, adamV, step, lr, weightDecay, x, residual, target, dropout, dropoutSeed) {
    // The trainer's seed may be any integer: the dropout stream takes its low 32 bits.
    const seed = Number.isInteger(dropoutSeed) ? dropoutSeed >>> 0 : dropoutSeed;
    return nativeTrainStep(layout, params, adamM, adamV, x, residual, target, { step, lr, weightDecay, dropout, dropoutSeed: seed });
  },
  forward(layout, params, x, residual, out) {
    nativeForward(layout, params, x, residual, out);
  },
  async forwardRows(layout, params, data, rows, out, threads) {
    await nativeForwardRows(layout, params, data, rows, { out, threads });
  },
  trainEpoch(layout, params, adamM, adamV, step, lr, weightDecay, data, order, batchSize, dropout, dropoutSeed, threads, progress) {
    const seed = Number.isInteger(dropoutSeed) ? dropoutSeed >>> 0 : dropoutSeed;
    return nativeTrainEpoch(layout, params, adamM, adamV, data, order, { step, lr, weightDecay, dropout, dropoutSeed: seed, batchSize, threads, progress });
  },
};
