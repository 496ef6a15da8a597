/**
 * The Dataset type, the DRAL feature-folder loader and the data-problem report shared by
 * the loaders.
 *
 * DRAL layout: one folder of `EN_<uttid>_features.npy` and `ES_<uttid>_features.npy`, each a
 * (1024,) vector, plus optional filelists `train_filelist_en.txt` / `test_filelist_en.txt`
 * of lines `EN_<uttid>.wav` (the official split).
 */
import fs from 'node:fs';
import path from 'node:path';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { RapmError, RapmRangeError, describe } from '../errors.js';
import { ioError } from '../io/atomic.js';
import { readTextFileSync } from '../io/files.js';
import { ENGLISH_WINNERS, FEATURE_DIM } from './indices.js';
import { loadBinding } from '../native/binding.js';
import { readNpySync } from './npy.js';

/** Aligned (EN, ES) pairs in memory. Row i of `en` and `es` belong to `ids[i]`. */
export interface Dataset {
  ids: string[];
  /** Speaker of each row, or null when unknown. */
  speakers: string[] | null;
  en: Float32Array; // [n, 1024]
  es: Float32Array; // [n, 1024]
  n: number;
  /** The source's own train/test split by id (DRAL filelists, generated data), if any. */
  official?: { train: string[]; test: string[] } | null;
  /**
   * Ids that are test data only, whatever the split: the rows of a chunk folder whose name
   * starts with `test` (chunks.ts). Every split (official, random, speaker) puts them in test
   * and splits only the other rows.
   */
  testOnly?: string[] | null;
}

/** What a loader found wrong. `fail` throws all of them in one message; `skip` drops the pairs and lists them here. */
export interface DataProblem {
  kind: 'missing-partner' | 'duplicate-id' | 'wrong-shape' | 'unreadable' | 'missing-file' | 'filelist-entry' | 'speaker-pattern' | 'non-finite' | 'bad-id' | 'bad-norm';
  /** Utterance id or chunk name concerned, when there is one. */
  id?: string;
  detail: string;
}

export type ProblemPolicy = 'fail' | 'skip';

/** A loaded dataset plus where it came from and what was skipped. */
export interface LoadedDataset extends Dataset {
  source: string;
  problems: DataProblem[];
  /**
   * What the loader left out by rule rather than as a problem, one line each, for the caller to
   * print as a warning (the CLI does, even with --quiet): e.g. 'N pairs are in neither filelist;
   * left out'. Absent when there is nothing to say.
   */
  notices?: string[];
  /**
   * Pairs (rows) left out because of `problems` under 'skip': every row of a dropped chunk,
   * every dropped row, every DRAL pair dropped or missing one of its two files. 0 when nothing
   * was dropped. (Pairs left out by rule, in `notices`, are not counted.)
   */
  dropped?: number;
}

/** Speaker = the part of the utterance id before the first underscore (`s012_0000345` -> `s012`). */
export const DEFAULT_SPEAKER_PATTERN = /^([^_]+)_/;

export interface LoadDralOptions {
  /**
   * How to get the speaker from an utterance id: a RegExp (or its source string) whose first
   * capture group (or whole match) is the speaker; null for no speakers. Default
   * DEFAULT_SPEAKER_PATTERN. An id the pattern does not match is a problem.
   */
  speakerPattern?: RegExp | string | null;
  /** 'fail' (default): throw one RAPM_DATA error listing every problem. 'skip': drop affected pairs and report them. */
  onProblem?: ProblemPolicy;
  /** Feature dimension each file must have (default 1024). */
  dim?: number;
  /** Filelist names (default train_filelist_en.txt / test_filelist_en.txt); false: ignore filelists. */
  filelists?: { train: string; test: string } | false;
  /**
   * Folder holding the filelists, when they are not beside the feature files (the R-APM
   * reference layout keeps them apart). Default: the feature folder. A folder given here
   * must hold at least one of the two filelists.
   */
  filelistDir?: string;
  /**
   * Frame-level feature files (shape (T, 1024)) are refused unless this is 'mean', which
   * averages the T frames into the per-utterance vector rapm works on. A (1, 1024) file is
   * always read as one vector.
   */
  poolFrames?: 'mean' | null;
  /** Called with (pairs read, pairs total) while reading. */
  onProgress?: (done: number, total: number) => void;
  /**
   * The EN columns the keys will be built from, when not the whole row: e.g. ENGLISH_WINNERS
   * (keyIndices('B')) for a Config B run. An EN vector that is zero on all of them is then a
   * bad-norm problem like a zero-norm vector. Default: none (the whole-row checks only; Config A).
   */
  keyColumns?: readonly number[] | null;
}

// [^] rather than '.': a file name holding a newline is a (reported) bad id, not ignored.
const FEATURE_RE = /^(EN|ES)_([^]+)_features\.npy$/;
const FILELIST_RE = /^EN_(.+)\.wav$/;
const MAX_LISTED = 20;

const KIND_TITLES: Record<DataProblem['kind'], string> = {
  'missing-partner': 'missing partner',
  'duplicate-id': 'duplicate id',
  'wrong-shape': 'wrong shape',
  unreadable: 'unreadable file',
  'missing-file': 'missing file',
  'filelist-entry': 'bad filelist entry (no files, or not EN_<uttid>.wav)',
  'speaker-pattern': 'no speaker in id',
  'non-finite': 'NaN, infinite or out-of-range values',
  'bad-id': 'id with leading or trailing whitespace or a control character',
  'bad-norm': 'EN vector that cannot be a key (zero norm, or squared L2 norm overflowing float32)',
};

/** The hint printed under a data-problem report: what to do, as CLI flags (the library option in brackets). */
export const SKIP_HINT = "Fix the files, or pass --on-problem skip to drop the affected pairs and report them (library: onProblem: 'skip').";

/**
 * The first value of `data` that is not finite, or beyond +-`maxAbs`, as 'row r, column c is NaN'
 * (rows of `dim`), or null. Used by every loader so such a value is reported with its file and
 * row, not later as a datastore row number. ES features become the datastore's values, which the
 * native store refuses beyond `valueLimit()`; EN features (keys, normalised in double) need only
 * be finite.
 */
export function firstNonFinite(data: Float32Array, dim: number, maxAbs = Infinity): string | null {
  for (let i = 0; i < data.length; i++) {
    const x = data[i]!;
    if (x - x !== 0) return `row ${Math.floor(i / dim)}, column ${i % dim} is ${String(x)}`;
    if (Math.abs(x) > maxAbs) return `row ${Math.floor(i / dim)}, column ${i % dim} is ${String(x)}, beyond +-${Number(maxAbs.toPrecision(7))} (the datastore's value range: priors blend values in float32)`;
  }
  return null;
}

/**
 * float32's largest finite value. An EN row whose squared L2 norm (summed in double) is above
 * it overflows in a float32 pipeline: the predictor (src/serve/predictor.ts) refuses such a
 * query row with RAPM_NON_FINITE, so the loaders refuse such a key row with the same limit.
 */
export const F32_MAX = 3.4028234663852886e38;

/**
 * The first row of `data` (rows of `dim`) that cannot be a datastore key, or null: a NaN or
 * infinite value (checkKeyRows then names it), a zero norm (cannot be normalised; float64 values too small for float32 arrive as 0)
 * or a squared L2 norm beyond F32_MAX. The squared norm is summed in double, as the predictor
 * and the native store do, so the limits are the same. With `keyColumns` (the EN columns the
 * keys will be built from, e.g. ENGLISH_WINNERS for Config B) the row must also not be all zero
 * on those columns: such a row passed the whole-row check and failed inside the datastore as
 * 'keys row N'. Without it (Config A: the whole row is the key) only the whole row is checked.
 * (A norm over some columns cannot overflow when the whole row's does not.)
 */
export function firstBadKeyRow(data: Float32Array, dim: number, keyColumns?: readonly number[] | null): { row: number; reason: string } | null {
  const n = dim > 0 ? Math.floor(data.length / dim) : 0;
  const cols = keyColumnsToCheck(keyColumns, dim);
  for (let r = 0; r < n; r++) {
    let s = 0;
    for (let j = r * dim, e = j + dim; j < e; j++) s += data[j]! * data[j]!;
    // NaN exactly when the row holds a NaN or an infinity (finite float32 squares cannot overflow a double).
    if (s - s !== 0) return { row: r, reason: 'a NaN or infinite value' };
    if (s === 0) return { row: r, reason: 'zero norm: cannot be normalised (every value is 0 in float32)' };
    if (s > F32_MAX) return { row: r, reason: `squared L2 norm overflows float32 (${s.toPrecision(3)} > ${F32_MAX.toPrecision(3)}; values up to about 1.8e19 fit)` };
    if (cols) {
      let sb = 0;
      for (const c of cols) sb += data[r * dim + c]! * data[r * dim + c]!;
      if (sb === 0) return { row: r, reason: zeroOnKeyColumns(cols) };
    }
  }
  return null;
}

/**
 * The loaders' `keyColumns` option, checked: null when there is nothing to check beyond the
 * whole row (none given, or every column in order: Config A). A column outside 0..dim-1 is
 * RAPM_INVALID_ARG (it would read another row).
 */
export function keyColumnsToCheck(keyColumns: readonly number[] | null | undefined, dim: number): readonly number[] | null {
  if (keyColumns === undefined || keyColumns === null) return null;
  if (!Array.isArray(keyColumns) && !ArrayBuffer.isView(keyColumns)) throw new RapmRangeError('RAPM_INVALID_ARG', `Expected an array of column indices or null for keyColumns but received ${describe(keyColumns)}`);
  const bad = Array.prototype.findIndex.call(keyColumns, (c: unknown) => !Number.isInteger(c) || (c as number) < 0 || (c as number) >= dim);
  if (bad >= 0) throw new RapmRangeError('RAPM_INVALID_ARG', `Expected keyColumns[${bad}] to be an integer between 0 and ${dim - 1} but received ${describe(keyColumns[bad])}`);
  if (keyColumns.length === 0) throw new RapmRangeError('RAPM_INVALID_ARG', 'Expected at least one column in keyColumns but received an empty list');
  if (keyColumns.length === dim && keyColumns.every((c, i) => c === i)) return null;
  return keyColumns;
}

/** Why a row that is zero on the key columns is refused: Config B's columns by name. */
function zeroOnKeyColumns(cols: readonly number[]): string {
  const isB = cols.length === ENGLISH_WINNERS.length && cols.every((c, i) => c === ENGLISH_WINNERS[i]);
  return isB
    ? `zero norm on the ${cols.length} Config B key columns (ENGLISH_WINNERS): cannot be normalised as a Config B key (every one of those values is 0 in float32)`
    : `zero norm on the ${cols.length} key columns (keyColumns): cannot be normalised as a key (every one of those values is 0 in float32)`;
}

/**
 * Both checks of EN (key) rows in one pass over a clean array: the first non-finite value
 * (firstNonFinite's message), else the first row that cannot be a key (firstBadKeyRow), else
 * null. A non-finite value anywhere is reported first, as when the two checks ran one after the
 * other; the second scan runs only when something is wrong. `keyColumns` as for firstBadKeyRow.
 */
export function checkKeyRows(data: Float32Array, dim: number, keyColumns?: readonly number[] | null): { nonFinite: string } | { badKey: { row: number; reason: string } } | null {
  const bad = firstBadKeyRow(data, dim, keyColumns);
  if (bad === null) return null;
  const nonFinite = firstNonFinite(data, dim);
  return nonFinite !== null ? { nonFinite } : { badKey: bad };
}

/** The largest |value| an ES feature may hold: the native datastore's limit (native/core/datastore.h kMaxAbsValue). */
export function valueLimit(): number {
  return loadBinding().maxAbsValue;
}

/** One message listing every problem, grouped by kind (at most 20 shown per kind). */
export function formatProblems(source: string, problems: readonly DataProblem[], hint?: string): string {
  const lines = [`${source}: ${problems.length} data problem${problems.length === 1 ? '' : 's'}`];
  for (const kind of Object.keys(KIND_TITLES) as DataProblem['kind'][]) {
    const of = problems.filter((p) => p.kind === kind);
    if (of.length === 0) continue;
    lines.push(`  ${KIND_TITLES[kind]} (${of.length}):`);
    for (const p of of.slice(0, MAX_LISTED)) lines.push(`    - ${p.detail}`);
    if (of.length > MAX_LISTED) lines.push(`    - ... and ${of.length - MAX_LISTED} more`);
  }
  if (hint) lines.push(hint);
  return lines.join('\n');
}

/** Compile a speaker pattern option. */
export function speakerMatcher(pattern: RegExp | string | null | undefined): ((id: string) => string | null) | null {
  if (pattern === null) return null;
  let re: RegExp;
  if (pattern === undefined) re = DEFAULT_SPEAKER_PATTERN;
  else if (pattern instanceof RegExp) re = pattern;
  else if (typeof pattern === 'string') {
    try {
      re = new RegExp(pattern);
    } catch (e) {
      throw new RapmRangeError('RAPM_INVALID_ARG', `Expected a valid regular expression for speakerPattern but received ${describe(pattern)} (${(e as Error).message})`);
    }
  } else throw new RapmRangeError('RAPM_INVALID_ARG', `Expected RegExp, string or null for speakerPattern but received ${describe(pattern)}`);
  const flags = re.flags.replace(/[gy]/g, '');
  const plain = new RegExp(re.source, flags);
  return (id: string) => {
    const m = plain.exec(id);
    if (!m) return null;
    const s = m[1] ?? m[0];
    return s.length > 0 ? s : null;
  };
}

/**
 * Why `id` cannot be an utterance id, or null: leading or trailing whitespace (ids.txt and
 * filelists are lines, so it would not survive a round trip: `s001_x ` and `s001_x` would
 * become one id, or two that look the same) or a control character (a newline splits a line).
 */
export function badIdReason(id: string): string | null {
  const ctl = /[\u0000-\u001f\u007f-\u009f]/.exec(id);
  if (ctl) return `contains the control character U+${ctl[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`;
  if (/^\s/u.test(id)) return 'starts with whitespace';
  if (/\s$/u.test(id)) return 'ends with whitespace';
  return null;
}

/** Code-point order (locale independent, so every machine loads rows in the same order). */
export function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

interface Filelist {
  file: string;
  ids: string[];
}

function readFilelist(file: string, problems: DataProblem[]): Filelist {
  const text = readTextFileSync(file, 'filelist');
  const ids: string[] = [];
  const seen = new Map<string, number>();
  text.split(/\r?\n/).forEach((raw, lineNo) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const base = line.split(/[\\/]/).pop()!;
    const m = FILELIST_RE.exec(base);
    if (!m) {
      problems.push({ kind: 'filelist-entry', detail: `${path.basename(file)} line ${lineNo + 1}: '${line}' is not of the form EN_<uttid>.wav` });
      return;
    }
    const id = m[1]!;
    const prev = seen.get(id);
    if (prev !== undefined) {
      problems.push({ kind: 'duplicate-id', id, detail: `${id} is listed twice in ${path.basename(file)} (lines ${prev} and ${lineNo + 1})` });
      return;
    }
    seen.set(id, lineNo + 1);
    ids.push(id);
  });
  return { file, ids };
}

/**
 * Load a DRAL feature folder. Every problem (missing partners, duplicate ids, wrong shapes,
 * unreadable files, filelist entries without files, ids without a speaker) is collected first
 * and reported together: thrown as one RAPM_DATA error (`onProblem: 'fail'`, the default) or
 * returned in `problems` with the affected pairs dropped (`'skip'`). With filelists, a pair
 * listed in neither is not part of the official split: it is left out (not an error), and
 * `notices` says how many, so train, index, grid, pack and progressive all see the same pairs.
 * Rows are in code-point order of the utterance id.
 */
export async function loadDral(dir: string, options: LoadDralOptions = {}): Promise<LoadedDataset> {
  const policy = options.onProblem ?? 'fail';
  if (policy !== 'fail' && policy !== 'skip') throw new RapmRangeError('RAPM_INVALID_ARG', `Expected 'fail' or 'skip' for onProblem but received ${describe(policy)}`);
  const dim = options.dim ?? FEATURE_DIM;
  const pool = options.poolFrames ?? null;
  if (pool !== null && pool !== 'mean') throw new RapmRangeError('RAPM_INVALID_ARG', `Expected 'mean' or null for poolFrames but received ${describe(pool)}`);
  const speakerOf = speakerMatcher(options.speakerPattern);
  const keyColumns = keyColumnsToCheck(options.keyColumns, dim);
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (e) {
    throw ioError('read DRAL folder', dir, e);
  }
  const problems: DataProblem[] = [];
  const en = new Map<string, string>();
  const es = new Map<string, string>();
  for (const name of names) {
    const m = FEATURE_RE.exec(name);
    if (!m) continue;
    (m[1] === 'EN' ? en : es).set(m[2]!, name);
  }
  let ids: string[] = [];
  const notices: string[] = [];
  // Pairs left out under 'skip': those missing a file, and those with a problem of their own.
  let dropped = 0;
  for (const id of en.keys()) {
    if (es.has(id)) ids.push(id);
    else {
      problems.push({ kind: 'missing-partner', id, detail: `EN_${id}_features.npy has no ES_${id}_features.npy` });
      dropped++;
    }
  }
  for (const id of es.keys()) {
    if (!en.has(id)) {
      problems.push({ kind: 'missing-partner', id, detail: `ES_${id}_features.npy has no EN_${id}_features.npy` });
      dropped++;
    }
  }
  ids.sort(compareIds);
  // Ids with surrounding whitespace or control characters: problems, never kept as they are.
  ids = ids.filter((id) => {
    const why = badIdReason(id);
    if (why === null) return true;
    dropped++;
    problems.push({ kind: 'bad-id', id, detail: `${JSON.stringify(`EN_${id}_features.npy`)} / ${JSON.stringify(`ES_${id}_features.npy`)}: id ${JSON.stringify(id)} ${why}; rename the two files` });
    return false;
  });

  // Filelists: the official split.
  let official: { train: string[]; test: string[] } | null = null;
  // Pairs dropped for a problem of their own (read, but not kept).
  const bad = new Set<string>();
  // Ids listed in both filelists: neither train nor test can be trusted, so the pair is dropped
  // (kept, it was packed as 'train' though the test filelist names it).
  let inBoth: ReadonlySet<string> = new Set();
  if (options.filelists !== false) {
    const names2 = options.filelists ?? { train: 'train_filelist_en.txt', test: 'test_filelist_en.txt' };
    const listDir = options.filelistDir ?? dir;
    const trainFile = path.join(listDir, names2.train);
    const testFile = path.join(listDir, names2.test);
    const haveTrain = fs.existsSync(trainFile);
    const haveTest = fs.existsSync(testFile);
    if (options.filelistDir !== undefined && !haveTrain && !haveTest) {
      throw new RapmError('RAPM_IO', `Filelist folder ${listDir} holds neither ${names2.train} nor ${names2.test} (--filelists)`);
    }
    if (haveTrain || haveTest) {
      if (!haveTrain || !haveTest) {
        problems.push({ kind: 'missing-file', detail: `${haveTrain ? names2.test : names2.train} is missing (${haveTrain ? names2.train : names2.test} exists)` });
      }
      const tr = haveTrain ? readFilelist(trainFile, problems) : { file: trainFile, ids: [] };
      const te = haveTest ? readFilelist(testFile, problems) : { file: testFile, ids: [] };
      const trainSet = new Set(tr.ids);
      const both = new Set(te.ids.filter((id) => trainSet.has(id)));
      inBoth = both;
      for (const id of both) {
        problems.push({ kind: 'duplicate-id', id, detail: `${id} is listed in both ${names2.train} and ${names2.test}` });
      }
      const paired = new Set(ids);
      const check = (list: Filelist, listName: string): string[] =>
        list.ids.filter((id) => {
          if (both.has(id)) return false;
          if (paired.has(id)) return true;
          const which = en.has(id) ? `ES_${id}_features.npy` : es.has(id) ? `EN_${id}_features.npy` : `EN_${id}_features.npy and ES_${id}_features.npy`;
          problems.push({ kind: 'filelist-entry', id, detail: `${listName}: EN_${id}.wav has no ${which}` });
          return false;
        });
      official = { train: check(tr, names2.train), test: check(te, names2.test) };
      // A pair listed in neither filelist is not part of the official split: it is left out
      // here, so every consumer (train, index, grid, pack, progressive --initial) sees the
      // same pairs, and it is said once instead of being trained on or dropped silently.
      const listed = new Set([...tr.ids, ...te.ids]);
      const unlisted = ids.filter((id) => !listed.has(id));
      if (unlisted.length > 0) {
        const shown = unlisted.slice(0, 3).join(', ') + (unlisted.length > 3 ? ', ...' : '');
        notices.push(`${unlisted.length} pair${unlisted.length === 1 ? ' is' : 's are'} in neither filelist (${names2.train}, ${names2.test}); left out: ${shown}`);
        ids = ids.filter((id) => listed.has(id));
      }
    }
  }

  // Speakers.
  const speakers: string[] | null = speakerOf ? [] : null;
  for (const id of inBoth) bad.add(id);
  if (speakerOf) {
    for (const id of ids) {
      const s = speakerOf(id);
      if (s === null) {
        problems.push({ kind: 'speaker-pattern', id, detail: `id '${id}' does not match the speaker pattern ${String(options.speakerPattern ?? DEFAULT_SPEAKER_PATTERN)}` });
        bad.add(id);
      }
    }
  }

  // Read every feature file (shape problems are collected, not thrown one at a time).
  const enData = new Float32Array(ids.length * dim);
  const esData = new Float32Array(ids.length * dim);
  const expectShape = [dim];
  const ok = new Uint8Array(ids.length);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    let good = !bad.has(id);
    for (const [lang, target] of [['EN', enData], ['ES', esData]] as const) {
      const name = `${lang}_${id}_features.npy`;
      try {
        const arr = readNpySync(path.join(dir, name), { accept: ['float32', 'float64', 'float16'] });
        const shape = `(${arr.shape.join(', ')}${arr.shape.length === 1 ? ',' : ''})`;
        let vec: Float32Array | null = null;
        if (arr.shape.length === 1 && arr.shape[0] === dim) vec = arr.data as Float32Array;
        else if (arr.shape.length === 2 && arr.shape[1] === dim && arr.shape[0] === 1) vec = arr.data as Float32Array;
        else if (arr.shape.length === 2 && arr.shape[1] === dim && arr.shape[0]! > 1) {
          if (pool === 'mean') vec = meanFrames(arr.data as Float32Array, arr.shape[0]!, dim);
          else {
            problems.push({ kind: 'wrong-shape', id, detail: `${name} has shape ${shape}: frame-level features (T x ${dim}). rapm works on one ${dim}-d vector per utterance, the mean over frames: pool them first, or pass --pool-frames mean (library: poolFrames: 'mean')` });
          }
        } else {
          problems.push({ kind: 'wrong-shape', id, detail: `${name} has shape ${shape}, expected (${expectShape[0]},)` });
        }
        if (vec === null) good = false;
        else {
          const keyCheck = lang === 'EN' ? checkKeyRows(vec, dim, keyColumns) : null;
          const bad2 = lang === 'ES' ? firstNonFinite(vec, dim, valueLimit()) : keyCheck && 'nonFinite' in keyCheck ? keyCheck.nonFinite : null;
          const badKey = keyCheck && 'badKey' in keyCheck ? keyCheck.badKey : null;
          if (bad2 !== null) {
            problems.push({ kind: 'non-finite', id, detail: `${path.join(dir, name)}: ${bad2.replace(/^row 0, /, '')}` });
            good = false;
          } else if (badKey !== null) {
            // Found here, with its file and id, not later as a datastore row number.
            problems.push({ kind: 'bad-norm', id, detail: `${path.join(dir, name)} (id ${id}): ${badKey.reason}; fix or drop that pair` });
            good = false;
          } else if (good) target.set(vec, i * dim);
        }
      } catch (e) {
        problems.push({ kind: 'unreadable', id, detail: (e as Error).message });
        good = false;
      }
    }
    ok[i] = good ? 1 : 0;
    if ((i & 1023) === 1023) {
      options.onProgress?.(i + 1, ids.length);
      await yieldToLoop();
    }
  }
  options.onProgress?.(ids.length, ids.length);

  if (problems.length > 0 && policy === 'fail') {
    throw new RapmError('RAPM_DATA', formatProblems(`DRAL folder ${dir}`, problems, SKIP_HINT));
  }

  // Compact away dropped rows (skip policy).
  let keep = 0;
  const keptIds: string[] = [];
  for (let i = 0; i < ids.length; i++) {
    if (!ok[i]) continue;
    if (keep !== i) {
      enData.copyWithin(keep * dim, i * dim, (i + 1) * dim);
      esData.copyWithin(keep * dim, i * dim, (i + 1) * dim);
    }
    keptIds.push(ids[i]!);
    keep++;
  }
  if (keptIds.length === 0) {
    throw new RapmError('RAPM_DATA', problems.length ? formatProblems(`DRAL folder ${dir} has no usable pairs`, problems) : `DRAL folder ${dir} holds no EN_<uttid>_features.npy / ES_<uttid>_features.npy pairs`);
  }
  dropped += ids.length - keptIds.length;
  const keptSet = new Set(keptIds);
  if (official) official = { train: official.train.filter((id) => keptSet.has(id)), test: official.test.filter((id) => keptSet.has(id)) };
  return {
    ids: keptIds,
    speakers: speakers ? keptIds.map((id) => speakerOf!(id)!) : null,
    en: keep === ids.length ? enData : enData.slice(0, keep * dim),
    es: keep === ids.length ? esData : esData.slice(0, keep * dim),
    n: keptIds.length,
    official,
    source: dir,
    problems,
    notices: notices.length > 0 ? notices : undefined,
    dropped,
  };
}

/** Mean of `t` frames of `dim` values (accumulated in float64). */
function meanFrames(data: Float32Array, t: number, dim: number): Float32Array {
  const acc = new Float64Array(dim);
  for (let r = 0; r < t; r++) for (let j = 0; j < dim; j++) acc[j]! += data[r * dim + j]!;
  const out = new Float32Array(dim);
  for (let j = 0; j < dim; j++) out[j] = acc[j]! / t;
  return out;
}

/** A new Dataset holding rows `rows` (in that order) of `ds`; `official` is dropped. */
export function subsetDataset(ds: Dataset, rows: ArrayLike<number>): Dataset {
  const d = ds.en.length / ds.n;
  const m = rows.length;
  const en = new Float32Array(m * d);
  const es = new Float32Array(m * d);
  const ids: string[] = new Array(m);
  const speakers: string[] | null = ds.speakers ? new Array(m) : null;
  for (let i = 0; i < m; i++) {
    const r = rows[i]!;
    if (!Number.isInteger(r) || r < 0 || r >= ds.n) {
      throw new RapmRangeError('RAPM_INVALID_ARG', `Expected rows[${i}] to be an integer between 0 and ${ds.n - 1} but received ${describe(r)}`);
    }
    en.set(ds.en.subarray(r * d, (r + 1) * d), i * d);
    es.set(ds.es.subarray(r * d, (r + 1) * d), i * d);
    ids[i] = ds.ids[r]!;
    if (speakers) speakers[i] = ds.speakers![r]!;
  }
  return { ids, speakers, en, es, n: m };
}
