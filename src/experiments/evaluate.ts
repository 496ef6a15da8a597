import type { Dataset } from '../data/dataset.js';
import { FEATURE_DIM, keyIndices, pickRows, selectColumns, valueIndices, type KeyConfig } from '../data/indices.js';
import { Rng } from '../rng.js';
import { RapmError } from '../errors.js';
import { pairedBootstrap, type PairedBootstrapResult } from '../eval/bootstrap.js';
import { mean, rowCosines } from '../eval/cosine.js';
import { fusionSpec, type ParamLayout } from '../fusion/layout.js';
import { scoreRows, trainMlp, type MlpBackend, type MlpData } from '../fusion/train.js';
import { Datastore } from '../retrieval/datastore.js';
import { IncrementalPriors } from '../retrieval/priors.js';
import type { Aggregate } from '../retrieval/search-options.js';

/** A fixed test set: EN vectors and their 101-dim targets. */
export interface TestSet {
  name: 'seen' | 'unseen';
  en: Float32Array; // [n, 1024]
  target: Float32Array; // [n, dv]
  n: number;
}

/** Training pairs: EN vectors, ES target/value vectors (already the value dims), utterance ids. */
export interface Pool {
  en: Float32Array; // [n, 1024]
  values: Float32Array; // [n, dv]
  ids: string[];
  n: number;
}

export interface PointOptions {
  config: KeyConfig;
  k: number;
  tau: number;
  aggregate: Aggregate;
  hidden: number[];
  dropout: number;
  seed: number;
  leaveOneOut: boolean;
  epochs: number;
  patience: number;
  batchSize: number;
  lr: number;
  weightDecay: number;
  valFraction: number;
  resamples: number;
  /** Confidence level of the bootstrap intervals. Default 0.95. */
  level?: number;
  /** Key precision of the datastore the priors come from. Default 'f32'. */
  precision?: 'f32' | 'bf16';
  backend: MlpBackend;
  /** Skip fusion: score plain retrieval only. */
  plainOnly?: boolean;
  progress?: (label: string, done: number, total: number) => void;
  log?: (line: string) => void;
}

export interface TestSetScore {
  name: 'seen' | 'unseen';
  n: number;
  plain: number;
  fusion: number;
  gain: PairedBootstrapResult;
  /** Per-row cosines, kept in memory for pooling across seeds (not written to results). */
  plainRows?: Float64Array;
  fusionRows?: Float64Array;
  /** The retrieval priors of the test rows [n, dv] (in memory only). */
  prior?: Float32Array;
}

export interface PointResult {
  pairs: number;
  tests: TestSetScore[];
  trainPlain: number;
  trainFusion: number;
  valPlain: number;
  valFusion: number;
  epochs: number;
  bestEpoch: number;
  trainSeconds: number;
  samplesPerSecond: number;
  layout: ParamLayout | null;
  params: Float32Array | null;
}

/**
 * Split labelled test rows into seen and unseen speakers (unseen: a speaker with no
 * training row). Rows without speakers count as seen.
 */
export function buildTestSets(test: Dataset, trainSpeakers: ReadonlySet<string>): TestSet[] {
  const dv = valueIndices();
  const out: TestSet[] = [];
  for (const name of ['seen', 'unseen'] as const) {
    const rows: number[] = [];
    for (let r = 0; r < test.n; r++) {
      const s = test.speakers?.[r] ?? null;
      if ((s !== null && !trainSpeakers.has(s) ? 'unseen' : 'seen') === name) rows.push(r);
    }
    if (rows.length < 2) continue;
    const en = new Float32Array(rows.length * FEATURE_DIM);
    const es = new Float32Array(rows.length * FEATURE_DIM);
    rows.forEach((r, i) => {
      en.set(test.en.subarray(r * FEATURE_DIM, (r + 1) * FEATURE_DIM), i * FEATURE_DIM);
      es.set(test.es.subarray(r * FEATURE_DIM, (r + 1) * FEATURE_DIM), i * FEATURE_DIM);
    });
    out.push({ name, en, target: selectColumns(es, FEATURE_DIM, dv), n: rows.length });
  }
  if (out.length === 0) throw new RapmError('RAPM_DATA', 'No test set: the data has fewer than 2 test rows');
  return out;
}

export function poolOf(ds: Dataset): Pool {
  return { en: ds.en, values: selectColumns(ds.es, FEATURE_DIM, valueIndices()), ids: ds.ids, n: ds.n };
}

/** Seeded split of n training rows into fit and validation (for early stopping). */
export function splitFitVal(n: number, valFraction: number, seed: number): { fit: Int32Array; val: Int32Array } {
  const perm = new Rng(seed, 23).permutation(n);
  const nv = Math.max(1, Math.min(n - 1, Math.round(n * valFraction)));
  return { fit: perm.slice(nv).sort(), val: perm.slice(0, nv).sort() };
}

export function subsetMlp(d: MlpData, rows: Int32Array, enDim: number, dv: number): MlpData {
  return { en: pickRows(d.en, enDim, rows), prior: d.prior ? pickRows(d.prior, dv, rows) : null, target: pickRows(d.target, dv, rows) };
}

/**
 * Given the datastore of the training pairs and their (leave-one-out) priors: fit the
 * fusion net on a seeded fit/validation split, and score plain retrieval and retrieval +
 * fusion on every test set, with a paired bootstrap interval for the gain.
 */
export async function fitAndScore(ds: Datastore, train: MlpData, tests: readonly TestSet[], o: PointOptions, stepSeed: number, label: string): Promise<PointResult> {
  const dv = ds.dv;
  const n = train.target.length / dv;
  const { fit, val } = splitFitVal(n, o.valFraction, stepSeed);
  const fitData = subsetMlp(train, fit, FEATURE_DIM, dv);
  const valData = subsetMlp(train, val, FEATURE_DIM, dv);
  let trained: Awaited<ReturnType<typeof trainMlp>> | null = null;
  if (!o.plainOnly) {
    let epoch = 0;
    let last = 0;
    trained = await trainMlp(o.backend, fusionSpec({ hidden: o.hidden, dropout: o.dropout }), fitData, valData, {
      epochs: o.epochs,
      patience: o.patience,
      batchSize: o.batchSize,
      lr: o.lr,
      weightDecay: o.weightDecay,
      seed: stepSeed >>> 0,
      // One bar for the whole training (all epochs), so elapsed and ETA run from its start; the
      // ETA is an upper bound (early stopping may end it sooner, and then the bar is closed below).
      onStep: (d, t) => {
        const now = performance.now();
        if (now - last > 250 || d === t) {
          last = now;
          o.progress?.(`${label}: fusion training (<= ${o.epochs} epochs)`, epoch * t + d, o.epochs * t);
        }
      },
      onEpoch: (e) => {
        epoch = e.epoch;
        o.log?.(`${label}: epoch ${e.epoch} train cos ${e.trainCosine.toFixed(4)} val cos ${e.valCosine.toFixed(4)}${e.best ? ' *' : ''} (${Math.round(e.samplesPerSecond)} samples/s)`);
      },
    });
    const steps = fitData.target.length / dv;
    o.progress?.(`${label}: fusion training (<= ${o.epochs} epochs)`, o.epochs * steps, o.epochs * steps);
  }
  const scores: TestSetScore[] = [];
  for (const t of tests) {
    const r = await ds.search(t.en, { k: o.k, tau: o.tau, aggregate: o.aggregate });
    const plainRows = rowCosines(r.prior, t.target, dv);
    const fusionRows = trained ? scoreRows(o.backend, trained.layout, trained.params, { en: t.en, prior: r.prior, target: t.target }) : plainRows;
    const gain = pairedBootstrap(plainRows, fusionRows, { resamples: o.resamples, level: o.level, seed: (stepSeed * 7919) >>> 0 });
    scores.push({ name: t.name, n: t.n, plain: gain.meanA, fusion: gain.meanB, gain, plainRows, fusionRows, prior: r.prior });
  }
  const trainPlain = mean(rowCosines(fitData.prior!, fitData.target, dv));
  const valPlain = mean(rowCosines(valData.prior!, valData.target, dv));
  return {
    pairs: n,
    tests: scores,
    trainPlain,
    trainFusion: trained ? mean(scoreRows(o.backend, trained.layout, trained.params, fitData)) : trainPlain,
    valPlain,
    valFusion: trained ? trained.bestValCosine : valPlain,
    epochs: trained?.history.length ?? 0,
    bestEpoch: trained?.bestEpoch ?? 0,
    trainSeconds: trained?.seconds ?? 0,
    samplesPerSecond: trained ? trained.history.reduce((a, e) => a + e.samplesPerSecond, 0) / Math.max(1, trained.history.length) : 0,
    layout: trained?.layout ?? null,
    params: trained?.params ?? null,
  };
}

/** One evaluation point from scratch: datastore of `pool`, leave-one-out priors, fusion, scores. */
export async function evaluatePoint(pool: Pool, tests: readonly TestSet[], o: PointOptions, stepSeed: number, label: string): Promise<PointResult> {
  // Values are already the target dims: the datastore stores them as given.
  const ds = new Datastore({ keyIndices: keyIndices(o.config), valueDim: pool.values.length / pool.n, precision: o.precision });
  await ds.add(pool.en, pool.values, pool.ids);
  const priors = new IncrementalPriors(ds, { k: o.k, tau: o.tau, aggregate: o.aggregate, leaveOneOut: o.leaveOneOut });
  await priors.update({ en: pool.en, ids: pool.ids }, (d, t) => o.progress?.(`${label}: priors`, d, t));
  const train: MlpData = { en: pool.en, prior: priors.priors(pool.values).prior, target: pool.values };
  return fitAndScore(ds, train, tests, o, stepSeed, label);
}

/** Rows drawn with replacement; the ids keep duplicates together for leave-one-out. */
export function sampleWithReplacement(pool: Pool, size: number, seed: number): Pool {
  const rng = new Rng(seed, 31);
  const rows = new Int32Array(size);
  for (let i = 0; i < size; i++) rows[i] = rng.int(pool.n);
  const dv = pool.values.length / pool.n;
  return { en: pickRows(pool.en, FEATURE_DIM, rows), values: pickRows(pool.values, dv, rows), ids: Array.from(rows, (r) => pool.ids[r]!), n: size };
}

/** Rows drawn without replacement (a seeded subset). */
export function sampleSubset(pool: Pool, size: number, seed: number): Pool {
  if (size > pool.n) throw new RapmError('RAPM_INVALID_ARG', `Expected a size <= ${pool.n} (the training pool) but received ${size}`);
  const rows = new Rng(seed, 37).permutation(pool.n).slice(0, size).sort();
  const dv = pool.values.length / pool.n;
  return { en: pickRows(pool.en, FEATURE_DIM, rows), values: pickRows(pool.values, dv, rows), ids: Array.from(rows, (r) => pool.ids[r]!), n: size };
}
