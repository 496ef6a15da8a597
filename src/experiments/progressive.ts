import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ensureDir, writeFileAtomicSync } from '../io/atomic.js';
import { readRegularFileSync, readTextFileSync } from '../io/files.js';
import { openSources, readAhead, scanSources, type SourceOptions } from './progressive-sources.js';
import { FEATURE_DIM, pickRows, keyIndices, selectColumns, valueIndices, type KeyConfig } from '../data/indices.js';
import { RapmError, isRapmError } from '../errors.js';
import { checkInteger } from '../validate.js';
import { SETTINGS, checkSetting, defaultsOf } from '../settings.js';
import type { MlpBackend, MlpData } from '../fusion/train.js';
import { clusterLabels, describeGain, fitAndScore, testPairsText, unknownSpeakersWarning, type ClusterChoice, type SeedRun, type TestSet, type TestSetScore } from './evaluate.js';
import { paramLayout, fusionSpec } from '../fusion/layout.js';
import { Datastore } from '../retrieval/datastore.js';
import { IncrementalPriors } from '../retrieval/priors.js';
import type { Aggregate } from '../retrieval/search-options.js';
import { GrowableRows } from './growable.js';
import { recommend, type Recommendation } from './recommend.js';
import { finishRecord, startRecord, type RunRecord } from './run-record.js';
import { writeProgressiveReport } from './progressive-report.js';

/** Test folders, the initial set's split, the leakage check and bad-file handling: see progressive-sources.ts. */
export interface ProgressiveOptions extends Omit<SourceOptions, 'chunks' | 'initial' | 'seed' | 'log' | 'keyColumns'> {
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
  /** Confidence level of the intervals. Default 0.95 (src/settings.ts). */
  level?: number;
  /** Stop after this many steps (testing and time-boxed runs). */
  maxSteps?: number;
  /** Fusion nets per step, each with its own initialisation, shuffling and validation split. Default 3. */
  trainSeeds?: number;
  /** What the gain interval resamples: 'auto' (speaker when known, the default), 'row', 'speaker' or 'conversation'. */
  clusterUnit?: ClusterChoice;
  /** Start step n's nets from step n-1's (per training seed) instead of a fresh initialisation. */
  warmStart?: boolean;
  /**
   * Steps run after the first useful one before the loop stops (without --all): a check that
   * the gain holds as the datastore grows, and a second point for the plots. Default 1.
   */
  confirmSteps?: number;
  backend: MlpBackend;
  log?: (line: string) => void;
  progress?: (label: string, done: number, total: number) => void;
}

/** Defaults from the settings schema (src/settings.ts), plus leave-one-out priors. */
export const PROGRESSIVE_DEFAULTS = {
  ...defaultsOf(['config', 'k', 'tau', 'aggregate', 'hidden', 'dropout', 'seed', 'threshold', 'decideOn', 'epochs', 'patience', 'batchSize', 'lr', 'weightDecay', 'valFraction', 'resamples', 'trainSeeds', 'clusterUnit', 'warmStart', 'confirmSteps']),
  leaveOneOut: true,
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
  /** Phase times: add to the datastore, prior search (leave-one-out priors), training (all seeds), evaluation (test search, scoring, bootstrap). */
  seconds: { add: number; priors: number; train: number; eval: number; total: number };
  /** Training samples/s inside the loop (minibatch time only; mean over seeds). */
  samplesPerSecond: number;
  /** Each training seed's net: validation cosine, epochs, time and its own gains. */
  seeds: SeedRun[];
  /** The nets started from the previous step's (warm start). */
  warm: boolean;
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
  /** Sum of the steps' phase times, seconds. */
  phaseSeconds: { add: number; priors: number; train: number; eval: number; total: number };
  /**
   * Time of this process outside the steps' phases: the first pass over the data (test rows,
   * speakers, data hash), everything between the steps (waiting for a chunk read, checkpoints,
   * state and report writing, replaying steps finished before a --resume), and the wall time
   * of the whole call. Seconds.
   */
  runSeconds: { firstPass: number; outsideSteps: number; wall: number };
  /** Set when the loop stopped before the last chunk (the stop rule fired, or --max-steps). */
  stoppedEarly: { step: number; pairs: number; reason: 'useful' | 'max-steps'; chunksLeft: number } | null;
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
function optionsKey(o: Required<Omit<ProgressiveOptions, 'backend' | 'log' | 'progress' | 'resume' | 'overwrite' | 'all' | 'maxSteps' | 'out' | 'level' | Exclude<keyof SourceOptions, 'chunks' | 'initial' | 'seed' | 'log'>>> & { level?: number }, dataHash: string): string {
  // Paths are not part of the key (the data hash is): a moved folder still resumes.
  return createHash('sha256').update(JSON.stringify({ ...o, chunks: undefined, initial: undefined, dataHash })).digest('hex').slice(0, 16);
}

/** How the initial set was split and bad files handled, for the record (as rapm.json's dataSelection). */
function progressiveDataSelection(o: ProgressiveOptions): Record<string, unknown> {
  const made = o.split !== undefined && o.split !== 'official';
  const p = o.speakerPattern;
  return {
    split: o.split ?? null,
    testFraction: made ? (o.testFraction ?? SETTINGS.testFraction.default) : null,
    splitSeed: made ? (o.seed ?? SETTINGS.seed.default) : null,
    speakerPattern: p === undefined || p === null ? null : typeof p === 'string' ? p : p.source,
    onProblem: o.onProblem ?? 'fail',
    poolFrames: o.poolFrames ?? null,
    filelists: o.filelists !== undefined ? path.resolve(o.filelists) : null,
    allowOverlap: o.allowOverlap ?? false,
  };
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
  const tStart = performance.now();
  // confirmSteps counts steps after the stop rule fires, which `all` turns off: given with it, it
  // would change nothing but the resume key (a --resume with another value refused for nothing).
  if (options.all === true && options.confirmSteps !== undefined) {
    throw new RapmError('RAPM_INVALID_ARG', 'confirmSteps has no effect with all: every chunk runs and the stop rule it confirms never stops the loop; drop confirmSteps');
  }
  const o = { ...PROGRESSIVE_DEFAULTS, ...options, confirmSteps: options.confirmSteps ?? PROGRESSIVE_DEFAULTS.confirmSteps };
  const log = o.log ?? (() => {});
  const out = path.resolve(o.out);
  const keyIdx = keyIndices(o.config);
  const valIdx = valueIndices();
  const dv = valIdx.length;
  // Fail on bad options before any data is read (the schema's checks; errors name the option).
  for (const key of ['config', 'k', 'tau', 'aggregate', 'hidden', 'dropout', 'seed', 'threshold', 'decideOn', 'epochs', 'patience', 'batchSize', 'lr', 'weightDecay', 'valFraction', 'resamples', 'trainSeeds', 'clusterUnit', 'warmStart', 'confirmSteps'] as const) checkSetting(key, o[key]);
  if (o.maxSteps !== undefined) checkInteger('maxSteps', o.maxSteps, 1);

  // Pass 1 (progressive-sources.ts): the leakage check, the fixed test sets, the data hash.
  // keyColumns: under Config B a row zero on its 103 key columns is refused in this first pass, with its file, row and id.
  const src = await openSources({ ...o, seed: o.seed, log, keyColumns: keyIdx });
  const { tests, dataHash, trainChunks, trainRows } = await scanSources(src, (d, t) => o.progress?.('scanning chunks', d, t));
  const firstPass = (performance.now() - tStart) / 1000;
  let stepSeconds = 0; // this process's steps
  const runSeconds = () => {
    const wall = (performance.now() - tStart) / 1000;
    return { firstPass, outsideSteps: Math.max(0, wall - firstPass - stepSeconds), wall };
  };
  for (const t of tests) {
    const w = unknownSpeakersWarning(src.describe, t);
    if (w) (o.warn ?? log)(w);
  }
  const decider = tests.find((t) => t.name === o.decideOn);
  if (!decider) {
    throw new RapmError('RAPM_DATA', `decideOn (--decide-on) is '${o.decideOn}' but the data has no ${o.decideOn}-speaker test set (test sets: ${tests.map((t) => `${t.name} ${t.n} pairs`).join(', ')}); pass --decide-on ${tests[0]!.name}`);
  }
  for (const t of tests) clusterLabels(t, o.clusterUnit); // a unit the test sets cannot give fails before any training

  const key = optionsKey(
    { chunks: o.chunks, initial: o.initial ?? '', config: o.config, k: o.k, tau: o.tau, aggregate: o.aggregate, hidden: o.hidden, dropout: o.dropout, seed: o.seed, threshold: o.threshold, decideOn: o.decideOn, leaveOneOut: o.leaveOneOut, epochs: o.epochs, patience: o.patience, batchSize: o.batchSize, lr: o.lr, weightDecay: o.weightDecay, valFraction: o.valFraction, resamples: o.resamples, trainSeeds: o.trainSeeds, clusterUnit: o.clusterUnit, warmStart: o.warmStart, confirmSteps: o.confirmSteps, ...(o.level !== undefined && o.level !== 0.95 ? { level: o.level } : {}) },
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
      log(`resuming ${out}: ${state.steps.length} step(s) done${state.complete ? ', the run finished' : ''}`);
    } else if (!o.overwrite) {
      throw new RapmError('RAPM_STATE', `${out} already holds a progressive run: pass --resume to continue it or --overwrite to replace it`);
    }
  }
  ensureDir(out);
  const config = { chunks: path.resolve(o.chunks), initial: o.initial ? path.resolve(o.initial) : null, config: o.config, k: o.k, tau: o.tau, aggregate: o.aggregate, hidden: o.hidden, dropout: o.dropout, threshold: o.threshold, decideOn: decider.name, leaveOneOut: o.leaveOneOut, epochs: o.epochs, patience: o.patience, batchSize: o.batchSize, lr: o.lr, weightDecay: o.weightDecay, valFraction: o.valFraction, resamples: o.resamples, trainSeeds: o.trainSeeds, clusterUnit: o.clusterUnit, warmStart: o.warmStart, confirmSteps: o.confirmSteps, dataSelection: progressiveDataSelection(o), tests: tests.map((t) => ({ name: t.name, n: t.n, ...clusterSummary(t, o.clusterUnit) })) };
  if (!state) state = { version: 1, optionsKey: key, record: startRecord('progressive', o.seed, config, { hash: dataHash, source: path.resolve(o.chunks) }), steps: [], complete: false };

  // The leave-one-out priors take the fastPath setting's default ('auto': a bf16 first pass and
  // an exact re-rank where the CPU has AVX512_BF16): the same answers as the exact scan.
  const ds = new Datastore({ keyIndices: keyIdx, valueIndices: valIdx });
  const priors = new IncrementalPriors(ds, { k: o.k, tau: o.tau, aggregate: o.aggregate, leaveOneOut: o.leaveOneOut });
  // Sized once for every training row of the run (pages are only touched as rows arrive).
  const en = new GrowableRows(FEATURE_DIM, trainRows);
  const values = new GrowableRows(dv, trainRows);
  const ids: string[] = [];
  let checkedRows = 0; // training rows validated by an earlier step's fitAndScore (rows are only appended)
  let stepIndex = 0;
  const resultOf = (status: 'running' | 'complete'): ProgressiveResult => finalResult(state!, status, o.threshold, decider.name, decider.speakersUnknown === true, { k: o.k, tau: o.tau, aggregate: o.aggregate, hidden: o.hidden, dropout: o.dropout }, trainChunks.length, o.all ?? false, runSeconds());
  // The rule fires at the first useful step; the loop stops confirmSteps steps later.
  const shouldStop = (step: number) => {
    const first = state!.steps.find((x) => x.useful);
    return !o.all && first !== undefined && step >= first.step + o.confirmSteps;
  };
  // A run cut by --max-steps (chunks left, the stop rule not fired) is finished as far as it
  // went; --resume continues it (up to this call's --max-steps, counted from step 1).
  const lastStep = state.steps.at(-1)?.step;
  if (state.complete && o.resume && lastStep !== undefined && !shouldStop(lastStep) && state.steps.length < trainChunks.length && (o.maxSteps === undefined || o.maxSteps > lastStep)) {
    state.complete = false;
    log(`continuing ${out} after step ${lastStep} (it was cut by --max-steps)`);
  }
  if (state.complete && o.resume) log(`${out}: nothing left to run (--overwrite runs it again)`);
  let stop = state.complete;
  // Warm start: each seed's net from the previous step, also across --resume (warm-start-<step>.bin).
  const warmFile = (step: number) => path.join(out, `warm-start-${step}.bin`);
  const paramCount = paramLayout(fusionSpec({ hidden: o.hidden, dropout: o.dropout })).size;
  const lastDone = state.steps.at(-1)?.step ?? 0;
  let warm: (Float32Array | null)[] = o.warmStart && lastDone > 0 ? readWarm(warmFile(lastDone), o.trainSeeds, paramCount, log) : [];

  for await (const c of readAhead(src.iterate())) {
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
      if (shouldStop(stepIndex) || (o.maxSteps !== undefined && stepIndex >= o.maxSteps)) stop = true;
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
    const isWarm = o.warmStart && warm.length === o.trainSeeds && warm.every((p) => p !== null);
    const point = await fitAndScore(ds, train, tests, { ...o, backend: o.backend, log, progress: o.progress }, (o.seed * 1000 + stepIndex) >>> 0, `step ${stepIndex}`, {
      ids,
      init: isWarm ? warm : undefined,
      splitSeed: o.seed,
      checkedRows,
    });
    checkedRows = n;
    if (o.warmStart) {
      warm = point.seedParams;
      // Written before the state names this step done; the previous step's file goes after.
      writeWarm(warmFile(stepIndex), warm);
    }
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
      seeds: point.seeds,
      warm: isWarm,
      useful,
    };
    state.steps.push(step);
    stepSeconds += step.seconds.total;
    const line = scores.map((s) => `${tests.find((t) => t.name === s.name)?.speakersUnknown ? 'test (speakers unknown)' : s.name} plain ${s.plain.toFixed(4)} fusion ${s.fusion.toFixed(4)} gain ${fmtSigned(s.gain.diff)} [${fmtSigned(s.gain.lo)}, ${fmtSigned(s.gain.hi)}] (seeds ${s.gain.seedGains.map(fmtSigned).join(' ')})`).join('; ');
    const sec = step.seconds;
    log(`step ${stepIndex} (${c.name}, ${n} pairs): ${line}; ${sec.total.toFixed(1)} s (priors ${sec.priors.toFixed(1)}, training ${sec.train.toFixed(1)} at ${Math.round(step.samplesPerSecond)} samples/s, evaluation ${sec.eval.toFixed(1)})`);
    if (o.maxSteps !== undefined && stepIndex >= o.maxSteps) stop = true;
    if (shouldStop(stepIndex)) stop = true;
    writeState(statePath, state);
    if (o.warmStart) fs.rmSync(warmFile(stepIndex - 1), { force: true });
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

function finalResult(state: State, status: 'running' | 'complete', threshold: number, decideOn: string, speakersUnknown: boolean, cfg: { k: number; tau: number; aggregate: Aggregate; hidden: number[]; dropout: number }, chunks: number, all: boolean, runSeconds: ProgressiveResult['runSeconds']): ProgressiveResult {
  const first = state.steps.find((s) => s.useful) ?? null;
  let decision: string;
  if (first) {
    const g = first.tests.find((t) => t.name === decideOn)!.gain;
    decision = `At ${first.pairs} pairs fusion becomes useful: ${describeGain(g)} on ${testPairsText({ name: decideOn, n: g.n, speakersUnknown })}`;
    const later = state.steps.filter((s) => s.step > first.step);
    if (later.length) {
      const held = later.filter((s) => s.useful).length;
      const lg = later.at(-1)!.tests.find((t) => t.name === decideOn)!.gain;
      decision += held === later.length
        ? `; it still holds at ${later.at(-1)!.pairs} pairs (${describeGain(lg)})`
        : `; the rule held at ${held} of the ${later.length} later step(s) (at ${later.at(-1)!.pairs} pairs: ${describeGain(lg)})`;
    }
  } else {
    const last = state.steps.at(-1);
    const g = last?.tests.find((t) => t.name === decideOn)?.gain;
    decision = last && g
      ? `Fusion did not become useful up to ${last.pairs} pairs: last ${describeGain(g)} on ${testPairsText({ name: decideOn, n: g.n, speakersUnknown })} (threshold +${threshold} with an interval above zero)`
      : 'No step finished';
  }
  const phaseSeconds = { add: 0, priors: 0, train: 0, eval: 0, total: 0 };
  for (const s of state.steps) for (const k of Object.keys(phaseSeconds) as (keyof typeof phaseSeconds)[]) phaseSeconds[k] += s.seconds[k];
  const last = state.steps.at(-1);
  const stoppedEarly = status === 'complete' && last && state.steps.length < chunks
    ? { step: last.step, pairs: last.pairs, reason: (state.steps.some((s) => s.useful) && !all ? 'useful' : 'max-steps') as 'useful' | 'max-steps', chunksLeft: chunks - state.steps.length }
    : null;
  return { status, record: state.record, steps: state.steps, firstUseful: first?.step ?? null, decision, recommendation: state.steps.length ? recommend(state.steps, { threshold, decideOn, ...cfg }) : null, phaseSeconds, runSeconds, stoppedEarly };
}

/** Cluster count per test set for the record: unit and number of clusters. */
function clusterSummary(t: TestSet, unit: ClusterChoice): { unit: string; clusters: number } {
  const { unit: u, labels } = clusterLabels(t, unit);
  return { unit: u, clusters: labels ? new Set(labels).size : t.n };
}

/**
 * Per-seed parameters of the last finished step: [u32 seeds, u32 size, seeds x size f32, then
 * the SHA-256 of everything before it], so a resume never starts from a damaged file unnoticed.
 * (Exported for the tests.)
 */
export function writeWarm(file: string, params: (Float32Array | null)[]): void {
  if (params.some((p) => p === null)) return;
  const size = params[0]!.length;
  const body = 8 + params.length * size * 4;
  const buf = new Uint8Array(body + 32);
  const head = new Uint32Array(buf.buffer, 0, 2);
  head[0] = params.length;
  head[1] = size;
  params.forEach((p, i) => new Float32Array(buf.buffer, 8 + i * size * 4, size).set(p!));
  buf.set(createHash('sha256').update(buf.subarray(0, body)).digest(), body);
  writeFileAtomicSync(file, buf);
}

/**
 * The warm-start parameters saved by the step a resume continues from. Missing (a step whose
 * nets had no parameters to carry writes none): [] and a log line, the nets start fresh. Any
 * other problem (not a regular file, wrong size or shape, checksum, non-finite values) is
 * RAPM_FORMAT naming the file: a silent cold start would change the run's numbers.
 * (Exported for the tests.)
 */
export function readWarm(file: string, seeds: number, size: number, log: (line: string) => void): Float32Array[] {
  if (!fs.existsSync(file)) {
    log(`${path.basename(file)} is missing: this step's nets start fresh instead of warm`);
    return [];
  }
  const b = readRegularFileSync(file, 'warm-start file');
  const bad = (why: string) => new RapmError('RAPM_FORMAT', `Cannot resume from ${file}: ${why}. Delete it to start this step's nets fresh, or rerun with --overwrite`);
  const body = 8 + seeds * size * 4;
  if (b.length !== body + 32) throw bad(`${b.length} bytes, expected ${body + 32} (${seeds} seeds x ${size} parameters + header and checksum)`);
  const bytes = new Uint8Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  const head = new Uint32Array(bytes.buffer, 0, 2);
  if (head[0] !== seeds || head[1] !== size) throw bad(`it holds ${head[0]} seeds x ${head[1]} parameters, expected ${seeds} x ${size}`);
  if (!createHash('sha256').update(bytes.subarray(0, body)).digest().equals(Buffer.from(bytes.subarray(body)))) throw bad('its checksum does not match (the file is damaged)');
  const params = Array.from({ length: seeds }, (_, i) => new Float32Array(bytes.buffer, 8 + i * size * 4, size).slice());
  params.forEach((p, i) => {
    const j = p.findIndex((v) => !Number.isFinite(v));
    if (j >= 0) throw bad(`seed ${i}, parameter ${j} is ${p[j]}`);
  });
  return params;
}

function readState(file: string): State {
  let s: State;
  try {
    s = JSON.parse(readTextFileSync(file, 'progressive state')) as State;
  } catch (e) {
    if (isRapmError(e)) throw e; // not a regular file, or unreadable: RAPM_IO naming it
    throw new RapmError('RAPM_FORMAT', `Cannot read the progressive state ${file}: ${(e as Error).message}`);
  }
  if (s?.version !== 1 || !Array.isArray(s.steps)) throw new RapmError('RAPM_FORMAT', `${file} is not a rapm progressive state (version 1)`);
  return s;
}

function writeState(file: string, s: State): void {
  writeFileAtomicSync(file, JSON.stringify(s, null, 1) + '\n');
}

