/**
 * Where the progressive loop gets its data: the initial set, the chunks and the test sets,
 * in an explicit order, with a leakage check across them.
 *
 * Order of the steps: the initial set (`--initial`, any layout) first, then the chunk folders
 * of `--chunks` in code-point name order. Nothing else is ever training data:
 * - test sets given as their own folders (`--test DIR`, repeatable: seen or unseen decided by
 *   speaker; `--test-seen DIR` / `--test-unseen DIR`: named explicitly) are only scored;
 * - inside `--chunks`, rows marked 'test' in a chunk's split.txt, and every row of a chunk
 *   folder whose name starts with `test` (src/data/chunks.ts), are test rows;
 * - the initial set's test rows come from its filelists / split.txt, or from `--split
 *   speaker|random` when it has none.
 *
 * Leakage check: an utterance id found in two of {initial set, chunks, each test set} is
 * refused with RAPM_DATA listing examples, or only reported (`allowOverlap`, CLI
 * `--allow-overlap`). A pair in two places would be a test pair that is also training data,
 * or a training pair counted twice.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { chunkIndex, iterateChunks, type Chunk } from '../data/chunks.js';
import type { ProblemPolicy } from '../data/dataset.js';
import { createDatasetHasher } from '../data/hash.js';
import { FEATURE_DIM, selectColumns, valueIndices } from '../data/indices.js';
import { loadDataSource, type DataLocation } from '../data/load.js';
import { chooseSplit, type SplitPolicy } from '../data/split.js';
import { SETTINGS } from '../settings.js';
import { RapmError } from '../errors.js';
import { conversationOf, type TestSet } from './evaluate.js';

export interface SourceOptions {
  /** Folder of chunk folders (training steps in name order). */
  chunks?: string;
  /** The first step's data (DRAL folder, chunks, one chunk, or a folder with features/). */
  initial?: string | DataLocation;
  /** Folder of the initial set's filelists, when they are not beside its feature files (CLI --filelists). */
  filelists?: string;
  /** Test-only datasets; each row is seen or unseen by whether its speaker is among the training speakers. */
  tests?: readonly string[];
  /** Test-only datasets scored as the seen-speaker set. */
  testSeen?: readonly string[];
  /** Test-only datasets scored as the unseen-speaker set. */
  testUnseen?: readonly string[];
  /** How to split the initial set when it has no filelists / split.txt (or to replace them). */
  split?: SplitPolicy;
  /** Seed of `split`. Default: the seed setting's (src/settings.ts). */
  seed?: number;
  /**
   * Share of the initial set held out by `split` (refused without it: the official split has its
   * own). Default: the testFraction setting's, 578/2894 (the published split), as on the CLI.
   */
  testFraction?: number;
  /** Report ids shared between sources instead of refusing them. */
  allowOverlap?: boolean;
  onProblem?: ProblemPolicy;
  poolFrames?: 'mean' | null;
  speakerPattern?: RegExp | string | null;
  /**
   * The EN columns the keys are built from, when not the whole row (keyIndices('B') for Config
   * B): a row that is zero on them is refused by the loaders, with its file, row and id, in the
   * first pass (before any training step). Default: none (the whole-row checks only).
   */
  keyColumns?: readonly number[] | null;
  /** Progress lines. */
  log?: (line: string) => void;
  /** Warnings (overlaps allowed, problems skipped); default `log`. The CLI prints them even with --quiet. */
  warn?: (line: string) => void;
}

/** One id found in more than one source. */
export interface Overlap {
  id: string;
  first: string;
  second: string;
}

type Group = 'seen' | 'unseen' | null;

interface Source {
  label: string;
  /** Set for the test-only sources: 'seen' / 'unseen' forced, null decided by speaker. */
  testGroup?: Group;
  chunk?: Chunk; // in memory (initial set, test folders)
}

export interface ProgressiveSources {
  /** Initial set, chunks, then test folders (all-test chunks), holding one chunk in memory at a time for `--chunks`. */
  iterate(onProgress?: (done: number, total: number) => void): AsyncGenerator<Chunk & { testGroup?: Group }>;
  /** Ids found in more than one source (empty unless `allowOverlap`). */
  overlaps: Overlap[];
  /** What the data is, for messages. */
  describe: string;
}

const MAX_EXAMPLES = 10;

function asChunk(name: string, d: { ids: string[]; speakers: string[] | null; en: Float32Array; es: Float32Array; n: number }, split: ('train' | 'test')[] | null): Chunk {
  return { name, index: -1, ids: d.ids, speakers: d.speakers, split, en: d.en, es: d.es, n: d.n, meta: { format: 'rapm-chunk', version: 1, n: d.n, dim: FEATURE_DIM, dtype: 'float32' } };
}

function baseName(loc: string | DataLocation): string {
  const p = typeof loc === 'string' ? loc : (loc.data ?? loc.features ?? '?');
  return path.basename(path.resolve(p));
}

/**
 * Open the sources: load the initial set and the test folders (small, kept in memory), read the
 * chunks' ids (not their matrices), and run the leakage check. Fails before any training.
 */
export async function openSources(o: SourceOptions): Promise<ProgressiveSources> {
  const log = o.warn ?? o.log ?? (() => {});
  if (o.initial === undefined && o.chunks === undefined) {
    throw new RapmError('RAPM_INVALID_ARG', 'No training data: pass --chunks DIR and/or --initial DIR');
  }
  if (o.testFraction !== undefined && !(o.testFraction > 0 && o.testFraction < 1)) {
    throw new RapmError('RAPM_INVALID_ARG', `Expected --test-fraction strictly between 0 and 1 but received ${o.testFraction}`);
  }
  if (o.testFraction !== undefined && (o.split === undefined || o.split === 'official')) {
    throw new RapmError('RAPM_INVALID_ARG', "testFraction (--test-fraction) sizes a split made here: give split 'speaker' or 'random' (--split) too; the official split has its own test rows");
  }
  const loadOpts = { onProblem: o.onProblem, poolFrames: o.poolFrames, speakerPattern: o.speakerPattern, keyColumns: o.keyColumns };
  const report = (what: string, problems: { detail: string }[]): void => {
    if (problems.length) log(`${what}: skipped ${problems.length} problem(s) (--on-problem skip): ${problems.slice(0, 3).map((p) => p.detail).join('; ')}${problems.length > 3 ? '; ...' : ''}`);
  };
  const sources: Source[] = [];
  const owners = new Map<string, string>();
  const overlaps: Overlap[] = [];
  const claim = (ids: readonly string[], label: (i: number) => string): void => {
    ids.forEach((id, i) => {
      const first = owners.get(id);
      if (first === undefined) owners.set(id, label(i));
      else overlaps.push({ id, first, second: label(i) });
    });
  };

  if (o.filelists !== undefined && o.initial === undefined) throw new RapmError('RAPM_INVALID_ARG', '--filelists names the filelists of --initial: give --initial too');
  if (o.initial !== undefined) {
    const loc: DataLocation = typeof o.initial === 'string' ? { data: o.initial } : { ...o.initial };
    if (o.filelists !== undefined) loc.filelists = o.filelists;
    const d = await loadDataSource(loc, loadOpts);
    report(`initial set ${d.source}`, d.problems);
    for (const n of d.notices ?? []) log(`initial set ${d.source}: ${n}`);
    let split: ('train' | 'test')[] | null = null;
    if (o.split !== undefined || d.official) {
      const s = chooseSplit(d, o.split, o.seed ?? SETTINGS.seed.default, o.testFraction ?? SETTINGS.testFraction.default);
      split = new Array<'train' | 'test'>(d.n).fill('train');
      for (const r of s.test) split[r] = 'test';
    }
    const chunk = asChunk(`initial:${baseName(o.initial)}`, d, split);
    sources.push({ label: chunk.name, chunk });
    claim(d.ids, (i) => `initial set (${split?.[i] ?? 'train'})`);
  }

  let chunkRows = 0;
  if (o.chunks !== undefined) {
    const index = chunkIndex(o.chunks, { onProblem: o.onProblem, speakerPattern: o.speakerPattern, onSkipped: (p) => report(`chunks ${o.chunks}`, p) });
    for (const c of index) {
      chunkRows += c.ids.length;
      claim(c.ids, (i) => `chunk ${c.name} (${c.split?.[i] ?? 'train'})`);
    }
    sources.push({ label: `chunks ${o.chunks}` });
  }

  const testLists: [readonly string[] | undefined, Group][] = [[o.tests, null], [o.testSeen, 'seen'], [o.testUnseen, 'unseen']];
  for (const [list, group] of testLists) {
    for (const dir of list ?? []) {
      const d = await loadDataSource(dir, loadOpts);
      report(`test set ${d.source}`, d.problems);
      for (const n of d.notices ?? []) log(`test set ${d.source}: ${n}`);
      const name = `test${group ? `-${group}` : ''}:${baseName(dir)}`;
      sources.push({ label: name, testGroup: group, chunk: asChunk(name, d, new Array<'test'>(d.n).fill('test')) });
      claim(d.ids, () => `test set ${dir}`);
    }
  }

  if (overlaps.length > 0) {
    const examples = overlaps.slice(0, MAX_EXAMPLES).map((v) => `  - ${v.id}: ${v.first} and ${v.second}`);
    const text = `${overlaps.length} utterance id(s) appear in more than one place among the initial set, the chunks and the test sets (a test pair that is also training data, or a pair counted twice):\n${examples.join('\n')}${overlaps.length > MAX_EXAMPLES ? `\n  - ... and ${overlaps.length - MAX_EXAMPLES} more` : ''}`;
    if (!o.allowOverlap) throw new RapmError('RAPM_DATA', `${text}\nRemove the duplicates, or pass --allow-overlap to only report them.`);
    log(`${text}\n(--allow-overlap: continuing with the data as given)`);
  }

  const describe = [o.initial !== undefined ? `initial ${typeof o.initial === 'string' ? o.initial : (o.initial.data ?? o.initial.features)}` : null, o.chunks !== undefined ? `chunks ${o.chunks}` : null, ...sources.filter((s) => s.testGroup !== undefined).map((s) => s.label)].filter(Boolean).join(', ');

  return {
    overlaps: o.allowOverlap ? overlaps : [],
    describe,
    async *iterate(onProgress) {
      for (const s of sources) {
        if (s.chunk) yield { ...s.chunk, testGroup: s.testGroup ?? null };
        else yield* iterateChunks(o.chunks!, { onProblem: o.onProblem, speakerPattern: o.speakerPattern, keyColumns: o.keyColumns, onProgress: chunkRows ? onProgress : undefined });
      }
    },
  };
}

/**
 * The items of `it`, asking for the next one as soon as the current one is handed out: the
 * next chunk's file reads (libuv threads) overlap the work on this one (a step of the loop,
 * or hashing in the first pass), for one more chunk in memory. Order, items and errors are those of `it` (an error of a chunk read ahead surfaces
 * when the loop asks for that chunk).
 */
export async function* readAhead<T>(it: AsyncGenerator<T>): AsyncGenerator<T> {
  let next = it.next();
  try {
    for (;;) {
      const r = await next;
      if (r.done) return;
      next = it.next();
      next.catch(() => {}); // surfaces at the await above; never unhandled if the loop stops first
      yield r.value;
    }
  } finally {
    await next.catch(() => undefined);
    await it.return(undefined);
  }
}

/** What the first pass over the sources finds: the fixed test sets, the training chunks and the data hash. */
export interface SourceScan {
  tests: TestSet[];
  trainChunks: string[];
  /** Training rows over all steps (buffers are sized once from it). */
  trainRows: number;
  dataHash: string;
}

/**
 * Pass 1 of the progressive loop: collect the test rows (split 'test' or a test-only source),
 * the speakers of the training rows, and the data hash (content + which rows are test rows).
 * Test rows are grouped seen / unseen by speaker unless their source names the group.
 */
export async function scanSources(src: ProgressiveSources, onProgress?: (done: number, total: number) => void): Promise<SourceScan> {
  const hasher = createDatasetHasher();
  const layoutHash = createHash('sha256'); // chunk names and splits: which rows are test rows
  const seenTrainSpeakers = new Set<string>();
  const testRows: { en: Float32Array; es: Float32Array; speaker: string | null; id: string; group: Group }[] = [];
  const trainChunks: string[] = [];
  let trainRows = 0;
  for await (const c of readAhead(src.iterate(onProgress))) {
    hasher.update(c);
    layoutHash.update(`${c.name}\n${c.split ? c.split.join(',') : 'all-train'}\n`);
    let train = 0;
    for (let r = 0; r < c.n; r++) {
      if (c.split?.[r] === 'test') {
        testRows.push({ en: c.en.slice(r * FEATURE_DIM, (r + 1) * FEATURE_DIM), es: c.es.slice(r * FEATURE_DIM, (r + 1) * FEATURE_DIM), speaker: c.speakers?.[r] ?? null, id: c.ids[r]!, group: c.testGroup ?? null });
      } else {
        train++;
        if (c.speakers) seenTrainSpeakers.add(c.speakers[r]!);
      }
    }
    if (train > 0) trainChunks.push(c.name);
    trainRows += train;
  }
  if (trainChunks.length === 0) throw new RapmError('RAPM_DATA', `No training rows in ${src.describe}: every row is a test row`);
  const groups: Record<'seen' | 'unseen', typeof testRows> = { seen: [], unseen: [] };
  for (const t of testRows) groups[t.group ?? (t.speaker !== null && !seenTrainSpeakers.has(t.speaker) ? 'unseen' : 'seen')].push(t);
  const dv = valueIndices();
  const tests: TestSet[] = [];
  for (const name of ['seen', 'unseen'] as const) {
    const rows = groups[name];
    if (rows.length < 2) continue;
    const en = new Float32Array(rows.length * FEATURE_DIM);
    const es = new Float32Array(rows.length * FEATURE_DIM);
    rows.forEach((t, i) => {
      en.set(t.en, i * FEATURE_DIM);
      es.set(t.es, i * FEATURE_DIM);
    });
    // Speakers and conversations travel with the rows: the gain interval resamples them (cluster bootstrap).
    tests.push({
      name,
      en,
      target: selectColumns(es, FEATURE_DIM, dv),
      n: rows.length,
      speakers: rows.map((t) => t.speaker),
      conversations: rows.map((t) => conversationOf(t.id)),
      // Seen only by default (no speaker, no --test-seen naming it): not a seen-speaker set.
      ...(rows.every((t) => t.group === null && (t.speaker === null || t.speaker === '')) ? { speakersUnknown: true } : {}),
    });
  }
  if (tests.length === 0) {
    throw new RapmError('RAPM_DATA', `No test set in ${src.describe}: pass --test DIR (or --test-seen / --test-unseen DIR), give the initial set filelists (--filelists DIR) or --split speaker|random, or mark held-out rows 'test' in a chunk's split.txt`);
  }
  return { tests, trainChunks, trainRows, dataHash: `${hasher.digest()}+layout:${layoutHash.digest('hex').slice(0, 16)}` };
}
