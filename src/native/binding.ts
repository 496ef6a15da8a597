import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RapmError, RapmRangeError, RapmTypeError } from '../errors.js';

/** The native Datastore class as the addon exports it (positional arguments only). */
export interface NativeDatastore {
  add(keys: Float32Array, values: Float32Array, groups: Int32Array, m: number): Promise<void>;
  addSync(keys: Float32Array, values: Float32Array, groups: Int32Array, m: number): void;
  search(
    queries: Float32Array, // [b, d]
    b: number,
    k: number,
    tau: number,
    aggregate: number,
    excludeGroups: Int32Array | null, // [b]
    prior: Float32Array | null, // [b, dv]; null: no blend (neighbours, weights and similarities only)
    neighbors: Int32Array, // [b, k]
    weights: Float32Array, // [b, k]
    similarities: Float32Array, // [b, k]
    rowBegin?: number, // search only rows [rowBegin, rowEnd)
    rowEnd?: number,
  ): Promise<void>;
  searchSync(
    queries: Float32Array,
    b: number,
    k: number,
    tau: number,
    aggregate: number,
    excludeGroups: Int32Array | null,
    prior: Float32Array,
    neighbors: Int32Array,
    weights: Float32Array,
    similarities: Float32Array,
    rowBegin?: number,
    rowEnd?: number,
  ): void;
  readonly size: number;
  readonly memoryBytes: number;
  readonly dim: number;
  readonly valueDim: number;
  readonly bf16: boolean;
  readonly _segmentCount: number;
  /** Fast-path counters: queries searched with it, and how many of those the exact scan redid. */
  readonly fastPathStats: { queries: number; redone: number; candidates: number; reranked: number };
  /**
   * Rows [rowBegin, rowEnd) in stored form, row-major: keys f32 (Float32Array), bf16 bits (Uint16Array)
   * or int8 codes (Int8Array, with the per-row scales in scalesOut [m], int8 store only); null skips.
   */
  exportRows(rowBegin: number, rowEnd: number, keysOut: Float32Array | Uint16Array | Int8Array | null, valuesOut: Float32Array | null, groupsOut: Int32Array | null, scalesOut?: Float32Array | null): void;
  /** Append rows already in stored form (normalised keys, as exportRows wrote them; int8: codes + scales [m]), without re-normalising. */
  importRows(keys: Float32Array | Uint16Array | Int8Array, values: Float32Array, groups: Int32Array, m: number, scales?: Float32Array): void;
  /**
   * Priors of n queries from their neighbour lists (native/core/priors.h): prior [n, dv] = the
   * rows [n, k] of values [*, dv] blended by weights [n, k], each step f32(prior + w * v) in
   * double, bit for bit IncrementalPriors' TypeScript loop. Sync, on the calling thread and the pool.
   */
  blendPriors(rows: Int32Array, weights: Float32Array, values: Float32Array, n: number, k: number, prior: Float32Array): void;
}

export interface NativeBinding {
  /** precision: 0 f32, 1 bf16, 2 int8 (a boolean means bf16 or f32); fastPath: 0 off, 1 bf16, 2 int8. */
  Datastore: new (d: number, dv: number, precision: number | boolean, fastPath?: number) => NativeDatastore;
  simdLevel(): string;
  simdLevels(): string[];
  setSimdLevel(level: string): string;
  concurrency(): number;
  /** The largest |value| a datastore's value rows may hold (native/core/datastore.h kMaxAbsValue). */
  readonly maxAbsValue: number;
  setConcurrency(threads: number): number;
  _fmaPeak(seconds: number): number;
  _readBandwidth(floatsPerThread: number, reps: number): number;
  /** Arena length of an encoded MLP spec (src/fusion/native-mlp.ts encodeMlpSpec). */
  mlpParamCount(spec: Int32Array): number;
  mlpForward(
    spec: Int32Array,
    params: Float32Array,
    x: Float32Array, // [n, inputDim]
    residual: Float32Array | null, // [n, outDim]
    out: Float32Array, // [n, outDim]
  ): void;
  mlpTrainStep(
    spec: Int32Array,
    params: Float32Array,
    adamM: Float32Array,
    adamV: Float32Array,
    step: number,
    lr: number,
    weightDecay: number,
    x: Float32Array, // [bs, inputDim]
    residual: Float32Array | null, // [bs, outDim]
    target: Float32Array, // [bs, outDim]
    dropoutP: number,
    dropoutSeed: number,
  ): number;
  /** One epoch off the JS thread (native/mlp_wrap.cpp): out[0] = sum of the minibatch losses. */
  mlpTrainEpoch(
    spec: Int32Array,
    params: Float32Array,
    adamM: Float32Array,
    adamV: Float32Array,
    firstStep: number,
    lr: number,
    weightDecay: number,
    en: Float32Array, // [n, enDim]
    prior: Float32Array | null, // [n, outDim]
    target: Float32Array, // [n, outDim]
    order: Int32Array, // [nOrder]
    batchSize: number,
    dropoutP: number,
    dropoutSeed: number,
    threads: number,
    out: Float64Array, // [1]
    progress: Int32Array | null, // [2]
  ): Promise<void>;
  /** Inference off the JS thread on rows read in place (native/mlp_wrap.cpp mlpForwardRows). */
  mlpForwardRows(
    spec: Int32Array,
    params: Float32Array,
    en: Float32Array, // [src, enDim]
    prior: Float32Array | null, // [src, outDim]
    rows: Int32Array | null, // [n]
    out: Float32Array, // [n, outDim]
    threads: number,
  ): Promise<void>;
  _mlpGradient(
    spec: Int32Array,
    params: Float32Array,
    x: Float32Array, // [bs, inputDim]
    residual: Float32Array | null, // [bs, outDim]
    target: Float32Array, // [bs, outDim]
    dropoutP: number,
    dropoutSeed: number,
    step: number,
    grad: Float32Array, // [size]
  ): number;
  /** [size, inputDim, then per layer: in, out, w, b, gamma, beta] */
  _mlpLayout(spec: Int32Array): Float64Array;
  _mlpDropoutBits(seed: number, step: number, layer: number, row: number, col: number): number;
  _mlpMemoryBytes(): number;
}

const here = path.dirname(fileURLToPath(import.meta.url));
/** The package root: two levels above src/native or dist/native. */
export const packageRoot = path.resolve(here, '..', '..');

let cached: NativeBinding | undefined;

/**
 * Finds and loads rapm.node: `RAPM_NATIVE` (a path to the .node file), then
 * build/Release (cmake-js and node-gyp both put it there), then build/Debug.
 * On failure, one error lists every place tried and the fixes.
 */
export function loadBinding(): NativeBinding {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  const candidates = [
    process.env.RAPM_NATIVE,
    path.join(packageRoot, 'build', 'Release', 'rapm.node'),
    path.join(packageRoot, 'build', 'Debug', 'rapm.node'),
  ].filter((p): p is string => typeof p === 'string' && p.length > 0);
  const failures: string[] = [];
  for (const p of candidates) {
    if (!existsSync(p)) {
      failures.push(`${p}: not found`);
      continue;
    }
    try {
      cached = require(p) as NativeBinding;
      return cached;
    } catch (e) {
      failures.push(`${p}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  throw new RapmError(
    'RAPM_NATIVE_LOAD',
    [
      'Could not load the rapm native addon. Tried:',
      ...failures.map((f) => `  - ${f}`),
      'Possible fixes:',
      '  - build it: npm run build:native   (cmake-js; needs cmake >= 3.15 and a C++17 compiler)',
      '  - or with node-gyp: npm run build:native:gyp',
      '  - or point RAPM_NATIVE at a rapm.node built for this platform',
    ].join('\n'),
  );
}

/** Re-raise a native error as the same kind with its code (and row), and the caller's stack (sharp). */
export function nativeError(e: unknown, callerStack: string | undefined): Error {
  if (!(e instanceof Error)) return new RapmError('RAPM_NATIVE', String(e));
  const code = (e as { code?: string }).code ?? 'RAPM_NATIVE';
  const Ctor = e instanceof TypeError ? RapmTypeError : e instanceof RangeError ? RapmRangeError : null;
  const err = Ctor ? new Ctor(code as never, e.message) : new RapmError(code as never, e.message);
  const row = (e as { row?: number }).row;
  if (row !== undefined) Object.assign(err, { row });
  if (callerStack) err.stack = `${err.name}: ${err.message}\n${callerStack.split('\n').slice(2).join('\n')}`;
  return err;
}
