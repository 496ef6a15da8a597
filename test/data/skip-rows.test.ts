/**
 * --on-problem skip drops only the rows a problem is about: a bad id or an empty speaker line
 * in one chunk costs that row, not the chunk's other rows, and the count of dropped pairs is
 * reported. loadChunks (train / index), iterateChunks and chunkIndex (progressive) and pack keep
 * the same rows. A DRAL pair listed in both filelists is dropped, not packed as training data.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chunkIndex, chunkName, iterateChunks, loadChunks, writeChunks } from '../../src/data/chunks.js';
import { loadDral, type Dataset } from '../../src/data/dataset.js';
import { generate } from '../../src/data/generate.js';
import { packDral } from '../../src/data/pack.js';
import { run } from '../helpers/cli.js';

const D = 1024;
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-skip-rows-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function toy(n: number): Dataset {
  const en = Float32Array.from({ length: n * D }, (_, i) => Math.sin(i * 0.37) + 0.1);
  const ids = Array.from({ length: n }, (_, i) => `s${i % 3}_${String(i).padStart(4, '0')}`);
  return { ids, speakers: ids.map((id) => id.slice(0, 2)), en, es: en.slice(), n, official: null };
}

/** The ids each reader keeps, under skip. */
async function keptBy(dir: string): Promise<{ load: string[]; iterate: string[]; index: string[]; dropped: number | undefined; indexDropped: number }> {
  const load = await loadChunks(dir, { onProblem: 'skip' });
  const iterate: string[] = [];
  for await (const c of iterateChunks(dir, { onProblem: 'skip' })) iterate.push(...c.ids);
  let indexDropped = -1;
  const index = chunkIndex(dir, { onProblem: 'skip', onSkipped: (_, d) => (indexDropped = d) }).flatMap((c) => c.ids);
  return { load: load.ids, iterate, index, dropped: load.dropped, indexDropped };
}

describe('--on-problem skip drops rows, not chunks', () => {
  it('one bad id in ids.txt drops that row only, in every reader, and pack keeps the rest', async () => {
    const ds = toy(9);
    const dir = path.join(tmp, 'bad-id');
    await writeChunks(ds, dir, { chunkSize: 3 });
    const idsFile = path.join(dir, chunkName(1), 'ids.txt');
    fs.writeFileSync(idsFile, `${ds.ids[3]}\n${ds.ids[4]} \n${ds.ids[5]}\n`); // row 1 of chunk 1: trailing space
    await expect(loadChunks(dir)).rejects.toThrow(`chunk ${chunkName(1)}: ids.txt line 2: id "${ds.ids[4]} " ends with whitespace; fix ids.txt`);
    const want = ds.ids.filter((_, i) => i !== 4);
    const got = await keptBy(dir);
    expect(got).toEqual({ load: want, iterate: want, index: want, dropped: 1, indexDropped: 1 });
    const loaded = await loadChunks(dir, { onProblem: 'skip' });
    // Rows stay with their ids (the matrices are compacted like the ids).
    expect(loaded.en.subarray(4 * D, 5 * D)).toEqual(ds.en.subarray(5 * D, 6 * D));
    const r = await packDral([dir], path.join(tmp, 'bad-id-packed'), { onProblem: 'skip', chunkSize: 100 });
    expect(r).toMatchObject({ rows: 8, dropped: 1 });
    expect(r.skipped).toEqual([expect.objectContaining({ dropped: 1 })]);
    expect((await loadChunks(path.join(tmp, 'bad-id-packed'))).ids).toEqual(want);
  });

  it('an empty id line and an empty speaker line drop their rows only; a dropped id is no duplicate', async () => {
    const ds = toy(6);
    const dir = path.join(tmp, 'empty-lines');
    await writeChunks(ds, dir, { chunkSize: 3 });
    fs.writeFileSync(path.join(dir, chunkName(0), 'ids.txt'), `${ds.ids[0]}\n\n${ds.ids[2]}\n`);
    fs.writeFileSync(path.join(dir, chunkName(1), 'speakers.txt'), `s0\n\ns2\n`);
    const want = [ds.ids[0], ds.ids[2], ds.ids[3], ds.ids[5]];
    expect(await keptBy(dir)).toEqual({ load: want, iterate: want, index: want, dropped: 2, indexDropped: 2 });
  });

  it('a chunk whose files are unusable is still dropped whole, and its rows are counted', async () => {
    const ds = toy(6);
    const dir = path.join(tmp, 'unusable');
    await writeChunks(ds, dir, { chunkSize: 3 });
    fs.rmSync(path.join(dir, chunkName(1), 'es.npy'));
    const d = await loadChunks(dir, { onProblem: 'skip' });
    expect(d.ids).toEqual(ds.ids.slice(0, 3));
    expect(d.dropped).toBe(3);
  });

  it('the CLI says how many pairs were dropped', async () => {
    const ds = toy(9);
    const dir = path.join(tmp, 'cli');
    await writeChunks(ds, dir, { chunkSize: 3 });
    fs.writeFileSync(path.join(dir, chunkName(2), 'ids.txt'), `${ds.ids[6]}\n\t${ds.ids[7]}\n${ds.ids[8]}\n`);
    const r = await run(['pack', dir, '--out', path.join(tmp, 'cli-packed'), '--on-problem', 'skip', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/--on-problem skip dropped 1 pair\(s\) for 1 problem\(s\)/);
    expect(JSON.parse(r.stdout)).toMatchObject({ rows: 8, skipped: 1, dropped: 1 });
  });
});

describe('DRAL: a pair listed in both filelists', () => {
  it('is dropped under skip (never packed as training data) and counted', async () => {
    const dir = path.join(tmp, 'dral-both');
    await generate({ out: dir, pairs: 20, testPairs: 5, seed: 4, speakers: 2, format: 'dral' });
    const testList = fs.readFileSync(path.join(dir, 'test_filelist_en.txt'), 'utf8').trim().split('\n');
    const twice = testList[0]!.trim();
    fs.appendFileSync(path.join(dir, 'train_filelist_en.txt'), `${twice}\n`);
    const id = /^EN_(.+)\.wav$/.exec(twice)![1]!;
    await expect(loadDral(dir)).rejects.toThrow(`${id} is listed in both`);
    const d = await loadDral(dir, { onProblem: 'skip' });
    expect(d.ids).not.toContain(id);
    expect(d.n).toBe(19);
    expect(d.dropped).toBe(1);
    const out = path.join(tmp, 'dral-both-packed');
    const r = await packDral([dir], out, { onProblem: 'skip' });
    expect(r).toMatchObject({ rows: 19, testRows: 4, dropped: 1 });
    const packed = await loadChunks(out);
    expect(packed.ids).not.toContain(id);
    expect(packed.official!.train).not.toContain(id);
  });
});

describe('chunk names sort in numeric order past 99,999 chunks', () => {
  it('chunkName pads to the width the count needs', () => {
    expect(chunkName(7)).toBe('chunk-00007');
    expect(chunkName(99_999, 100_001)).toBe('chunk-099999');
    expect(chunkName(100_000, 100_001)).toBe('chunk-100000');
    expect([chunkName(100_000, 100_001), chunkName(99_999, 100_001)].sort()).toEqual(['chunk-099999', 'chunk-100000']);
  });
});
