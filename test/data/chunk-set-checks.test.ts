// Small data-layer checks: a chunk set without chunk folders, chunks.json's row count, empty
// speakers.txt lines, and pack cleaning up the --out folder it created when it fails.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { chunkIndex, chunkName, iterateChunks, loadChunks, writeChunks } from '../../src/data/chunks.js';
import type { Dataset } from '../../src/data/dataset.js';
import { generate } from '../../src/data/generate.js';
import { loadDataset } from '../../src/data/load.js';
import { packDral } from '../../src/data/pack.js';

const D = 1024;
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-chunkset-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());

function toy(n: number): Dataset {
  const en = Float32Array.from({ length: n * D }, (_, i) => Math.sin(i * 0.37) + 0.1);
  const ids = Array.from({ length: n }, (_, i) => `s${i % 3}_${String(i).padStart(4, '0')}`);
  return { ids, speakers: ids.map((id) => id.slice(0, 2)), en, es: en.slice(), n, official: null };
}

async function rejection(p: Promise<unknown>): Promise<Error & { code?: string }> {
  return p.then(() => {
    throw new Error('expected a rejection');
  }, (e: Error) => e);
}

describe('chunk sets', () => {
  it('a folder holding only chunks.json is reported as a chunk set with no chunk folders', async () => {
    const dir = path.join(tmp, 'only-json');
    await writeChunks(toy(6), dir, { chunkSize: 3 });
    for (const c of [0, 1]) fs.rmSync(path.join(dir, chunkName(c)), { recursive: true });
    const err = await rejection(loadDataset(dir));
    expect(err.code).toBe('RAPM_DATA');
    expect(err.message).toBe(`${dir} is a chunk set (it holds chunks.json) with no chunk folders (each with en.npy, es.npy and ids.txt): restore its chunk folders, or pack or generate the data again`);
    expect(err.message).not.toContain('DRAL');
  });

  it("chunks.json's n is checked against the rows of the chunk folders, by every reader", async () => {
    const dir = path.join(tmp, 'missing-chunk');
    await writeChunks(toy(60), dir, { chunkSize: 20 });
    fs.rmSync(path.join(dir, chunkName(1)), { recursive: true });
    const want = `${path.join(dir, 'chunks.json')} says the chunk set holds 60 rows but its 2 chunk folder(s) hold 40`;
    for (const onProblem of ['fail', 'skip'] as const) {
      const err = await rejection(loadChunks(dir, { onProblem }));
      expect(err.code).toBe('RAPM_DATA');
      expect(err.message).toContain(want);
    }
    expect(() => chunkIndex(dir)).toThrow(want);
    await expect((async () => {
      for await (const c of iterateChunks(dir)) void c;
    })()).rejects.toThrow(want);
    // One chunk folder read on its own is not the whole set: no count to check.
    expect((await loadDataset(path.join(dir, chunkName(0)))).n).toBe(20);
  });

  it('an empty line in speakers.txt is refused, naming the file and line', async () => {
    const dir = path.join(tmp, 'empty-speaker');
    await writeChunks(toy(6), dir, { chunkSize: 3 });
    const file = path.join(dir, chunkName(1), 'speakers.txt');
    fs.writeFileSync(file, 's0\n\ns2\n');
    const err = await rejection(loadChunks(dir));
    expect(err.code).toBe('RAPM_DATA');
    expect(err.message).toContain(`chunk ${chunkName(1)}: speakers.txt line 2 is empty`);
    expect(err.message).toContain(file);
  });
});

describe('pack cleans up the --out folder it created when it fails', () => {
  let dral: string;
  beforeAll(async () => {
    dral = path.join(tmp, 'dral');
    await generate({ out: dral, pairs: 12, testPairs: 2, seed: 1, speakers: 2, format: 'dral' });
  });

  it('on ENOSPC while writing a chunk', async () => {
    const out = path.join(tmp, 'new-parent', 'packed');
    const real = fs.renameSync;
    vi.spyOn(fs, 'renameSync').mockImplementation(((from: fs.PathLike, to: fs.PathLike) => {
      if (String(to).includes('chunk-00001')) throw Object.assign(new Error('ENOSPC: no space left on device, rename'), { code: 'ENOSPC' });
      return real(from, to);
    }) as typeof fs.renameSync);
    const err = await rejection(packDral([dral], out, { chunkSize: 5 }));
    expect(err.code).toBe('RAPM_IO');
    expect(err.message).toContain('ENOSPC');
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.existsSync(path.join(tmp, 'new-parent'))).toBe(false);
  });

  it("never removes what another writer put in the folder meanwhile (a concurrent pack's finished chunks)", async () => {
    const out = path.join(tmp, 'shared-parent', 'packed');
    const real = fs.renameSync;
    vi.spyOn(fs, 'renameSync').mockImplementation(((from: fs.PathLike, to: fs.PathLike) => {
      // The swap into `out`: another pack has just finished there, so this one fails (ENOTEMPTY).
      if (path.resolve(String(to)) === out || path.dirname(String(to)) === out) {
        fs.mkdirSync(path.join(out, 'chunk-00000'), { recursive: true });
        fs.writeFileSync(path.join(out, 'chunk-00000', 'ids.txt'), 'theirs\n');
        throw Object.assign(new Error('ENOTEMPTY: directory not empty, rename'), { code: 'ENOTEMPTY' });
      }
      return real(from, to);
    }) as typeof fs.renameSync);
    await expect(packDral([dral], out, { chunkSize: 50 })).rejects.toMatchObject({ code: 'RAPM_IO' });
    vi.restoreAllMocks();
    expect(fs.readFileSync(path.join(out, 'chunk-00000', 'ids.txt'), 'utf8')).toBe('theirs\n');
  });

  it('on a data problem in the input, and never removes a folder that was there before', async () => {
    const bad = path.join(tmp, 'bad-dral');
    fs.cpSync(dral, bad, { recursive: true });
    fs.rmSync(path.join(bad, fs.readdirSync(bad).find((f) => f.startsWith('ES_'))!));
    const out = path.join(tmp, 'packed-bad');
    await expect(packDral([bad], out)).rejects.toMatchObject({ code: 'RAPM_DATA' });
    expect(fs.existsSync(out)).toBe(false);
    const existing = path.join(tmp, 'existing-out');
    fs.mkdirSync(existing);
    await expect(packDral([bad], existing)).rejects.toMatchObject({ code: 'RAPM_DATA' });
    expect(fs.readdirSync(existing)).toEqual([]);
  });
});
