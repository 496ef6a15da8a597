import { RapmRangeError, RapmTypeError, describe } from '../errors.js';
import { Rng } from '../rng.js';
import { checkInteger } from '../validate.js';

/**
 * Bootstrap confidence intervals for mean scores, made to answer "is the fusion gain real?":
 * per-test-pair scores of two systems are resampled *as pairs* (the same items for both),
 * so the interval reflects the noise of the difference rather than of each mean.
 *
 * Intervals are percentile intervals of the resampled means. Results are deterministic per
 * seed: the draws come from xoshiro128** seeded through {@link Rng}.
 */

export interface BootstrapOptions {
  /** Number of bootstrap resamples, integer >= 100. Default 2000. */
  resamples?: number;
  /** Seed of the resampling draws, integer in [0, 2^53). Default 0. Record it with the result. */
  seed?: number;
  /** Coverage of the two-sided percentile interval, in (0, 1). Default 0.95. */
  level?: number;
}

export interface BootstrapMeanResult {
  /** Number of items. */
  n: number;
  /** Sample mean. */
  mean: number;
  /** Lower end of the percentile interval of the resampled mean. */
  lo: number;
  /** Upper end of the percentile interval of the resampled mean. */
  hi: number;
  /** Standard deviation of the resampled means (bootstrap standard error). */
  se: number;
  resamples: number;
  seed: number;
  level: number;
}

export interface PairedBootstrapResult {
  /** Number of paired items. */
  n: number;
  /** Mean of `a` (for example plain retrieval). */
  meanA: number;
  /** Mean of `b` (for example retrieval + fusion). */
  meanB: number;
  /** `meanB - meanA`: the gain of b over a (computed as the mean of per-item differences). */
  diff: number;
  /** Lower end of the percentile interval of the resampled mean difference. */
  lo: number;
  /** Upper end of the percentile interval of the resampled mean difference. */
  hi: number;
  /** Standard deviation of the resampled mean differences (bootstrap standard error). */
  se: number;
  /** Share of resamples whose mean difference is > 0 (a one-sided bootstrap support for b > a). */
  pAboveZero: number;
  resamples: number;
  seed: number;
  level: number;
}

/** Stream of {@link Rng} used for bootstrap draws, so they never coincide with other seeded draws of a run. */
export const BOOTSTRAP_STREAM = 0xb0075;

const DEFAULT_RESAMPLES = 2000;
const TWO_POW_32 = 4294967296;
const INV_TWO_POW_32 = 2.3283064365386963e-10;

/**
 * Paired bootstrap of the mean difference `b - a` of per-item scores, for example the
 * per-test-pair cosine of fusion (`b`) against plain retrieval (`a`).
 *
 * ```ts
 * const r = pairedBootstrap(priorCos, fusedCos, { seed: run.seed });
 * // r.diff = +0.0021, [r.lo, r.hi] = [+0.0008, +0.0034], r.n = 578
 * ```
 *
 * Throws RAPM_TYPE for non-array inputs or non-number items, RAPM_SHAPE_MISMATCH for
 * different lengths, RAPM_NON_FINITE for NaN/Infinity, RAPM_INVALID_ARG for n < 2 or bad options.
 */
export function pairedBootstrap(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  options: BootstrapOptions = {},
): PairedBootstrapResult {
  checkScores('a', a);
  checkScores('b', b);
  if (a.length !== b.length) {
    throw new RapmRangeError(
      'RAPM_SHAPE_MISMATCH',
      `Expected paired scores a and b of equal length but received lengths ${a.length} and ${b.length}`,
    );
  }
  const n = a.length;
  checkCount(n);
  const { resamples, seed, level } = checkOptions(options);
  const d = new Float64Array(n);
  let sa = 0;
  let sb = 0;
  for (let i = 0; i < n; i++) {
    const x = a[i]!;
    const y = b[i]!;
    sa += x;
    sb += y;
    d[i] = y - x;
  }
  const means = resampleMeans(d, resamples, seed);
  const s = summarise(means, level);
  let above = 0;
  for (let r = 0; r < resamples; r++) if (means[r]! > 0) above++;
  return {
    n,
    meanA: sa / n,
    meanB: sb / n,
    diff: sum(d) / n,
    lo: s.lo,
    hi: s.hi,
    se: s.se,
    pAboveZero: above / resamples,
    resamples,
    seed,
    level,
  };
}

/** Percentile bootstrap interval of one sample's mean. Same options, validation and determinism as {@link pairedBootstrap}. */
export function bootstrapMean(x: ArrayLike<number>, options: BootstrapOptions = {}): BootstrapMeanResult {
  checkScores('x', x);
  const n = x.length;
  checkCount(n);
  const { resamples, seed, level } = checkOptions(options);
  const v = Float64Array.from(x);
  const means = resampleMeans(v, resamples, seed);
  const s = summarise(means, level);
  return { n, mean: sum(v) / n, lo: s.lo, hi: s.hi, se: s.se, resamples, seed, level };
}

/**
 * The bootstrap distribution itself: `resamples` means of `x` resampled with replacement
 * (unsorted, in draw order). `pairedBootstrap(a, b, o)` summarises
 * `resampleMeans(b - a, o.resamples, o.seed)`. Arguments are not validated here.
 *
 * Index draws are exact-uniform (Lemire's multiply-and-reject, or modulo-and-reject above
 * 2^21 items) from an inlined xoshiro128** whose state comes from `new Rng(seed, BOOTSTRAP_STREAM)`.
 * Cost: resamples x n random reads; 2,000 x 40,000 takes about 0.2 s.
 */
export function resampleMeans(x: Float64Array, resamples: number, seed: number): Float64Array {
  const n = x.length;
  const out = new Float64Array(resamples);
  const rng = new Rng(seed, BOOTSTRAP_STREAM);
  // Generator state in locals: a method call per draw costs ~3x in this loop.
  let s0 = rng.nextU32() | 0;
  let s1 = rng.nextU32() | 0;
  let s2 = rng.nextU32() | 0;
  let s3 = rng.nextU32() | 0;
  if ((s0 | s1 | s2 | s3) === 0) s0 = 1;
  const lemire = n <= 1 << 21; // u * n stays below 2^53, so the product is exact
  const threshold = TWO_POW_32 % n; // Lemire: reject when the low word is below 2^32 mod n
  const limit = TWO_POW_32 - threshold; // modulo path: reject u >= the largest multiple of n
  for (let r = 0; r < resamples; r++) {
    let s = 0;
    for (let i = 0; i < n; i++) {
      let idx: number;
      for (;;) {
        const m5 = Math.imul(s1, 5);
        const u = Math.imul((m5 << 7) | (m5 >>> 25), 9) >>> 0;
        const t = s1 << 9;
        s2 ^= s0;
        s3 ^= s1;
        s1 ^= s2;
        s0 ^= s3;
        s2 ^= t;
        s3 = (s3 << 11) | (s3 >>> 21);
        if (lemire) {
          const m = u * n;
          idx = Math.floor(m * INV_TWO_POW_32);
          if (m - idx * TWO_POW_32 >= threshold) break;
        } else if (u < limit) {
          idx = u % n;
          break;
        }
      }
      s += x[idx]!;
    }
    out[r] = s / n;
  }
  return out;
}

/** Linear-interpolation quantile (type 7) of an ascending-sorted array, p in [0, 1]. */
export function sortedQuantile(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  const h = (n - 1) * p;
  const i = Math.floor(h);
  if (i >= n - 1) return sorted[n - 1]!;
  const lo = sorted[i]!;
  const hi = sorted[i + 1]!;
  return lo === hi ? lo : lo + (h - i) * (hi - lo);
}

function summarise(means: Float64Array, level: number): { lo: number; hi: number; se: number } {
  const r = means.length;
  let m = 0;
  for (let i = 0; i < r; i++) m += means[i]!;
  m /= r;
  let ss = 0;
  for (let i = 0; i < r; i++) ss += (means[i]! - m) ** 2;
  const sorted = means.slice().sort();
  const tail = (1 - level) / 2;
  return { lo: sortedQuantile(sorted, tail), hi: sortedQuantile(sorted, 1 - tail), se: Math.sqrt(ss / (r - 1)) };
}

function sum(x: Float64Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]!;
  return s;
}

function checkScores(name: string, v: unknown): asserts v is ArrayLike<number> {
  const ok =
    Array.isArray(v) ||
    (ArrayBuffer.isView(v) && !(v instanceof DataView) && !(v instanceof BigInt64Array) && !(v instanceof BigUint64Array));
  if (!ok) {
    throw new RapmTypeError('RAPM_TYPE', `Expected an array or typed array of numbers for ${name} but received ${describe(v)}`);
  }
  const x = v as ArrayLike<unknown>;
  for (let i = 0; i < x.length; i++) {
    const e = x[i];
    if (typeof e !== 'number') {
      throw new RapmTypeError('RAPM_TYPE', `Expected numbers in ${name} but ${name}[${i}] is ${describe(e)}`);
    }
    if (!Number.isFinite(e)) {
      throw new RapmRangeError('RAPM_NON_FINITE', `Expected finite values in ${name} but ${name}[${i}] is ${String(e)}`);
    }
  }
}

function checkCount(n: number): void {
  if (n < 2) {
    throw new RapmRangeError('RAPM_INVALID_ARG', `Expected at least 2 items to bootstrap but received ${n}`);
  }
}

function checkOptions(options: BootstrapOptions): Required<BootstrapOptions> {
  if (typeof options !== 'object' || options === null) {
    throw new RapmTypeError('RAPM_TYPE', `Expected an options object but received ${describe(options)}`);
  }
  const resamples = checkInteger('options.resamples', options.resamples ?? DEFAULT_RESAMPLES, 100, 100_000_000);
  const seed = checkInteger('options.seed', options.seed ?? 0, 0);
  const level = options.level ?? 0.95;
  if (typeof level !== 'number') {
    throw new RapmTypeError('RAPM_TYPE', `Expected number between 0 and 1 (exclusive) for options.level but received ${describe(level)}`);
  }
  if (!(level > 0 && level < 1)) {
    throw new RapmRangeError('RAPM_INVALID_ARG', `Expected number between 0 and 1 (exclusive) for options.level but received ${describe(level)}`);
  }
  return { resamples, seed, level };
}
