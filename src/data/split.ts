/**
 * Train/test splits as sorted row-index arrays: the source's official lists, seeded random,
 * and speaker-disjoint (every test speaker unseen in training, as in the official blind
 * test, where 4 of its 5 speakers were unseen).
 */
import { RapmError, RapmRangeError, describe } from '../errors.js';
import { checkInteger } from '../validate.js';
import type { Dataset } from './dataset.js';
import { compareIds } from './dataset.js';
import { Rng } from '../rng.js';

export interface Split {
  train: Int32Array; // sorted row indices
  test: Int32Array; // sorted row indices
}

function checkFraction(v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v >= 1) {
    throw new RapmRangeError('RAPM_INVALID_ARG', `Expected a number strictly between 0 and 1 for testFraction but received ${describe(v)}`);
  }
  return v;
}

function fromFlags(isTest: Uint8Array): Split {
  let t = 0;
  for (let i = 0; i < isTest.length; i++) t += isTest[i]!;
  const train = new Int32Array(isTest.length - t);
  const test = new Int32Array(t);
  let a = 0;
  let b = 0;
  for (let i = 0; i < isTest.length; i++) {
    if (isTest[i]) test[b++] = i;
    else train[a++] = i;
  }
  return { train, test };
}

/** The split the data came with (DRAL filelists or generated split.txt), by id. */
export function officialSplit(ds: Dataset): Split {
  if (!ds.official) {
    throw new RapmError('RAPM_DATA', 'This dataset has no official split (no train_filelist_en.txt / test_filelist_en.txt, or chunks without split.txt): pass --split speaker (speaker-disjoint) or --split random, seeded by --seed, or give the filelists with --filelists DIR (library: speakerDisjointSplit / randomSplit)');
  }
  const row = new Map<string, number>();
  ds.ids.forEach((id, i) => row.set(id, i));
  const flags = new Uint8Array(ds.n).fill(2);
  const missing: string[] = [];
  for (const [list, v] of [[ds.official.train, 0], [ds.official.test, 1]] as const) {
    for (const id of list) {
      const r = row.get(id);
      if (r === undefined) missing.push(id);
      else flags[r] = v;
    }
  }
  if (missing.length > 0) {
    throw new RapmError('RAPM_DATA', `The official split names ${missing.length} id(s) not in the dataset: ${missing.slice(0, 10).join(', ')}${missing.length > 10 ? ', ...' : ''}`);
  }
  const train: number[] = [];
  const test: number[] = [];
  flags.forEach((f, i) => {
    if (f === 0) train.push(i);
    else if (f === 1) test.push(i);
  });
  return { train: Int32Array.from(train), test: Int32Array.from(test) };
}

/**
 * Rows every split puts in test (Dataset.testOnly: the rows of a `test*` chunk folder), as
 * flags, or null when there are none.
 */
function testOnlyFlags(ds: Dataset): Uint8Array | null {
  if (!ds.testOnly || ds.testOnly.length === 0) return null;
  const only = new Set(ds.testOnly);
  const flags = new Uint8Array(ds.n);
  let any = false;
  ds.ids.forEach((id, i) => {
    if (only.has(id)) {
      flags[i] = 1;
      any = true;
    }
  });
  return any ? flags : null;
}

function allTestFolders(ds: Dataset): RapmError {
  return new RapmError('RAPM_DATA', `Every one of the ${ds.n} rows is in a test folder (a chunk folder whose name starts with 'test'), and a test folder never gives training data: add training chunks, or rename the folder if its rows may be trained on`);
}

/**
 * Seeded random split: round(n * testFraction) test rows (at least 1, at most n - 1). For a
 * Dataset with test-folder rows (`testOnly`), those rows are always test and only the other
 * rows are split this way (fraction of those rows; with one such row it stays training).
 */
export function randomSplit(n: number | Dataset, seed: number, testFraction = 0.2): Split {
  const rows = typeof n === 'number' ? checkInteger('n', n, 2) : n.n;
  checkInteger('seed', seed, 0, Number.MAX_SAFE_INTEGER);
  const f = checkFraction(testFraction);
  // One path for both: the rows drawn from are `rest` (all rows, or those outside test folders),
  // and a drawn position p marks row rest[p].
  const forced = typeof n === 'number' ? null : testOnlyFlags(n);
  const flags = forced ? forced.slice() : new Uint8Array(rows);
  const rest: number[] = [];
  for (let i = 0; i < rows; i++) if (!flags[i]) rest.push(i);
  if (forced && rest.length === 0) throw allTestFolders(n as Dataset);
  if (rest.length >= 2) {
    const nTest = Math.min(rest.length - 1, Math.max(1, Math.round(rest.length * f)));
    const perm = new Rng(seed, 0x5e11).permutation(rest.length);
    for (let i = 0; i < nTest; i++) flags[rest[perm[i]!]!] = 1;
  }
  return fromFlags(flags);
}

export interface SpeakerDisjointOptions {
  /** Target share of rows in test (default 0.2): speakers are drawn until it is reached. */
  testFraction?: number;
  /** Draw exactly this many test speakers instead (overrides testFraction). */
  testSpeakerCount?: number;
  /** Use exactly these test speakers instead (overrides both). */
  testSpeakers?: readonly string[];
}

/**
 * Speaker-disjoint split: every row of a test speaker goes to test, so no test speaker is seen
 * in training. Rows of a test folder (`testOnly`) are always test, so their speakers are
 * always test speakers; the other speakers are drawn until `testFraction` of the other rows is
 * reached (or `testSpeakerCount` test speakers in all), or `testSpeakers` are added to them.
 */
export function speakerDisjointSplit(ds: Dataset, seed: number, options: SpeakerDisjointOptions = {}): Split {
  checkInteger('seed', seed, 0, Number.MAX_SAFE_INTEGER);
  if (!ds.speakers) throw new RapmError('RAPM_DATA', 'A speaker-disjoint split needs speakers, but this dataset has none (load it with a speakerPattern, or add speakers.txt to its chunks)');
  const all = [...new Set(ds.speakers)].sort(compareIds);
  if (all.length < 2) throw new RapmError('RAPM_DATA', `A speaker-disjoint split needs at least 2 speakers but the dataset has ${all.length}`);
  const forced = testOnlyFlags(ds);
  const forcedSpeakers = new Set<string>();
  if (forced) ds.speakers.forEach((s, i) => forced[i] && forcedSpeakers.add(s));
  if (forcedSpeakers.size >= all.length) {
    if (forced!.every((f) => f === 1)) throw allTestFolders(ds);
    throw new RapmError('RAPM_DATA', `Every speaker (${all.length}) has rows in a test folder (a chunk folder whose name starts with 'test'), so a speaker-disjoint split leaves nothing to train on: use --split random, or give training speakers`);
  }
  let chosen: Set<string>;
  if (options.testSpeakers) {
    const known = new Set(all);
    const unknown = options.testSpeakers.filter((s) => !known.has(s));
    if (unknown.length) throw new RapmRangeError('RAPM_INVALID_ARG', `Unknown test speaker(s): ${unknown.slice(0, 10).join(', ')}`);
    chosen = new Set(options.testSpeakers);
    if (chosen.size === 0 || chosen.size >= all.length) {
      throw new RapmRangeError('RAPM_INVALID_ARG', `Expected between 1 and ${all.length - 1} test speakers but received ${chosen.size}`);
    }
    for (const s of forcedSpeakers) chosen.add(s);
    if (chosen.size >= all.length) throw new RapmError('RAPM_DATA', `The test speakers given and those of the test folders are all ${all.length} speakers: nothing is left to train on`);
  } else {
    const order = new Rng(seed, 0x5e12).shuffle(all.slice());
    if (options.testSpeakerCount !== undefined) {
      const k = checkInteger('testSpeakerCount', options.testSpeakerCount, 1, all.length - 1);
      chosen = new Set(forcedSpeakers);
      for (const s of order) {
        if (chosen.size >= k) break;
        chosen.add(s);
      }
    } else {
      const f = checkFraction(options.testFraction ?? 0.2);
      // Only the rows outside test folders are split: the target counts those.
      const count = new Map<string, number>();
      let other = 0;
      ds.speakers.forEach((s, i) => {
        if (forced?.[i]) return;
        count.set(s, (count.get(s) ?? 0) + 1);
        other++;
      });
      chosen = new Set(forcedSpeakers);
      let rows = 0;
      for (const s of forcedSpeakers) rows += count.get(s) ?? 0;
      for (const s of order) {
        if (rows >= f * other || chosen.size === all.length - 1) break;
        if (chosen.has(s)) continue;
        chosen.add(s);
        rows += count.get(s) ?? 0;
      }
    }
  }
  const flags = new Uint8Array(ds.n);
  ds.speakers.forEach((s, i) => (flags[i] = chosen.has(s) || forced?.[i] ? 1 : 0));
  return fromFlags(flags);
}

/** Speakers of the test rows, and which of them never occur in the training rows. */
export function splitSpeakers(ds: Dataset, split: Split): { trainSpeakers: string[]; testSpeakers: string[]; unseen: string[] } {
  if (!ds.speakers) return { trainSpeakers: [], testSpeakers: [], unseen: [] };
  const tr = new Set<string>();
  for (const r of split.train) tr.add(ds.speakers[r]!);
  const te = new Set<string>();
  for (const r of split.test) te.add(ds.speakers[r]!);
  return { trainSpeakers: [...tr].sort(compareIds), testSpeakers: [...te].sort(compareIds), unseen: [...te].filter((s) => !tr.has(s)).sort(compareIds) };
}

/** How to split a dataset: its own filelists / split.txt, or a seeded split made here. */
export type SplitPolicy = 'official' | 'speaker' | 'random';

/**
 * The train/test split of `ds` under `policy` (CLI `--split`): `undefined` takes the official
 * split and, when there is none, fails with an error naming `--split`; 'speaker' / 'random'
 * always make a seeded split (speaker-disjoint or random, `testFraction` of the rows), even when
 * filelists exist, so an explicit choice is never ignored.
 */
export function chooseSplit(ds: Dataset, policy: SplitPolicy | undefined, seed: number, testFraction = 0.2): Split {
  if (policy === undefined || policy === 'official') return officialSplit(ds);
  if (policy === 'speaker') return speakerDisjointSplit(ds, seed, { testFraction });
  if (policy === 'random') return randomSplit(ds, seed, testFraction);
  throw new RapmRangeError('RAPM_INVALID_ARG', `Expected 'official', 'speaker' or 'random' for --split but received ${describe(policy)}`);
}
