import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ensureDir, writeFileAtomicSync } from '../io/atomic.js';
import { iterateChunks, type Chunk } from '../data/chunks.js';
import { loadDataset } from '../data/load.js';
import { createDatasetHasher } from '../data/hash.js';
import { FEATURE_DIM, pickRows, keyIndices, selectColumns, valueIndices, type KeyConfig } from '../data/indices.js';
import { RapmError } from '../errors.js';
import { checkInteger, checkPositive } from '../validate.js';
import type { MlpBackend, MlpData } from '../fusion/train.js';
import { buildTestSets, fitAndScore, type TestSet, type TestSetScore } from './evaluate.js';
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
  /** A dataset (DRAL folder or chunks) to start from instead of the first chunk; its test rows join the test sets. */
  initial?: string;
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

export type { TestSetScore } from './evaluate.js';

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
  // Paths are not part of the key (the data hash is): a moved folder still resumes.
  return createHash('sha256').update(JSON.stringify({ ...o, chunks: undefined, initial: undefined, dataHash })).digest('hex').slice(0, 16);
}

/** The initial dataset (when given) as a first chunk, then the chunks in name order. */
async function* sources(chunks: string, initial: string | undefined, onProgress?: (d: number, t: number) => void): AsyncGenerator<Chunk> {
  if (initial) {
    const d = await loadDataset(initial);
    const testIds = new Set(d.official?.test ?? []);
    yield {
      name: `initial:${path.basename(path.resolve(initial))}`,
      index: -1,
      ids: d.ids,
      speakers: d.speakers,
      split: d.official ? d.ids.map((id) => (testIds.has(id) ? 'test' : 'train')) : null,
      en: d.en,
      es: d.es,
      n: d.n,
      meta: { format: 'rapm-chunk', version: 1, n: d.n, dim: FEATURE_DIM, dtype: 'float32' },
    };
  }
  yield* iterateChunks(chunks, { onProgress });
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
  // Fail on bad options before any data is read.
  checkInteger('k', o.k, 1);
  checkPositive('tau', o.tau);
  checkInteger('seed', o.seed, 0, 2 ** 31);
  checkInteger('resamples', o.resamples, 1000, 1_000_000);
  if (!Number.isFinite(o.threshold)) throw new RapmError('RAPM_INVALID_ARG', `Expected a finite threshold but received ${o.threshold}`);
  if (!(o.valFraction > 0 && o.valFraction < 0.5)) throw new RapmError('RAPM_INVALID_ARG', `Expected valFraction in (0, 0.5) but received ${o.valFraction}`);
  if (!(o.dropout >= 0 && o.dropout < 1)) throw new RapmError('RAPM_INVALID_ARG', `Expected dropout in [0, 1) but received ${o.dropout}`);
  if (o.maxSteps !== undefined) checkInteger('maxSteps', o.maxSteps, 1);

  // Pass 1: the fixed test sets (rows marked 'test'), the speakers of the training rows, the data hash.
  const hasher = createDatasetHasher();
  const layoutHash = createHash('sha256'); // chunk names and splits: which rows are test rows
  const seenTrainSpeakers = new Set<string>();
  const testRows: { en: Float32Array; es: Float32Array; speaker: string | null }[] = [];
  const trainChunks: string[] = [];
  for await (const c of sources(o.chunks, o.initial, (d, t) => o.progress?.('scanning chunks', d, t))) {
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
  const testEn = new Float32Array(testRows.length * FEATURE_DIM);
  const testEs = new Float32Array(testRows.length * FEATURE_DIM);
  testRows.forEach((t, i) => {
    testEn.set(t.en, i * FEATURE_DIM);
    testEs.set(t.es, i * FEATURE_DIM);
  });
  const tests: TestSet[] = buildTestSets(
    { ids: testRows.map((_, i) => `test${i}`), speakers: testRows.map((t) => t.speaker ?? ''), en: testEn, es: testEs, n: testRows.length },
    new Set([...seenTrainSpeakers, '']),
  );
  const decider = tests.find((t) => t.name === o.decideOn) ?? tests[0]!;

  const key = optionsKey(
    { chunks: o.chunks, initial: o.initial ?? '', config: o.config, k: o.k, tau: o.tau, aggregate: o.aggregate, hidden: o.hidden, dropout: o.dropout, seed: o.seed, threshold: o.threshold, decideOn: o.decideOn, leaveOneOut: o.leaveOneOut, epochs: o.epochs, patience: o.patience, batchSize: o.batchSize, lr: o.lr, weightDecay: o.weightDecay, valFraction: o.valFraction, resamples: o.resamples },
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
  const config = { chunks: path.resolve(o.chunks), initial: o.initial ? path.resolve(o.initial) : null, config: o.config, k: o.k, tau: o.tau, aggregate: o.aggregate, hidden: o.hidden, dropout: o.dropout, threshold: o.threshold, decideOn: decider.name, leaveOneOut: o.leaveOneOut, epochs: o.epochs, patience: o.patience, batchSize: o.batchSize, lr: o.lr, weightDecay: o.weightDecay, valFraction: o.valFraction, resamples: o.resamples, tests: tests.map((t) => ({ name: t.name, n: t.n })) };
  if (!state) state = { version: 1, optionsKey: key, record: startRecord('progressive', o.seed, config, { hash: dataHash, source: path.resolve(o.chunks) }), steps: [], complete: false };

  // The leave-one-out priors take the fast path (bf16 first pass, exact re-rank): the same
  // answers as the exact scan; it engages once the store is large enough and the CPU has BF16.
  const ds = new Datastore({ keyIndices: keyIdx, valueIndices: valIdx, fastPath: 'bf16' });
  const priors = new IncrementalPriors(ds, { k: o.k, tau: o.tau, aggregate: o.aggregate, leaveOneOut: o.leaveOneOut });
  const en = new GrowableRows(FEATURE_DIM);
  const values = new GrowableRows(dv);
  const ids: string[] = [];
  let stepIndex = 0;
  const resultOf = (status: 'running' | 'complete'): ProgressiveResult => finalResult(state!, status, o.threshold, decider.name, { k: o.k, tau: o.tau, aggregate: o.aggregate, hidden: o.hidden, dropout: o.dropout });
  let stop = state.complete;

  for await (const c of sources(o.chunks, o.initial)) {
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
    const train: MlpData = { en: en.view(), prior: priors.priors(values.view()).prior, target: values.view() };
    const point = await fitAndScore(ds, train, tests, { ...o, backend: o.backend, log, progress: o.progress }, (o.seed * 1000 + stepIndex) >>> 0, `step ${stepIndex}`);
    const tEval = performance.now();
    const scores: TestSetScore[] = point.tests.map(({ plainRows: _p, fusionRows: _f, prior: _r, ...t }) => t);
    const dec = scores.find((s) => s.name === decider.name)!;
    const useful = dec.gain.diff > o.threshold && dec.gain.lo > 0;
    const step: StepResult = {
      step: stepIndex,
      chunk: c.name,
      pairs: n,
      tests: scores,
      trainPlain: point.trainPlain,
      trainFusion: point.trainFusion,
      valFusion: point.valFusion,
      valPlain: point.valPlain,
      epochs: point.epochs,
      bestEpoch: point.bestEpoch,
      seconds: { add: (tAdd - t0) / 1000, priors: (tPriors - tAdd) / 1000, train: point.trainSeconds, eval: (tEval - tPriors) / 1000 - point.trainSeconds, total: (tEval - t0) / 1000 },
      samplesPerSecond: point.samplesPerSecond,
      useful,
    };
    state.steps.push(step);
    const line = scores.map((s) => `${s.name} plain ${s.plain.toFixed(4)} fusion ${s.fusion.toFixed(4)} gain ${fmtSigned(s.gain.diff)} [${fmtSigned(s.gain.lo)}, ${fmtSigned(s.gain.hi)}]`).join('; ');
    log(`step ${stepIndex} (${c.name}, ${n} pairs): ${line}; ${step.seconds.total.toFixed(1)} s`);
    if (o.maxSteps !== undefined && stepIndex >= o.maxSteps) stop = true;
    if (useful && !o.all) stop = true;
    writeState(statePath, state);
    await writeProgressiveReport(out, resultOf('running'));
  }
  state.complete = true;
  state.record = finishRecord(state.record);
  writeState(statePath, state);
  const result = resultOf('complete');
  await writeProgressiveReport(out, result);
  return result;
}

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

