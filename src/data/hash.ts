/**
 * A content hash of a dataset, recorded in results files and model sidecars.
 *
 * sha256 over: "rapm-dataset-v1", n, dim, and the sha256 of each of the four streams
 * (ids joined by '\n', speakers joined by '\n' or empty, the EN float32 bytes, the ES float32
 * bytes). The four streams are hashed side by side, so a chunked dataset hashes in one pass,
 * one chunk at a time, to the same value as the loaded Dataset.
 */
import { createHash, type Hash } from 'node:crypto';
import { RapmRangeError } from '../errors.js';
import { bytesOf } from '../io/atomic.js';
import { iterateChunks, type LoadChunksOptions } from './chunks.js';
import type { Dataset } from './dataset.js';
import { FEATURE_DIM } from './indices.js';

export interface DatasetHasher {
  /** Add rows (in dataset order). */
  update(part: { ids: readonly string[]; speakers: readonly string[] | null; en: Float32Array; es: Float32Array }): void;
  /** `sha256:<hex>`. */
  digest(): string;
}

const HASH_PIECE = 16 << 20;

function feed(h: Hash, a: Float32Array): void {
  const b = bytesOf(a);
  for (let off = 0; off < b.length; off += HASH_PIECE) h.update(b.subarray(off, Math.min(b.length, off + HASH_PIECE)));
}

export function createDatasetHasher(dim = FEATURE_DIM): DatasetHasher {
  const ids = createHash('sha256');
  const spk = createHash('sha256');
  const en = createHash('sha256');
  const es = createHash('sha256');
  let n = 0;
  let speakers: boolean | null = null;
  return {
    update(part) {
      const m = part.ids.length;
      if (part.en.length !== m * dim || part.es.length !== m * dim) {
        throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `Expected en and es of length ${m * dim} ([${m}, ${dim}]) but received ${part.en.length} and ${part.es.length}`);
      }
      const has = part.speakers !== null;
      if (speakers !== null && speakers !== has) throw new RapmRangeError('RAPM_SHAPE_MISMATCH', 'Some parts have speakers and some do not');
      speakers = has;
      for (const id of part.ids) ids.update(id + '\n');
      if (part.speakers) for (const s of part.speakers) spk.update(s + '\n');
      feed(en, part.en);
      feed(es, part.es);
      n += m;
    },
    digest() {
      const top = createHash('sha256');
      top.update(`rapm-dataset-v1\n${n}\n${dim}\n`);
      for (const h of [ids, spk, en, es]) top.update(h.digest());
      return 'sha256:' + top.digest('hex');
    },
  };
}

/** Content hash of an in-memory dataset. */
export function hashDataset(ds: Dataset): string {
  const h = createDatasetHasher(ds.n > 0 ? ds.en.length / ds.n : FEATURE_DIM);
  h.update(ds);
  return h.digest();
}

/** Content hash of a chunks folder, streaming one chunk at a time (equals hashDataset(await loadChunks(dir))). */
export async function hashChunks(dir: string, options: LoadChunksOptions = {}): Promise<string> {
  const h = createDatasetHasher(options.dim ?? FEATURE_DIM);
  for await (const c of iterateChunks(dir, options)) h.update(c);
  return h.digest();
}
