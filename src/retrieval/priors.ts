import { RapmError, RapmRangeError, invalidParam } from '../errors.js';
import { checkInteger, checkKnownKeys, checkMatrix, is } from '../validate.js';
import type { Datastore, NeighborResult } from './datastore.js';
import { aggregateWeights } from './aggregate.js';
import { resolveSearchOptions, type Aggregate } from './search-options.js';

export interface PriorOptions {
  k: number;
  tau: number;
  aggregate: Aggregate;
  /** Leave-one-out: exclude each query's own utterance (all its copies). Default true. */
  leaveOneOut?: boolean;
  /**
   * Queries per native search call (the answers do not depend on it). Default SEARCH_BLOCK_ROWS.
   */
  blockRows?: number;
}

/** Queries per native search call of IncrementalPriors.update (see PriorOptions.blockRows). */
export const SEARCH_BLOCK_ROWS = 8192;

/**
 * Retrieval priors for a fixed set of queries that are themselves rows of a growing
 * datastore (the training pairs), kept up to date chunk by chunk: when rows are
 * appended, old queries are searched against the new rows only and their top-K lists
 * merged; new queries get a full search. The total cost over a progressive run is one
 * pass over all (query, key) pairs instead of one per step.
 *
 * With leave-one-out (the default) a query never finds its own utterance, so training
 * priors look like test-time priors. Without it (the reference's "leaky" behaviour) each
 * training prior contains its own target.
 */
export class IncrementalPriors {
  readonly k: number;
  readonly tau: number;
  readonly aggregate: Aggregate;
  readonly leaveOneOut: boolean;
  readonly blockRows: number;
  readonly dv: number;
  #n = 0; // queries tracked
  #covered = 0; // datastore rows already searched for the tracked queries
  #ids: string[] = [];
  #queries: { en: Float32Array; m: number }[] = []; // the callers' blocks of [m, keyDim], with m as given
  #sims = new Float32Array(0); // [n, k]
  #rows = new Int32Array(0); // [n, k]
  // update() calls run one after another, in call order (each reads and replaces the state above
  // across awaits: two at once searched the same new rows twice and merged both, duplicating
  // neighbours, or wrote past a buffer sized before the other grew #n).
  #queue: Promise<void> = Promise.resolve();
  #updatesPending = 0;

  constructor(readonly ds: Datastore, options: PriorOptions) {
    if (!is.object(options as unknown)) throw invalidParam('options', 'object', options);
    checkKnownKeys('new IncrementalPriors', options, ['k', 'tau', 'aggregate', 'leaveOneOut', 'blockRows'] satisfies (keyof PriorOptions)[]);
    // Checked here, not at the first update(): the same checks (and defaults) as a search.
    const s = resolveSearchOptions({ k: options.k, tau: options.tau, aggregate: options.aggregate });
    this.k = s.k;
    this.tau = s.tau;
    this.aggregate = s.aggregate;
    if (options.leaveOneOut !== undefined && typeof options.leaveOneOut !== 'boolean') throw invalidParam('leaveOneOut', 'boolean', options.leaveOneOut);
    this.leaveOneOut = options.leaveOneOut ?? true;
    this.blockRows = options.blockRows === undefined ? SEARCH_BLOCK_ROWS : checkInteger('blockRows', options.blockRows, 1);
    this.dv = ds.dv;
  }

  get size(): number {
    return this.#n;
  }

  /**
   * Bring every tracked query up to date with the datastore's current rows, then add
   * new queries (each with its utterance id; they must already be in the datastore
   * when leave-one-out is on, so that their own rows are excluded). Calls run one after another
   * in call order; newQueries.en is kept (not copied) for later updates: don't modify it.
   */
  update(newQueries?: { en: Float32Array; ids: readonly string[] }, onProgress?: (done: number, total: number) => void): Promise<void> {
    this.#updatesPending++;
    const run = this.#queue.then(() => this.#update(newQueries, onProgress)).finally(() => {
      this.#updatesPending--;
    });
    this.#queue = run.catch(() => undefined);
    // A promise of its own for the caller: the queue's handler above must not mark the caller's
    // failure handled (an ignored failed update still surfaces as an unhandled rejection).
    return run.then(() => undefined);
  }

  async #update(newQueries: { en: Float32Array; ids: readonly string[] } | undefined, onProgress: ((done: number, total: number) => void) | undefined): Promise<void> {
    const ds = this.ds;
    const n = ds.size;
    const k = this.k;
    const total = (this.#covered < n ? this.#n : 0) + (newQueries?.ids.length ?? 0);
    let done = 0;
    const blockRows = this.blockRows;
    if (this.#covered < n && this.#n > 0) {
      // Old queries x new rows only, then merge. Each block's merge (JS) runs while the next
      // block's search runs natively.
      const blocks: { q0: number; en: Float32Array }[] = [];
      let q0 = 0;
      for (const [i, { en: block, m }] of this.#queries.entries()) {
        // Kept by reference: a block its caller transferred since (detached: length 0) or
        // shrank would shift every later query onto another one's id and list.
        if (block.length !== m * ds.keyDim) {
          throw new RapmError('RAPM_STATE', `The queries of update() call ${i + 1} (newQueries.en, ${m} rows) now hold ${block.length} values instead of ${m * ds.keyDim}: the array was transferred or resized after that call; IncrementalPriors keeps it, so leave it as it was`);
        }
        for (let s = 0; s < m; s += blockRows) blocks.push({ q0: q0 + s, en: block.subarray(s * ds.keyDim, Math.min(m, s + blockRows) * ds.keyDim) });
        q0 += m;
      }
      const search = (b: { q0: number; en: Float32Array }) =>
        ds._searchNeighbors(b.en, {
          k: Math.min(k, n - this.#covered),
          tau: this.tau,
          aggregate: this.aggregate,
          rowRange: [this.#covered, n],
          ...(this.leaveOneOut ? { excludeIds: this.#ids.slice(b.q0, b.q0 + b.en.length / ds.keyDim) } : {}),
        });
      let pending = search(blocks[0]!);
      for (let i = 0; i < blocks.length; i++) {
        const r = await pending;
        if (i + 1 < blocks.length) pending = search(blocks[i + 1]!);
        this.#merge(blocks[i]!.q0, r);
        done += r.b;
        onProgress?.(done, total);
      }
    }
    this.#covered = n;
    if (newQueries) {
      const m = checkMatrix('newQueries.en', newQueries.en, ds.keyDim, newQueries.ids.length);
      const sims = new Float32Array((this.#n + m) * k);
      sims.set(this.#sims);
      const rows = new Int32Array((this.#n + m) * k);
      rows.set(this.#rows);
      for (let s = 0; s < m; s += blockRows) {
        const e = Math.min(m, s + blockRows);
        const r = await ds._searchNeighbors(newQueries.en.subarray(s * ds.keyDim, e * ds.keyDim), {
          k,
          tau: this.tau,
          aggregate: this.aggregate,
          ...(this.leaveOneOut ? { excludeIds: newQueries.ids.slice(s, e) } : {}),
        });
        sims.set(r.similarities, (this.#n + s) * k);
        rows.set(r.neighbors, (this.#n + s) * k);
        done += e - s;
        onProgress?.(done, total);
      }
      this.#sims = sims;
      this.#rows = rows;
      this.#queries.push({ en: newQueries.en, m });
      this.#ids.push(...newQueries.ids);
      this.#n += m;
    }
  }

  /** Merge a search over new rows (k' <= k per query) into the kept lists of queries q0.. */
  #merge(q0: number, r: NeighborResult): void {
    const k = this.k, kn = r.k;
    const vs = new Float32Array(k), rs = new Int32Array(k);
    for (let i = 0; i < r.b; i++) {
      const o = (q0 + i) * k;
      let a = 0, b = 0;
      for (let j = 0; j < k; j++) {
        const av = a < k ? this.#sims[o + a]! : Number.NEGATIVE_INFINITY;
        const bv = b < kn ? r.similarities[i * kn + b]! : Number.NEGATIVE_INFINITY;
        const ar = a < k ? this.#rows[o + a]! : 0x7fffffff;
        const br = b < kn ? r.neighbors[i * kn + b]! : 0x7fffffff;
        // Better = higher similarity, then lower row: the native engine's order.
        if (av > bv || (av === bv && ar < br)) {
          vs[j] = av;
          rs[j] = ar;
          a++;
        } else {
          vs[j] = bv;
          rs[j] = br;
          b++;
        }
      }
      this.#sims.set(vs, o);
      this.#rows.set(rs, o);
    }
  }

  /** Priors [n, dv], neighbours and weights of every tracked query, from `values` [datastore rows, dv]. */
  priors(values: Float32Array): { prior: Float32Array; neighbors: Int32Array; weights: Float32Array } {
    const { k, dv } = this;
    if (this.#updatesPending > 0) {
      throw new RapmError('RAPM_STATE', `Cannot read priors() while update() is pending (${this.#updatesPending} queued or running): await it first (the lists are merged across its awaits)`);
    }
    if (values.length < this.#covered * dv) {
      throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `Expected values for at least ${this.#covered} rows (${this.#covered * dv} floats) but received ${values.length}`);
    }
    const weights = new Float32Array(this.#n * k);
    for (let i = 0; i < this.#n; i++) {
      aggregateWeights(this.#sims.subarray(i * k, i * k + k), this.tau, this.aggregate, weights.subarray(i * k, i * k + k));
    }
    // The n x k x dv blend runs natively on every thread, with this loop's arithmetic (each step
    // f32(double(prior) + double(w) * double(v)), neighbours in order, zero weights skipped), so
    // the priors are the same bits as blendPriorsReference's (test/retrieval/priors.test.ts):
    //   for (j < k) { if (w[j] === 0) continue; for (c < dv) prior[i, c] = prior[i, c] + w[j] * values[row[j], c]; }
    const prior = new Float32Array(this.#n * dv);
    this.ds._blendPriors(this.#rows, weights, values.subarray(0, this.#covered * dv), this.#n, k, prior);
    return { prior, neighbors: this.#rows.slice(), weights };
  }
}
