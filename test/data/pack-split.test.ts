// pack keeps the official split whole: every chunk gets split.txt when the input has one.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listChunks, loadChunks } from '../../src/data/chunks.js';
import { loadDral } from '../../src/data/dataset.js';
import { generate } from '../../src/data/generate.js';
import { loadDataset } from '../../src/data/load.js';
import { packDral } from '../../src/data/pack.js';
import { officialSplit } from '../../src/data/split.js';

let tmp: string;
let dral: string;
beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-pack-split-'));
  dral = path.join(tmp, 'dral');
  await generate({ out: dral, pairs: 30, testPairs: 4, seed: 3, speakers: 3, format: 'dral' });
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('pack and the official split', () => {
  it('writes split.txt into every chunk, so the packed set has the same train/test ids as the DRAL input', async () => {
    const src = await loadDral(dral);
    const out = path.join(tmp, 'packed');
    await packDral([dral], out, { chunkSize: 5 });
    const names = listChunks(out);
    expect(names).toHaveLength(6);
    for (const name of names) expect(fs.existsSync(path.join(out, name, 'split.txt'))).toBe(true);
    const packed = await loadDataset(out);
    expect(packed.official).not.toBeNull();
    expect([...packed.official!.train].sort()).toEqual([...src.official!.train].sort());
    expect([...packed.official!.test].sort()).toEqual([...src.official!.test].sort());
    const s = officialSplit(packed);
    expect(s.train.length + s.test.length).toBe(30);
  });

  it('writes no split.txt when the input has none, and refuses inputs with and without one together', async () => {
    const bare = path.join(tmp, 'bare');
    fs.mkdirSync(bare);
    for (const f of fs.readdirSync(dral)) if (f.endsWith('.npy')) fs.copyFileSync(path.join(dral, f), path.join(bare, f.replace(/^(EN|ES)_s/, '$1_b')));
    const out = path.join(tmp, 'packed-bare');
    await packDral([bare], out, { chunkSize: 10 });
    expect((await loadChunks(out)).official).toBeNull();
    await expect(packDral([dral, bare], path.join(tmp, 'mixed'), { chunkSize: 10 })).rejects.toMatchObject({
      code: 'RAPM_DATA',
      message: expect.stringContaining(`together with ${bare} (no official split)`),
    });
  });

  it('refuses inputs with and without speakers together (the packed set would not load); --speaker-pattern mends it', async () => {
    // A chunk set of the same pairs under other ids (c... for s...), split.txt kept, speakers.txt removed.
    const other = path.join(tmp, 'other-dral');
    fs.mkdirSync(other);
    for (const f of fs.readdirSync(dral)) {
      if (f.endsWith('.npy')) fs.copyFileSync(path.join(dral, f), path.join(other, f.replace(/^(EN|ES)_s/, '$1_c')));
      else if (f.endsWith('.txt')) fs.writeFileSync(path.join(other, f), fs.readFileSync(path.join(dral, f), 'utf8').replace(/EN_s/g, 'EN_c'));
    }
    const nospk = path.join(tmp, 'nospk');
    await packDral([other], nospk, { chunkSize: 10 });
    for (const c of listChunks(nospk)) fs.rmSync(path.join(nospk, c, 'speakers.txt'));
    await expect(packDral([dral, nospk], path.join(tmp, 'mixed-spk'), { chunkSize: 10 })).rejects.toMatchObject({
      code: 'RAPM_DATA',
      message: expect.stringContaining(`together with ${nospk} (no speakers.txt)`),
    });
    const ok = path.join(tmp, 'mixed-spk-pattern');
    await packDral([dral, nospk], ok, { chunkSize: 10, speakerPattern: '^([^_]+)_' });
    expect((await loadChunks(ok)).speakers).not.toBeNull();
  });
});
