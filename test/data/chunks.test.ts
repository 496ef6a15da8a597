import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chunkName, iterateChunks, listChunks, loadChunks, writeChunk, writeChunks } from '../../src/data/chunks.js';
import type { Dataset } from '../../src/data/dataset.js';
import { hashChunks, hashDataset } from '../../src/data/hash.js';
import { loadDataset } from '../../src/data/load.js';
import { writeNpySync } from '../../src/data/npy.js';
import { officialSplit } from '../../src/data/split.js';

const D = 1024;
let root: string;
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-chunks-'));
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function toyDataset(n: number, withSplit = true): Dataset {
  const en = new Float32Array(n * D);
  const es = new Float32Array(n * D);
  for (let i = 0; i < n * D; i++) {
    en[i] = Math.sin(i * 0.37);
    es[i] = Math.cos(i * 0.11);
  }
  const ids = Array.from({ length: n }, (_, i) => `s${i % 3}_${String(i).padStart(4, '0')}`);
  return {
    ids,
    speakers: ids.map((id) => id.slice(0, 2)),
    en,
    es,
    n,
    official: withSplit ? { train: ids.filter((_, i) => i % 5 !== 0), test: ids.filter((_, i) => i % 5 === 0) } : null,
  };
}

describe('packed chunks', () => {
  it('round-trip through writeChunks / loadChunks with speakers, split, progress and matching hashes', async () => {
    const ds = toyDataset(23);
    const dir = path.join(root, 'rt');
    expect(await writeChunks(ds, dir, { chunkSize: 5 })).toBe(5);
    expect(listChunks(dir)).toEqual([0, 1, 2, 3, 4].map(chunkName));
    const progress: [number, number][] = [];
    const back = await loadChunks(dir, { onProgress: (d, t) => progress.push([d, t]) });
    expect(back.ids).toEqual(ds.ids);
    expect(back.speakers).toEqual(ds.speakers);
    expect(back.en).toEqual(ds.en);
    expect(back.es).toEqual(ds.es);
    expect(back.official).toEqual({ train: ds.official!.train, test: ds.official!.test });
    expect(progress.at(-1)).toEqual([23, 23]);
    expect(progress.every(([d], i) => i === 0 || d >= progress[i - 1]![0])).toBe(true);
    expect(hashDataset(back)).toBe(hashDataset(ds));
    expect(await hashChunks(dir)).toBe(hashDataset(ds));
    expect(Array.from(officialSplit(back).test)).toEqual([0, 5, 10, 15, 20]);
    expect((await loadDataset(dir)).n).toBe(23);
    const meta = JSON.parse(fs.readFileSync(path.join(dir, chunkName(0), 'meta.json'), 'utf8'));
    expect(meta).toMatchObject({ format: 'rapm-chunk', version: 1, n: 5, dim: 1024, dtype: 'float32' });
  });

  it('text files as Windows tools write them (BOM, CRLF, trailing blanks in speakers/split) load as the same dataset', async () => {
    const ds = toyDataset(10);
    const dir = path.join(root, 'windows');
    await writeChunks(ds, dir, { chunkSize: 5 });
    const want = hashDataset(await loadChunks(dir));
    for (const c of [0, 1]) {
      for (const f of ['ids.txt', 'speakers.txt', 'split.txt']) {
        const file = path.join(dir, chunkName(c), f);
        const lines = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l !== '');
        // Trailing blanks are dropped from speakers.txt and split.txt only: an id is kept as written (ids-whitespace.test.ts).
        fs.writeFileSync(file, '\ufeff' + lines.map((l, i) => l + (i % 2 && f !== 'ids.txt' ? ' \t' : '') + '\r\n').join(''));
      }
      const meta = path.join(dir, chunkName(c), 'meta.json');
      fs.writeFileSync(meta, '\ufeff' + fs.readFileSync(meta, 'utf8'));
    }
    const back = await loadChunks(dir);
    expect(back.ids).toEqual(ds.ids); // no BOM glued to the first id, no blanks kept
    expect(back.speakers).toEqual(ds.speakers);
    expect(back.official).toEqual({ train: ds.official!.train, test: ds.official!.test });
    expect(hashDataset(back)).toBe(want);
    expect(await hashChunks(dir)).toBe(want); // the streaming hash (progressive's data identity) too
  });

  it('iterate one chunk at a time, in name order', async () => {
    const ds = toyDataset(7, false);
    const dir = path.join(root, 'order');
    // Written out of order, with names whose code-point order is the intended one.
    await writeChunk(dir, 'b', { ids: ds.ids.slice(3), en: ds.en.subarray(3 * D), es: ds.es.subarray(3 * D) });
    await writeChunk(dir, 'a', { ids: ds.ids.slice(0, 3), en: ds.en.subarray(0, 3 * D), es: ds.es.subarray(0, 3 * D) });
    const seen: string[] = [];
    let rows = 0;
    for await (const c of iterateChunks(dir)) {
      seen.push(c.name);
      expect(c.en.length).toBe(c.n * D);
      expect(c.speakers).toBeNull();
      rows += c.n;
    }
    expect(seen).toEqual(['a', 'b']);
    expect(rows).toBe(7);
    const all = await loadChunks(dir);
    expect(all.ids).toEqual(ds.ids);
    expect(all.speakers).toBeNull();
    expect(all.official).toBeNull();
    expect(hashDataset(all)).toBe(await hashChunks(dir));
    // A leftover temporary folder is not a chunk.
    fs.mkdirSync(path.join(dir, 'c.tmp-1-abcd'));
    expect(listChunks(dir)).toEqual(['a', 'b']);
  });

  it('writeChunk refuses to replace a chunk unless asked, and checks lengths', async () => {
    const ds = toyDataset(2, false);
    const dir = path.join(root, 'overwrite');
    await writeChunk(dir, 'x', { ids: ds.ids, en: ds.en, es: ds.es });
    await expect(writeChunk(dir, 'x', { ids: ds.ids, en: ds.en, es: ds.es })).rejects.toMatchObject({ code: 'RAPM_IO', message: expect.stringMatching(/already exists/) });
    await writeChunk(dir, 'x', { ids: ['p', 'q'], en: ds.en, es: ds.es }, { overwrite: true });
    expect((await loadChunks(dir)).ids).toEqual(['p', 'q']);
    await expect(writeChunk(dir, 'y', { ids: ds.ids, en: ds.en.subarray(D), es: ds.es })).rejects.toMatchObject({ code: 'RAPM_SHAPE_MISMATCH' });
    await expect(writeChunk(dir, '../evil', { ids: ds.ids, en: ds.en, es: ds.es })).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG' });
    expect(fs.readdirSync(dir)).toEqual(['x']);
  });

  it('report every problem of every chunk in one message, or skip them', async () => {
    const ds = toyDataset(12, false);
    const dir = path.join(root, 'bad');
    await writeChunks(ds, dir, { chunkSize: 3 });
    const c = (i: number, f: string): string => path.join(dir, chunkName(i), f);
    // chunk 0 fine; chunk 1: es has a row too few; chunk 2: ids.txt lists the id of chunk 0; chunk 3: no meta.json (fine), wrong dim.
    writeNpySync(c(1, 'es.npy'), new Float32Array(2 * D), [2, D]);
    fs.writeFileSync(c(2, 'ids.txt'), `${ds.ids[0]}\n${ds.ids[7]}\n${ds.ids[8]}\n`);
    fs.rmSync(c(3, 'meta.json'));
    writeNpySync(c(3, 'en.npy'), new Float32Array(3 * 1000), [3, 1000]);
    fs.mkdirSync(path.join(dir, 'chunk-99999'));
    let err: (Error & { code?: string }) | undefined;
    try {
      await loadChunks(dir);
    } catch (e) {
      err = e as Error;
    }
    expect(err?.code).toBe('RAPM_DATA');
    const msg = err!.message;
    expect(msg).toContain(`chunk ${chunkName(1)}: en.npy has 3 rows but es.npy has 2`);
    expect(msg).toContain(`${ds.ids[0]} in chunk ${chunkName(2)} (row 0) already appears in chunk ${chunkName(0)} (row 0)`);
    expect(msg).not.toContain('meta.json'); // optional: numpy-written chunks have none
    expect(msg).toContain(`chunk ${chunkName(3)}: en.npy has shape (3, 1000), expected (n, 1024)`);
    expect(msg).toContain('chunk chunk-99999: ids.txt is missing');
    expect(msg).toContain('chunk chunk-99999: en.npy is missing');
    expect(msg).toMatch(/missing partner|duplicate id \(1\)/);

    const skipped = await loadChunks(dir, { onProblem: 'skip' });
    expect(skipped.ids).toEqual([...ds.ids.slice(0, 3), ds.ids[7], ds.ids[8]]);
    expect(skipped.en.subarray(3 * D, 4 * D)).toEqual(ds.en.subarray(7 * D, 8 * D));
    expect(skipped.problems.length).toBeGreaterThanOrEqual(5);
    const viaIter: string[] = [];
    for await (const ch of iterateChunks(dir, { onProblem: 'skip' })) viaIter.push(...ch.ids);
    expect(viaIter).toEqual(skipped.ids);
  });

  it('drops speakers when only some chunks have them, as a reported problem', async () => {
    const ds = toyDataset(6, false);
    const dir = path.join(root, 'spk');
    await writeChunks(ds, dir, { chunkSize: 3 });
    fs.rmSync(path.join(dir, chunkName(1), 'speakers.txt'));
    await expect(loadChunks(dir)).rejects.toThrow(/speakers\.txt is missing in chunk chunk-00001/);
    const ds2 = await loadChunks(dir, { onProblem: 'skip' });
    expect(ds2.speakers).toBeNull();
    expect(ds2.n).toBe(6);
  });

  it('reject an empty or missing folder', async () => {
    const empty = path.join(root, 'empty');
    fs.mkdirSync(empty);
    await expect(loadChunks(empty)).rejects.toMatchObject({ code: 'RAPM_DATA', message: expect.stringMatching(/no chunk folders/) });
    await expect(loadChunks(path.join(root, 'nope'))).rejects.toMatchObject({ code: 'RAPM_IO' });
  });
});

describe('hashDataset', () => {
  it('changes with any value, id or speaker', () => {
    const ds = toyDataset(3, false);
    const h = hashDataset(ds);
    expect(h).toMatch(/^sha256:[0-9a-f]{64}$/);
    const es = ds.es.slice();
    es[5] = es[5]! + 1e-6;
    expect(hashDataset({ ...ds, es })).not.toBe(h);
    expect(hashDataset({ ...ds, ids: ['a', ...ds.ids.slice(1)] })).not.toBe(h);
    expect(hashDataset({ ...ds, speakers: null })).not.toBe(h);
    expect(hashDataset({ ...ds, en: ds.en.slice() })).toBe(h);
  });
});
