import type { Dataset } from '../data/dataset.js';
import { FEATURE_DIM, keyIndices, pickRows, selectColumns, valueIndices, type KeyConfig } from '../data/indices.js';
import { Rng } from '../rng.js';
import { RapmError } from '../errors.js';
import { checkSetting } from '../settings.js';
import { hierarchicalBootstrap, type ClusterUnit, type GainInterval } from '../eval/bootstrap.js';
import { mean, rowCosines } from '../eval/cosine.js';
import { fusionSpec, paramLayout, type ParamLayout } from '../fusion/layout.js';
import { checkMlpData, scoreRows, scoreRowsAsync, trainMlp, type MlpBackend, type MlpData } from '../fusion/train.js';
import { Datastore } from '../retrieval/datastore.js';
import { trainFusionSeeds } from './train-seeds.js';
import { IncrementalPriors } from '../retrieval/priors.js';
import type { Aggregate } from '../retrieval/search-options.js';

/** A fixed test set: EN vectors and their 101-dim targets. */
export interface TestSet {
  name: 'seen' | 'unseen';
  en: Float32Array; // [n, 1024]
  target: Float32Array; // [n, dv]
  n: number;
  /** Speaker of each row ('' or null when unknown); the cluster bootstrap's default unit. */
  speakers?: (string | null)[] | null;
  /** Conversation of each row, when the ids carry one (see conversationOf). */
  conversations?: (string | null)[] | null;
  /**
   * True when no row carries a speaker and nothing named the set: the rows went to 'seen' only
   * because they could not be placed, so the set is not a seen-speaker set, and the gain interval
   * cannot resample speakers (a bootstrap by row under --cluster-unit auto).
   */
  speakersUnknown?: boolean;
}

const noSpeaker = (s: string | null | undefined) => s === null || s === undefined || s === '';

/** "12 seen-speaker test pairs", or, for rows whose speakers are unknown, a phrase that does not claim seen speakers. */
export function testPairsText(t: { name: string; n: number; speakersUnknown?: boolean }): string {
  return t.speakersUnknown ? `${t.n} test pairs whose speakers are unknown (not split into seen and unseen)` : `${t.n} ${t.name}-speaker test pairs`;
}

/** The warning for a test set whose speakers are unknown (null otherwise): why its bootstrap is by row and its rows are not called seen. */
export function unknownSpeakersWarning(source: string, t: Pick<TestSet, 'n' | 'speakersUnknown'>): string | null {
  if (!t.speakersUnknown) return null;
  return `${source}: the ${t.n} test rows carry no speakers (no speakers.txt in the chunks, and no speaker from --speaker-pattern), so the gain interval is a bootstrap by row (speakers are unknown) and the rows are not split into seen and unseen speakers: they are scored as one test set (listed as 'seen', meaning only "not known to be unseen")`;
}

/** How the gain interval treats the test rows: a unit, or 'auto' (speaker when speakers are known, else row). */
export type ClusterChoice = ClusterUnit | 'auto';

/**
 * The conversation of an utterance id, when the id carries one: `<speaker>_<conversation>_<utterance>`
 * (three or more '_'-separated fields; the last is dropped). null otherwise.
 */
export function conversationOf(id: string): string | null {
  const parts = id.split('_');
  return parts.length >= 3 ? parts.slice(0, -1).join('_') : null;
}

/**
 * The cluster labels of a test set for `unit`, and the unit actually used. Rows without a
 * label become clusters of their own. 'auto' is speaker when any speaker is known, else row.
 * Asking for speaker or conversation clusters the test set does not carry is an error.
 */
export function clusterLabels(t: TestSet, unit: ClusterChoice): { unit: ClusterUnit; labels: string[] | null } {
  const known = (v: (string | null)[] | null | undefined) => !!v && v.some((x) => x !== null && x !== '');
  let u: ClusterUnit = unit === 'auto' ? (known(t.speakers) ? 'speaker' : 'row') : unit;
  if (u === 'row') return { unit: u, labels: null };
  const src = u === 'speaker' ? t.speakers : t.conversations;
  if (!known(src)) {
    throw new RapmError('RAPM_INVALID_ARG', `Expected ${u} labels on the ${t.name}-speaker test rows for --cluster-unit ${u}, but ${u === 'speaker' ? 'the data has no speakers' : "the utterance ids carry no conversation (<speaker>_<conversation>_<utterance>)"}; use --cluster-unit row`);
  }
  return { unit: u, labels: src!.map((x, i) => (x === null || x === '' ? `\u0000row${i}` : x)) };
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
  /** Fusion nets trained per point, each with its own initialisation, shuffling and validation split. Default: the trainSeeds setting's, 3 (as on the CLI and in runProgressive). */
  trainSeeds?: number;
  /** Unit the gain interval resamples; default 'auto' (speaker when speakers are known). */
  clusterUnit?: ClusterChoice;
  /** Confidence level of the bootstrap intervals. Default 0.95. */
  level?: number;
  /** Key precision of the datastore the priors come from. Default 'f32'. */
  precision?: 'f32' | 'bf16' | 'int8';
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
  /** The combined interval: hierarchical bootstrap over training seeds, clusters and rows. */
  gain: GainInterval;
  /** Per-row cosines (fusion: mean over training seeds), kept in memory for pooling (not written to results). */
  plainRows?: Float64Array;
  fusionRows?: Float64Array;
  /** Per training seed, per-row fusion cosines (in memory only). */
  fusionRowsBySeed?: Float64Array[];
  /** The retrieval priors of the test rows [n, dv] (in memory only). */
  prior?: Float32Array;
}

/** One training seed's net at a point. */
export interface SeedRun {
  /** The seed of its initialisation, shuffling and validation split. */
  seed: number;
  valFusion: number;
  /** Plain retrieval on this seed's validation rows. */
  valPlain: number;
  /** This net's mean cosine on its own fit rows (plain retrieval when fusion was skipped). */
  trainFusion: number;
  epochs: number;
  bestEpoch: number;
  /** This net's own training time; nets of a point may train at once, so these overlap. */
  trainSeconds: number;
  /** This net's minibatch rows per second of its minibatch time (shared cores when nets train at once). */
  samplesPerSecond: number;
  /** Its own gain per test set (mean over rows, no interval). */
  gains: { name: string; diff: number }[];
}

export interface PointResult {
  pairs: number;
  /** Per training seed; the fields below are means over seeds, except the training time and rate. */
  seeds: SeedRun[];
  /** The trained parameters per seed (in memory only; warm starts read them). */
  seedParams: (Float32Array | null)[];
  tests: TestSetScore[];
  trainPlain: number;
  trainFusion: number;
  valPlain: number;
  valFusion: number;
  epochs: number;
  bestEpoch: number;
  /** Wall time of training every seed's net (they may train at once; validation passes included). */
  trainSeconds: number;
  /** Minibatch rows of all seeds and epochs per second of trainSeconds: the training phase's throughput. */
  samplesPerSecond: number;
  /** The first seed's net (exports and ablations use it). */
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
    out.push({
      name,
      en,
      target: selectColumns(es, FEATURE_DIM, dv),
      n: rows.length,
      speakers: test.speakers ? rows.map((r) => test.speakers![r] ?? null) : null,
      conversations: rows.map((r) => conversationOf(test.ids[r]!)),
      ...(rows.every((r) => noSpeaker(test.speakers?.[r])) ? { speakersUnknown: true } : {}),
    });
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

/**
 * Split by utterance id: a row is a validation row when a seeded hash of its id falls below
 * valFraction. A row keeps its side as the datastore grows, so a warm-started net never
 * validates on rows it was fitted on at an earlier step. Falls back to {@link splitFitVal}
 * when the hash leaves either side empty.
 */
export function splitFitValByIds(ids: readonly string[], valFraction: number, seed: number): { fit: Int32Array; val: Int32Array } {
  const fit: number[] = [];
  const val: number[] = [];
  const cut = Math.floor(valFraction * 4294967296);
  for (let i = 0; i < ids.length; i++) (idHash(ids[i]!, seed) < cut ? val : fit).push(i);
  if (fit.length === 0 || val.length === 0) return splitFitVal(ids.length, valFraction, seed);
  return { fit: Int32Array.from(fit), val: Int32Array.from(val) };
}

/** FNV-1a over the id's UTF-16 units, seeded, then a murmur3 finaliser: uniform 32-bit. */
function idHash(id: string, seed: number): number {
  let h = (0x811c9dc5 ^ Math.imul(seed | 0, 0x9e3779b1)) >>> 0;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export function subsetMlp(d: MlpData, rows: Int32Array, enDim: number, dv: number): MlpData {
  return { en: pickRows(d.en, enDim, rows), prior: d.prior ? pickRows(d.prior, dv, rows) : null, target: pickRows(d.target, dv, rows) };
}

/** The seed of training seed `s` at a point seeded `stepSeed` (s = 0 keeps the one-seed numbers of earlier versions). */
export function trainSeedOf(stepSeed: number, s: number): number {
  return s === 0 ? stepSeed >>> 0 : (Math.imul(stepSeed ^ 0x5bd1e995, 0x9e3779b1) + Math.imul(s, 0x85ebca6b)) >>> 0;
}

export interface FitExtras {
  /** Utterance ids of the training rows: validation rows are chosen by id (stable as the data grows). */
  ids?: readonly string[];
  /** Warm start: per training seed, the parameters to start from (null: fresh). */
  init?: readonly (Float32Array | null)[];
  /** Seed of the id-based validation split per training seed (default: the run seed + s). */
  splitSeed?: number;
  /**
   * The first rows of train.en / train.target were validated at an earlier call and have not
   * changed (a training set that only grows: the progressive loop passes the previous step's row
   * count). Only the new rows and the priors are checked; default 0 (all).
   */
  checkedRows?: number;
}

/**
 * Given the datastore of the training pairs and their (leave-one-out) priors: fit
 * `trainSeeds` fusion nets, each on its own seeded fit/validation split with its own
 * initialisation and shuffling, and score plain retrieval and retrieval + fusion on every
 * test set. The gain interval is a hierarchical paired bootstrap over the seeds and the
 * test clusters (speakers by default).
 */
export async function fitAndScore(ds: Datastore, train: MlpData, tests: readonly TestSet[], o: PointOptions, stepSeed: number, label: string, extra: FitExtras = {}): Promise<PointResult> {
  const dv = ds.dv;
  const n = train.target.length / dv;
  const S = checkSetting('trainSeeds', o.trainSeeds);
  // Each seed's fit and validation rows are index lists into `train`: nothing is copied, and the
  // nets read the rows in place (trainMlp trainRows / valRows: the same weights as on copies).
  const runs: { seed: number; trained: Awaited<ReturnType<typeof trainMlp>> | null; fit: Int32Array; val: Int32Array }[] = [];
  for (let s = 0; s < S; s++) {
    const seed = trainSeedOf(stepSeed, s);
    const { fit, val } = extra.ids ? splitFitValByIds(extra.ids, o.valFraction, (extra.splitSeed ?? o.seed) + s) : splitFitVal(n, o.valFraction, seed);
    runs.push({ seed, trained: null, fit, val });
  }
  // All seeds' nets, several at once (train-seeds.ts); one bar for the whole training, so elapsed
  // and ETA run from its start (an upper bound: early stopping may end it sooner; closed below).
  let trainWall = 0;
  let trainRate = 0;
  // Each net's mean cosine on its fit rows (read in place), scored in its lane as soon as it has
  // trained, beside the nets still training (train-seeds.ts afterNet).
  const fitScores: number[] = new Array(S).fill(Number.NaN);
  if (!o.plainOnly) {
    const spec = fusionSpec({ hidden: o.hidden, dropout: o.dropout });
    // The one validation of the training rows (all seeds read them): only rows new since the last call.
    checkMlpData('train', train, paramLayout(spec), extra.checkedRows ?? 0);
    const bar = `${label}: fusion training${S > 1 ? `, ${S} seeds` : ''} (<= ${o.epochs} epochs)`;
    let last = 0;
    const t = await trainFusionSeeds(o.backend, spec, runs.map((r, s) => ({ seed: r.seed, fit: train, val: train, fitRows: r.fit, valRows: r.val, init: extra.init?.[s] ?? null })), {
      epochs: o.epochs,
      patience: o.patience,
      batchSize: o.batchSize,
      lr: o.lr,
      weightDecay: o.weightDecay,
      onProgress: (d, total) => {
        const now = performance.now();
        if (now - last > 250 || d === total) {
          last = now;
          o.progress?.(bar, d, total);
        }
      },
      onEpoch: (s, e) => o.log?.(`${S > 1 ? `${label} seed ${s + 1}/${S}` : label}: epoch ${e.epoch} train cos ${e.trainCosine.toFixed(4)} val cos ${e.valCosine.toFixed(4)}${e.best ? ' *' : ''} (${Math.round(e.samplesPerSecond)} samples/s)`),
      dataChecked: true,
      afterNet: async (s, r, threads) => {
        fitScores[s] = mean(await scoreRowsAsync(o.backend, r.layout, r.params, train, runs[s]!.fit, threads));
      },
    });
    t.results.forEach((r, s) => (runs[s]!.trained = r));
    trainWall = t.seconds;
    trainRate = t.samplesPerSecond;
    o.progress?.(bar, 1, 1);
  }
  const scores: TestSetScore[] = [];
  const seedGains: { name: string; diff: number }[][] = runs.map(() => []);
  for (const t of tests) {
    const r = await ds.search(t.en, { k: o.k, tau: o.tau, aggregate: o.aggregate });
    const plainRows = rowCosines(r.prior, t.target, dv);
    const bySeed = runs.map((run) => (run.trained ? scoreRows(o.backend, run.trained.layout, run.trained.params, { en: t.en, prior: r.prior, target: t.target }) : plainRows));
    const { unit, labels } = clusterLabels(t, o.clusterUnit ?? 'auto');
    const gain = hierarchicalBootstrap(bySeed.map(() => plainRows), bySeed, labels, { resamples: o.resamples, level: o.level, seed: (stepSeed * 7919) >>> 0, unit });
    const fusionRows = new Float64Array(t.n);
    for (const f of bySeed) for (let i = 0; i < t.n; i++) fusionRows[i] = fusionRows[i]! + f[i]! / S;
    gain.seedGains.forEach((g, s) => seedGains[s]!.push({ name: t.name, diff: g }));
    scores.push({ name: t.name, n: t.n, plain: gain.meanA, fusion: gain.meanB, gain, plainRows, fusionRows, fusionRowsBySeed: bySeed, prior: r.prior });
  }
  // Plain retrieval's cosine of every training row, once: each seed's fit/validation means read it.
  const plainTrain = rowCosines(train.prior!, train.target, dv);
  const seeds: SeedRun[] = runs.map((run, s) => {
    const h = run.trained?.history ?? [];
    return {
      seed: run.seed,
      valFusion: run.trained ? run.trained.bestValCosine : meanAt(plainTrain, run.val),
      valPlain: meanAt(plainTrain, run.val),
      trainFusion: run.trained ? fitScores[s]! : meanAt(plainTrain, run.fit),
      epochs: h.length,
      bestEpoch: run.trained?.bestEpoch ?? 0,
      trainSeconds: run.trained?.seconds ?? 0,
      // Minibatch samples over minibatch time, all epochs (validation excluded).
      samplesPerSecond: h.length ? (h.length * run.fit.length) / h.reduce((a, e) => a + (e.seconds - e.valSeconds), 0) : 0,
      gains: seedGains[s]!,
    };
  });
  const avg = (f: (r: SeedRun) => number) => seeds.reduce((a, r) => a + f(r), 0) / S;
  const first = runs[0]!;
  const trainPlain = meanAt(plainTrain, first.fit);
  const valPlain = meanAt(plainTrain, first.val);
  const trainFusion = avg((r) => r.trainFusion);
  return {
    pairs: n,
    seeds,
    seedParams: runs.map((run) => run.trained?.params ?? null),
    tests: scores,
    trainPlain,
    trainFusion,
    valPlain,
    valFusion: avg((r) => r.valFusion),
    epochs: avg((r) => r.epochs),
    bestEpoch: avg((r) => r.bestEpoch),
    trainSeconds: trainWall,
    samplesPerSecond: trainRate,
    layout: first.trained?.layout ?? null,
    params: first.trained?.params ?? null,
  };
}

/** mean(v[rows[0]], v[rows[1]], ...) in that order: the mean over a row subset, as on a copy of it. */
function meanAt(v: Float64Array, rows: Int32Array): number {
  let sum = 0;
  for (let i = 0; i < rows.length; i++) sum += v[rows[i]!]!;
  return rows.length ? sum / rows.length : Number.NaN;
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

const signed = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(4)}`;

/**
 * "gain +0.0077 [+0.0052, +0.0101], 3 training seeds, speaker-clustered, 65 speakers". `runs`
 * names what the interval's seed stage resampled when its draws are not all training seeds of one
 * data set (subsample: "2 data samples x 1 training seed").
 */
export function describeGain(g: GainInterval, runs?: string): string {
  const seeds = runs ?? `${g.seeds} training seed${g.seeds === 1 ? '' : 's'}`;
  const unit = g.unit === 'row' ? 'row bootstrap' : `${g.unit}-clustered, ${g.clusters} ${g.unit}s`;
  return `gain ${signed(g.diff)} [${signed(g.lo)}, ${signed(g.hi)}], ${seeds}, ${unit}`;
}
