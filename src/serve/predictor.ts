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
 */
import { RapmError, RapmTypeError, describe, invalidParam } from '../errors.js';
import { checkFinite, checkMatrix, is } from '../validate.js';
import { Datastore, type SearchResult } from '../retrieval/datastore.js';
import { resolveSearchOptions, type Aggregate } from '../retrieval/search-options.js';
import type { BundleInfo, BundleOverrides } from './bundle.js';

/**
 * The fusion network as the predictor calls it: `pred = prior + F([en, prior])`. FusionSession
 * (src/fusion/onnx-session.ts) has this shape; tests use small fakes.
 */
export interface FusionModel {
  run(en: Float32Array /* [n, keyDim] */, prior: Float32Array /* [n, dv] */): Promise<{ pred: Float32Array; delta: Float32Array }>;
}

export interface PredictorOptions {
  /** Neighbours per query. Default 70. */
  k?: number;
  /** Softmax temperature. Default 0.04. */
  tau?: number;
  /** Neighbour weighting. Default 'softmax'. */
  aggregate?: Aggregate;
  /** Fusion model applied to the retrieval prior; absent or null: pred = prior. */
  fusion?: FusionModel | null;
  /** The bundle this predictor was loaded from (reported by info; set by Predictor.fromBundle). */
  bundle?: BundleInfo | null;
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

export interface PredictorInfo {
  rows: number;
  keyDim: number;
  d: number;
  dv: number;
  precision: 'f32' | 'bf16';
  k: number;
  tau: number;
  aggregate: Aggregate;
  fusion: boolean;
  /** The ONNX Runtime execution provider the fusion model actually runs on ('cpu' | 'cuda'), or null without fusion. */
  provider: string | null;
  /** The bundle served (trained settings, overrides, data hash), or null. */
  bundle: BundleInfo | null;
}

export class Predictor {
  readonly datastore: Datastore;
  readonly k: number;
  readonly tau: number;
  readonly aggregate: Aggregate;
  readonly fusion: FusionModel | null;
  readonly bundle: BundleInfo | null;

  constructor(datastore: Datastore, options: PredictorOptions = {}) {
    if (!(datastore instanceof Datastore)) throw new RapmTypeError('RAPM_TYPE', `Expected a Datastore for datastore but received ${describe(datastore)}`);
    if (!is.object(options as unknown)) throw invalidParam('options', 'object', options);
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
    return { rows: ds.size, keyDim: ds.keyDim, d: ds.d, dv: ds.dv, precision: ds.precision, k: this.k, tau: this.tau, aggregate: this.aggregate, fusion: this.fusion !== null, provider: provider === null ? null : String(provider), bundle: this.bundle };
  }

  /** Validates `en` ([b, keyDim], finite) and runs the search. */
  async #search(en: Float32Array): Promise<SearchResult> {
    checkMatrix('en', en, this.keyDim);
    checkFinite('en', en, this.keyDim);
    return this.datastore.search(en, { k: this.k, tau: this.tau, aggregate: this.aggregate });
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
    }
    return { b, dv, k: r.k, pred, prior: r.prior, neighbors: r.neighbors, weights: r.weights, similarities: r.similarities };
  }

  /** The neighbours behind each prediction, best first: per query [{ id, row, weight, similarity }]. */
  async explain(en: Float32Array /* [b, keyDim] */): Promise<Neighbor[][]> {
    const r = await this.#search(en);
    const out: Neighbor[][] = [];
    for (let q = 0; q < r.b; q++) {
      const list: Neighbor[] = [];
      for (let j = 0; j < r.k; j++) {
        const i = q * r.k + j;
        const row = r.neighbors[i]!;
        list.push({ id: this.datastore.idOf(row), row, weight: r.weights[i]!, similarity: r.similarities[i]! });
      }
      out.push(list);
    }
    return out;
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
