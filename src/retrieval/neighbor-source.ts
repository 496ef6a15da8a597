/**
 * Neighbour sources: where the top-k neighbours of a query come from. rapm's aggregation
 * (priorFromNeighbors: softmax / mean / top1 over the neighbours' values) and the fusion
 * model sit on top, so any engine that can answer "the k stored keys most cosine-similar to
 * this query" plugs in:
 *
 * - ExactSource: the native exact search of a Datastore (bit-identical to Datastore.search);
 * - AnnSource: an approximate faiss index (src/retrieval/ann.ts) built over a Datastore's keys;
 * - PgVectorSource (src/retrieval/pgvector.ts): PostgreSQL + pgvector, through `pg`.
 *
 * Row numbers are the Datastore's row numbers in every source (the pgvector table stores them
 * in its `row` column), so `values` and the utterance ids (Datastore.idOf) stay on the rapm
 * side: an engine only holds keys.
 */
import { RapmError, RapmRangeError, RapmTypeError, describe, invalidParam } from '../errors.js';
import { selectColumns } from '../data/indices.js';
import { checkInteger, checkKnownKeys, checkMatrix, is } from '../validate.js';
import { ANN_INDEX_OPTION_KEYS, AnnIndex, priorFromNeighbors, type AnnIndexOptions, type AnnValuesSearchResult } from './ann.js';
import { Datastore } from './datastore.js';
import { resolveSearchOptions, type SearchOptions } from './search-options.js';

export interface NeighborSource {
  readonly name: string; // 'exact' | 'ann' | 'pgvector' | ...
  readonly keyDim: number; // width of the queries it takes (before key selection)
  readonly size: number;
  /** Top-k neighbours: rows [b,k] (-1 empty), similarities [b,k], best first. */
  search(queries: Float32Array /* [b, keyDim] */, k: number): Promise<{ rows: Int32Array; similarities: Float32Array }>;
  /**
   * Optional health check of an engine outside the process (PgVectorSource: one cheap query):
   * resolves when it answers, rejects with an Error saying what failed when it does not. It
   * should settle within a few seconds by itself. GET /health runs it (one at a time, shared by
   * concurrent calls, and no longer waited for than HEALTH_CHECK_TIMEOUT_MS of handler.ts) and
   * reports 503 `degraded` when it fails. Without it (exact, ann: in process) a source is healthy.
   */
  check?(): Promise<void>;
}

/**
 * Check what a source's search() returned for `b` queries x `k`: rows Int32Array [b, k] and
 * similarities Float32Array [b, k]; in each query's list, found rows in [0, n) (the rows of
 * `store`, which the source's rows index) with finite similarities, then only -1 (an empty
 * slot, whose similarity is not read). A bad result is the source's fault, not the caller's:
 * RAPM_DATA naming the source and the query and slot (the HTTP service answers 500 and logs
 * it, never a 400). The one check of a source's result, run by Predictor and predictFromSource
 * before priorFromNeighbors (whose own argument checks, caller-fault codes, serve direct
 * library callers).
 */
export function checkSourceResult(source: NeighborSource, found: unknown, b: number, k: number, n: number, store: string): { rows: Int32Array; similarities: Float32Array } {
  const rows = (found as { rows?: unknown } | null | undefined)?.rows, sims = (found as { similarities?: unknown } | null | undefined)?.similarities;
  const who = `The neighbour source '${source.name}'`;
  if (!(rows instanceof Int32Array) || !(sims instanceof Float32Array) || rows.length !== b * k || sims.length !== b * k) {
    throw new RapmError('RAPM_DATA', `${who} returned rows ${describe(rows)} and similarities ${describe(sims)}; [${b}, ${k}] each were expected`);
  }
  for (let q = 0; q < b; q++) {
    let empty = -1; // the first -1 slot of this query
    for (let i = 0; i < k; i++) {
      const r = rows[q * k + i]!;
      const at = `query ${q}, slot ${i}`;
      if (r === -1) {
        if (empty < 0) empty = i;
        continue;
      }
      if (r < -1) throw new RapmError('RAPM_DATA', `${who} returned row ${r} for ${at}: only rows in [0, ${n}) or -1 (no neighbour) are valid`);
      if (r >= n) throw new RapmError('RAPM_DATA', `${who} returned row ${r} for ${at} but ${store} holds ${n} rows: the source no longer matches ${store}`);
      if (empty >= 0) throw new RapmError('RAPM_DATA', `${who} returned row ${r} for ${at} after an empty slot (-1 at slot ${empty}): the -1 slots must come after the found ones`);
      const s = sims[q * k + i]!;
      if (!Number.isFinite(s)) throw new RapmError('RAPM_DATA', `${who} returned similarity ${s} for ${at} (row ${r}): similarities of found rows must be finite`);
    }
  }
  return { rows, similarities: sims };
}

/**
 * A neighbour source's engine did not answer: it is down, hung, unreachable or refusing
 * connections (PgVectorSource: a refused or timed-out connection or query). Neither the
 * caller's fault nor a bug, and usually over by itself: code RAPM_IO, and the HTTP handler
 * answers 503 with Retry-After (not 500) and logs one line without a stack. A source for
 * another engine (Qdrant, Milvus, ...) throws it for the same cases; any other error of its
 * search stays what it is (a genuine bug: 500, logged with its stack).
 */
export class SourceUnavailableError extends RapmError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('RAPM_IO', message, options);
    this.name = 'SourceUnavailableError';
  }
}

/**
 * `task` bounded by `ms`: settles with the task, or rejects with `late()` once `ms` have passed
 * (the task's `signal` is then aborted, so it can let go of what it holds: a connection being
 * made, a query). A task that throws synchronously is a rejection. The timer does not keep the
 * process alive. Health checks use it (PgVectorSource.check, GET /health).
 */
export function withDeadline<T>(task: (signal: AbortSignal) => Promise<T>, ms: number, late: () => Error): Promise<T> {
  const ac = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const e = late();
      reject(e);
      ac.abort(e);
    }, ms);
    timer.unref();
  });
  return Promise.race([Promise.resolve().then(() => task(ac.signal)), deadline]).finally(() => clearTimeout(timer));
}

/**
 * At most one run of `start` at a time: a call while one is pending gets that run (its
 * arguments are then unused), and the first call after it settled starts a new one. A hung
 * engine thus holds one check, not one per caller, and a failure is never cached past its run.
 */
export function singleFlight<A extends unknown[], T>(start: (...args: A) => Promise<T>): (...args: A) => Promise<T> {
  let pending: Promise<T> | null = null;
  return (...args: A) => {
    if (pending !== null) return pending;
    const run = Promise.resolve().then(() => start(...args));
    pending = run; // set before any of run's callbacks can clear it
    const clear = () => {
      if (pending === run) pending = null;
    };
    run.then(clear, clear);
    return run;
  };
}

/** True for objects shaped like a NeighborSource. */
export function isNeighborSource(x: unknown): x is NeighborSource {
  if (!is.object(x)) return false;
  const s = x as unknown as NeighborSource;
  return typeof s.search === 'function' && typeof s.name === 'string' && Number.isInteger(s.keyDim);
}

/** The exact native search of a Datastore as a NeighborSource (same rows and similarities as Datastore.search). */
export class ExactSource implements NeighborSource {
  readonly name = 'exact';
  readonly datastore: Datastore;

  constructor(datastore: Datastore) {
    if (!(datastore instanceof Datastore)) throw new RapmTypeError('RAPM_TYPE', `Expected a Datastore for datastore but received ${describe(datastore)}`);
    this.datastore = datastore;
  }
  get keyDim(): number {
    return this.datastore.keyDim;
  }
  get size(): number {
    return this.datastore.size;
  }
  async search(queries: Float32Array, k: number): Promise<{ rows: Int32Array; similarities: Float32Array }> {
    const r = await this.datastore.search(queries, { k });
    return { rows: r.neighbors, similarities: r.similarities };
  }
}

/** The datastore's key columns, or null when it keeps all keyDim of them in order. */
export function keySelection(ds: Datastore): Int32Array | null {
  const identity = ds.keyIndices.length === ds.keyDim && ds.keyIndices.every((c, i) => c === i);
  return identity ? null : ds.keyIndices;
}

/** A Datastore's stored keys [size, d] (after key selection, L2-normalised) as float32. */
export function datastoreKeys(ds: Datastore, begin = 0, end = ds.size): Float32Array {
  const m = end - begin;
  const out = new Float32Array(m * ds.d);
  if (m === 0) return out;
  if (ds.precision === 'f32') {
    ds._exportRows(begin, end, out, null, null);
  } else if (ds.precision === 'int8') {
    // The stored key is scale * codes (native/core/int8_store.cpp), as f32.
    const codes = new Int8Array(m * ds.d);
    const scales = new Float32Array(m);
    ds._exportRows(begin, end, codes, null, null, scales);
    for (let i = 0; i < codes.length; i++) out[i] = Math.fround(scales[Math.floor(i / ds.d)]! * codes[i]!);
  } else {
    const raw = new Uint16Array(m * ds.d);
    ds._exportRows(begin, end, raw, null, null);
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < raw.length; i++) bits[i] = raw[i]! << 16; // bfloat16 -> float32 is exact
  }
  return out;
}

/** A Datastore's stored values [size, dv] (after value selection). */
export function datastoreValues(ds: Datastore, begin = 0, end = ds.size): Float32Array {
  const out = new Float32Array((end - begin) * ds.dv);
  if (end > begin) ds._exportRows(begin, end, null, out, null);
  return out;
}

export interface AnnSourceOptions extends Omit<AnnIndexOptions, 'd'> {
  /** Rows converted and added per block (bounds the transient float32 copy). Default 65,536. */
  block?: number;
}

/**
 * Approximate search through a faiss index whose row i is Datastore row i. Queries are
 * [b, keyDim] like the Datastore's; the key selection (Config B) is applied here.
 */
export class AnnSource implements NeighborSource {
  readonly name = 'ann';
  readonly index: AnnIndex;
  readonly keyDim: number;
  readonly keyIndices: Int32Array | null;

  /** `keyIndices`: query columns the index's d columns come from (null: all, keyDim === d). */
  constructor(index: AnnIndex, keyDim: number, keyIndices: Int32Array | null = null) {
    if (!(index instanceof AnnIndex)) throw invalidParam('index', 'AnnIndex', index);
    checkInteger('keyDim', keyDim, 1);
    if (keyIndices !== null) {
      if (!(keyIndices instanceof Int32Array)) throw invalidParam('keyIndices', 'Int32Array or null', keyIndices);
      if (keyIndices.length !== index.d) throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `Expected ${index.d} keyIndices (the index's d) but received ${keyIndices.length}`);
      for (const c of keyIndices) if (c < 0 || c >= keyDim) throw new RapmRangeError('RAPM_INVALID_ARG', `Expected keyIndices in [0, ${keyDim}) but found ${c}`);
    } else if (keyDim !== index.d) {
      throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `Expected keyDim = the index's d (${index.d}) without keyIndices but received ${keyDim}`);
    }
    this.index = index;
    this.keyDim = keyDim;
    this.keyIndices = keyIndices;
  }

  /**
   * Build (train on a sample, then add every row in order) an index over a Datastore's keys.
   * A snapshot: rows added to the Datastore afterwards are not searched.
   */
  static async fromDatastore(ds: Datastore, options: AnnSourceOptions): Promise<AnnSource> {
    if (!(ds instanceof Datastore)) throw new RapmTypeError('RAPM_TYPE', `Expected a Datastore for datastore but received ${describe(ds)}`);
    if (!is.object(options as unknown)) throw invalidParam('options', 'object', options);
    checkKnownKeys('AnnSource.fromDatastore', options, ['block', ...ANN_INDEX_OPTION_KEYS.filter((k) => k !== 'd')]);
    const n = ds.size;
    if (n === 0) throw new RapmError('RAPM_STATE', 'The datastore is empty: add() rows before building an approximate index');
    const block = options.block === undefined ? 65_536 : checkInteger('block', options.block, 1);
    const { block: _b, ...annOptions } = options;
    void _b;
    const index = AnnIndex.create({ ...annOptions, d: ds.d });
    if (index.needsTraining) {
      const trainRows = Math.min(n, index.trainSize);
      // An evenly spaced sample (AnnIndex.train subsamples larger inputs itself).
      if (trainRows === n) index.train(datastoreKeys(ds));
      else {
        const x = new Float32Array(trainRows * ds.d);
        for (let i = 0; i < trainRows; i++) {
          const r = Math.floor((i * n) / trainRows);
          x.set(datastoreKeys(ds, r, r + 1), i * ds.d);
        }
        index.train(x);
      }
    }
    for (let r = 0; r < n; r += block) await index.add(datastoreKeys(ds, r, Math.min(n, r + block)));
    return AnnSource.over(ds, index);
  }

  /** A source over an index already holding `ds`'s rows in order (e.g. AnnIndex.load of a saved one). */
  static over(ds: Datastore, index: AnnIndex): AnnSource {
    if (!(ds instanceof Datastore)) throw new RapmTypeError('RAPM_TYPE', `Expected a Datastore for datastore but received ${describe(ds)}`);
    if (!(index instanceof AnnIndex)) throw invalidParam('index', 'AnnIndex', index);
    if (index.d !== ds.d || index.ntotal !== ds.size) {
      throw new RapmError('RAPM_DATA', `The approximate index holds ${index.ntotal} rows of width ${index.d} but the datastore ${ds.size} rows of width ${ds.d}: it was built over another datastore`);
    }
    return new AnnSource(index, ds.keyDim, keySelection(ds));
  }

  get size(): number {
    return this.index.ntotal;
  }

  async search(queries: Float32Array, k: number): Promise<{ rows: Int32Array; similarities: Float32Array }> {
    checkMatrix('queries', queries, this.keyDim);
    const q = this.keyIndices ? selectColumns(queries, this.keyDim, this.keyIndices) : queries;
    const r = await this.index.searchAsync(q, k); // faiss on a libuv worker thread, off the event loop
    return { rows: r.neighbors, similarities: r.similarities };
  }
}

/** Datastore.search()'s shape plus `found` [b] and `missing`: rows are -1 (weight 0) where the source found fewer than k. */
export type SourcePrediction = AnnValuesSearchResult;

/**
 * rapm's retrieval prior over any NeighborSource: top-k from `source`, weights by `aggregate`
 * over the neighbours found, prior = sum of weight x values[row]. `values` [rows, dv] is
 * indexed by the source's row numbers. A query for which the source found no neighbour at all
 * is an error (RAPM_K_TOO_LARGE, as in Predictor), never a NaN prior.
 */
export async function predictFromSource(
  source: NeighborSource,
  values: Float32Array,
  queries: Float32Array,
  options?: Pick<SearchOptions, 'k' | 'tau' | 'aggregate'>,
): Promise<SourcePrediction> {
  if (!isNeighborSource(source)) throw invalidParam('source', 'NeighborSource', source);
  if (!(values instanceof Float32Array)) throw invalidParam('values', 'Float32Array', values);
  const opts = resolveSearchOptions(options);
  const b = checkMatrix('queries', queries, source.keyDim);
  if (opts.k > source.size) throw new RapmRangeError('RAPM_K_TOO_LARGE', `Expected k <= ${source.size} (rows in the ${source.name} source) but received k = ${opts.k}`);
  const size = source.size;
  if (values.length === 0 || values.length % size !== 0) {
    throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `Expected values to hold ${size} rows (one per row of the ${source.name} source) but received length ${values.length}`);
  }
  const dv = values.length / size;
  const { rows, similarities } = checkSourceResult(source, await source.search(queries, opts.k), b, opts.k, size, 'values');
  const agg = priorFromNeighbors(rows, similarities, values, dv, opts, `The neighbour source '${source.name}'`); // as Predictor: one code for one failure
  return { b, k: opts.k, prior: agg.prior, neighbors: rows, weights: agg.weights, similarities, found: agg.found, missing: agg.missing };
}
