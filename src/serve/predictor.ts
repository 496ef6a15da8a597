/**
 * Predictor: a Datastore, fixed retrieval settings and an optional fusion model, behind two
 * calls a service needs: predict() (Spanish prosody vectors) and explain() (which stored
 * utterances a prediction came from).
 *
 * Concurrency: predict() and explain() keep no state between calls, so any number may run
 * at once (the native search splits each across the addon's thread pool). Rows may be
 * appended with datastore.add() while they run: a search sees the datastore as it was when
 * that search started (the native store hands each search an immutable snapshot of its
 * segments), so every result is the result of a search over some prefix of the rows, never
 * a torn mix.
 *
 * Micro-batching (options.batching; off by default in the library, on in `rapm serve`):
 * concurrent predict() and explain() calls join one native search (src/serve/micro-batcher.ts)
 * and get results bit-identical to unbatched calls. The fusion model then runs per call on
 * that call's rows.
 *
 * Finite outputs only: a row whose squared L2 norm overflows float32 (values beyond about
 * 1.8e19; no feature vector is that large) is refused with RAPM_NON_FINITE before anything
 * runs, and a fusion output with NaN or Infinity is refused with RAPM_NON_FINITE naming the
 * row, never returned.
 */
import { RapmError, RapmRangeError, RapmTypeError, describe, invalidParam } from '../errors.js';
import { checkFinite, checkKnownKeys, checkMatrix, is } from '../validate.js';
import { F32_MAX } from '../data/dataset.js';
import { Datastore, type FastPath, type SearchResult } from '../retrieval/datastore.js';
import { resolveSearchOptions, type Aggregate } from '../retrieval/search-options.js';
import type { BundleInfo, BundleOverrides } from './bundle.js';
import { priorFromNeighbors } from '../retrieval/ann.js';
import { checkSourceResult, isNeighborSource, type NeighborSource } from '../retrieval/neighbor-source.js';
import { MicroBatcher, type BatchingOptions, type RowBlocks } from './micro-batcher.js';

export type { BatchingOptions } from './micro-batcher.js';


/**
 * The fusion network as the predictor calls it: `pred = prior + F([en, prior])`. FusionSession
 * (src/fusion/onnx-session.ts) has this shape; tests use small fakes.
 */
export interface FusionModel {
  run(en: Float32Array /* [n, keyDim] */, prior: Float32Array /* [n, dv] */): Promise<{ pred: Float32Array; delta: Float32Array }>;
}

/**
 * Where neighbours come from instead of the datastore's exact search: an approximate index or
 * an external engine (pgvector, ...). A `NeighborSource`
 * (src/retrieval/neighbor-source.ts; any object of that shape fits). Rows index the
 * Predictor's datastore, which still supplies values (for rapm's aggregation, priorFromNeighbors)
 * and ids (explain).
 */
export type PredictorNeighborSource = NeighborSource;

export interface PredictorOptions {
  /** Neighbours per query. Default 90 (src/settings.ts). */
  k?: number;
  /** Softmax temperature. Default 0.04. */
  tau?: number;
  /** Neighbour weighting. Default 'softmax'. */
  aggregate?: Aggregate;
  /** Fusion model applied to the retrieval prior; absent or null: pred = prior. */
  fusion?: FusionModel | null;
  /** The bundle this predictor was loaded from (reported by info; set by Predictor.fromBundle). */
  bundle?: BundleInfo | null;
  /**
   * Dynamic micro-batching of concurrent calls: true for the defaults, or limits
   * ({ maxBatchRows, maxWaitUs, maxQueueRows, maxConcurrent }). Default false.
   */
  batching?: boolean | BatchingOptions;
  /**
   * Neighbours from another source (approximate index, external engine) instead of the exact
   * native search; aggregation stays rapm's (priorFromNeighbors). Default: exact search.
   */
  source?: PredictorNeighborSource | null;
}

export interface PredictResult {
  /** Queries. */
  b: number;
  /** Output width (value columns of the datastore). */
  dv: number;
  k: number;
  /** Prediction, [b, dv]: prior + fusion delta, or the prior itself without fusion. */
  pred: Float32Array;
  /** Retrieval prior, [b, dv]. */
  prior: Float32Array;
  /** Datastore rows of the neighbours, best first, [b, k]. */
  neighbors: Int32Array;
  /** Aggregation weights, [b, k]. */
  weights: Float32Array;
  /** Cosine similarities of the neighbours, [b, k]. */
  similarities: Float32Array;
}

/** One neighbour behind a prediction. */
export interface Neighbor {
  /** Utterance id of the stored pair. */
  id: string;
  /** Datastore row. */
  row: number;
  weight: number;
  similarity: number;
}

/** @internal A search result whose per-query neighbour lists are built on demand (Predictor._explainRows). */
export interface ExplainRows {
  /** Queries. */
  b: number;
  k: number;
  /** Query q's neighbours, best first, as explain() lists them (fresh objects on each call). */
  neighborsOf(q: number): Neighbor[];
}

export interface PredictorInfo {
  rows: number;
  keyDim: number;
  d: number;
  dv: number;
  precision: 'f32' | 'bf16' | 'int8';
  /** The fast search path the datastore keeps (fastPath 'auto' resolved on this CPU; results equal the exact scan's). */
  fastPath: FastPath;
  k: number;
  tau: number;
  aggregate: Aggregate;
  fusion: boolean;
  /** The ONNX Runtime execution provider the fusion model actually runs on ('cpu' | 'cuda'), or null without fusion. */
  provider: string | null;
  /** The bundle served (trained settings, overrides, data hash), or null. */
  bundle: BundleInfo | null;
  /** Micro-batching limits, or null when off. */
  batching: Required<BatchingOptions> | null;
  /** Where neighbours come from: 'exact' (the native search) or the source's name. */
  source: string;
}

const PREDICTOR_OPTION_KEYS = ['k', 'tau', 'aggregate', 'fusion', 'bundle', 'batching', 'source'] as const satisfies readonly (keyof PredictorOptions)[];

export class Predictor {
  readonly datastore: Datastore;
  readonly k: number;
  readonly tau: number;
  readonly aggregate: Aggregate;
  readonly fusion: FusionModel | null;
  readonly bundle: BundleInfo | null;
  /** The micro-batcher (null when batching is off): queue depth and batch events for metrics. */
  readonly batcher: MicroBatcher | null;
  /** The neighbour source, or null for the exact native search. */
  readonly source: PredictorNeighborSource | null;

  constructor(datastore: Datastore, options: PredictorOptions = {}) {
    if (!(datastore instanceof Datastore)) throw new RapmTypeError('RAPM_TYPE', `Expected a Datastore for datastore but received ${describe(datastore)}`);
    if (!is.object(options as unknown)) throw invalidParam('options', 'object', options);
    checkKnownKeys('new Predictor', options, PREDICTOR_OPTION_KEYS);
    const { k, tau, aggregate } = resolveSearchOptions({ k: options.k, tau: options.tau, aggregate: options.aggregate });
    const fusion = options.fusion ?? null;
    if (fusion !== null && (typeof fusion !== 'object' || typeof (fusion as { run?: unknown }).run !== 'function')) {
      throw new RapmTypeError('RAPM_TYPE', `Expected an object with a run(en, prior) method for fusion but received ${describe(fusion)}`);
    }
    this.datastore = datastore;
    this.k = k;
    this.tau = tau;
    this.aggregate = aggregate;
    this.fusion = fusion;
    this.bundle = options.bundle ?? null;
    const source = options.source ?? null;
    if (source !== null) {
      if (!isNeighborSource(source)) {
        throw new RapmTypeError('RAPM_TYPE', `Expected a NeighborSource (name, keyDim, size, search(queries, k)) for source but received ${describe(source)}`);
      }
      if (source.keyDim !== datastore.keyDim) {
        throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `The neighbour source '${source.name}' takes queries of ${source.keyDim} values but the datastore's keyDim is ${datastore.keyDim}`);
      }
      if (source.size > datastore.size) {
        throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `The neighbour source '${source.name}' holds ${source.size} rows but the datastore only ${datastore.size}: its rows must index the datastore`);
      }
    }
    this.source = source;
    const batching = options.batching ?? false;
    if (typeof batching !== 'boolean' && !is.object(batching as unknown)) throw invalidParam('batching', 'boolean or object', batching);
    this.batcher =
      batching === false
        ? null
        : new MicroBatcher(datastore.keyDim, (x) => this.#nativeSearch(x), batching === true ? undefined : batching);
  }

  /** Input width: the key width of the datastore (1024 for HuBERT-large features). */
  get keyDim(): number {
    return this.datastore.keyDim;
  }
  get dv(): number {
    return this.datastore.dv;
  }

  get info(): PredictorInfo {
    const ds = this.datastore;
    const provider = this.fusion === null ? null : ((this.fusion as { provider?: unknown }).provider ?? 'custom');
    return { rows: ds.size, keyDim: ds.keyDim, d: ds.d, dv: ds.dv, precision: ds.precision, fastPath: ds.fastPath, k: this.k, tau: this.tau, aggregate: this.aggregate, fusion: this.fusion !== null, provider: provider === null ? null : String(provider), bundle: this.bundle, batching: this.batcher?.options ?? null, source: this.source?.name ?? 'exact' };
  }

  #nativeSearch(en: Float32Array): Promise<SearchResult> {
    return this.source ? this.#sourceSearch(en, this.source) : this.datastore.search(en, { k: this.k, tau: this.tau, aggregate: this.aggregate });
  }

  /** Neighbours from `source`, values gathered from the datastore (each distinct row once), rapm's aggregation. */
  async #sourceSearch(en: Float32Array, source: PredictorNeighborSource): Promise<RowBlocks> {
    const { k, dv } = this;
    const b = en.length / this.keyDim;
    // One check with predictFromSource: shape, rows in [-1, size), -1 only after the found rows, finite similarities (RAPM_DATA: the source's fault).
    const { rows, similarities: sims } = checkSourceResult(source, await source.search(en, k), b, k, this.datastore.size, 'the datastore');
    const slot = new Map<number, number>();
    const local = new Int32Array(b * k);
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i]!;
      if (r < 0) {
        local[i] = -1;
        continue;
      }
      let j = slot.get(r);
      if (j === undefined) slot.set(r, (j = slot.size));
      local[i] = j;
    }
    const values = new Float32Array(Math.max(1, slot.size) * dv);
    for (const [r, j] of slot) this.datastore._exportRows(r, r + 1, null, values.subarray(j * dv, (j + 1) * dv), null);
    const agg = priorFromNeighbors(local, sims, values, dv, { k, tau: this.tau, aggregate: this.aggregate }, `The neighbour source '${source.name}'`);
    return { b, k, prior: agg.prior, neighbors: rows.slice(), weights: agg.weights, similarities: sims.slice() };
  }

  /** Validates `en` ([b, keyDim], finite, each row's squared norm finite in float32) in one pass and runs the search (batched when on). */
  async #search(en: Float32Array): Promise<RowBlocks> {
    const d = this.keyDim;
    const b = checkMatrix('en', en, d);
    // One pass over the rows: the squared norm in double is NaN or Infinity exactly when the
    // row holds a NaN or an infinity (finite float32 squares cannot overflow a double), which
    // checkFinite then names (the first in the matrix, as it scans in the same order); a
    // finite norm beyond float32 is reported after the pass, so a non-finite value anywhere
    // takes precedence, as it did when checkFinite ran first.
    let overflow = -1, overflowNorm = 0;
    for (let r = 0; r < b; r++) {
      let s = 0;
      for (let j = r * d, e = j + d; j < e; j++) s += en[j]! * en[j]!;
      if (s - s !== 0) checkFinite('en', en, d);
      if (s > F32_MAX && overflow < 0) {
        overflow = r;
        overflowNorm = s;
      }
    }
    if (overflow >= 0) {
      throw new RapmRangeError(
        'RAPM_NON_FINITE',
        `Expected rows of en whose squared L2 norm fits float32 (values up to about 1.8e19) but row ${overflow} has squared norm ${overflowNorm.toPrecision(3)}, which overflows to Infinity`,
      );
    }
    return this.batcher ? this.batcher.submit(en, b) : this.#nativeSearch(en);
  }

  /** Spanish prosody vectors for English ones: en [b, keyDim] -> pred [b, dv] (and the retrieval behind it). */
  async predict(en: Float32Array /* [b, keyDim] */): Promise<PredictResult> {
    const r = await this.#search(en);
    const { b } = r;
    const dv = this.dv;
    let pred = r.prior;
    if (this.fusion) {
      let out: { pred: Float32Array; delta: Float32Array };
      try {
        out = await this.fusion.run(en, r.prior);
      } catch (e) {
        if (e instanceof Error && typeof (e as { code?: unknown }).code === 'string') throw e;
        throw new RapmError('RAPM_ONNX', `The fusion model failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
      if (!(out?.pred instanceof Float32Array) || out.pred.length !== b * dv) {
        throw new RapmError('RAPM_ONNX', `The fusion model returned pred ${describe(out?.pred)} but ${b * dv} values ([${b}, ${dv}]) were expected`);
      }
      pred = out.pred;
      for (let i = 0; i < pred.length; i++) {
        const x = pred[i]!;
        if (x - x !== 0) {
          throw new RapmRangeError(
            'RAPM_NON_FINITE',
            `The fusion model returned ${String(x)} for row ${Math.floor(i / dv)}, column ${i % dv} of pred: this input cannot be predicted by this model`,
          );
        }
      }
    }
    return { b, dv, k: r.k, pred, prior: r.prior, neighbors: r.neighbors, weights: r.weights, similarities: r.similarities };
  }

  /** The neighbours behind each prediction, best first: per query [{ id, row, weight, similarity }]. */
  async explain(en: Float32Array /* [b, keyDim] */): Promise<Neighbor[][]> {
    const r = await this._explainRows(en);
    const out: Neighbor[][] = [];
    for (let q = 0; q < r.b; q++) out.push(r.neighborsOf(q));
    return out;
  }

  /**
   * @internal (handler.ts: POST /explain) explain()'s search, with each query's list built only
   * when asked for (neighborsOf(q), the same list explain() returns for q). A streamed reply
   * builds one row's objects per piece: explain() of 1,024 rows at k = 1,601 built 1.6 million
   * objects in one synchronous run before the first byte went out (a 1.4 s event-loop stall).
   */
  async _explainRows(en: Float32Array /* [b, keyDim] */): Promise<ExplainRows> {
    const r = await this.#search(en);
    const ds = this.datastore;
    const { b, k, neighbors, weights, similarities } = r;
    return {
      b,
      k,
      neighborsOf: (q: number): Neighbor[] => {
        if (!Number.isInteger(q) || q < 0 || q >= b) throw new RapmRangeError('RAPM_INVALID_ARG', `Expected a query index in [0, ${b}) but received ${String(q)}`);
        const list: Neighbor[] = [];
        for (let i = q * k, e = i + k; i < e; i++) {
          const row = neighbors[i]!;
          if (row < 0) continue; // a neighbour source found fewer than k
          list.push({ id: ds.idOf(row), row, weight: weights[i]!, similarity: similarities[i]! });
        }
        return list;
      },
    };
  }

  /**
   * A predictor for a bundle folder (written by `rapm train --out` or `rapm index`), with the
   * bundle's trained k, tau and aggregation unless `overrides` says otherwise (each override is
   * reported through `overrides.log` and in `info.bundle.overrides`). Refuses a bundle whose
   * model and datastore do not belong together. See src/serve/bundle.ts.
   */
  static async fromBundle(dir: string, overrides: BundleOverrides = {}): Promise<Predictor> {
    const { loadBundle } = await import('./bundle.js');
    return loadBundle(dir, overrides);
  }
}
