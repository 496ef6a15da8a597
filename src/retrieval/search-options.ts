import { RapmRangeError, invalidParam } from '../errors.js';
import { checkKnownKeys, is } from '../validate.js';
import { checkSetting, defaultsOf } from '../settings.js';
import type { Aggregate } from './aggregate.js';

export type { Aggregate } from './aggregate.js';
export const AGGREGATES: readonly Aggregate[] = ['softmax', 'mean', 'top1'];
export const AGGREGATE_CODE: Record<Aggregate, number> = { softmax: 0, mean: 1, top1: 2 };

export interface SearchOptions {
  /** Neighbours per query (1 <= k <= rows left after exclusion). Default 90 (src/settings.ts). */
  k?: number;
  /** Softmax temperature in [FLT_MIN, FLT_MAX] (TAU_MIN, TAU_MAX). Default 0.04. */
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

/** Defaults from the settings schema (src/settings.ts). */
export const SEARCH_DEFAULTS: ResolvedSearchOptions = defaultsOf(['k', 'tau', 'aggregate']);

export { K_MAX, TAU_MAX, TAU_MIN } from '../settings.js';

/** Every key SearchOptions has: any other key is refused, not ignored. */
const SEARCH_OPTION_KEYS = ['k', 'tau', 'aggregate', 'excludeRows', 'excludeIds', 'rowRange'] as const satisfies readonly (keyof SearchOptions)[];

export function resolveSearchOptions(options: SearchOptions | undefined): ResolvedSearchOptions {
  if (options !== undefined && !is.object(options)) throw invalidParam('options', 'object', options);
  const o = options ?? {};
  checkKnownKeys('search options', o, SEARCH_OPTION_KEYS);
  const k = checkSetting('k', o.k);
  const tau = checkSetting('tau', o.tau);
  const aggregate = checkSetting('aggregate', o.aggregate);
  if (o.excludeRows !== undefined && o.excludeIds !== undefined) {
    throw new RapmRangeError('RAPM_INVALID_ARG', 'Expected at most one of excludeRows and excludeIds');
  }
  return { k, tau, aggregate };
}
