// packDral: DRAL folders -> chunk folders for the progressive loop.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { iterateChunks, listChunks, loadChunks } from '../../src/data/chunks.js';
import { loadDral } from '../../src/data/dataset.js';
import { generate } from '../../src/data/generate.js';
import { packDral } from '../../src/data/pack.js';

let tmp: string;
let dralA: string;
let dralB: string;
beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-pack-'));
  dralA = path.join(tmp, 'a');
  await generate({ out: dralA, pairs: 50, testPairs: 10, seed: 1, speakers: 5, format: 'dral' });
  // A second folder with other ids: the reference layout (features/ + filelists beside it).
  const gen = path.join(tmp, 'b-gen');
  await generate({ out: gen, pairs: 30, testPairs: 6, seed: 2, speakers: 3, format: 'dral' });
  dralB = path.join(tmp, 'b');
  fs.mkdirSync(path.join(dralB, 'features'), { recursive: true });
  for (const f of fs.readdirSync(gen)) {
    const to = f.endsWith('.npy') ? path.join(dralB, 'features', f.replace(/^(EN|ES)_s/, '$1_b')) : path.join(dralB, f);
    if (f.endsWith('.npy') || f.endsWith('_filelist_en.txt')) {
      if (f.endsWith('.txt')) fs.writeFileSync(to, fs.readFileSync(path.join(gen, f), 'utf8').replace(/^EN_s/gm, 'EN_b'));
      else fs.copyFileSync(path.join(gen, f), to);
    }
  }
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('packDral', () => {
  it('packs several folders into chunks of the given size, keeping filelist test rows as test rows', async () => {
    const out = path.join(tmp, 'chunks');
    const labels = new Set<string>();
    const r = await packDral([dralA, dralB], out, { chunkSize: 16, onProgress: (l) => labels.add(l) });
    expect(r).toMatchObject({ chunks: 5, rows: 80, testRows: 16 });
    expect([...labels]).toEqual([`packing 1/2: ${dralA}`, `packing 2/2: ${dralB}`]);
    expect(listChunks(out)).toEqual(['chunk-00000', 'chunk-00001', 'chunk-00002', 'chunk-00003', 'chunk-00004']);
    const a = await loadDral(dralA);
    const got = await loadChunks(out);
    expect(got.ids.slice(0, 50)).toEqual(a.ids);
    expect(got.en.subarray(0, 50 * 1024)).toEqual(a.en);
    expect(got.ids[50]).toMatch(/^b/);
    expect(new Set(got.official!.test)).toEqual(new Set([...a.official!.test, ...(await loadDral(path.join(dralB, 'features'), { filelistDir: dralB })).official!.test]));
    const sizes: number[] = [];
    for await (const c of iterateChunks(out)) sizes.push(c.n);
    expect(sizes).toEqual([16, 16, 16, 16, 16]);
  });

  it('refuses to overwrite without overwrite, replaces all old chunks with it, and leaves them intact on failure', async () => {
    const out = path.join(tmp, 'again');
    await packDral([dralA], out, { chunkSize: 10 });
    expect(listChunks(out)).toHaveLength(5);
    await expect(packDral([dralA], out, { chunkSize: 25 })).rejects.toThrow(/already holds 5 chunk folder\(s\); pass --overwrite/);
    // A failing pack (duplicate ids across inputs) leaves the old chunks as they were.
    await expect(packDral([dralA, dralA], out, { chunkSize: 25, overwrite: true })).rejects.toThrow(/is in both .* each pair must be packed once/);
    expect(listChunks(out)).toHaveLength(5);
    expect(fs.readdirSync(tmp).filter((n) => n.includes('.tmp-'))).toEqual([]);
    await packDral([dralA], out, { chunkSize: 25, overwrite: true });
    expect(listChunks(out)).toEqual(['chunk-00000', 'chunk-00001']);
    expect((await loadChunks(out)).n).toBe(50);
  });

  it('follows a symbolic link to a DRAL folder and refuses an output inside an input', async () => {
    const link = path.join(tmp, 'link-to-a');
    fs.symlinkSync(dralA, link);
    const out = path.join(tmp, 'from-link');
    expect((await packDral([link], out, { chunkSize: 50 })).rows).toBe(50);
    await expect(packDral([dralA], path.join(dralA, 'chunks'))).rejects.toThrow(/must not be inside the input/);
    // Through a link to the input (the folder was created inside it, then read as its data).
    await expect(packDral([dralA], path.join(link, 'chunks'))).rejects.toThrow(/must not be inside the input/);
    expect(fs.existsSync(path.join(dralA, 'chunks'))).toBe(false);
    await expect(packDral([dralA], out, { chunkSize: 0 })).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG' });
  });
});
