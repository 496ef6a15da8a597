import fs from 'node:fs';
import path from 'node:path';
import { writeChunk, listChunks } from '../data/chunks.js';
import type { Dataset } from '../data/dataset.js';
import { subsetDataset } from '../data/dataset.js';
import { DEFAULT_SEED, DEFAULT_SPEAKERS, GENERATOR_VERSION, generateDataset, resolveModel } from '../data/generate.js';
import { Rng } from '../rng.js';
import { RapmError } from '../errors.js';
import { checkInteger } from '../validate.js';

/**
 * The default data of the progressive loop: the paper-sized initial set and chunks drawn
 * from the same speakers, plus a test set of unseen speakers.
 *
 *   <out>/000-initial/   2,316 train + 578 seen-speaker test pairs (split.txt marks the test rows)
 *   <out>/001 .. 008/    25,000 train pairs each, a seeded random draw over all speakers
 *   <out>/test-unseen/   578 test pairs from 5 speakers absent from everything above
 *
 * Rows marked 'test' in a chunk's split.txt are never added to the datastore; a folder whose
 * rows are all 'test' is a test set only. Speakers come from the generator, so the loop can
 * score seen and unseen speakers separately.
 */
export interface ProgressiveDataOptions {
  out: string;
  seed?: number;
  initialTrain?: number;
  seenTest?: number;
  unseenTest?: number;
  unseenSpeakers?: number;
  chunks?: number;
  chunkPairs?: number;
  onProgress?: (done: number, total: number) => void;
}

export const PROGRESSIVE_DATA_DEFAULTS = { seed: DEFAULT_SEED, initialTrain: 2316, seenTest: 578, unseenTest: 578, unseenSpeakers: 5, chunks: 8, chunkPairs: 25_000 };

const MARKER = 'progressive-data.json';

export async function generateProgressiveData(options: ProgressiveDataOptions): Promise<{ out: string; generated: boolean }> {
  const o = { ...PROGRESSIVE_DATA_DEFAULTS, ...options };
  checkInteger('initialTrain', o.initialTrain, 1);
  checkInteger('seenTest', o.seenTest, 1);
  checkInteger('unseenTest', o.unseenTest, 0);
  checkInteger('chunks', o.chunks, 0, 10_000);
  checkInteger('chunkPairs', o.chunkPairs, 1);
  const out = path.resolve(o.out);
  // The generator's version and model are part of what the folder must match.
  const wanted = { ...o, out: undefined, onProgress: undefined, generatorVersion: GENERATOR_VERSION, model: resolveModel() };
  const markerFile = path.join(out, MARKER);
  if (fs.existsSync(markerFile)) {
    try {
      if (JSON.stringify(JSON.parse(fs.readFileSync(markerFile, 'utf8'))) === JSON.stringify(wanted)) return { out, generated: false };
    } catch {
      // unreadable marker: regenerate below
    }
  }
  if (fs.existsSync(out) && fs.readdirSync(out).length > 0 && !fs.existsSync(markerFile)) {
    if (listChunks(out).length > 0) return { out, generated: false }; // the user's own chunks: leave them alone
    throw new RapmError('RAPM_IO', `Cannot generate progressive data into ${out}: the folder is not empty and holds no chunks`);
  }
  fs.rmSync(out, { recursive: true, force: true });

  // One pool of seen-speaker pairs; its official test split is the seen test set.
  const trainPool = o.initialTrain + o.chunks * o.chunkPairs;
  const pool = generateDataset({ pairs: trainPool + o.seenTest, testPairs: o.seenTest, seed: o.seed, speakers: DEFAULT_SPEAKERS, onProgress: o.onProgress });
  const isTest = new Set(pool.official!.test);
  const trainRows: number[] = [];
  const testRows: number[] = [];
  pool.ids.forEach((id, r) => (isTest.has(id) ? testRows : trainRows).push(r));
  // The generator orders rows by speaker: shuffle so every chunk spans all speakers.
  const perm = new Rng(o.seed, 91).permutation(trainRows.length);
  const shuffled = Array.from(perm, (i) => trainRows[i]!);
  const initial = subsetDataset(pool, [...shuffled.slice(0, o.initialTrain), ...testRows]);
  await writeChunk(out, '000-initial', chunkData(initial, o.initialTrain), { overwrite: true });
  for (let c = 0; c < o.chunks; c++) {
    const rows = shuffled.slice(o.initialTrain + c * o.chunkPairs, o.initialTrain + (c + 1) * o.chunkPairs);
    await writeChunk(out, String(c + 1).padStart(3, '0'), chunkData(subsetDataset(pool, rows), rows.length), { overwrite: true });
  }
  if (o.unseenTest > 0) {
    // Same seed and world; the test rows come from speakers the pool never had.
    // (The generator needs one training row; it is dropped.)
    const g = generateDataset({ pairs: o.unseenTest + 1, testPairs: o.unseenTest, seed: o.seed + 7919, speakers: DEFAULT_SPEAKERS, unseenSpeakers: o.unseenSpeakers });
    const testIds = new Set(g.official!.test);
    const unseen = subsetDataset(g, g.ids.flatMap((id, r) => (testIds.has(id) ? [r] : [])));
    await writeChunk(out, 'test-unseen', chunkData(unseen, 0), { overwrite: true });
  }
  fs.writeFileSync(markerFile, JSON.stringify(wanted) + '\n');
  return { out, generated: true };
}

/** Chunk payload whose first `trainRows` rows are train and the rest test. */
function chunkData(ds: Dataset, trainRows: number) {
  return {
    ids: ds.ids,
    speakers: ds.speakers,
    split: ds.ids.map((_, i) => (i < trainRows ? 'train' : 'test') as 'train' | 'test'),
    en: ds.en,
    es: ds.es,
  };
}
