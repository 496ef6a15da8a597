/**
 * `packDral` (CLI `rapm pack`): turn one or more DRAL feature folders into chunk folders for
 * the progressive loop. Inputs are read one at a time in the order given, their rows
 * concatenated and cut into chunks of `chunkSize` rows: `chunk-00000`, `chunk-00001`, ...
 * With `shuffle` the rows are put in a seeded random order first. The whole output is written
 * into a staging folder beside `out` and swapped in at the end (replaceDirSync, io/atomic.ts,
 * the swap bundles use): `out` is refused when it already holds chunks unless `overwrite`, and
 * then the old folder stays complete until the new one is in place; a pack killed at any point
 * leaves the old folder or the new one (the next pack puts back an old one a kill left moved
 * aside, or keeps it and warns when `out` was recreated meanwhile). A filelist's test rows
 * stay test rows: when the inputs have an official split every chunk gets split.txt, so the
 * packed set keeps the same official split (inputs with and without one are not packed together).
 */
import fs from 'node:fs';
import path from 'node:path';
import { RapmError } from '../errors.js';
import { checkSetting } from '../settings.js';
import { ensureDir, fileKind, ioError, movedAsideNotices, recoverMovedAsideSync, removeStaleStagingSync, replaceDirSync, tempPathFor, writeFileAtomicSync } from '../io/atomic.js';
import { insideOf } from '../io/files.js';
import { CHUNK_VERSION, chunkName, listChunks, writeChunk } from './chunks.js';
import type { DataProblem, ProblemPolicy } from './dataset.js';
import { FEATURE_DIM } from './indices.js';
import { loadDataSource, type DataLocation } from './load.js';
import { Rng } from './rng.js';

export interface PackOptions {
  /** Rows per chunk. Default 50,000. */
  chunkSize?: number;
  /**
   * Shuffle the rows (seeded by `seed`) before cutting them into chunks, so that every chunk spans
   * all speakers (DRAL folders list their files by id, and ids usually start with the speaker).
   */
  shuffle?: boolean;
  /** Seed of `shuffle`: an integer in [0, 2^32 - 1] (the seed setting's range). Default 1. */
  seed?: number;
  /** Replace chunks already in `out`. */
  overwrite?: boolean;
  onProblem?: ProblemPolicy;
  poolFrames?: 'mean' | null;
  speakerPattern?: RegExp | string | null;
  /** Called with (what, done, total) while each input is read. */
  onProgress?: (label: string, done: number, total: number) => void;
}

export interface PackResult {
  out: string;
  chunks: number;
  rows: number;
  testRows: number;
  /** Problems skipped under `onProblem: 'skip'`, by input, with the pairs each input lost to them. */
  skipped: { input: string; problems: DataProblem[]; dropped: number }[];
  /** Pairs left out under `onProblem: 'skip'`, all inputs together. */
  dropped: number;
  /** What the loader left out by rule (e.g. pairs in neither filelist), one line each, naming the input: print them as warnings. */
  notices: string[];
}

/**
 * The folder a pack swaps in: `out`, or through a symbolic link the folder it points at (the
 * link stays a link). A link whose folder a killed pack left moved aside gets it back first; a
 * link to nothing else, or a loop of links, is refused.
 */
function packTarget(out: string, outAbs: string): string {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(outAbs);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return outAbs;
    throw ioError('pack into', out, e);
  }
  if (!st.isSymbolicLink()) return outAbs;
  try {
    return fs.realpathSync(outAbs);
  } catch {
    try {
      recoverMovedAsideSync(path.resolve(path.dirname(outAbs), fs.readlinkSync(outAbs)));
      return fs.realpathSync(outAbs);
    } catch (e) {
      throw new RapmError('RAPM_IO', `Cannot pack into ${out}: it is a symbolic link to nothing or a loop of links (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); fix or remove the link`, { cause: e });
    }
  }
}

/** Pack DRAL folders (any layout loadDataSource reads) into chunk folders under `out`. */
export async function packDral(inputs: readonly (string | DataLocation)[], out: string, options: PackOptions = {}): Promise<PackResult> {
  // The settings' ranges (src/settings.ts), the one definition: the CLI's --chunk-size and --seed
  // take exactly these (a stricter seed bound here, 2^31, failed CLI seeds late; a looser chunk
  // bound, 10M, took library sizes the CLI refuses).
  const chunkSize = checkSetting('chunkSize', options.chunkSize);
  const seed = checkSetting('seed', options.seed);
  // seed only seeds the shuffle: given without it, it would be ignored (the CLI refuses --seed
  // without --shuffle the same way).
  if (options.seed !== undefined && !options.shuffle) {
    throw new RapmError('RAPM_INVALID_ARG', `seed ${String(options.seed)} has no effect without shuffle: it seeds only the shuffle of the rows; pass shuffle: true, or drop seed`);
  }
  if (inputs.length === 0) throw new RapmError('RAPM_INVALID_ARG', 'Name at least one DRAL folder to pack');
  const outAbs = path.resolve(out);
  for (const input of inputs) {
    // Symlinks resolved (insideOf): --out lnk/packed with lnk -> the input was created inside it.
    const p = path.resolve(typeof input === 'string' ? input : (input.data ?? input.features ?? ''));
    if (insideOf(outAbs, p) !== null) throw new RapmError('RAPM_INVALID_ARG', `The output folder ${out} must not be inside the input ${p}`);
  }
  const target = packTarget(out, outAbs);
  // A pack killed between the swap's two renames left `out` moved aside: put it back (and remove
  // the staging folders of killed packs) before looking at what `out` holds.
  removeStaleStagingSync(target);
  // An old copy kept beside an existing `out` (recreated after a killed pack) is never deleted
  // here: the user is told where both are.
  const keptNotices = movedAsideNotices(target, out);
  const checkTarget = (): void => {
    let st: fs.Stats;
    try {
      st = fs.statSync(target);
    } catch {
      return; // absent: nothing to replace
    }
    if (!st.isDirectory()) throw new RapmError('RAPM_IO', `Cannot pack into ${out}: it is a ${fileKind(st)}, not a folder`);
    const existing = listChunks(target);
    const other = fs.readdirSync(target).filter((n) => !existing.includes(n) && n !== 'chunks.json');
    if (existing.length > 0 && !options.overwrite) throw new RapmError('RAPM_IO', `Cannot pack into ${out}: it already holds ${existing.length} chunk folder(s); pass --overwrite to replace them`);
    if (other.length > 0) throw new RapmError('RAPM_IO', `Cannot pack into ${out}: it holds other files (${other.slice(0, 3).join(', ')}); use an empty or new folder`);
  };
  checkTarget();
  // The topmost folder this pack creates (a parent of the target), removed again if it fails.
  let created: string | null = null;
  for (let p = path.dirname(target); !fs.existsSync(p); p = path.dirname(p)) {
    created = p;
    if (path.dirname(p) === p) break;
  }
  ensureDir(path.dirname(target));
  // The new chunks go into a staging folder beside the target, swapped in whole at the end.
  const stage = tempPathFor(target);
  const result: PackResult = { out, chunks: 0, rows: 0, testRows: 0, skipped: [], notices: [...keptNotices], dropped: 0 };
  const dim = FEATURE_DIM;
  const seen = new Map<string, string>();
  let withSplit = false;
  let withSpeakers = false;
  let totalChunks = 0;
  let buf = { ids: [] as string[], speakers: [] as (string | null)[], split: [] as ('train' | 'test')[], en: new Float32Array(chunkSize * dim), es: new Float32Array(chunkSize * dim), n: 0 };
  const flush = async (): Promise<void> => {
    if (buf.n === 0) return;
    await writeChunk(stage, chunkName(result.chunks++, totalChunks), {
      ids: buf.ids,
      speakers: withSpeakers ? (buf.speakers as string[]) : null,
      // Every chunk gets split.txt when the inputs have an official split (even a chunk of
      // training rows only): without it the packed set would have no official split at all.
      split: withSplit ? buf.split : null,
      en: buf.en.subarray(0, buf.n * dim),
      es: buf.es.subarray(0, buf.n * dim),
    });
    result.rows += buf.n;
    buf = { ids: [], speakers: [], split: [], en: new Float32Array(chunkSize * dim), es: new Float32Array(chunkSize * dim), n: 0 };
  };
  try {
    fs.mkdirSync(stage);
    // Read every input (all problems of an input are reported together), checking ids across inputs.
    const loaded = [];
    for (let i = 0; i < inputs.length; i++) {
      const input = inputs[i]!;
      const label = `packing ${i + 1}/${inputs.length}: ${typeof input === 'string' ? input : (input.data ?? input.features)}`;
      const d = await loadDataSource(input, { onProblem: options.onProblem, poolFrames: options.poolFrames, speakerPattern: options.speakerPattern, onProgress: (dn, t) => options.onProgress?.(label, dn, t) });
      if (d.problems.length) result.skipped.push({ input: d.source, problems: d.problems, dropped: d.dropped ?? 0 });
      result.dropped += d.dropped ?? 0;
      for (const notice of d.notices ?? []) result.notices.push(`${d.source}: ${notice}`);
      for (const id of d.ids) {
        const first = seen.get(id);
        if (first !== undefined) throw new RapmError('RAPM_DATA', `Utterance id ${id} is in both ${first} and ${d.source}: each pair must be packed once`);
        seen.set(id, d.source);
      }
      loaded.push({ d, test: new Set(d.official?.test ?? []) });
    }
    // The official split is kept only whole: every input has one (filelists, split.txt), or none has.
    const withOfficial = loaded.filter(({ d }) => d.official);
    if (withOfficial.length > 0 && withOfficial.length < loaded.length) {
      const without = loaded.find(({ d }) => !d.official)!.d.source;
      throw new RapmError('RAPM_DATA', `Cannot pack ${withOfficial[0]!.d.source} (official split from its filelists or split.txt) together with ${without} (no official split): the packed chunks would mark some rows train or test and leave the rest undecided. Give ${without} its filelists, or pack the inputs into separate folders`);
    }
    withSplit = withOfficial.length > 0;
    // Speakers likewise, for the whole set: decided per chunk, a mix gave chunks with and without
    // speakers.txt, which the chunk loader refuses.
    const withSpk = loaded.filter(({ d }) => d.speakers);
    if (withSpk.length > 0 && withSpk.length < loaded.length) {
      const without = loaded.find(({ d }) => !d.speakers)!.d.source;
      throw new RapmError('RAPM_DATA', `Cannot pack ${withSpk[0]!.d.source} (with speakers) together with ${without} (no speakers.txt): the packed chunks would have speakers for some rows only. Pass --speaker-pattern to read ${without}'s speakers from its ids, or pack the inputs into separate folders`);
    }
    withSpeakers = withSpk.length > 0;
    // (input, row) of every output row, in input order or shuffled.
    const where: [number, number][] = loaded.flatMap(({ d }, i) => Array.from({ length: d.n }, (_, r): [number, number] => [i, r]));
    totalChunks = Math.ceil(where.length / chunkSize);
    const order = options.shuffle ? Array.from(new Rng(seed, 0x9ac).permutation(where.length), (k) => where[k]!) : where;
    for (const [i, r] of order) {
      const { d, test } = loaded[i]!;
      const id = d.ids[r]!;
      buf.ids.push(id);
      buf.speakers.push(d.speakers?.[r] ?? null);
      const isTest = test.has(id);
      buf.split.push(isTest ? 'test' : 'train');
      if (isTest) result.testRows++;
      buf.en.set(d.en.subarray(r * dim, (r + 1) * dim), buf.n * dim);
      buf.es.set(d.es.subarray(r * dim, (r + 1) * dim), buf.n * dim);
      if (++buf.n === chunkSize) await flush();
    }
    await flush();
    writeFileAtomicSync(path.join(stage, 'chunks.json'), JSON.stringify({ format: 'rapm-chunks', version: CHUNK_VERSION, n: result.rows, dim, chunks: result.chunks, packedFrom: inputs }, null, 2) + '\n');
    // Checked again just before the swap: a concurrent pack (or anything else) may have filled
    // the target since, and the swap would remove what it holds.
    checkTarget();
    replaceDirSync(stage, target); // fsyncs every file and folder in the stage, then swaps
  } catch (e) {
    fs.rmSync(stage, { recursive: true, force: true });
    // The folders this pack created, innermost first, and only while empty: a recursive remove
    // deleted the finished output of a concurrent pack into the same new folder.
    if (created !== null) {
      for (let p = path.dirname(target); ; p = path.dirname(p)) {
        try {
          fs.rmdirSync(p);
        } catch {
          break; // not empty (another writer's files), or gone
        }
        if (p === created) break;
      }
    }
    throw ioError('pack into', out, e);
  }
  return result;
}
