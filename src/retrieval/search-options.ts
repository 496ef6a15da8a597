import { RapmRangeError, invalidParam } from '../errors.js';
import { checkInteger, checkPositive, is } from '../validate.js';
import type { Aggregate } from './reference.js';

export type { Aggregate } from './reference.js';
export const AGGREGATES: readonly Aggregate[] = ['softmax', 'mean', 'top1'];
export const AGGREGATE_CODE: Record<Aggregate, number> = { softmax: 0, mean: 1, top1: 2 };

export interface SearchOptions {
  /** Neighbours per query (1 <= k <= rows left after exclusion, and <= K_MAX). Default 70. */
  k?: number;
  /**
   * Softmax temperature. Default 0.04. The native side computes in float32, so tau must be
   * a normal float32: between TAU_MIN (2^-126, about 1.18e-38) and TAU_MAX (about 3.4e38).
   * A smaller tau rounds to zero (or a subnormal, flushed to zero) and gives NaN weights.
   */
  tau?: number;
  /** 'softmax' (default): softmax(sim / tau); 'mean': uniform over the K; 'top1': the best only. */
  aggregate?: Aggregate;
  /**
   * Leave-one-out by row: for query i, skip row excludeRows[i] and every row with the
   * same utterance id (-1: skip nothing). Length b.
   */
  excludeRows?: ArrayLike<number>;
  /** Leave-one-out by utterance id: for query i, skip every row whose id is excludeIds[i]. Length b. */
  excludeIds?: ReadonlyArray<string | null | undefined>;
  /**
   * Search only rows [start, end) of the datastore (for example the chunk just appended,
   * to update earlier top-K lists incrementally). Default: all rows.
   */
  rowRange?: readonly [number, number];
}

export interface ResolvedSearchOptions {
  k: number;
  tau: number;
  aggregate: Aggregate;
}

export const SEARCH_DEFAULTS: ResolvedSearchOptions = { k: 70, tau: 0.04, aggregate: 'softmax' };

/** Smallest tau accepted: the smallest normal float32 (2^-126). See SearchOptions.tau. */
export const TAU_MIN = 2 ** -126;
/** Largest tau accepted: the largest finite float32. */
export const TAU_MAX = (2 - 2 ** -23) * 2 ** 127;
/** Largest k the native search takes (an int32; in practice k is bounded by the rows). */
export const K_MAX = 2 ** 31 - 1;

/** tau as the native float32 search will use it: finite, and neither 0 nor subnormal nor infinite in float32. */
export function checkTau(tau: unknown, name = 'tau'): number {
  const t = checkPositive(name, tau);
  const f = Math.fround(t);
  if (!(f >= TAU_MIN) || f > TAU_MAX) {
    throw new RapmRangeError(
      'RAPM_INVALID_ARG',
      `Expected ${name} between ${TAU_MIN.toPrecision(8)} and ${TAU_MAX.toPrecision(8)} (a normal float32: the search computes in float32) but received ${t}` +
        (f === 0 ? ', which rounds to 0 in float32 and would give NaN weights' : f < TAU_MIN ? ', which is subnormal in float32' : ', which overflows float32'),
    );
  }
  return t;
}

/** k as the native search takes it: an integer in [1, K_MAX] (the row count is checked at search time). */
export function checkK(k: unknown, name = 'k'): number {
  return checkInteger(name, k, 1, K_MAX);
}

export function resolveSearchOptions(options: SearchOptions | undefined): ResolvedSearchOptions {
  if (options !== undefined && !is.object(options)) throw invalidParam('options', 'object', options);
  const o = options ?? {};
  const k = o.k === undefined ? SEARCH_DEFAULTS.k : checkK(o.k);
  const tau = o.tau === undefined ? SEARCH_DEFAULTS.tau : checkTau(o.tau);
  const aggregate = o.aggregate ?? SEARCH_DEFAULTS.aggregate;
  if (!is.inArray(aggregate, AGGREGATES)) throw invalidParam('aggregate', `one of ${AGGREGATES.join(', ')}`, aggregate);
  if (o.excludeRows !== undefined && o.excludeIds !== undefined) {
    throw new RapmRangeError('RAPM_INVALID_ARG', 'Expected at most one of excludeRows and excludeIds');
  }
  return { k, tau, aggregate };
}
