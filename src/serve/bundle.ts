/**
 * Model bundles: one folder that runs as trained.
 *
 * ```
 * models/<name>/
 *   model.onnx       the fusion net (absent in a retrieval-only bundle from `rapm index`)
 *   datastore.rapm   the datastore exactly as the model's priors saw it (rows, key config, precision)
 *   rapm.json        manifest: resolved settings, data hash, metrics with intervals, versions
 * ```
 *
 * `writeBundle` builds the folder under a temporary sibling name, fsyncs every file and the
 * folder (replaceDirSync), then renames it into place (replacing an existing bundle only with `overwrite`), so
 * a reader sees the old bundle or the new one, never a mix. `loadBundle` (and
 * `Predictor.fromBundle`) checks the pieces against each other and against the manifest, and
 * applies serve-time overrides explicitly, each reported through `log`.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { RapmError, RapmTypeError, describe, invalidParam, isRapmError } from '../errors.js';
import { checkKnownKeys, is } from '../validate.js';
import { codeVersion } from '../experiments/run-record.js';
import { META_PRECISION, encodeOnnx, type OnnxMeta } from '../fusion/onnx-export.js';
import type { FusionSession, OnnxDevice } from '../fusion/onnx-session.js';
import type { ParamLayout } from '../fusion/layout.js';
import { movedAsideNotices, removeStaleStagingSync, replaceDirSync, tempPathFor } from '../io/atomic.js';
import { fileKind, insideOf, readRegularFile, readTextFileSync } from '../io/files.js';
import { concurrency, simdLevel } from '../native/simd.js';
import type { Datastore, FastPathSetting } from '../retrieval/datastore.js';
import { loadDatastore, readDatastoreHeader, saveDatastore } from '../retrieval/persist.js';
import type { Aggregate } from '../retrieval/search-options.js';
import { FAST_PATH_PRECISION_RULE, PRECISIONS, SETTINGS, TAU_AGGREGATE_RULE, checkSetting, crossSettingProblem, sayFor, type SettingKey, type SettingSource } from '../settings.js';
import { Predictor, type FusionModel, type PredictorOptions } from './predictor.js';

export const BUNDLE_FILES = { model: 'model.onnx', datastore: 'datastore.rapm', manifest: 'rapm.json' } as const;
export const BUNDLE_FORMAT = 'rapm-bundle';
export const BUNDLE_VERSION = 1;

/**
 * What a bundle holds: retrieval + fusion, retrieval alone (`rapm index`), or the official
 * baseline MLP with the datastore it was compared against (kept for comparison; not served).
 */
export type BundleKind = 'fusion' | 'retrieval' | 'baseline';

/** The settings a bundle was built with (and is served with unless overridden). */
export interface BundleSettings {
  /** 'A' | 'B', or 'custom' for explicit index lists. */
  config: string;
  /** Key columns of the 1024-dim EN vectors, ascending. */
  keyIndices: number[];
  /** Columns of the ES vectors the values (and the predictions) hold. */
  valueIndices: number[];
  k: number;
  tau: number;
  aggregate: Aggregate;
  precision: 'f32' | 'bf16' | 'int8';
  /**
   * The fast search path to serve with (the fastPath setting: 'auto', 'off', 'bf16', 'int8').
   * It never changes an answer, only speed and memory. Absent (bundles written before it
   * existed): the setting's default.
   */
  fastPath?: FastPathSetting;
  /** Training settings and anything else resolved at build time (hidden, dropout, epochs, seed, ...). */
  [key: string]: unknown;
}

export interface BundleManifest {
  format: typeof BUNDLE_FORMAT;
  version: typeof BUNDLE_VERSION;
  kind: BundleKind;
  created: string;
  settings: BundleSettings;
  /** The training data: hash (src/data/hash.ts), where it came from, rows in the datastore. */
  data: { hash: string; source: string; rows: number };
  model: { file: string; bytes: number; sha256: string; enDim: number; outDim: number; spec: unknown } | null;
  datastore: { file: string; bytes: number; rows: number; keyDim: number; d: number; dv: number; precision: 'f32' | 'bf16' | 'int8' };
  /** Scores of the build (validation, train, test with bootstrap intervals), or null. */
  metrics: Record<string, unknown> | null;
  versions: { rapm: string; commit: string | null; node: string; onnxruntime: string | null; simd: string; threads: number; platform: string };
}

/** Bundle facts a running predictor reports (GET /health). */
export interface BundleInfo {
  dir: string;
  kind: BundleKind;
  created: string;
  dataHash: string;
  /** The settings as trained. */
  trained: { config: string; k: number; tau: number; aggregate: Aggregate; precision: 'f32' | 'bf16' | 'int8'; fastPath: FastPathSetting };
  /** Settings changed at load time: `{ k: { trained: 90, serving: 50 } }` (fastPath too, though it changes no answer). */
  overrides: Record<string, { trained: unknown; serving: unknown }>;
}

export interface WriteBundleOptions {
  /** Replace an existing bundle folder (otherwise refused). */
  overwrite?: boolean;
  /** The trained net; omit for a retrieval-only bundle. */
  model?: { layout: ParamLayout; params: Float32Array; meta?: OnnxMeta };
  /** 'fusion' (default with a model) or 'baseline'. */
  kind?: 'fusion' | 'baseline';
  settings: BundleSettings;
  data: { hash: string; source: string };
  metrics?: Record<string, unknown> | null;
  /** Speakers of the datastore rows (kept in the datastore file). */
  speakers?: readonly string[];
}

export interface WriteBundleResult {
  dir: string;
  manifest: BundleManifest;
  /**
   * Warnings to show the user: old copies of `dir` that an interrupted earlier write moved
   * aside and that are kept beside it (io/atomic.ts movedAsideNotices), one line each. Usually empty.
   */
  notices: string[];
}

function onnxruntimeVersion(): string | null {
  try {
    return (createRequire(import.meta.url)('onnxruntime-node/package.json') as { version: string }).version;
  } catch {
    return null;
  }
}

function writeSynced(file: string, data: string | Uint8Array): void {
  const fd = fs.openSync(file, 'wx');
  try {
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Pretty JSON with number lists on one line (the index lists are long). */
function manifestJson(m: BundleManifest): string {
  return JSON.stringify(m, null, 2).replace(/\[\s+(-?[\d.e+-]+(?:,\s+-?[\d.e+-]+)*)\s+\]/g, (_, inner: string) => `[${inner.replace(/,\s+/g, ', ')}]`) + '\n';
}

const sameList = (a: ArrayLike<number>, b: ArrayLike<number>): boolean => a.length === b.length && Array.from(a).every((v, i) => v === b[i]);

/**
 * Whether a bundle may be written at `dir`: a new path, or (with `overwrite`) a folder holding
 * nothing but a bundle's files. Overwriting replaces the whole folder, so anything else in it
 * (a dataset given as --out, the current folder, a file) is refused rather than deleted; so is
 * a folder that holds one of `inputs` (the data the bundle is built from). Called by
 * writeBundle, and by rapm index / rapm train before they load or train anything.
 */
export function checkBundleTarget(dir: string, overwrite: boolean, inputs: readonly string[] = []): void {
  const target = path.resolve(dir);
  for (const input of inputs) {
    if (typeof input !== 'string' || input.length === 0) continue;
    const p = path.resolve(input);
    if (p === target || p.startsWith(target + path.sep)) throw new RapmError('RAPM_INVALID_ARG', `Cannot write bundle ${dir}: it holds the input data ${input}; choose another output folder`);
  }
  // A write killed between the swap's renames left the previous bundle moved aside: put it back
  // first, so rapm train / index refuse it without --overwrite before training, not after.
  removeStaleStagingSync(target);
  let st: fs.Stats;
  try {
    st = fs.statSync(target);
  } catch {
    return; // absent (or a dangling link, replaced by the rename): nothing to lose
  }
  if (!overwrite) throw new RapmError('RAPM_IO', `${dir} already exists; pass --overwrite (overwrite: true) to replace the bundle`);
  if (!st.isDirectory()) throw new RapmError('RAPM_IO', `Cannot write bundle ${dir}: it is a ${fileKind(st)}, not a bundle folder; --overwrite replaces only a bundle folder`);
  const known = new Set<string>(Object.values(BUNDLE_FILES));
  const other = fs.readdirSync(target).filter((n) => !known.has(n));
  if (other.length > 0) {
    throw new RapmError('RAPM_IO', `Cannot write bundle ${dir}: it holds files that are not a bundle's (${other.slice(0, 3).join(', ')}${other.length > 3 ? ', ...' : ''}); --overwrite replaces only a bundle folder, so use an empty or new folder`);
  }
}

/**
 * Write `ds` (and the model, when given) as a bundle folder at `dir`, atomically: built in a
 * temporary sibling folder, fsynced, renamed into place. An existing `dir` is refused unless
 * `overwrite`; then it is replaced in one rename (the old folder is removed afterwards).
 */
export async function writeBundle(dir: string, ds: Datastore, options: WriteBundleOptions): Promise<WriteBundleResult> {
  if (typeof dir !== 'string' || dir.length === 0) throw new RapmTypeError('RAPM_TYPE', `Expected a folder path for dir but received ${describe(dir)}`);
  const target = path.resolve(dir);
  // checkBundleTarget first puts back a bundle a killed write left moved aside (and removes killed
  // writes' staging folders), then decides whether `dir` exists: a restored bundle is refused
  // without `overwrite` like any existing one, never replaced unasked.
  checkBundleTarget(dir, options.overwrite ?? false, [options.data.source]);
  // Old copies kept beside a `dir` recreated after a killed write: never deleted here, reported.
  const notices = movedAsideNotices(target, dir);
  const s = options.settings;
  if (!sameList(ds.keyIndices, s.keyIndices)) throw new RapmError('RAPM_DATA', `The datastore's key indices differ from settings.keyIndices (${ds.keyIndices.length} vs ${s.keyIndices.length} columns)`);
  if (ds.precision !== s.precision) throw new RapmError('RAPM_DATA', `The datastore holds ${ds.precision} keys but settings.precision is ${s.precision}`);
  if (s.fastPath !== undefined) checkSetting('fastPath', s.fastPath);
  // The rules between settings (src/settings.ts, the ones `rapm index`/`train` apply to their
  // flags) hold for the settings recorded here too: a bundle that breaks one could not be served.
  const conflict = crossSettingProblem(s as Partial<Record<SettingKey, unknown>>);
  if (conflict !== null) throw new RapmError('RAPM_INVALID_ARG', `Cannot write bundle ${dir}: ${conflict}; a bundle with these settings could not be served`);
  fs.mkdirSync(path.dirname(target), { recursive: true });
  const tmp = tempPathFor(target); // the name removeStaleStagingSync looks for
  fs.mkdirSync(tmp);
  try {
    let model: BundleManifest['model'] = null;
    if (options.model) {
      const { layout, params, meta } = options.model;
      // The model records the key precision of its priors, so serving it beside another datastore
      // (rapm serve --datastore --model) can refuse one of another precision.
      const recorded = meta?.[META_PRECISION];
      if (recorded !== undefined && recorded !== s.precision) throw new RapmError('RAPM_INVALID_ARG', `model.meta['${META_PRECISION}'] is ${describe(recorded)} but settings.precision is ${s.precision}: the model records the precision of the priors it was trained on`);
      const bytes = encodeOnnx(layout, params, { ...meta, [META_PRECISION]: s.precision });
      writeSynced(path.join(tmp, BUNDLE_FILES.model), bytes);
      model = { file: BUNDLE_FILES.model, bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex'), enDim: layout.spec.enDim, outDim: layout.spec.outDim, spec: layout.spec };
    }
    const saved = await saveDatastore(ds, path.join(tmp, BUNDLE_FILES.datastore), {
      speakers: options.speakers,
      meta: { config: s.config, valueIndices: s.valueIndices, dataHash: options.data.hash },
    });
    const { version, commit } = codeVersion();
    const manifest: BundleManifest = {
      format: BUNDLE_FORMAT,
      version: BUNDLE_VERSION,
      kind: model ? (options.kind ?? 'fusion') : 'retrieval',
      created: new Date().toISOString(),
      settings: s,
      data: { hash: options.data.hash, source: options.data.source, rows: saved.n },
      model,
      datastore: { file: BUNDLE_FILES.datastore, bytes: saved.bytes, rows: saved.n, keyDim: ds.keyDim, d: ds.d, dv: ds.dv, precision: ds.precision },
      metrics: options.metrics ?? null,
      versions: { rapm: version, commit, node: process.version, onnxruntime: onnxruntimeVersion(), simd: simdLevel(), threads: concurrency(), platform: `${os.platform()}-${os.arch()}` },
    };
    writeSynced(path.join(tmp, BUNDLE_FILES.manifest), manifestJson(manifest));
    replaceDirSync(tmp, target); // fsyncs the staged folder, moves the old bundle aside, renames the new one in, removes the old (io/atomic.ts)
    return { dir: target, manifest, notices };
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    if (isRapmError(e)) throw e;
    throw new RapmError('RAPM_IO', `Cannot write bundle ${dir} (${(e as Error).message})`, { cause: e });
  }
}

/** Read and check a bundle's manifest; paths of its files. */
export function readBundle(dir: string): { dir: string; manifest: BundleManifest; modelFile: string | null; datastoreFile: string } {
  if (typeof dir !== 'string' || dir.length === 0) throw new RapmTypeError('RAPM_TYPE', `Expected a bundle folder for dir but received ${describe(dir)}`);
  const root = path.resolve(dir);
  const file = path.join(root, BUNDLE_FILES.manifest);
  let text: string;
  try {
    text = readTextFileSync(file, 'bundle manifest'); // a regular file only: a FIFO would block the read
  } catch (e) {
    const why = (e as { cause?: NodeJS.ErrnoException }).cause?.code ?? (e as Error).message;
    throw new RapmError('RAPM_IO', `Cannot read bundle ${dir}: ${BUNDLE_FILES.manifest} (${why}); a bundle is a folder written by rapm train --out or rapm index`, { cause: e });
  }
  let m: BundleManifest;
  try {
    m = JSON.parse(text) as BundleManifest;
  } catch (e) {
    throw new RapmError('RAPM_FORMAT', `Cannot read bundle ${dir}: ${BUNDLE_FILES.manifest} is not JSON (${(e as Error).message})`);
  }
  if (m === null || typeof m !== 'object' || m.format !== BUNDLE_FORMAT) throw new RapmError('RAPM_FORMAT', `${file} is not a rapm bundle manifest (format ${describe((m as { format?: unknown } | null)?.format)})`);
  if (m.version !== BUNDLE_VERSION) throw new RapmError('RAPM_FORMAT', `${file} has bundle version ${m.version}; this rapm reads version ${BUNDLE_VERSION}`);
  if (m.kind !== 'fusion' && m.kind !== 'retrieval' && m.kind !== 'baseline') throw new RapmError('RAPM_FORMAT', `${file}: unknown bundle kind ${describe(m.kind)}`);
  if ((m.kind !== 'retrieval') !== (m.model !== null)) throw new RapmError('RAPM_FORMAT', `${file}: kind ${m.kind} but model is ${m.model === null ? 'absent' : 'present'}`);
  if (m.settings === null || typeof m.settings !== 'object') throw new RapmError('RAPM_FORMAT', `${file}: settings is ${describe(m.settings)}, not an object`);
  // The recorded search settings, checked here by their one definition, so a bad value names this file.
  for (const key of ['k', 'tau', 'aggregate'] as const) {
    try {
      checkSetting(key, m.settings[key] ?? null);
    } catch (e) {
      throw new RapmError('RAPM_FORMAT', `${file}: settings.${key}: ${(e as Error).message}`, { cause: e });
    }
  }
  checkManifestFields(file, root, m);
  return { dir: root, manifest: m, modelFile: m.model ? path.join(root, m.model.file) : null, datastoreFile: path.join(root, m.datastore.file) };
}

/**
 * The manifest fields loadBundle reads, checked before any is used (a hand-edited rapm.json
 * missing one was an uncoded TypeError deep in the load): RAPM_FORMAT naming the manifest and
 * the field. File names must stay inside the bundle folder, symlinks resolved: a bundle is one
 * folder, and `../x/datastore.rapm` (or an absolute path) would serve a file from elsewhere.
 */
function checkManifestFields(file: string, root: string, m: BundleManifest): void {
  const bad = (field: string, v: unknown, expected: string): never => {
    throw new RapmError('RAPM_FORMAT', `${file}: ${field} is ${v === undefined ? 'missing' : describe(v)}; expected ${expected}`);
  };
  const obj = (field: string, v: unknown): Record<string, unknown> => (is.object(v) ? (v as Record<string, unknown>) : bad(field, v, 'an object'));
  const count = (field: string, v: unknown): void => {
    if (!Number.isSafeInteger(v) || (v as number) < 0) bad(field, v, 'a whole number >= 0');
  };
  const fileName = (field: string, v: unknown): void => {
    if (typeof v !== 'string' || v.length === 0) bad(field, v, `a file name inside the bundle folder`);
    const name = v as string;
    if (path.isAbsolute(name) || insideOf(path.join(root, name), root) !== 'inside') {
      throw new RapmError('RAPM_FORMAT', `${file}: ${field} '${name}' is not inside the bundle folder ${root} (symlinks resolved); a bundle's files live in its folder`);
    }
  };
  const s = m.settings;
  if (!Array.isArray(s.keyIndices) || s.keyIndices.length === 0 || !s.keyIndices.every((i) => Number.isSafeInteger(i) && i >= 0)) bad('settings.keyIndices', s.keyIndices, 'a list of key columns (whole numbers >= 0)');
  if (!PRECISIONS.includes(s.precision)) bad('settings.precision', s.precision, `one of ${PRECISIONS.join(', ')}`);
  const data = obj('data', m.data);
  if (typeof data.hash !== 'string') bad('data.hash', data.hash, 'a string');
  const ds = obj('datastore', m.datastore);
  fileName('datastore.file', ds.file);
  for (const key of ['rows', 'keyDim', 'dv'] as const) count(`datastore.${key}`, ds[key]);
  if (m.model !== null) {
    const model = obj('model', m.model);
    fileName('model.file', model.file);
    if (typeof model.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(model.sha256)) bad('model.sha256', model.sha256, 'the model file\'s sha256 (64 hex digits)');
  }
}

/** Serve-time changes to a bundle's settings. Each one is logged. */
export interface BundleOverrides {
  k?: number;
  tau?: number;
  aggregate?: Aggregate;
  /**
   * The fast search path (the fastPath setting); absent: as recorded in the bundle, or 'off'
   * with a `source` (its neighbours replace the exact search the fast path speeds up).
   */
  fastPath?: FastPathSetting;
  /** Where the fusion model runs. Default 'cpu'. */
  device?: OnnxDevice;
  /** Intra-op threads of ONNX Runtime. */
  threads?: number;
  /** Receives one line per override and per warning. */
  log?: (line: string) => void;
  /** Micro-batching of concurrent calls (PredictorOptions.batching). Default off. */
  batching?: PredictorOptions['batching'];
  /** Run the fusion model in this many worker threads (FusionPool); 0 or absent: on the calling thread. */
  fusionWorkers?: number;
  /** Neighbours from another source (ANN index, external engine) opened over the bundle's datastore; absent: exact search. */
  source?: (ds: Datastore) => Promise<PredictorOptions['source']>;
}

/** Key indices recorded in a model's metadata: 'all' -> 0..keyDim-1. */
function modelKeyIndices(meta: Readonly<Record<string, unknown>>, keyDim: number): number[] | null {
  const v = meta['rapm.key_indices'];
  if (v === 'all') return Array.from({ length: keyDim }, (_, i) => i);
  return Array.isArray(v) ? (v as number[]) : null;
}

const describeKeys = (idx: ArrayLike<number>, keyDim: number): string => (idx.length === keyDim ? `all ${keyDim} EN dims (Config A)` : `${idx.length} EN dims${idx.length === 103 ? ' (Config B)' : ''}`);

/**
 * Refuse a model and a datastore that do not belong together: input/output widths, key
 * columns, value columns, data hash (when both record them), and key precision (the priors of
 * bf16 or int8 keys differ from f32 ones). `names` label the two in the message. A model from
 * before the precision was recorded is served, with a line to `warn` (when given).
 */
export async function checkModelMatchesDatastore(model: Pick<FusionSession, 'enDim' | 'outDim' | 'metadata'>, ds: Datastore, names: { model: string; datastore: string }, datastoreMeta?: Record<string, unknown> | null, warn?: (line: string) => void): Promise<void> {
  const refuse = (why: string): never => {
    throw new RapmError('RAPM_DATA', `Model ${names.model} does not fit datastore ${names.datastore}: ${why}. Serve a model with the datastore its priors came from (a bundle from rapm train --out keeps them together)`);
  };
  if (model.enDim !== ds.keyDim) refuse(`the model takes ${model.enDim}-dim EN vectors, the datastore's keys come from ${ds.keyDim}-dim vectors`);
  if (model.outDim !== ds.dv) refuse(`the model predicts ${model.outDim} values, the datastore holds ${ds.dv} value dims`);
  const keys = modelKeyIndices(model.metadata, ds.keyDim);
  if (keys && !sameList(keys, ds.keyIndices)) refuse(`the model was trained on priors from ${describeKeys(keys, ds.keyDim)} keys, the datastore has ${describeKeys(ds.keyIndices, ds.keyDim)} keys`);
  const mv = model.metadata['rapm.value_indices'];
  const dvv = datastoreMeta?.valueIndices;
  if (Array.isArray(mv) && Array.isArray(dvv) && !sameList(mv as number[], dvv as number[])) refuse('the model and the datastore hold different ES value columns');
  const mh = model.metadata['rapm.data_hash'];
  const dh = datastoreMeta?.dataHash;
  if (typeof mh === 'string' && typeof dh === 'string' && mh !== dh) refuse(`the model was trained on data ${mh}, the datastore holds data ${dh}`);
  const mp = model.metadata[META_PRECISION];
  if (mp === undefined) {
    warn?.(`warning: model ${names.model} does not record the key precision its priors were computed with (written before rapm recorded it); serving it with datastore ${names.datastore} (${ds.precision} keys) unchecked: a model trained on priors of another precision (--precision) predicts from priors it never saw`);
  } else if (mp !== ds.precision) {
    refuse(`the model was trained on priors from ${String(mp)} keys, the datastore holds ${ds.precision} keys (--precision changes some neighbours, so the priors)`);
  }
}

/**
 * An explicit `tau` where the aggregate served (the explicit one, else `trained.aggregate`) is
 * not softmax: it would be accepted and change nothing (TAU_AGGREGATE_RULE, src/settings.ts).
 * The problem, naming `what` (the bundle or model) and its aggregate, worded for `source`; or null.
 */
export function tauOverrideProblem(trained: { aggregate: Aggregate }, o: { tau?: number; aggregate?: Aggregate }, what: string, source: SettingSource = 'library'): string | null {
  if (o.tau === undefined) return null;
  const aggregate = o.aggregate ?? trained.aggregate;
  const problem = crossSettingProblem({ tau: o.tau, aggregate }, source, [TAU_AGGREGATE_RULE]);
  if (problem === null || o.aggregate !== undefined) return problem;
  const say = sayFor(source);
  return `${what} was trained with ${say('aggregate', aggregate)}: ${problem} (or serve with ${say('aggregate', 'softmax')} too)`;
}

/** Trained k/tau/aggregate with explicit overrides applied (each validated by the schema and logged). */
export function applyOverrides(trained: { k: number; tau: number; aggregate: Aggregate }, o: { k?: number; tau?: number; aggregate?: Aggregate }, rows: number, log?: (line: string) => void, base: 'trained' | 'default' = 'trained'): { k: number; tau: number; aggregate: Aggregate; overrides: BundleInfo['overrides'] } {
  const serving = { ...trained };
  const overrides: BundleInfo['overrides'] = {};
  for (const key of ['k', 'tau', 'aggregate'] as const) {
    const v = o[key];
    if (v === undefined) continue;
    const checked = checkSetting(key, v);
    if (checked !== trained[key]) {
      overrides[key] = { trained: trained[key], serving: checked };
      // A bare datastore records no search settings: its base values are the settings' defaults.
      log?.(`override: ${key} ${String(trained[key])} -> ${String(checked)} (${base === 'trained' ? 'trained with' : 'the default is'} ${String(trained[key])})`);
    }
    (serving as Record<string, unknown>)[key] = checked;
  }
  if (serving.k > rows) throw new RapmError('RAPM_K_TOO_LARGE', `k = ${serving.k} but the datastore holds ${rows} rows; serve with -k ${rows} or less (k: ${rows} in the library)`);
  return { ...serving, overrides };
}

/**
 * The fast path a bundle records (the setting's default when it records none; a value no
 * setting allows is RAPM_FORMAT) and the one to serve with: an explicit override, logged.
 */
function servingFastPath(dir: string, s: BundleSettings, o: BundleOverrides): { trained: FastPathSetting; serving: FastPathSetting } {
  let trained: FastPathSetting;
  try {
    trained = checkSetting('fastPath', s.fastPath);
  } catch {
    throw new RapmError('RAPM_FORMAT', `Bundle ${dir}: ${BUNDLE_FILES.manifest} records settings.fastPath ${describe(s.fastPath)}; expected ${SETTINGS.fastPath.range}`);
  }
  const problem = (fastPath: FastPathSetting): string | null => crossSettingProblem({ precision: s.precision, fastPath }, 'library', [FAST_PATH_PRECISION_RULE]);
  if (o.fastPath === undefined) {
    // Another neighbour source replaces the exact search the fast path speeds up: no shadow (it
    // would only cost memory). rapm's choice, not the caller's: not an override. The recorded
    // fast path is then never used, so one that cannot run over these keys is no reason to refuse.
    if (o.source !== undefined) return { trained, serving: 'off' };
    // Older rapm wrote such bundles (index --precision int8 --fast-path bf16); the keys are fine,
    // only the recorded fast path cannot run over them, and the fast path never changes an answer.
    const p = problem(trained);
    if (p !== null) throw new RapmError('RAPM_FORMAT', `Bundle ${dir} records settings.precision '${s.precision}' with settings.fastPath '${trained}', which cannot be served (${p}). Its keys are fine: serve it with --fast-path off (fastPath: 'off' in the library; int8 and auto work too), the same answers`);
    return { trained, serving: trained };
  }
  const serving = checkSetting('fastPath', o.fastPath);
  const p = problem(serving);
  if (p !== null) throw new RapmError('RAPM_INVALID_ARG', `Bundle ${dir} holds ${s.precision} keys: ${p}`);
  if (serving !== trained) o.log?.(`override: fastPath ${trained} -> ${serving} (same answers; speed and memory only)`);
  return { trained, serving };
}

/** Every key BundleOverrides has: any other key is refused, not ignored. */
const BUNDLE_OVERRIDE_KEYS = ['k', 'tau', 'aggregate', 'fastPath', 'device', 'threads', 'log', 'batching', 'fusionWorkers', 'source'] as const satisfies readonly (keyof BundleOverrides)[];

/**
 * Load a bundle into a Predictor with its trained settings (plus explicit `overrides`).
 * The model and datastore are checked against each other and the manifest.
 */
export async function loadBundle(dir: string, overrides: BundleOverrides = {}): Promise<Predictor> {
  if (!is.object(overrides as unknown)) throw invalidParam('overrides', 'object', overrides);
  checkKnownKeys('Predictor.fromBundle', overrides, BUNDLE_OVERRIDE_KEYS);
  const { dir: root, manifest: m, modelFile, datastoreFile } = readBundle(dir);
  if (m.kind === 'baseline') throw new RapmError('RAPM_STATE', `Bundle ${dir} holds the baseline MLP (trained for comparison); serve a fusion bundle (rapm train --model fusion) or a retrieval bundle (rapm index)`);
  const s = m.settings;
  // Refused once the manifest is read, before anything is loaded: an explicit tau the bundle's aggregate ignores.
  const tauProblem = tauOverrideProblem(s, overrides, `Bundle ${dir}`);
  if (tauProblem !== null) throw new RapmError('RAPM_INVALID_ARG', tauProblem);
  const header = await readDatastoreHeader(datastoreFile);
  const fastPath = servingFastPath(dir, s, overrides);
  const ds = await loadDatastore(datastoreFile, { fastPath: fastPath.serving });
  if (ds.size !== m.datastore.rows || !sameList(ds.keyIndices, s.keyIndices) || ds.precision !== s.precision || ds.dv !== m.datastore.dv) {
    throw new RapmError('RAPM_DATA', `Bundle ${dir}: ${BUNDLE_FILES.datastore} (${ds.size} rows, ${describeKeys(ds.keyIndices, ds.keyDim)} keys, ${ds.precision}) is not the datastore rapm.json records (${m.datastore.rows} rows, ${describeKeys(s.keyIndices, m.datastore.keyDim)} keys, ${s.precision})`);
  }
  const trained = { k: s.k, tau: s.tau, aggregate: s.aggregate };
  const { k, tau, aggregate, overrides: changed } = applyOverrides(trained, overrides, ds.size, overrides.log);
  if (overrides.fastPath !== undefined && fastPath.serving !== fastPath.trained) changed.fastPath = { trained: fastPath.trained, serving: fastPath.serving };
  let fusion: (FusionModel & Pick<FusionSession, 'enDim' | 'outDim' | 'metadata' | 'release'>) | null = null;
  if (modelFile) {
    const bytes = await readRegularFile(modelFile, 'ONNX model').catch((e: Error & { cause?: NodeJS.ErrnoException }) => {
      throw new RapmError('RAPM_IO', `Cannot read bundle ${dir}: ${BUNDLE_FILES.model} (${e.cause?.code ?? e.message})`, { cause: e });
    });
    const sha = createHash('sha256').update(bytes).digest('hex');
    if (sha !== m.model!.sha256) throw new RapmError('RAPM_DATA', `Bundle ${dir}: ${BUNDLE_FILES.model} is not the model rapm.json records (sha256 ${sha.slice(0, 12)}…, expected ${m.model!.sha256.slice(0, 12)}…)`);
    // Loaded from bytes (the ones hashed above): named by its file, so messages (a released session) say which model.
    const fusionOptions = { enDim: ds.keyDim, outDim: ds.dv, device: overrides.device ?? 'cpu', threads: overrides.threads, onWarning: overrides.log, name: modelFile };
    if ((overrides.fusionWorkers ?? 0) > 0) {
      const { FusionPool } = await import('../fusion/onnx-pool.js');
      fusion = await FusionPool.create(bytes, { ...fusionOptions, workers: overrides.fusionWorkers });
    } else {
      const { FusionSession } = await import('../fusion/onnx-session.js');
      fusion = await FusionSession.create(bytes, fusionOptions);
    }
    try {
      await checkModelMatchesDatastore(fusion, ds, { model: path.join(dir, BUNDLE_FILES.model), datastore: path.join(dir, BUNDLE_FILES.datastore) }, header.meta);
    } catch (e) {
      await fusion.release().catch(() => undefined);
      throw e;
    }
  }
  const bundle: BundleInfo = { dir: root, kind: m.kind, created: m.created, dataHash: m.data.hash, trained: { config: s.config, k: s.k, tau: s.tau, aggregate: s.aggregate, precision: s.precision, fastPath: fastPath.trained }, overrides: changed };
  try {
    const source = overrides.source ? await overrides.source(ds) : null;
    return new Predictor(ds, { k, tau, aggregate, fusion, bundle, batching: overrides.batching, source });
  } catch (e) {
    await fusion?.release().catch(() => undefined);
    throw e;
  }
}
