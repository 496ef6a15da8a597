/**
 * Packed chunks: the fast on-disk form of large datasets.
 *
 *   <chunks>/<chunk>/en.npy        [n, 1024] float32 (float64 is read and converted)
 *                   /es.npy        [n, 1024]
 *                   /ids.txt       n lines, one utterance id each
 *                   /speakers.txt  optional, n lines
 *                   /split.txt     optional, n lines of 'train' | 'test' (the source's own split)
 *                   /meta.json     optional: {"format": "rapm-chunk", "version": 1, "n": n, "dim": 1024, ...}
 *
 * A chunk folder written by numpy alone (en.npy, es.npy, ids.txt, no meta.json) is read as is.
 * Chunk folders are processed in code-point order of their names; symbolic links to chunk
 * folders are followed (a dangling link is an error, never skipped). A folder whose name starts
 * with `test` is a test set: without split.txt all its rows are test rows, and a split.txt
 * that marks any of its rows 'train' is refused, so a test folder never becomes training data. Loading checks every chunk's
 * headers and text files first (reporting all problems together; under --on-problem skip a bad
 * id or speaker line drops its row, a missing or unreadable file its chunk), then allocates the
 * [N, 1024] arrays once and reads each chunk's rows straight into them: peak memory is the
 * dataset itself, not twice it, and the bytes move at disk or page-cache speed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { RapmError, RapmRangeError, describe, isRapmError } from '../errors.js';
import { checkInteger } from '../validate.js';
import { ensureDir, ioError, isSideCopyName, removeStaleStagingSync, replaceDirSync, tempPathFor, writeFileAtomicSync } from '../io/atomic.js';
import { readTextFileSync } from '../io/files.js';
import { SKIP_HINT, badIdReason, checkKeyRows, keyColumnsToCheck, compareIds, firstNonFinite, formatProblems, speakerMatcher, valueLimit, type DataProblem, type Dataset, type LoadedDataset, type ProblemPolicy } from './dataset.js';
import { FEATURE_DIM } from './indices.js';
import { readNpyHeaderSync, readNpyInto, writeNpy } from './npy.js';

export const CHUNK_FORMAT = 'rapm-chunk';
export const CHUNK_VERSION = 1;

export interface ChunkMeta {
  format: typeof CHUNK_FORMAT;
  version: number;
  n: number;
  dim: number;
  dtype: 'float32';
  /** Anything else the writer recorded (the generator puts its options and seed here). */
  [key: string]: unknown;
}

/** One chunk in memory. */
export interface Chunk {
  name: string;
  /** Position of the chunk in name order (0-based, counting skipped chunks). */
  index: number;
  ids: string[];
  speakers: string[] | null;
  split: ('train' | 'test')[] | null;
  en: Float32Array; // [n, dim]
  es: Float32Array; // [n, dim]
  n: number;
  meta: ChunkMeta;
}

export interface LoadChunksOptions {
  /** Read only these chunk folders of `dir` (names, in the order given) instead of all of them. */
  only?: readonly string[];
  /** 'fail' (default): one RAPM_DATA error listing every problem. 'skip': drop the affected rows (a chunk whose files are unusable: all of it) and report them. */
  onProblem?: ProblemPolicy;
  /** Feature dimension (default 1024). */
  dim?: number;
  /** Called with (rows loaded, rows total) as chunks stream in. */
  onProgress?: (done: number, total: number) => void;
  /**
   * Speakers of chunks without speakers.txt, read from their ids (first group of the pattern,
   * as for DRAL ids). Only when given: chunks without speakers.txt and without a pattern have no
   * speakers (their test rows are bootstrapped by row, with a warning).
   */
  speakerPattern?: RegExp | string | null;
  /**
   * The EN columns the keys will be built from, when not the whole row (ENGLISH_WINNERS for
   * Config B): a row that is zero on all of them is fatal, naming chunk, file, row and id, like
   * a zero-norm row. Default: none (the whole-row checks only; Config A).
   */
  keyColumns?: readonly number[] | null;
}

interface ChunkPlan {
  name: string;
  index: number;
  dir: string;
  n: number;
  ids: string[];
  speakers: string[] | null;
  split: ('train' | 'test')[] | null;
  meta: ChunkMeta;
  /** Rows kept (null: all). Under 'skip' a row is dropped for its own problem only: a bad or duplicate id, an empty speaker line, no speaker under the pattern. */
  keep: Uint8Array | null;
  kept: number;
}

/**
 * The lines of a chunk's text file: CRLF or LF. Trailing spaces and tabs are dropped from
 * speakers.txt and split.txt lines (`trim`), never from ids.txt: an id is kept as written, and
 * one with surrounding whitespace is reported (badIdReason), not silently changed.
 */
function readLines(file: string, trim = true): string[] {
  const text = readTextFileSync(file, path.basename(file));
  const lines = text.split(/\r?\n/).map((l) => (trim ? l.replace(/[ \t]+$/, '') : l));
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** List the chunk folders of `dir` in name order. */
export function listChunks(dir: string): string[] {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch (e) {
    throw ioError('read chunks folder', dir, e);
  }
  const out: string[] = [];
  for (const e of entries) {
    // Staging folders (`.tmp-`) and old copies moved aside by a swap (`<chunk>.old-<pid>-<hex>`,
    // replaceDirSync) are not chunks: read, the old copy would duplicate its chunk's ids.
    if (e.name.includes('.tmp-') || isSideCopyName(e.name) || e.name.startsWith('.')) continue;
    if (e.isDirectory()) out.push(e.name);
    else if (e.isSymbolicLink()) {
      // Followed: a link to a chunk folder is a chunk. A dangling link is refused, never skipped.
      const link = path.join(dir, e.name);
      let st: fs.Stats;
      try {
        st = fs.statSync(link);
      } catch (err) {
        let target = '?';
        try {
          target = fs.readlinkSync(link);
        } catch {
          /* keep '?' */
        }
        throw new RapmError('RAPM_IO', `Chunk folder ${link} is a symbolic link to ${target}, which cannot be opened (${(err as NodeJS.ErrnoException).code ?? String(err)}): fix or remove the link`);
      }
      if (st.isDirectory()) out.push(e.name);
    }
  }
  return out.sort(compareIds);
}

/** A folder whose name starts with 'test' holds test rows only (see the file comment). */
export function isTestFolderName(name: string): boolean {
  return /^test/i.test(name);
}

/** True when `dir` looks like one chunk folder (en.npy, es.npy and ids.txt; meta.json optional). */
export function isChunkFolder(dir: string): boolean {
  return ['en.npy', 'es.npy', 'ids.txt'].every((f) => fs.existsSync(path.join(dir, f)));
}

/** Check one chunk's files without reading its matrices. Problems are appended; returns null if unusable. */
function planChunk(dir: string, name: string, index: number, dim: number, problems: DataProblem[], lost: { rows: number; chunks: string[] }): ChunkPlan | null {
  const cdir = path.join(dir, name);
  // Problems of the chunk as a whole (a file missing or unreadable, shapes that disagree) make
  // it unusable; a problem of one row (its id, its speaker line) drops that row only (`drop`).
  let unusable = 0;
  const problem = (kind: DataProblem['kind'], detail: string): void => {
    unusable++;
    problems.push({ kind, id: name, detail: `chunk ${name}: ${detail}` });
  };
  const dropped = new Set<number>();
  const drop = (row: number, kind: DataProblem['kind'], id: string | undefined, detail: string): void => {
    dropped.add(row);
    problems.push({ kind, id, detail: `chunk ${name}: ${detail}` });
  };
  let meta: ChunkMeta | null = null;
  let metaGiven = false;
  const metaFile = path.join(cdir, 'meta.json');
  if (fs.existsSync(metaFile)) {
    metaGiven = true;
    try {
      const m = JSON.parse(readTextFileSync(metaFile, 'meta.json')) as Partial<ChunkMeta>;
      if (m.format !== CHUNK_FORMAT) problem('unreadable', `meta.json has format ${describe(m.format)}, expected '${CHUNK_FORMAT}'`);
      else if (typeof m.version !== 'number' || m.version > CHUNK_VERSION) problem('unreadable', `meta.json has version ${describe(m.version)}; this rapm reads version ${CHUNK_VERSION}`);
      else meta = m as ChunkMeta;
    } catch (e) {
      problem('unreadable', isRapmError(e) ? (e as Error).message : `meta.json does not parse (${(e as Error).message})`);
    }
  }
  // A text file that cannot be read (a FIFO, a folder, no permission) is this chunk's problem,
  // listed with the others (and skipped with its chunk under --on-problem skip), like en.npy's.
  const lines = (file: string, trim = true): string[] | null => {
    try {
      return readLines(file, trim);
    } catch (e) {
      problem('unreadable', (e as Error).message);
      return null;
    }
  };
  let ids: string[] | null = null;
  const idsFile = path.join(cdir, 'ids.txt');
  if (!fs.existsSync(idsFile)) problem('missing-file', 'ids.txt is missing');
  else {
    ids = lines(idsFile, false);
    // An empty or bad id is that row's problem: under --on-problem skip the row is dropped, not
    // the whole chunk (its other rows are good pairs).
    ids?.forEach((id, r) => {
      if (id.trim() === '') drop(r, 'bad-id', undefined, `ids.txt line ${r + 1} is empty; fix ids.txt`);
      else {
        const why = badIdReason(id);
        if (why !== null) drop(r, 'bad-id', id, `ids.txt line ${r + 1}: id ${JSON.stringify(id)} ${why}; fix ids.txt`);
      }
    });
  }
  const rows: number[] = [];
  for (const f of ['en.npy', 'es.npy']) {
    const file = path.join(cdir, f);
    if (!fs.existsSync(file)) {
      problem('missing-file', `${f} is missing`);
      continue;
    }
    try {
      const h = readNpyHeaderSync(file, { accept: ['float32', 'float64', 'float16'] });
      if (h.shape.length !== 2 || h.shape[1] !== dim) problem('wrong-shape', `${f} has shape (${h.shape.join(', ')}), expected (n, ${dim})`);
      else rows.push(h.shape[0]!);
    } catch (e) {
      problem('unreadable', (e as Error).message);
    }
  }
  if (rows.length === 2 && rows[0] !== rows[1]) problem('wrong-shape', `en.npy has ${rows[0]} rows but es.npy has ${rows[1]}`);
  const n = rows[0] ?? -1;
  if (ids && n >= 0 && ids.length !== n) problem('wrong-shape', `ids.txt has ${ids.length} lines but en.npy has ${n} rows`);
  if (!metaGiven && n >= 0) meta = { format: CHUNK_FORMAT, version: CHUNK_VERSION, n, dim, dtype: 'float32' };
  if (metaGiven && meta && n >= 0 && (meta.n !== n || meta.dim !== dim)) problem('wrong-shape', `meta.json says n=${describe(meta.n)}, dim=${describe(meta.dim)} but en.npy is (${n}, ${dim})`);
  let speakers: string[] | null = null;
  const spkFile = path.join(cdir, 'speakers.txt');
  if (fs.existsSync(spkFile)) {
    speakers = lines(spkFile);
    if (speakers && n >= 0 && speakers.length !== n) problem('wrong-shape', `speakers.txt has ${speakers.length} lines but en.npy has ${n} rows`);
    else {
      speakers?.forEach((sp, r) => {
        if (sp.trim() === '') drop(r, 'speaker-pattern', ids?.[r], `speakers.txt line ${r + 1} is empty: every row needs its speaker (as a DRAL id needs one); fix ${path.join(cdir, 'speakers.txt')}`);
      });
    }
  }
  let split: ('train' | 'test')[] | null = null;
  const splitFile = path.join(cdir, 'split.txt');
  const splitLines = fs.existsSync(splitFile) ? lines(splitFile) : null;
  if (splitLines) {
    const bad = splitLines.findIndex((s) => s !== 'train' && s !== 'test');
    if (bad >= 0) problem('unreadable', `split.txt line ${bad + 1} is '${splitLines[bad]}', expected 'train' or 'test'`);
    else if (n >= 0 && splitLines.length !== n) problem('wrong-shape', `split.txt has ${splitLines.length} lines but en.npy has ${n} rows`);
    else split = splitLines as ('train' | 'test')[];
  }
  if (isTestFolderName(name)) {
    if (split === null && n >= 0) split = new Array<'test'>(n).fill('test');
    else if (split !== null) {
      const trainRows = split.filter((s) => s === 'train').length;
      if (trainRows > 0) problem('unreadable', `is named like a test set (its name starts with 'test') but its split.txt marks ${trainRows} row(s) 'train': rename the folder, or mark every row 'test' (a test folder never gives training data)`);
    }
  }
  if (unusable > 0 || !meta || !ids || n < 0) {
    // The rows lost with the chunk, as far as they can be counted (for the report of what was dropped).
    lost.rows += n >= 0 ? n : (ids?.length ?? 0);
    lost.chunks.push(name);
    return null;
  }
  let keep: Uint8Array | null = null;
  if (dropped.size > 0) {
    keep = new Uint8Array(n).fill(1);
    for (const r of dropped) keep[r] = 0;
  }
  return { name, index, dir: cdir, n, ids, speakers, split, meta, keep, kept: n - dropped.size };
}

/** chunks.json of a chunk set (written by writeChunks, pack and generate), or null when absent or not a JSON object. */
function readChunkSetMeta(file: string): { n?: unknown } | null {
  if (!fs.existsSync(file)) return null;
  try {
    const m = JSON.parse(readTextFileSync(file, 'chunks.json')) as unknown;
    return typeof m === 'object' && m !== null && !Array.isArray(m) ? (m as { n?: unknown }) : null;
  } catch {
    return null;
  }
}

/** Plan a whole chunks folder: per-chunk checks, then duplicate ids and speaker consistency across chunks. */
function planAll(dir: string, dim: number, policy: ProblemPolicy, only?: readonly string[], speakerPattern?: RegExp | string | null): { plans: ChunkPlan[]; problems: DataProblem[]; withSpeakers: boolean; withSplit: boolean; dropped: number } {
  const problems: DataProblem[] = [];
  const names = only ? [...only] : listChunks(dir);
  const plans: ChunkPlan[] = [];
  const lost = { rows: 0, chunks: [] as string[] };
  names.forEach((name, index) => {
    const p = planChunk(dir, name, index, dim, problems, lost);
    if (p) plans.push(p);
  });
  const setFile = path.join(dir, 'chunks.json');
  const setMeta = only ? null : readChunkSetMeta(setFile);
  if (names.length === 0) {
    if (setMeta !== null) throw new RapmError('RAPM_DATA', `${dir} is a chunk set (it holds chunks.json) with no chunk folders (each with en.npy, es.npy and ids.txt): restore its chunk folders, or pack or generate the data again`);
    problems.push({ kind: 'missing-file', detail: `no chunk folders (each with en.npy, es.npy and ids.txt)` });
  }
  // chunks.json's row count against the chunk folders (when every chunk could be read): a
  // chunk folder deleted or added since it was written would otherwise go unnoticed.
  if (setMeta !== null && typeof setMeta.n === 'number' && names.length > 0 && plans.length === names.length) {
    const rows = plans.reduce((a, p) => a + p.n, 0);
    if (rows !== setMeta.n) {
      throw new RapmError('RAPM_DATA', `${setFile} says the chunk set holds ${setMeta.n} rows but its ${names.length} chunk folder(s) hold ${rows}: a chunk folder is missing or was added, or chunks.json is stale. Restore the chunk folders, or pack or generate the data again`);
    }
  }
  const seen = new Map<string, string>();
  for (const p of plans) {
    for (let r = 0; r < p.n; r++) {
      if (p.keep && !p.keep[r]) continue; // dropped already (its id is bad): not a first occurrence either
      const id = p.ids[r]!;
      const first = seen.get(id);
      if (first !== undefined) {
        problems.push({ kind: 'duplicate-id', id, detail: `${id} in chunk ${p.name} (row ${r}) already appears in chunk ${first}` });
        if (!p.keep) p.keep = new Uint8Array(p.n).fill(1);
        p.keep[r] = 0;
        p.kept--;
      } else seen.set(id, `${p.name} (row ${r})`);
    }
  }
  // --speaker-pattern names the speakers of chunks without speakers.txt (a row whose id it does
  // not match is a problem of its chunk, as a DRAL id without a speaker is).
  const speakerOf = speakerPattern === undefined || speakerPattern === null ? null : speakerMatcher(speakerPattern);
  if (speakerOf) {
    for (const p of plans) {
      if (p.speakers !== null) continue;
      const sp = p.ids.map((id) => speakerOf(id));
      const miss = sp.findIndex((s, r) => s === null && (!p.keep || p.keep[r] === 1));
      if (miss >= 0) {
        problems.push({ kind: 'speaker-pattern', id: p.ids[miss], detail: `chunk ${p.name} has no speakers.txt and its id ${JSON.stringify(p.ids[miss])} (row ${miss}) has no speaker under --speaker-pattern ${String(speakerPattern)}` });
        if (!p.keep) p.keep = new Uint8Array(p.n).fill(1);
        sp.forEach((s, r) => {
          if (s === null && p.keep![r]) {
            p.keep![r] = 0;
            p.kept--;
          }
        });
      }
      p.speakers = sp.map((s) => s ?? '');
    }
  }
  const withSpeakers = plans.length > 0 && plans.every((p) => p.speakers !== null);
  const someSpeakers = plans.some((p) => p.speakers !== null);
  if (someSpeakers && !withSpeakers) {
    const missing = plans.filter((p) => p.speakers === null).map((p) => p.name);
    problems.push({ kind: 'missing-file', detail: `speakers.txt is missing in chunk${missing.length > 1 ? 's' : ''} ${missing.slice(0, 10).join(', ')} but present in others (speakers are dropped)` });
  }
  const withSplit = plans.length > 0 && plans.every((p) => p.split !== null);
  if (problems.length > 0 && policy === 'fail') {
    throw new RapmError('RAPM_DATA', formatProblems(`chunks folder ${dir}`, problems, SKIP_HINT.replace('the affected pairs', 'the affected rows (a whole chunk only when its files are unusable)')));
  }
  const dropped = lost.rows + plans.reduce((a, p) => a + (p.n - p.kept), 0);
  return { plans, problems, withSpeakers, withSplit, dropped };
}

function policyOf(options: LoadChunksOptions): ProblemPolicy {
  const policy = options.onProblem ?? 'fail';
  if (policy !== 'fail' && policy !== 'skip') throw new RapmRangeError('RAPM_INVALID_ARG', `Expected 'fail' or 'skip' for onProblem but received ${describe(policy)}`);
  return policy;
}

/** Read the rows of one planned chunk into `en`/`es` (which hold exactly `plan.kept` rows). */
async function readPlanned(plan: ChunkPlan, dim: number, keyColumns: readonly number[] | null, en: Float32Array, es: Float32Array, onBytes?: (done: number, total: number) => void): Promise<void> {
  await readPlannedRows(plan, dim, en, es, onBytes);
  // A NaN is reported here, with its chunk, file and row, not later as a datastore row number.
  // EN is read once for both of its checks (checkKeyRows); its NaN comes first, then ES's.
  const keyCheck = checkKeyRows(en, dim, keyColumns);
  for (const [f, bad] of [['en.npy', keyCheck && 'nonFinite' in keyCheck ? keyCheck.nonFinite : null], ['es.npy', firstNonFinite(es, dim, valueLimit())]] as const) {
    if (bad !== null) {
      const rowInFile = plan.keep ? keptRowToFileRow(plan.keep, Number(/^row (\d+)/.exec(bad)![1])) : Number(/^row (\d+)/.exec(bad)![1]);
      const id = plan.ids[rowInFile];
      throw new RapmError('RAPM_DATA', `chunk ${plan.name}: ${path.join(plan.dir, f)} ${bad.replace(/^row \d+/, `row ${rowInFile}`)} (id ${id}): NaN, infinite or out-of-range values cannot be searched; fix or drop that row`);
    }
  }
  // Likewise an EN row that cannot be a key (zero norm, on the whole row or on keyColumns;
  // squared norm beyond float32): fatal, like NaN here.
  const badKey = keyCheck && 'badKey' in keyCheck ? keyCheck.badKey : null;
  if (badKey !== null) {
    const rowInFile = plan.keep ? keptRowToFileRow(plan.keep, badKey.row) : badKey.row;
    throw new RapmError('RAPM_DATA', `chunk ${plan.name}: ${path.join(plan.dir, 'en.npy')} row ${rowInFile} (id ${plan.ids[rowInFile]}): ${badKey.reason}; fix or drop that row`);
  }
}

function keptRowToFileRow(keep: Uint8Array, kept: number): number {
  let k = -1;
  for (let r = 0; r < keep.length; r++) if (keep[r] && ++k === kept) return r;
  return -1;
}

async function readPlannedRows(plan: ChunkPlan, dim: number, en: Float32Array, es: Float32Array, onBytes?: (done: number, total: number) => void): Promise<void> {
  if (!plan.keep) {
    await readNpyInto(path.join(plan.dir, 'en.npy'), en, { expectShape: [plan.n, dim], onProgress: onBytes });
    await readNpyInto(path.join(plan.dir, 'es.npy'), es, { expectShape: [plan.n, dim] });
    return;
  }
  // Duplicate rows to drop (skip policy only): read the chunk whole, then compact.
  for (const [f, target] of [['en.npy', en], ['es.npy', es]] as const) {
    const all = new Float32Array(plan.n * dim);
    await readNpyInto(path.join(plan.dir, f), all, { expectShape: [plan.n, dim] });
    let k = 0;
    for (let r = 0; r < plan.n; r++) if (plan.keep[r]) target.set(all.subarray(r * dim, (r + 1) * dim), dim * k++);
  }
}

function keptList<T>(list: T[], keep: Uint8Array | null): T[] {
  return keep ? list.filter((_, r) => keep[r] === 1) : list;
}

/**
 * Iterate over the chunks of `dir` one at a time (name order), holding only one chunk in
 * memory. All chunk headers are checked before the first chunk is yielded.
 */
export async function* iterateChunks(dir: string, options: LoadChunksOptions = {}): AsyncGenerator<Chunk> {
  const policy = policyOf(options);
  const dim = options.dim ?? FEATURE_DIM;
  const keyColumns = keyColumnsToCheck(options.keyColumns, dim);
  const { plans, withSpeakers } = planAll(dir, dim, policy, options.only, options.speakerPattern);
  const total = plans.reduce((a, p) => a + p.kept, 0);
  let done = 0;
  for (const p of plans) {
    const en = new Float32Array(p.kept * dim);
    const es = new Float32Array(p.kept * dim);
    await readPlanned(p, dim, keyColumns, en, es);
    done += p.kept;
    options.onProgress?.(done, total);
    yield {
      name: p.name,
      index: p.index,
      ids: keptList(p.ids, p.keep),
      speakers: withSpeakers ? keptList(p.speakers!, p.keep) : null,
      split: p.split ? keptList(p.split, p.keep) : null,
      en,
      es,
      n: p.kept,
      meta: p.meta,
    };
  }
}

/**
 * Load a chunks folder into one Dataset. The [N, dim] arrays are allocated once and each
 * chunk streams straight into its rows. `official` is set when every chunk has split.txt.
 */
export async function loadChunks(dir: string, options: LoadChunksOptions = {}): Promise<LoadedDataset> {
  const policy = policyOf(options);
  const dim = options.dim ?? FEATURE_DIM;
  const keyColumns = keyColumnsToCheck(options.keyColumns, dim);
  const { plans, problems, withSpeakers, withSplit, dropped } = planAll(dir, dim, policy, options.only, options.speakerPattern);
  const total = plans.reduce((a, p) => a + p.kept, 0);
  if (total === 0) throw new RapmError('RAPM_DATA', problems.length ? formatProblems(`chunks folder ${dir} has no usable rows`, problems) : `chunks folder ${dir} holds no rows`);
  const en = new Float32Array(total * dim);
  const es = new Float32Array(total * dim);
  const ids: string[] = [];
  const speakers: string[] | null = withSpeakers ? [] : null;
  const train: string[] = [];
  const test: string[] = [];
  const testOnly: string[] = [];
  let row = 0;
  options.onProgress?.(0, total);
  for (const p of plans) {
    const base = row;
    const onBytes = options.onProgress && !p.keep
      ? (b: number, tb: number): void => options.onProgress!(base + Math.floor((p.kept * b) / tb), total)
      : undefined;
    await readPlanned(p, dim, keyColumns, en.subarray(row * dim, (row + p.kept) * dim), es.subarray(row * dim, (row + p.kept) * dim), onBytes);
    const pid = keptList(p.ids, p.keep);
    for (const id of pid) ids.push(id);
    if (isTestFolderName(p.name)) for (const id of pid) testOnly.push(id);
    if (speakers) for (const s of keptList(p.speakers!, p.keep)) speakers.push(s);
    if (withSplit) keptList(p.split!, p.keep).forEach((s, r) => (s === 'train' ? train : test).push(pid[r]!));
    row += p.kept;
    options.onProgress?.(row, total);
  }
  return { ids, speakers, en, es, n: total, official: withSplit ? { train, test } : null, testOnly: testOnly.length > 0 ? testOnly : undefined, source: dir, problems, dropped };
}

/** What writeChunk stores. */
export interface ChunkData {
  ids: readonly string[];
  speakers?: readonly string[] | null;
  split?: readonly ('train' | 'test')[] | null;
  en: Float32Array; // [n, dim]
  es: Float32Array; // [n, dim]
  /** Extra fields for meta.json. */
  meta?: Record<string, unknown>;
}

const NAME_RE = /^[A-Za-z0-9_-][A-Za-z0-9_.-]*$/;

/**
 * Write one chunk folder `dir/name` atomically: the files go into a temporary folder that is
 * swapped into place last (replaceDirSync: every file fsynced first; an existing chunk, with
 * `overwrite`, is moved aside and removed only once the new one is in place), so a reader never
 * sees a half-written chunk and a kill mid-swap never loses the old one: the next overwrite of
 * the chunk puts a moved-aside copy back first (removeStaleStagingSync).
 */
export async function writeChunk(dir: string, name: string, data: ChunkData, options: { dim?: number; overwrite?: boolean } = {}): Promise<void> {
  const dim = options.dim ?? FEATURE_DIM;
  if (typeof name !== 'string' || !NAME_RE.test(name) || name.includes('.tmp-')) {
    throw new RapmRangeError('RAPM_INVALID_ARG', `Expected a chunk name of letters, digits, '_', '-' and '.' but received ${describe(name)}`);
  }
  const n = data.ids.length;
  const check = (what: string, len: number, expected: number): void => {
    if (len !== expected) throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `chunk ${name}: ${what} has length ${len}, expected ${expected}`);
  };
  check('en', data.en.length, n * dim);
  check('es', data.es.length, n * dim);
  if (data.speakers) check('speakers', data.speakers.length, n);
  if (data.split) check('split', data.split.length, n);
  const badId = data.ids.findIndex((id) => typeof id !== 'string' || id === '' || badIdReason(id) !== null);
  if (badId >= 0) {
    const id = data.ids[badId];
    const why = typeof id !== 'string' ? 'is not a string' : id === '' ? 'is empty' : badIdReason(id);
    throw new RapmRangeError('RAPM_INVALID_ARG', `chunk ${name}: ids[${badId}] ${JSON.stringify(id)} ${why}: ids.txt holds one id per line, so it would not read back as the same id`);
  }
  ensureDir(dir);
  const final = path.join(dir, name);
  const tmp = tempPathFor(final);
  try {
    fs.mkdirSync(tmp);
    await writeNpy(path.join(tmp, 'en.npy'), data.en, [n, dim]);
    await writeNpy(path.join(tmp, 'es.npy'), data.es, [n, dim]);
    fs.writeFileSync(path.join(tmp, 'ids.txt'), data.ids.join('\n') + (n ? '\n' : ''));
    if (data.speakers) fs.writeFileSync(path.join(tmp, 'speakers.txt'), data.speakers.join('\n') + (n ? '\n' : ''));
    if (data.split) fs.writeFileSync(path.join(tmp, 'split.txt'), data.split.join('\n') + (n ? '\n' : ''));
    const meta: ChunkMeta = { ...(data.meta ?? {}), format: CHUNK_FORMAT, version: CHUNK_VERSION, n, dim, dtype: 'float32' };
    fs.writeFileSync(path.join(tmp, 'meta.json'), JSON.stringify(meta, null, 2) + '\n');
    // A chunk an earlier overwrite left moved aside (killed between the swap's renames) is put back first.
    if (options.overwrite) removeStaleStagingSync(final);
    if (fs.existsSync(final) && !options.overwrite) throw new RapmError('RAPM_IO', `Cannot write chunk ${final}: it already exists (pass overwrite: true to replace it)`);
    // Every file on disk before the folder gets its final name (after a power loss a chunk that
    // looks complete never holds an empty ids.txt or meta.json), then the one swap: the old
    // chunk stays complete, under its name or moved aside, until the new one is in place.
    replaceDirSync(tmp, final);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw ioError('write chunk', final, e);
  }
}

/**
 * Name of chunk `i` of `count` (zero-padded so name order is numeric order): 5 digits, more when
 * `count` needs them. Unpadded past 99999, chunk-100000 sorted before chunk-99999 and a set of
 * more than 100,000 chunks was read out of order.
 */
export function chunkName(i: number, count = 0): string {
  return `chunk-${String(i).padStart(Math.max(5, String(Math.max(0, count - 1)).length), '0')}`;
}

/** Pack a Dataset as chunks of `chunkSize` rows into `dir` (official split kept as split.txt). */
export async function writeChunks(
  ds: Dataset,
  dir: string,
  options: { chunkSize?: number; meta?: Record<string, unknown>; onProgress?: (done: number, total: number) => void; overwrite?: boolean } = {},
): Promise<number> {
  const chunkSize = checkInteger('chunkSize', options.chunkSize ?? 50_000, 1);
  const dim = ds.en.length / ds.n;
  let split: ('train' | 'test')[] | null = null;
  if (ds.official) {
    const test = new Set(ds.official.test);
    const train = new Set(ds.official.train);
    if (ds.ids.every((id) => test.has(id) || train.has(id))) split = ds.ids.map((id) => (test.has(id) ? 'test' : 'train'));
  }
  let count = 0;
  const total = Math.ceil(ds.n / chunkSize);
  for (let start = 0; start < ds.n; start += chunkSize) {
    const end = Math.min(ds.n, start + chunkSize);
    await writeChunk(
      dir,
      chunkName(count++, total),
      {
        ids: ds.ids.slice(start, end),
        speakers: ds.speakers ? ds.speakers.slice(start, end) : null,
        split: split ? split.slice(start, end) : null,
        en: ds.en.subarray(start * dim, end * dim),
        es: ds.es.subarray(start * dim, end * dim),
        meta: options.meta,
      },
      { dim, overwrite: options.overwrite },
    );
    options.onProgress?.(end, ds.n);
  }
  writeFileAtomicSync(path.join(dir, 'chunks.json'), JSON.stringify({ format: 'rapm-chunks', version: CHUNK_VERSION, n: ds.n, dim, chunks: count }, null, 2) + '\n');
  return count;
}

/** The ids and splits of the chunks of `dir` (headers and text files only, no matrices), checked like loadChunks. */
export function chunkIndex(dir: string, options: LoadChunksOptions & { onSkipped?: (problems: DataProblem[], dropped: number) => void } = {}): { name: string; ids: string[]; split: ('train' | 'test')[] | null }[] {
  const { plans, problems, dropped } = planAll(dir, options.dim ?? FEATURE_DIM, policyOf(options), options.only, options.speakerPattern);
  // Under 'skip' the problems dropped chunks or rows (`dropped` rows in all): the caller reports
  // them (under 'fail' planAll threw). iterateChunks and loadChunks keep exactly these rows.
  if (problems.length > 0) options.onSkipped?.(problems, dropped);
  return plans.map((p) => ({ name: p.name, ids: keptList(p.ids, p.keep), split: p.split ? keptList(p.split, p.keep) : null }));
}
