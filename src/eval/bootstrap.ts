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

/**
 * Largest |score| the bootstraps take (RAPM_INVALID_ARG above it). Scores are cosines in
 * [-1, 1] in practice; the bound keeps every sum (n draws of differences up to 2e100), the
 * variance's squares and the interval finite, where 1e308 gave Infinity and NaN before.
 */
export const BOOTSTRAP_MAX_ABS = 1e100;
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
 * different lengths, RAPM_NON_FINITE for NaN/Infinity, RAPM_INVALID_ARG for n < 2, bad options
 * or a score with |x| > {@link BOOTSTRAP_MAX_ABS} (1e100).
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
    if (Math.abs(e) > BOOTSTRAP_MAX_ABS) {
      throw new RapmRangeError(
        'RAPM_INVALID_ARG',
        `Expected scores with |x| <= ${BOOTSTRAP_MAX_ABS} in ${name} (cosines are in [-1, 1]; larger values can overflow the sums and squares to Infinity or NaN) but ${name}[${i}] is ${String(e)}`,
      );
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

/** What the bootstrap resamples as independent units: test rows, speakers, or conversations. */
export type ClusterUnit = 'row' | 'speaker' | 'conversation';
export const CLUSTER_UNITS: readonly ClusterUnit[] = ['row', 'speaker', 'conversation'];

export interface GainInterval extends PairedBootstrapResult {
  /** The resampled unit. 'row' when no cluster labels were given. */
  unit: ClusterUnit;
  /** Number of clusters (= n for 'row'). */
  clusters: number;
  /** Number of training seeds behind the interval. */
  seeds: number;
  /** Each seed's own gain (mean over rows of fusion - plain), in seed order. */
  seedGains: number[];
}

export interface HierarchicalBootstrapOptions extends BootstrapOptions {
  /** Name of the unit the labels stand for (recorded with the result). Default 'speaker' with labels, 'row' without. */
  unit?: ClusterUnit;
}

/**
 * Gain interval over training seeds and clustered test rows: a three-stage paired bootstrap.
 * Each resample draws S seeds with replacement (their per-row gains averaged), then C
 * clusters with replacement, then, within each drawn cluster, as many rows as it holds with
 * replacement; the resampled gain is the mean over all drawn rows. Plain and fusion scores of
 * a row stay paired throughout.
 *
 * `plain[s]` and `fusion[s]` are seed s's per-row scores (plain retrieval is usually the same
 * array for every seed). `clusters[i]` labels row i (a speaker or conversation id); null makes
 * every row its own cluster, which is the ordinary paired row bootstrap.
 *
 * With one seed and labels this is the cluster bootstrap; test/eval/bootstrap-coverage.test.ts
 * checks by simulation that its 95% interval covers a known gain about 95% of the time when
 * rows of a speaker are correlated, where the row bootstrap falls well short.
 */
export function hierarchicalBootstrap(
  plain: readonly ArrayLike<number>[],
  fusion: readonly ArrayLike<number>[],
  clusters: readonly (string | number)[] | null,
  options: HierarchicalBootstrapOptions = {},
): GainInterval {
  if (!Array.isArray(plain) || !Array.isArray(fusion) || plain.length === 0 || plain.length !== fusion.length) {
    throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `Expected one plain and one fusion score array per seed (at least one seed) but received ${describe(plain)} and ${describe(fusion)}`);
  }
  const S = plain.length;
  plain.forEach((p, s) => checkScores(`plain[${s}]`, p));
  fusion.forEach((f, s) => checkScores(`fusion[${s}]`, f));
  const n = plain[0]!.length;
  for (let s = 0; s < S; s++) {
    if (plain[s]!.length !== n || fusion[s]!.length !== n) {
      throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `Expected every seed's scores to have ${n} rows but seed ${s} has ${plain[s]!.length} plain and ${fusion[s]!.length} fusion scores`);
    }
  }
  checkCount(n);
  if (clusters !== null && (!Array.isArray(clusters) || clusters.length !== n)) {
    throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `Expected one cluster label per row (${n}) but received ${describe(clusters)}`);
  }
  const { resamples, seed, level } = checkOptions(options);
  const unit: ClusterUnit = clusters === null ? 'row' : (options.unit ?? 'speaker');
  if (!CLUSTER_UNITS.includes(unit)) throw new RapmRangeError('RAPM_INVALID_ARG', `Expected options.unit one of ${CLUSTER_UNITS.join(', ')} but received ${describe(unit)}`);

  // Per-seed per-row gains, and rows grouped by cluster.
  const d = Array.from({ length: S }, (_, s) => {
    const v = new Float64Array(n);
    const a = plain[s]!, b = fusion[s]!;
    for (let i = 0; i < n; i++) v[i] = b[i]! - a[i]!;
    return v;
  });
  const seedGains = d.map((v) => sum(v) / n);
  let sa = 0, sb = 0;
  for (let s = 0; s < S; s++) for (let i = 0; i < n; i++) { sa += plain[s]![i]!; sb += fusion[s]![i]!; }
  const { rows, offsets } = groupRows(clusters, n);
  const C = offsets.length - 1;

  const int = uniformInts(seed);
  const avg = S === 1 ? d[0]! : new Float64Array(n);
  const means = new Float64Array(resamples);
  // Rejection thresholds (2^32 mod m) per draw range, computed once: the same draws as
  // int(m), without a floating-point modulo per draw.
  const thrS = TWO_POW_32 % S, thrC = TWO_POW_32 % C, thrN = TWO_POW_32 % n;
  const sizes = new Int32Array(C);
  const thr = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    sizes[c] = offsets[c + 1]! - offsets[c]!;
    thr[c] = TWO_POW_32 % sizes[c]!;
  }
  for (let r = 0; r < resamples; r++) {
    if (S > 1) {
      avg.fill(0);
      for (let k = 0; k < S; k++) {
        const v = d[int(S, thrS)]!;
        for (let i = 0; i < n; i++) avg[i]! += v[i]!;
      }
      for (let i = 0; i < n; i++) avg[i]! /= S;
    }
    let total = 0;
    let count = 0;
    if (C === n) {
      // Every row its own cluster: one stage (drawing a 1-row cluster's only row is a no-op).
      for (let j = 0; j < n; j++) total += avg[rows[int(n, thrN)]!]!;
      count = n;
    } else {
      for (let j = 0; j < C; j++) {
        const c = int(C, thrC);
        const off = offsets[c]!;
        const size = sizes[c]!;
        const t = thr[c]!;
        for (let k = 0; k < size; k++) total += avg[rows[off + int(size, t)]!]!;
        count += size;
      }
    }
    means[r] = total / count;
  }
  const sm = summarise(means, level);
  let above = 0;
  for (let r = 0; r < resamples; r++) if (means[r]! > 0) above++;
  return {
    n,
    meanA: sa / (S * n),
    meanB: sb / (S * n),
    diff: seedGains.reduce((x, y) => x + y, 0) / S,
    lo: sm.lo,
    hi: sm.hi,
    se: sm.se,
    pAboveZero: above / resamples,
    resamples,
    seed,
    level,
    unit,
    clusters: C,
    seeds: S,
    seedGains,
  };
}

/**
 * Exact-uniform integers in [0, m) (Lemire's multiply-and-reject up to 2^21, modulo-and-reject above) from xoshiro128**
 * seeded as in {@link resampleMeans}, with the state in closure variables: several times
 * faster than a method call on {@link Rng} per draw.
 */
function uniformInts(seed: number): (m: number, threshold: number) => number {
  const rng = new Rng(seed, BOOTSTRAP_STREAM);
  let s0 = rng.nextU32() | 0;
  let s1 = rng.nextU32() | 0;
  let s2 = rng.nextU32() | 0;
  let s3 = rng.nextU32() | 0;
  if ((s0 | s1 | s2 | s3) === 0) s0 = 1;
  /** A draw in [0, m); `threshold` must be 2^32 mod m (callers compute it once per m). */
  return (m: number, threshold: number): number => {
    if (m <= 1) return 0;
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
      if (m > 1 << 21) {
        // u * m would not be exact in a double: modulo-and-reject instead.
        if (u < TWO_POW_32 - threshold) return u % m;
        continue;
      }
      const p = u * m;
      const idx = Math.floor(p * INV_TWO_POW_32);
      if (p - idx * TWO_POW_32 >= threshold) return idx;
    }
  };
}

/** Row indices grouped by label (first-appearance order) and the group offsets; null: one row per group. */
function groupRows(labels: readonly (string | number)[] | null, n: number): { rows: Int32Array; offsets: Int32Array } {
  if (labels === null) {
    return { rows: Int32Array.from({ length: n }, (_, i) => i), offsets: Int32Array.from({ length: n + 1 }, (_, i) => i) };
  }
  const groups = new Map<string | number, number[]>();
  for (let i = 0; i < n; i++) {
    const l = labels[i]!;
    if (typeof l !== 'string' && typeof l !== 'number') throw new RapmTypeError('RAPM_TYPE', `Expected a string or number cluster label for row ${i} but received ${describe(l)}`);
    let g = groups.get(l);
    if (!g) groups.set(l, (g = []));
    g.push(i);
  }
  const rows = new Int32Array(n);
  const offsets = new Int32Array(groups.size + 1);
  let p = 0, j = 0;
  for (const g of groups.values()) {
    offsets[j++] = p;
    for (const i of g) rows[p++] = i;
  }
  offsets[j] = p;
  return { rows, offsets };
}

/** One seed, clustered rows: {@link hierarchicalBootstrap} with a single seed. */
export function clusterBootstrap(a: ArrayLike<number>, b: ArrayLike<number>, clusters: readonly (string | number)[] | null, options: HierarchicalBootstrapOptions = {}): GainInterval {
  return hierarchicalBootstrap([a], [b], clusters, options);
}
