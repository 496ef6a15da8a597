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
    throw new RapmError('RAPM_DATA', 'This dataset has no official split (no train_filelist_en.txt / test_filelist_en.txt, or chunks without split.txt); use randomSplit or speakerDisjointSplit');
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

/** Seeded random split: round(n * testFraction) test rows (at least 1, at most n - 1). */
export function randomSplit(n: number | Dataset, seed: number, testFraction = 0.2): Split {
  const rows = typeof n === 'number' ? checkInteger('n', n, 2) : n.n;
  checkInteger('seed', seed, 0, Number.MAX_SAFE_INTEGER);
  const f = checkFraction(testFraction);
  const nTest = Math.min(rows - 1, Math.max(1, Math.round(rows * f)));
  const perm = new Rng(seed, 0x5e11).permutation(rows);
  const flags = new Uint8Array(rows);
  for (let i = 0; i < nTest; i++) flags[perm[i]!] = 1;
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

/** Speaker-disjoint split: every row of a test speaker goes to test, so no test speaker is seen in training. */
export function speakerDisjointSplit(ds: Dataset, seed: number, options: SpeakerDisjointOptions = {}): Split {
  checkInteger('seed', seed, 0, Number.MAX_SAFE_INTEGER);
  if (!ds.speakers) throw new RapmError('RAPM_DATA', 'A speaker-disjoint split needs speakers, but this dataset has none (load it with a speakerPattern, or add speakers.txt to its chunks)');
  const all = [...new Set(ds.speakers)].sort(compareIds);
  if (all.length < 2) throw new RapmError('RAPM_DATA', `A speaker-disjoint split needs at least 2 speakers but the dataset has ${all.length}`);
  let chosen: Set<string>;
  if (options.testSpeakers) {
    const known = new Set(all);
    const unknown = options.testSpeakers.filter((s) => !known.has(s));
    if (unknown.length) throw new RapmRangeError('RAPM_INVALID_ARG', `Unknown test speaker(s): ${unknown.slice(0, 10).join(', ')}`);
    chosen = new Set(options.testSpeakers);
    if (chosen.size === 0 || chosen.size >= all.length) {
      throw new RapmRangeError('RAPM_INVALID_ARG', `Expected between 1 and ${all.length - 1} test speakers but received ${chosen.size}`);
    }
  } else {
    const order = new Rng(seed, 0x5e12).shuffle(all.slice());
    if (options.testSpeakerCount !== undefined) {
      const k = checkInteger('testSpeakerCount', options.testSpeakerCount, 1, all.length - 1);
      chosen = new Set(order.slice(0, k));
    } else {
      const f = checkFraction(options.testFraction ?? 0.2);
      const count = new Map<string, number>();
      for (const s of ds.speakers) count.set(s, (count.get(s) ?? 0) + 1);
      chosen = new Set();
      let rows = 0;
      for (const s of order) {
        if (rows >= f * ds.n || chosen.size === all.length - 1) break;
        chosen.add(s);
        rows += count.get(s)!;
      }
    }
  }
  const flags = new Uint8Array(ds.n);
  ds.speakers.forEach((s, i) => (flags[i] = chosen.has(s) ? 1 : 0));
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
