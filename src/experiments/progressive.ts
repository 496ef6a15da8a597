import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ensureDir, writeFileAtomicSync } from '../data/atomic.js';
import { iterateChunks } from '../data/chunks.js';
import { createDatasetHasher } from '../data/hash.js';
import { FEATURE_DIM, keyIndices, selectColumns, valueIndices, type KeyConfig } from '../data/indices.js';
import { Rng } from '../data/rng.js';
import { RapmError } from '../errors.js';
import { pairedBootstrap, type PairedBootstrapResult } from '../eval/bootstrap.js';
import { mean, rowCosines } from '../eval/cosine.js';
import { fusionSpec } from '../fusion/layout.js';
import { scoreRows, trainMlp, type MlpBackend, type MlpData } from '../fusion/train.js';
import { Datastore } from '../retrieval/datastore.js';
import { IncrementalPriors } from '../retrieval/priors.js';
import type { Aggregate } from '../retrieval/search-options.js';
import { GrowableRows } from './growable.js';
import { recommend, type Recommendation } from './recommend.js';
import { finishRecord, startRecord, type RunRecord } from './run-record.js';
import { writeProgressiveReport } from './progressive-report.js';

export interface ProgressiveOptions {
  /** Folder of chunk folders, processed in name order. */
  chunks: string;
  /** Results folder (state.json, results.json/.csv, plots, report.md). */
  out: string;
  config?: KeyConfig;
  k?: number;
  tau?: number;
  aggregate?: Aggregate;
  hidden?: number[];
  dropout?: number;
  seed?: number;
  /** Fusion is worth enabling when its gain exceeds this with an interval above zero. Default 0.001. */
  threshold?: number;
  /** Run every chunk even after the stop rule fires. */
  all?: boolean;
  /** Continue from the last finished step in `out`. */
  resume?: boolean;
  /** Replace results already in `out` (otherwise refused). */
  overwrite?: boolean;
  /** Which test set the stop rule reads: 'seen' (default) or 'unseen'. */
  decideOn?: 'seen' | 'unseen';
  /** Leave-one-out training priors (default true); false reproduces the reference's leaky priors. */
  leaveOneOut?: boolean;
  epochs?: number;
  patience?: number;
  batchSize?: number;
  lr?: number;
  weightDecay?: number;
  /** Share of the training rows held out for early stopping. Default 0.1. */
  valFraction?: number;
  /** Bootstrap resamples per interval (>= 1000). Default 2000. */
  resamples?: number;
  /** Stop after this many steps (testing and time-boxed runs). */
  maxSteps?: number;
  backend: MlpBackend;
  log?: (line: string) => void;
  progress?: (label: string, done: number, total: number) => void;
}

export const PROGRESSIVE_DEFAULTS = {
  config: 'A' as KeyConfig,
  k: 90,
  tau: 0.04,
  aggregate: 'softmax' as Aggregate,
  hidden: [256, 128],
  dropout: 0.1,
  seed: 1,
  threshold: 0.001,
  decideOn: 'seen' as 'seen' | 'unseen',
  leaveOneOut: true,
  epochs: 100,
  patience: 5,
  batchSize: 32,
  lr: 1e-3,
  weightDecay: 1e-4,
  valFraction: 0.1,
  resamples: 2000,
};

export interface TestSetScore {
  name: 'seen' | 'unseen';
  n: number;
  plain: number;
  fusion: number;
  gain: PairedBootstrapResult;
}

export interface StepResult {
  step: number;
  chunk: string;
  /** Training pairs in the datastore after this step. */
  pairs: number;
  tests: TestSetScore[];
  /** Leave-one-out scores on the rows fusion was fitted on: plain prior and fusion. */
  trainPlain: number;
  trainFusion: number;
  valFusion: number;
  valPlain: number;
  epochs: number;
  bestEpoch: number;
  seconds: { add: number; priors: number; train: number; eval: number; total: number };
  samplesPerSecond: number;
  /** The stop rule held at this step. */
  useful: boolean;
}

export interface ProgressiveResult {
  status: 'running' | 'complete';
  record: RunRecord;
  steps: StepResult[];
  /** First step at which fusion paid off, or null. */
  firstUseful: number | null;
  decision: string;
  recommendation: Recommendation | null;
}

interface State {
  version: 1;
  optionsKey: string;
  record: RunRecord;
  steps: StepResult[];
  complete: boolean;
}

const STATE = 'state.json';

/** The options that decide the numbers (and so must match on --resume). */
function optionsKey(o: Required<Omit<ProgressiveOptions, 'backend' | 'log' | 'progress' | 'resume' | 'overwrite' | 'all' | 'maxSteps' | 'out'>>, dataHash: string): string {
  return createHash('sha256').update(JSON.stringify({ ...o, chunks: undefined, dataHash })).digest('hex').slice(0, 16);
}

interface TestSet {
  name: 'seen' | 'unseen';
  en: Float32Array; // [n, 1024]
  target: Float32Array; // [n, 101]
  n: number;
}

/**
 * The progressive validation loop (seed report §9.3): grow the datastore chunk by chunk,
 * and at each step score plain retrieval and retrieval + fusion (trained on leave-one-out
 * priors) on fixed test sets, with a paired bootstrap interval for the gain. Stops at the
 * first step whose gain exceeds the threshold with an interval above zero (or runs all
 * chunks with `all`). State is written after every step; `resume` continues after a crash
 * and ends with the same numbers as an uninterrupted run.
 */
export async function runProgressive(options: ProgressiveOptions): Promise<ProgressiveResult> {
  const o = { ...PROGRESSIVE_DEFAULTS, ...options };
  const log = o.log ?? (() => {});
  const out = path.resolve(o.out);
  const keyIdx = keyIndices(o.config);
  const valIdx = valueIndices();
  const dv = valIdx.length;
  if (o.resamples < 1000) throw new RapmError('RAPM_INVALID_ARG', `Expected resamples >= 1000 but received ${o.resamples}`);

  // Pass 1: the fixed test sets (rows marked 'test'), the speakers of the training rows, the data hash.
  const hasher = createDatasetHasher();
  const layoutHash = createHash('sha256'); // chunk names and splits: which rows are test rows
  const seenTrainSpeakers = new Set<string>();
  const testRows: { en: Float32Array; es: Float32Array; speaker: string | null }[] = [];
  const trainChunks: string[] = [];
  for await (const c of iterateChunks(o.chunks, { onProgress: (d, t) => o.progress?.('scanning chunks', d, t) })) {
    hasher.update(c);
    layoutHash.update(`${c.name}\n${c.split ? c.split.join(',') : 'all-train'}\n`);
    let train = 0;
    for (let r = 0; r < c.n; r++) {
      if (c.split?.[r] === 'test') {
        testRows.push({ en: c.en.slice(r * FEATURE_DIM, (r + 1) * FEATURE_DIM), es: c.es.slice(r * FEATURE_DIM, (r + 1) * FEATURE_DIM), speaker: c.speakers?.[r] ?? null });
      } else {
        train++;
        if (c.speakers) seenTrainSpeakers.add(c.speakers[r]!);
      }
    }
    if (train > 0) trainChunks.push(c.name);
  }
  const dataHash = `${hasher.digest()}+layout:${layoutHash.digest('hex').slice(0, 16)}`;
  if (trainChunks.length === 0) throw new RapmError('RAPM_DATA', `No training rows in ${o.chunks}: every chunk is a test set`);
  if (testRows.length < 2) throw new RapmError('RAPM_DATA', `No test set in ${o.chunks}: mark held-out rows 'test' in a chunk's split.txt (the initial chunk's official split, for example)`);
  const tests: TestSet[] = [];
  for (const name of ['seen', 'unseen'] as const) {
    const rows = testRows.filter((t) => (t.speaker !== null && !seenTrainSpeakers.has(t.speaker) ? 'unseen' : 'seen') === name);
    if (rows.length < 2) continue;
    const en = new Float32Array(rows.length * FEATURE_DIM);
    const es = new Float32Array(rows.length * FEATURE_DIM);
    rows.forEach((t, i) => {
      en.set(t.en, i * FEATURE_DIM);
      es.set(t.es, i * FEATURE_DIM);
    });
    tests.push({ name, en, target: selectColumns(es, FEATURE_DIM, valIdx), n: rows.length });
  }
  const decider = tests.find((t) => t.name === o.decideOn) ?? tests[0]!;

  const key = optionsKey(
    { chunks: o.chunks, config: o.config, k: o.k, tau: o.tau, aggregate: o.aggregate, hidden: o.hidden, dropout: o.dropout, seed: o.seed, threshold: o.threshold, decideOn: o.decideOn, leaveOneOut: o.leaveOneOut, epochs: o.epochs, patience: o.patience, batchSize: o.batchSize, lr: o.lr, weightDecay: o.weightDecay, valFraction: o.valFraction, resamples: o.resamples },
    dataHash,
  );
  const statePath = path.join(out, STATE);
  let state: State | null = null;
  if (fs.existsSync(statePath)) {
    if (o.resume) {
      state = readState(statePath);
      if (state.optionsKey !== key) {
        throw new RapmError('RAPM_STATE', `Cannot resume ${out}: it was started with other options or other data (state ${state.optionsKey}, now ${key}). Use another --out, or --overwrite to start again`);
      }
      log(`resuming ${out}: ${state.steps.length} step(s) done`);
    } else if (!o.overwrite) {
      throw new RapmError('RAPM_STATE', `${out} already holds a progressive run: pass --resume to continue it or --overwrite to replace it`);
    }
  }
  ensureDir(out);
  const config = { chunks: path.resolve(o.chunks), config: o.config, k: o.k, tau: o.tau, aggregate: o.aggregate, hidden: o.hidden, dropout: o.dropout, threshold: o.threshold, decideOn: decider.name, leaveOneOut: o.leaveOneOut, epochs: o.epochs, patience: o.patience, batchSize: o.batchSize, lr: o.lr, weightDecay: o.weightDecay, valFraction: o.valFraction, resamples: o.resamples, tests: tests.map((t) => ({ name: t.name, n: t.n })) };
  if (!state) state = { version: 1, optionsKey: key, record: startRecord('progressive', o.seed, config, { hash: dataHash, source: path.resolve(o.chunks) }), steps: [], complete: false };

  const ds = new Datastore({ keyIndices: keyIdx, valueIndices: valIdx });
  const priors = new IncrementalPriors(ds, { k: o.k, tau: o.tau, aggregate: o.aggregate, leaveOneOut: o.leaveOneOut });
  const en = new GrowableRows(FEATURE_DIM);
  const values = new GrowableRows(dv);
  const ids: string[] = [];
  const spec = fusionSpec({ hidden: o.hidden, dropout: o.dropout });
  let stepIndex = 0;
  const resultOf = (status: 'running' | 'complete'): ProgressiveResult => finalResult(state!, status, o.threshold, decider.name, { k: o.k, tau: o.tau, aggregate: o.aggregate, hidden: o.hidden, dropout: o.dropout });
  let stop = state.complete;

  for await (const c of iterateChunks(o.chunks)) {
    if (stop) break;
    const trainIdx: number[] = [];
    for (let r = 0; r < c.n; r++) if (c.split?.[r] !== 'test') trainIdx.push(r);
    if (trainIdx.length === 0) continue;
    stepIndex++;
    const done = state.steps.find((s) => s.step === stepIndex);
    const t0 = performance.now();
    const cEn = trainIdx.length === c.n ? c.en : pickRows(c.en, FEATURE_DIM, trainIdx);
    const cEs = trainIdx.length === c.n ? c.es : pickRows(c.es, FEATURE_DIM, trainIdx);
    const cIds = trainIdx.map((r) => c.ids[r]!);
    await ds.add(cEn, cEs, cIds);
    en.push(cEn);
    values.push(selectColumns(cEs, FEATURE_DIM, valIdx));
    ids.push(...cIds);
    const tAdd = performance.now();
    if (done) {
      // Finished before a restart: rebuild the datastore only; priors are brought up to date
      // in one pass at the first step that still has to run.
      log(`step ${stepIndex} (${c.name}): done before, ${done.pairs} pairs`);
      if (done.useful && !o.all) stop = true;
      continue;
    }
    if (priors.size < ids.length) {
      await priors.update({ en: en.view().subarray(priors.size * FEATURE_DIM), ids: ids.slice(priors.size) }, (d, t) => o.progress?.(`step ${stepIndex}: leave-one-out priors`, d, t));
    } else {
      await priors.update(undefined, (d, t) => o.progress?.(`step ${stepIndex}: leave-one-out priors`, d, t));
    }
    const tPriors = performance.now();
    const n = ids.length;
    const trainPrior = priors.priors(values.view()).prior;
    const { fit, val } = splitFitVal(n, o.valFraction, o.seed + stepIndex);
    const all: MlpData = { en: en.view(), prior: trainPrior, target: values.view() };
    const fitData = subsetMlp(all, fit, dv);
    const valData = subsetMlp(all, val, dv);
    let lastLine = 0;
    const trained = await trainMlp(o.backend, spec, fitData, valData, {
      epochs: o.epochs,
      patience: o.patience,
      batchSize: o.batchSize,
      lr: o.lr,
      weightDecay: o.weightDecay,
      seed: (o.seed * 1000 + stepIndex) >>> 0,
      onStep: (d, t) => {
        const now = performance.now();
        if (now - lastLine > 250 || d === t) {
          lastLine = now;
          o.progress?.(`step ${stepIndex}: fusion epoch ${trained_epochs + 1}`, d, t);
        }
      },
      onEpoch: (e) => {
        trained_epochs = e.epoch;
        log(`step ${stepIndex}: epoch ${e.epoch} train cos ${e.trainCosine.toFixed(4)} val cos ${e.valCosine.toFixed(4)}${e.best ? ' *' : ''} (${Math.round(e.samplesPerSecond)} samples/s)`);
      },
    });
    const tTrain = performance.now();

    const scores: TestSetScore[] = [];
    for (const t of tests) {
      const r = await ds.search(t.en, { k: o.k, tau: o.tau, aggregate: o.aggregate });
      const plainRows = rowCosines(r.prior, t.target, dv);
      const fusionRows = scoreRows(o.backend, trained.layout, trained.params, { en: t.en, prior: r.prior, target: t.target });
      const gain = pairedBootstrap(plainRows, fusionRows, { resamples: o.resamples, seed: (o.seed * 7919 + stepIndex) >>> 0 });
      scores.push({ name: t.name, n: t.n, plain: gain.meanA, fusion: gain.meanB, gain });
    }
    const trainFusion = mean(scoreRows(o.backend, trained.layout, trained.params, fitData));
    const trainPlain = mean(rowCosines(fitData.prior!, fitData.target, dv));
    const valPlain = mean(rowCosines(valData.prior!, valData.target, dv));
    const tEval = performance.now();
    const dec = scores.find((s) => s.name === decider.name)!;
    const useful = dec.gain.diff > o.threshold && dec.gain.lo > 0;
    const step: StepResult = {
      step: stepIndex,
      chunk: c.name,
      pairs: n,
      tests: scores,
      trainPlain,
      trainFusion,
      valFusion: trained.bestValCosine,
      valPlain,
      epochs: trained.history.length,
      bestEpoch: trained.bestEpoch,
      seconds: { add: (tAdd - t0) / 1000, priors: (tPriors - tAdd) / 1000, train: (tTrain - tPriors) / 1000, eval: (tEval - tTrain) / 1000, total: (tEval - t0) / 1000 },
      samplesPerSecond: trained.history.reduce((a, e) => a + e.samplesPerSecond, 0) / Math.max(1, trained.history.length),
      useful,
    };
    state.steps.push(step);
    const line = scores.map((s) => `${s.name} plain ${s.plain.toFixed(4)} fusion ${s.fusion.toFixed(4)} gain ${fmtSigned(s.gain.diff)} [${fmtSigned(s.gain.lo)}, ${fmtSigned(s.gain.hi)}]`).join('; ');
    log(`step ${stepIndex} (${c.name}, ${n} pairs): ${line}; ${step.seconds.total.toFixed(1)} s`);
    if (o.maxSteps !== undefined && stepIndex >= o.maxSteps) stop = true;
    if (useful && !o.all) stop = true;
    writeState(statePath, state);
    writeProgressiveReport(out, resultOf('running'));
  }
  state.complete = true;
  state.record = finishRecord(state.record);
  writeState(statePath, state);
  const result = resultOf('complete');
  writeProgressiveReport(out, result);
  return result;
}

// Epoch counter for the progress label (set by onEpoch, read by onStep).
let trained_epochs = 0;

function fmtSigned(x: number): string {
  return `${x >= 0 ? '+' : ''}${x.toFixed(4)}`;
}

function finalResult(state: State, status: 'running' | 'complete', threshold: number, decideOn: string, cfg: { k: number; tau: number; aggregate: Aggregate; hidden: number[]; dropout: number }): ProgressiveResult {
  const first = state.steps.find((s) => s.useful) ?? null;
  let decision: string;
  if (first) {
    const g = first.tests.find((t) => t.name === decideOn)!.gain;
    decision = `At ${first.pairs} pairs fusion becomes useful: gain ${fmtSigned(g.diff)} [${fmtSigned(g.lo)}, ${fmtSigned(g.hi)}] on ${g.n} ${decideOn}-speaker test pairs`;
  } else {
    const last = state.steps.at(-1);
    const g = last?.tests.find((t) => t.name === decideOn)?.gain;
    decision = last && g
      ? `Fusion did not become useful up to ${last.pairs} pairs: last gain ${fmtSigned(g.diff)} [${fmtSigned(g.lo)}, ${fmtSigned(g.hi)}] (threshold +${threshold} with an interval above zero)`
      : 'No step finished';
  }
  return { status, record: state.record, steps: state.steps, firstUseful: first?.step ?? null, decision, recommendation: state.steps.length ? recommend(state.steps, { threshold, decideOn, ...cfg }) : null };
}

function readState(file: string): State {
  let s: State;
  try {
    s = JSON.parse(fs.readFileSync(file, 'utf8')) as State;
  } catch (e) {
    throw new RapmError('RAPM_FORMAT', `Cannot read the progressive state ${file}: ${(e as Error).message}`);
  }
  if (s?.version !== 1 || !Array.isArray(s.steps)) throw new RapmError('RAPM_FORMAT', `${file} is not a rapm progressive state (version 1)`);
  return s;
}

function writeState(file: string, s: State): void {
  writeFileAtomicSync(file, JSON.stringify(s, null, 1) + '\n');
}

function pickRows(m: Float32Array, d: number, rows: readonly number[]): Float32Array {
  const out = new Float32Array(rows.length * d);
  rows.forEach((r, i) => out.set(m.subarray(r * d, (r + 1) * d), i * d));
  return out;
}

/** Seeded split of n training rows into fit and validation (for early stopping). */
export function splitFitVal(n: number, valFraction: number, seed: number): { fit: Int32Array; val: Int32Array } {
  const perm = new Rng(seed, 23).permutation(n);
  const nv = Math.max(1, Math.min(n - 1, Math.round(n * valFraction)));
  const val = perm.slice(0, nv).sort();
  const fit = perm.slice(nv).sort();
  return { fit, val };
}

export function subsetMlp(d: MlpData, rows: Int32Array, dv: number): MlpData {
  const enDim = d.en.length / (d.target.length / dv);
  return {
    en: pickRows(d.en, enDim, Array.from(rows)),
    prior: d.prior ? pickRows(d.prior, dv, Array.from(rows)) : null,
    target: pickRows(d.target, dv, Array.from(rows)),
  };
}
