import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { Rng } from '../rng.js';
import { RapmRangeError, RapmTypeError, describe, invalidParam } from '../errors.js';
import { rowCosines, mean } from '../eval/cosine.js';
import { checkFinite, checkKnownKeys, checkMatrix, is } from '../validate.js';
import { checkSetting, defaultsOf } from '../settings.js';
import { initParams, paramLayout, type MlpSpec, type ParamLayout } from './layout.js';

/**
 * The arithmetic a trainer needs, one minibatch per call (the native addon implements it;
 * tests may substitute a reference). Matrices are row-major Float32Array.
 */
export interface MlpBackend {
  /** Forward, loss = mean(1 - cos), backward, AdamW update of params/m/v in place; returns the loss. */
  trainStep(
    layout: ParamLayout,
    params: Float32Array,
    adamM: Float32Array,
    adamV: Float32Array,
    step: number, // 1-based AdamW step
    lr: number,
    weightDecay: number,
    x: Float32Array, // [bs, inputDim]
    residual: Float32Array | null, // [bs, outDim] (fusion: the prior)
    target: Float32Array, // [bs, outDim]
    dropout: number,
    dropoutSeed: number,
  ): number;
  /** Inference: out = residual + net(x) (fusion) or net(x). */
  forward(layout: ParamLayout, params: Float32Array, x: Float32Array, residual: Float32Array | null, out: Float32Array): void;
  /**
   * Optional: inference off the JS thread on rows `rows` of `data` (default all) read in place,
   * bit-identical to gathering them (gatherInput) and calling forward; out [rows, outDim].
   * `threads` as in trainEpoch. trainMlp scores its validation rows with it when present.
   * Every array is read in place on other threads until the promise settles: keep them attached
   * (not transferred) and unmodified until then (trainMlp passes copies of the caller's rows).
   */
  forwardRows?(layout: ParamLayout, params: Float32Array, data: MlpData, rows: Int32Array | null, out: Float32Array, threads: number): Promise<void>;
  /**
   * Optional: a whole epoch off the JS thread, bit-identical to gathering each minibatch of
   * `order` (gatherInput) and calling trainStep with steps step, step + 1, ...; resolves to the
   * sum of the minibatch losses. `threads` 0: the backend's shared pool; t >= 1: t threads of
   * its own (several nets train at once). progress [2]: [0] rows done (backend writes), [1]
   * nonzero asks it to stop early. trainMlp uses it when present. Arrays as in forwardRows:
   * read in place on other threads until the promise settles.
   */
  trainEpoch?(
    layout: ParamLayout,
    params: Float32Array,
    adamM: Float32Array,
    adamV: Float32Array,
    step: number,
    lr: number,
    weightDecay: number,
    data: MlpData,
    order: Int32Array,
    batchSize: number,
    dropout: number,
    dropoutSeed: number,
    threads: number,
    progress: Int32Array | null,
  ): Promise<number>;
}

/** Training or evaluation rows: EN vectors, their priors (fusion) and targets. */
export interface MlpData {
  en: Float32Array; // [n, enDim]
  prior: Float32Array | null; // [n, outDim]; required for fusion
  target: Float32Array; // [n, outDim]
}

export interface TrainOptions {
  // Defaults: TRAIN_DEFAULTS, i.e. the settings of the same name (src/settings.ts). The numbers
  // below repeat them for the reader; test/fusion/train-docs.test.ts checks that they agree.
  /** Maximum epochs. Default 100 (the epochs setting). */
  epochs?: number;
  /** Minibatch rows. Default 32 (the batchSize setting). */
  batchSize?: number;
  /** AdamW learning rate. Default 1e-3 (the lr setting). */
  lr?: number;
  /** AdamW decoupled weight decay. Default 1e-4 (the weightDecay setting). */
  weightDecay?: number;
  /** Stop after this many epochs without a better validation cosine. Default 5 (the patience setting). */
  patience?: number;
  /** An improvement smaller than this does not reset patience. Default 0. */
  minDelta?: number;
  /** Seeds initialisation, shuffling and dropout masks. Default 1 (the seed setting). */
  seed?: number;
  /** Called after every epoch. */
  onEpoch?: (e: EpochStats) => void;
  /** Called after every minibatch with (samples done this epoch, samples per epoch). */
  onStep?: (done: number, total: number) => void;
  /** Abort between minibatches. */
  signal?: AbortSignal;
  /**
   * Start from these parameters (a warm start: fine-tune a net trained before on the same
   * layout) instead of a fresh seeded initialisation. Copied, never modified. AdamW moments
   * start at zero either way.
   */
  init?: Float32Array | null;
  /**
   * Give the event loop a turn when this many milliseconds have passed since the last one
   * (checked after every minibatch). 0: a turn after every minibatch. Default 10. Progress
   * bars and servers sharing the thread need a turn every few ms, not one per 32 rows
   * (scripts/bench-train-loop.ts measures what the turns cost).
   */
  yieldMs?: number;
  /**
   * Threads of the training minibatches when the backend trains whole epochs off the JS thread
   * (MlpBackend.trainEpoch): 0 the backend's shared pool, t >= 1 a pool of t threads
   * of its own, for several nets training at once (trainFusionSeeds). A function is read before
   * every epoch. Results do not depend on it. Default 0.
   */
  threads?: number | (() => number);
  /**
   * Fit on these rows of `train` only (indices, in this order; default all rows): the same weights,
   * bit for bit, as passing those rows copied out (evaluate.ts subsetMlp), without the copy.
   * Minibatches are gathered from `train` by index, so the training sets of several seeds can share
   * one matrix.
   */
  trainRows?: Int32Array | null;
  /** Validate on these rows of `val` only (default all rows), as trainRows. */
  valRows?: Int32Array | null;
}

export interface EpochStats {
  epoch: number;
  trainLoss: number;
  /** Mean training cosine over the epoch's minibatches (1 - loss, with dropout active). */
  trainCosine: number;
  valCosine: number;
  /** Wall time of the epoch: minibatches plus validation. */
  seconds: number;
  /** Of which scoring the validation rows. */
  valSeconds: number;
  /** Training samples per second of minibatch time (validation excluded; comparable with bench:train). */
  samplesPerSecond: number;
  best: boolean;
}

export interface TrainResult {
  layout: ParamLayout;
  /** Parameters of the best validation epoch. */
  params: Float32Array;
  bestEpoch: number;
  bestValCosine: number;
  /** Validation cosine of the untrained net (fusion: exactly the prior's score). */
  initialValCosine: number;
  history: EpochStats[];
  stoppedEarly: boolean;
  seconds: number;
  seed: number;
}

/** Defaults from the settings schema (src/settings.ts). */
export const TRAIN_DEFAULTS = { ...defaultsOf(['epochs', 'batchSize', 'lr', 'weightDecay', 'patience', 'seed']), minDelta: 0, yieldMs: 10, threads: 0 };

/**
 * Validate training or validation rows for `layout` (shapes, the prior a fusion net needs, and
 * every value finite: a RapmError naming the matrix, row and column). Returns the row count.
 * trainMlp calls it on its inputs; trainFusionSeeds once for the rows every seed of a point shares.
 * `checkedRows`: the first rows of en and target were validated before and have not changed (a
 * training set that only grows, fitAndScore in the progressive loop); their values are not read
 * again. The prior is always read in full.
 */
export function checkMlpData(name: string, d: MlpData, layout: ParamLayout, checkedRows = 0): number {
  const { enDim, outDim, kind } = layout.spec;
  const n = checkMatrix(`${name}.en`, d.en, enDim);
  checkMatrix(`${name}.target`, d.target, outDim, n);
  const from = Math.min(n, Math.max(0, Math.floor(checkedRows)));
  checkFinite(`${name}.en`, d.en, enDim, from);
  checkFinite(`${name}.target`, d.target, outDim, from);
  if (kind === 'fusion') {
    if (!d.prior) throw new RapmRangeError('RAPM_INVALID_ARG', `Expected ${name}.prior: the fusion net needs the retrieval prior of every row`);
    checkMatrix(`${name}.prior`, d.prior, outDim, n);
    checkFinite(`${name}.prior`, d.prior, outDim);
  }
  return n;
}

/** Gather rows `idx` into the network input: concat[en, prior] for fusion, en for the baseline. */
export function gatherInput(layout: ParamLayout, d: MlpData, idx: ArrayLike<number>, x: Float32Array, residual: Float32Array | null, target: Float32Array | null): void {
  const { enDim, outDim, kind } = layout.spec;
  const w = layout.inputDim;
  for (let i = 0; i < idx.length; i++) {
    const r = idx[i]!;
    x.set(d.en.subarray(r * enDim, (r + 1) * enDim), i * w);
    if (kind === 'fusion') {
      const p = d.prior!.subarray(r * outDim, (r + 1) * outDim);
      x.set(p, i * w + enDim);
      residual!.set(p, i * outDim);
    }
    target?.set(d.target.subarray(r * outDim, (r + 1) * outDim), i * outDim);
  }
}

/** A row list (trainRows / valRows): a non-empty Int32Array of indices into a matrix of `n` rows. */
function checkRowList(name: string, rows: unknown, n: number): Int32Array {
  if (!(rows instanceof Int32Array)) throw new RapmTypeError('RAPM_TYPE', `Expected ${name} as an Int32Array of row indices but received ${describe(rows)}`);
  if (rows.length === 0) throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `Expected at least one row in ${name}`);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    if (r < 0 || r >= n) throw new RapmRangeError('RAPM_INVALID_ARG', `Expected ${name}[${i}] in [0, ${n - 1}] (a row of the data) but received ${r}`);
  }
  return rows;
}

/** pred [n, outDim] for all rows of `d` (or rows `rows` of it, in that order), in blocks. */
export function predict(backend: MlpBackend, layout: ParamLayout, params: Float32Array, d: MlpData, block = 4096, rows: Int32Array | null = null): Float32Array {
  const { outDim, kind } = layout.spec;
  const n = rows ? rows.length : d.en.length / layout.spec.enDim;
  const out = new Float32Array(n * outDim);
  const x = new Float32Array(Math.min(block, n) * layout.inputDim);
  const res = kind === 'fusion' ? new Float32Array(Math.min(block, n) * outDim) : null;
  for (let s = 0; s < n; s += block) {
    const e = Math.min(n, s + block);
    const idx = rows ? rows.subarray(s, e) : Int32Array.from({ length: e - s }, (_, i) => s + i);
    const xb = x.subarray(0, (e - s) * layout.inputDim);
    const rb = res ? res.subarray(0, (e - s) * outDim) : null;
    gatherInput(layout, d, idx, xb, rb, null);
    backend.forward(layout, params, xb, rb, out.subarray(s * outDim, e * outDim));
  }
  return out;
}

/** Per-row cosine of the net's prediction against the targets (of rows `rows` of `d`, in that order, when given). */
export function scoreRows(backend: MlpBackend, layout: ParamLayout, params: Float32Array, d: MlpData, rows: Int32Array | null = null): Float64Array {
  return rowCosines(predict(backend, layout, params, d, 4096, rows), d.target, layout.spec.outDim, rows);
}

/**
 * scoreRows off the JS thread when the backend can (MlpBackend.forwardRows: rows read in place, on
 * `threads` threads as in TrainOptions.threads), else scoreRows itself. The same numbers either way.
 */
export async function scoreRowsAsync(backend: MlpBackend, layout: ParamLayout, params: Float32Array, d: MlpData, rows: Int32Array | null = null, threads = 0): Promise<Float64Array> {
  if (!backend.forwardRows) return scoreRows(backend, layout, params, d, rows);
  const pred = new Float32Array((rows ? rows.length : d.en.length / layout.spec.enDim) * layout.spec.outDim);
  await backend.forwardRows(layout, params, d, rows, pred, threads);
  return rowCosines(pred, d.target, layout.spec.outDim, rows);
}

/** Every key TrainOptions has: any other key is refused, not ignored. */
const TRAIN_OPTION_KEYS = ['epochs', 'batchSize', 'lr', 'weightDecay', 'patience', 'minDelta', 'seed', 'onEpoch', 'onStep', 'signal', 'init', 'yieldMs', 'threads', 'trainRows', 'valRows'] as const satisfies readonly (keyof TrainOptions)[];

/**
 * Train a layout.ts network with AdamW on loss 1 - cos, seeded shuffling, early stopping
 * on validation cosine with patience, and restore of the best epoch. The event loop gets
 * a turn every `yieldMs`. Same seed, same machine and SIMD level: same weights.
 */
export async function trainMlp(backend: MlpBackend, spec: MlpSpec, train: MlpData, val: MlpData, options: TrainOptions = {}): Promise<TrainResult> {
  return train_(backend, spec, train, val, options, false, true);
}

/**
 * trainMlp on arrays no caller outside rapm can reach (the experiments' fresh row subsets): the
 * same checks, without trainMlp's copy of the rows. Internal: not part of the public API.
 */
export async function trainMlpOnOwnedData(backend: MlpBackend, spec: MlpSpec, train: MlpData, val: MlpData, options: TrainOptions = {}): Promise<TrainResult> {
  return train_(backend, spec, train, val, options, false, false);
}

/** A copy of an MlpData's arrays (see train_'s `copy`); arrays already copied (`made`: original -> copy) are shared, not copied twice. */
function copyMlpData(d: MlpData, made = new Map<Float32Array, Float32Array>()): MlpData {
  const copy = (a: Float32Array): Float32Array => {
    let c = made.get(a);
    if (!c) made.set(a, (c = a.slice()));
    return c;
  };
  return { en: copy(d.en), prior: d.prior ? copy(d.prior) : null, target: copy(d.target) };
}

/**
 * trainMlp on data the caller has validated with {@link checkMlpData} for this spec's layout
 * (trainFusionSeeds: once for the rows all seeds of a point share, instead of once per seed).
 * Options and row lists are still checked. Internal: not part of the public API.
 */
export async function trainMlpOnCheckedData(backend: MlpBackend, spec: MlpSpec, train: MlpData, val: MlpData, options: TrainOptions = {}): Promise<TrainResult> {
  return train_(backend, spec, train, val, options, true, false);
}

/**
 * `copy` (the public trainMlp): train on copies of the caller's rows, made once after they are
 * checked. The native backend reads them on its own threads for whole epochs while the JS thread
 * is free, and a caller's buffer transferred meanwhile (postMessage, structuredClone) is freed
 * under it: a segfault. The copy also keeps a caller's later writes out of the run. Internal
 * callers pass rows nobody else holds (trainMlpOnCheckedData, trainMlpOnOwnedData).
 */
async function train_(backend: MlpBackend, spec: MlpSpec, train: MlpData, val: MlpData, options: TrainOptions, dataChecked: boolean, copy: boolean): Promise<TrainResult> {
  if (!is.object(options as unknown)) throw invalidParam('options', 'object', options);
  checkKnownKeys('trainMlp', options, TRAIN_OPTION_KEYS);
  // An option given as undefined takes its default (callers pass optional settings straight through).
  const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as TrainOptions;
  const o = { ...TRAIN_DEFAULTS, ...given };
  for (const key of ['epochs', 'batchSize', 'lr', 'weightDecay', 'patience', 'seed'] as const) checkSetting(key, o[key]);
  const layout = paramLayout(spec);
  const nTrain = dataChecked ? train.en.length / spec.enDim : checkMlpData('train', train, layout);
  const nVal = dataChecked ? val.en.length / spec.enDim : val === train ? nTrain : checkMlpData('val', val, layout);
  const fitRows = o.trainRows ? checkRowList('trainRows', o.trainRows, nTrain) : null;
  const valRows = o.valRows ? checkRowList('valRows', o.valRows, nVal) : null;
  const n = fitRows ? fitRows.length : nTrain;
  if (copy) {
    // val often shares train's arrays (the same rows through another object): copied once.
    const made = new Map<Float32Array, Float32Array>();
    train = copyMlpData(train, made);
    val = copyMlpData(val, made);
  }
  if (!(typeof o.yieldMs === 'number' && o.yieldMs >= 0 && Number.isFinite(o.yieldMs))) throw new RapmRangeError('RAPM_INVALID_ARG', `Expected yieldMs >= 0 but received ${String(o.yieldMs)}`);
  const threadsNow = (): number => {
    const t = typeof o.threads === 'function' ? o.threads() : o.threads;
    if (!(Number.isInteger(t) && t >= 0 && t <= 1024)) throw new RapmRangeError('RAPM_INVALID_ARG', `Expected threads as an integer in [0, 1024] but received ${String(t)}`);
    return t;
  };
  threadsNow();
  const started = performance.now();

  let params: Float32Array;
  if (o.init) {
    if (!(o.init instanceof Float32Array) || o.init.length !== layout.size) {
      throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `Expected init (warm-start parameters) as a Float32Array of length ${layout.size} (this layout) but received ${o.init instanceof Float32Array ? `length ${o.init.length}` : typeof o.init}`);
    }
    checkFinite('init', o.init, layout.size);
    params = o.init.slice();
  } else {
    params = initParams(layout, o.seed);
  }
  const m = new Float32Array(layout.size);
  const v = new Float32Array(layout.size);
  let best = params.slice();
  const initialValCosine = mean(await scoreRowsAsync(backend, layout, params, val, valRows, threadsNow()));
  let bestVal = initialValCosine;
  let bestEpoch = 0;
  let sinceBest = 0;
  let step = 0;
  const history: EpochStats[] = [];
  const bs = o.batchSize;
  const { outDim, kind } = spec;
  const x = new Float32Array(bs * layout.inputDim);
  const res = kind === 'fusion' ? new Float32Array(bs * outDim) : null;
  const tgt = new Float32Array(bs * outDim);
  const shuffle = new Rng(o.seed, 11);
  let stoppedEarly = false;

  const epochOffThread = backend.trainEpoch !== undefined;
  const progress = epochOffThread ? new Int32Array(2) : null;
  const stopEpoch = () => {
    if (progress) progress[1] = 1;
  };
  o.signal?.addEventListener('abort', stopEpoch, { once: true });
  try {
    for (let epoch = 1; epoch <= o.epochs; epoch++) {
      const t0 = performance.now();
      const perm = shuffle.permutation(n);
      // Positions in the fit rows -> rows of `train` (the same minibatches as on a copy of them).
      const order = fitRows ? perm.map((i) => fitRows[i]!) : perm;
      let lossSum = 0;
      let batches = 0;
      let lastYield = t0;
      let paused = 0; // ms spent away in event-loop turns (not training)
      if (epochOffThread) {
        // The whole epoch on a native thread: the event loop stays free, no per-minibatch crossing
        // or row copies; progress is read from the shared counter while it runs.
        if (o.signal?.aborted) throw o.signal.reason ?? new Error('aborted');
        progress![0] = 0;
        const timer = o.onStep ? setInterval(() => o.onStep!(progress![0]!, n), 250) : null;
        try {
          lossSum = await backend.trainEpoch!(layout, params, m, v, step + 1, o.lr, o.weightDecay, train, order, bs, spec.dropout, o.seed, threadsNow(), progress);
        } finally {
          if (timer) clearInterval(timer);
        }
        if (o.signal?.aborted) throw o.signal.reason ?? new Error('aborted');
        batches = Math.ceil(n / bs);
        step += batches;
        o.onStep?.(n, n);
      }
      for (let s = 0; !epochOffThread && s < n; s += bs) {
        if (o.signal?.aborted) throw o.signal.reason ?? new Error('aborted');
        const e = Math.min(n, s + bs);
        const rows = order.subarray(s, e);
        const b = e - s;
        const xb = x.subarray(0, b * layout.inputDim);
        const rb = res ? res.subarray(0, b * outDim) : null;
        const tb = tgt.subarray(0, b * outDim);
        gatherInput(layout, train, rows, xb, rb, tb);
        step++;
        lossSum += backend.trainStep(layout, params, m, v, step, o.lr, o.weightDecay, xb, rb, tb, spec.dropout, o.seed);
        batches++;
        o.onStep?.(e, n);
        const now = performance.now();
        if (now - lastYield >= o.yieldMs) {
          await yieldToLoop(); // never block the event loop for longer than yieldMs + one minibatch
          lastYield = performance.now();
          paused += lastYield - now;
        }
      }
      const tTrain = performance.now();
      const valCos = mean(await scoreRowsAsync(backend, layout, params, val, valRows, threadsNow()));
      const tEnd = performance.now();
      const seconds = (tEnd - t0) / 1000;
      const improved = valCos > bestVal + o.minDelta;
      if (improved) {
        bestVal = valCos;
        bestEpoch = epoch;
        best = params.slice();
        sinceBest = 0;
      } else {
        sinceBest++;
      }
      const trainLoss = lossSum / batches;
      const stats: EpochStats = { epoch, trainLoss, trainCosine: 1 - trainLoss, valCosine: valCos, seconds, valSeconds: (tEnd - tTrain) / 1000, samplesPerSecond: n / (Math.max(1e-6, tTrain - t0 - paused) / 1000), best: improved };
      history.push(stats);
      o.onEpoch?.(stats);
      if (sinceBest >= o.patience) {
        stoppedEarly = epoch < o.epochs;
        break;
      }
    }
  } finally {
    o.signal?.removeEventListener('abort', stopEpoch);
  }
  return { layout, params: best, bestEpoch, bestValCosine: bestVal, initialValCosine, history, stoppedEarly, seconds: (performance.now() - started) / 1000, seed: o.seed };
}
