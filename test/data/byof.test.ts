// Bring your own features: the layouts read in place, test folders, the leakage check, the
// split flags, frame-level arrays, symlinked and numpy-written chunks, and NaN reports.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chunkName, iterateChunks, listChunks, loadChunks, writeChunks } from '../../src/data/chunks.js';
import { loadDral, subsetDataset, type Dataset } from '../../src/data/dataset.js';
import { generate, generateDataset } from '../../src/data/generate.js';
import { loadDataSource, loadDataset, resolveDataLayout } from '../../src/data/load.js';
import { writeNpySync } from '../../src/data/npy.js';
import { chooseSplit, officialSplit } from '../../src/data/split.js';
import { openSources, scanSources } from '../../src/experiments/progressive-sources.js';

const D = 1024;
let tmp: string;
let ds: Dataset; // 120 generated pairs, 8 speakers, official split
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-byof-'));
  ds = generateDataset({ pairs: 120, testPairs: 24, seed: 3, speakers: 8 });
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Write rows of ds as numpy would: en.npy, es.npy, ids.txt (+ speakers.txt), nothing else. */
function numpyChunk(dir: string, rows: number[], speakers = true): void {
  const sub = subsetDataset(ds, rows);
  fs.mkdirSync(dir, { recursive: true });
  writeNpySync(path.join(dir, 'en.npy'), sub.en, [sub.n, D]);
  writeNpySync(path.join(dir, 'es.npy'), sub.es, [sub.n, D]);
  fs.writeFileSync(path.join(dir, 'ids.txt'), sub.ids.join('\n') + '\n');
  if (speakers) fs.writeFileSync(path.join(dir, 'speakers.txt'), sub.speakers!.join('\n') + '\n');
}

const range = (a: number, b: number): number[] => Array.from({ length: b - a }, (_, i) => a + i);

describe('layouts read in place', () => {
  it('the R-APM reference layout: features/ with filelists beside it, or in their own folder', async () => {
    const flat = path.join(tmp, 'flat');
    await generate({ out: flat, pairs: 40, testPairs: 8, seed: 2, speakers: 4, format: 'dral' });
    const ref = path.join(tmp, 'release');
    fs.mkdirSync(path.join(ref, 'features'), { recursive: true });
    for (const f of fs.readdirSync(flat)) {
      if (f.endsWith('.npy')) fs.copyFileSync(path.join(flat, f), path.join(ref, 'features', f));
      else if (f.endsWith('_filelist_en.txt')) fs.copyFileSync(path.join(flat, f), path.join(ref, f));
    }
    const want = await loadDral(flat);
    expect(resolveDataLayout(ref)).toEqual({ kind: 'dral', features: path.join(ref, 'features'), filelists: ref });
    const viaData = await loadDataset(ref);
    expect(viaData.ids).toEqual(want.ids);
    expect(viaData.official).toEqual(want.official);
    expect(viaData.en).toEqual(want.en);
    // --features DIR --filelists DIR (filelists in a folder of their own).
    const lists = path.join(tmp, 'lists');
    fs.mkdirSync(lists);
    for (const f of ['train_filelist_en.txt', 'test_filelist_en.txt']) fs.renameSync(path.join(ref, f), path.join(lists, f));
    const viaFlags = await loadDataSource({ features: path.join(ref, 'features'), filelists: lists });
    expect(viaFlags.official).toEqual(want.official);
    // Without filelists the features still load, with no official split; the split error names flags.
    const bare = await loadDataSource({ features: path.join(ref, 'features') });
    expect(bare.official).toBeNull();
    expect(() => officialSplit(bare)).toThrow(/--split speaker.*--split random.*--filelists DIR/);
    expect(() => officialSplit(bare)).not.toThrow(/^use randomSplit/);
    await expect(loadDataSource({ features: path.join(ref, 'features'), filelists: tmp })).rejects.toThrow(/holds neither train_filelist_en\.txt nor test_filelist_en\.txt \(--filelists\)/);
  });

  it('chunk folders as numpy writes them (no meta.json), and one chunk folder on its own', async () => {
    const dir = path.join(tmp, 'np-chunks');
    numpyChunk(path.join(dir, 'a'), range(0, 50));
    numpyChunk(path.join(dir, 'b'), range(50, 120));
    expect(resolveDataLayout(dir)).toEqual({ kind: 'chunks', dir });
    const got = await loadDataset(dir);
    expect(got.ids).toEqual(ds.ids);
    expect(got.speakers).toEqual(ds.speakers);
    expect(got.en).toEqual(ds.en);
    const one = await loadDataset(path.join(dir, 'b'));
    expect(one.ids).toEqual(ds.ids.slice(50));
  });

  it('--split speaker|random makes a seeded split when there are no filelists; an explicit choice is never ignored', () => {
    const s1 = chooseSplit(ds, 'speaker', 5, 0.25);
    const s2 = chooseSplit(ds, 'speaker', 5, 0.25);
    expect(s1).toEqual(s2);
    const trainSpk = new Set(Array.from(s1.train, (r) => ds.speakers![r]));
    for (const r of s1.test) expect(trainSpk.has(ds.speakers![r]!)).toBe(false);
    const r1 = chooseSplit(ds, 'random', 5, 0.25);
    expect(r1.test.length).toBe(30);
    expect(chooseSplit(ds, 'random', 6, 0.25).test).not.toEqual(r1.test);
    expect(chooseSplit(ds, undefined, 5)).toEqual(officialSplit(ds));
  });
});

describe('frame-level arrays', () => {
  it('are refused with a message that says to pool them, and mean-pooled on request', async () => {
    const dir = path.join(tmp, 'frames');
    fs.mkdirSync(dir);
    const frames = new Float32Array(3 * D).map((_, i) => (i % D) + Math.floor(i / D)); // rows r: j + r
    writeNpySync(path.join(dir, 'EN_s1_a_features.npy'), frames, [3, D]);
    writeNpySync(path.join(dir, 'ES_s1_a_features.npy'), new Float32Array(D).fill(2), [1, D]);
    await expect(loadDral(dir)).rejects.toThrow(/EN_s1_a_features\.npy has shape \(3, 1024\): frame-level features \(T x 1024\)[\s\S]*pass --pool-frames mean/);
    const pooled = await loadDral(dir, { poolFrames: 'mean' });
    expect(pooled.en[0]).toBe(1); // mean of 0, 1, 2
    expect(pooled.en[D - 1]).toBe(D - 1 + 1);
    expect(pooled.es[5]).toBe(2); // (1, 1024) is one vector
    await expect(loadDral(dir, { poolFrames: 'max' as never })).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG' });
  });
});

describe('chunk folders', () => {
  it('symbolic links to chunk folders are followed; a dangling link is refused, never skipped', async () => {
    const real = path.join(tmp, 'real');
    numpyChunk(path.join(real, 'x'), range(60, 90));
    const dir = path.join(tmp, 'linked');
    numpyChunk(path.join(dir, 'a'), range(0, 30));
    fs.symlinkSync(path.join(real, 'x'), path.join(dir, 'b'));
    expect(listChunks(dir)).toEqual(['a', 'b']);
    const got = await loadChunks(dir);
    expect(got.ids).toEqual([...ds.ids.slice(0, 30), ...ds.ids.slice(60, 90)]);
    const names: string[] = [];
    for await (const c of iterateChunks(dir)) names.push(c.name);
    expect(names).toEqual(['a', 'b']);
    // The progressive loop trains on the linked chunk too (it used to drop that step in silence).
    numpyChunk(path.join(tmp, 'linked-test'), range(100, 110));
    const scan = await scanSources(await openSources({ chunks: dir, tests: [path.join(tmp, 'linked-test')] }));
    expect(scan.trainChunks).toEqual(['a', 'b']);
    fs.symlinkSync(path.join(real, 'gone'), path.join(dir, 'c'));
    expect(() => listChunks(dir)).toThrow(/Chunk folder .*linked\/c is a symbolic link to .*gone, which cannot be opened \(ENOENT\)/);
    await expect(loadChunks(dir)).rejects.toMatchObject({ code: 'RAPM_IO' });
  });

  it('a NaN is reported with its chunk, file, row and id', async () => {
    const dir = path.join(tmp, 'nan');
    await writeChunks(subsetDataset(ds, range(0, 40)), dir, { chunkSize: 20 });
    const sub = subsetDataset(ds, range(20, 40));
    sub.es[7 * D + 11] = Number.NaN;
    writeNpySync(path.join(dir, chunkName(1), 'es.npy'), sub.es, [20, D]);
    const err = await loadChunks(dir).then(() => null, (e: Error & { code?: string }) => e);
    expect(err?.code).toBe('RAPM_DATA');
    expect(err!.message).toContain(`chunk ${chunkName(1)}: ${path.join(dir, chunkName(1), 'es.npy')} row 7, column 11 is NaN (id ${ds.ids[27]})`);
    await expect((async () => {
      for await (const _ of iterateChunks(dir));
    })()).rejects.toThrow(/chunk chunk-00001: .*es\.npy row 7, column 11 is NaN/);
    // DRAL files: the file is named too.
    const dral = path.join(tmp, 'nan-dral');
    fs.mkdirSync(dral);
    writeNpySync(path.join(dral, 'EN_s1_a_features.npy'), new Float32Array(D).fill(1), [D]);
    writeNpySync(path.join(dral, 'ES_s1_a_features.npy'), new Float32Array(D).fill(Number.POSITIVE_INFINITY), [D]);
    await expect(loadDral(dral)).rejects.toThrow(/NaN, infinite or out-of-range values \(1\):[\s\S]*ES_s1_a_features\.npy: column 0 is Infinity/);
  });

  it("an ES value beyond the datastore's range is reported with its file, not as a datastore row", async () => {
    // The native store refuses values beyond kMaxAbsValue (1e30) when rows are added; before,
    // that error named "values row 0" of the datastore and no file.
    const limit = Math.fround(1e30);
    const over = Math.fround(3e30);
    const dir = path.join(tmp, 'range');
    await writeChunks(subsetDataset(ds, range(0, 40)), dir, { chunkSize: 20 });
    const sub = subsetDataset(ds, range(20, 40));
    sub.es[5 * D + 3] = -over;
    writeNpySync(path.join(dir, chunkName(1), 'es.npy'), sub.es, [20, D]);
    await expect(loadChunks(dir)).rejects.toThrow(`chunk ${chunkName(1)}: ${path.join(dir, chunkName(1), 'es.npy')} row 5, column 3 is ${-over}, beyond +-1e+30`);
    // At the limit itself: loaded, and the datastore takes it.
    sub.es[5 * D + 3] = -limit;
    writeNpySync(path.join(dir, chunkName(1), 'es.npy'), sub.es, [20, D]);
    const got = await loadChunks(dir);
    expect(got.es[25 * D + 3]).toBe(-limit);
    // DRAL: the ES file is named. EN (keys) values that large are refused too, as a squared L2
    // norm beyond float32 (the predictor's limit; key-norm.test.ts).
    const dral = path.join(tmp, 'range-dral');
    fs.mkdirSync(dral);
    writeNpySync(path.join(dral, 'EN_s1_a_features.npy'), new Float32Array(D).fill(over), [D]);
    writeNpySync(path.join(dral, 'ES_s1_a_features.npy'), new Float32Array(D).fill(0.5), [D]);
    await expect(loadDral(dral)).rejects.toThrow('(id s1_a): squared L2 norm overflows float32');
    writeNpySync(path.join(dral, 'EN_s1_a_features.npy'), new Float32Array(D).fill(0.5), [D]);
    expect((await loadDral(dral)).en[0]).toBe(0.5);
    const es = new Float32Array(D).fill(0.5);
    es[9] = over;
    writeNpySync(path.join(dral, 'ES_s1_a_features.npy'), es, [D]);
    await expect(loadDral(dral)).rejects.toThrow(`ES_s1_a_features.npy: column 9 is ${over}, beyond +-1e+30`);
  });

  it('a folder named like a test set is test data: all rows without split.txt, refused if split.txt says train', async () => {
    const dir = path.join(tmp, 'named');
    numpyChunk(path.join(dir, '001'), range(0, 60));
    numpyChunk(path.join(dir, 'test-unseen'), range(60, 80));
    const got = await loadChunks(dir);
    expect(got.official).toBeNull(); // 001 has no split.txt
    const chunks = [];
    for await (const c of iterateChunks(dir)) chunks.push(c);
    expect(chunks[1]!.name).toBe('test-unseen');
    expect(chunks[1]!.split).toEqual(new Array(20).fill('test'));
    fs.writeFileSync(path.join(dir, 'test-unseen', 'split.txt'), ['train', ...new Array(19).fill('test')].join('\n') + '\n');
    await expect(loadChunks(dir)).rejects.toThrow(/chunk test-unseen: is named like a test set .* marks 1 row\(s\) 'train'/);
  });
});

describe('progressive sources', () => {
  it('initial set, chunks and test folders: in the stated order, test folders never train, seen/unseen as named', async () => {
    const root = path.join(tmp, 'prog');
    const init = path.join(root, 'init');
    numpyChunk(init, range(0, 40));
    numpyChunk(path.join(root, 'chunks', '001'), range(40, 70));
    numpyChunk(path.join(root, 'chunks', '002'), range(70, 100));
    numpyChunk(path.join(root, 'held-out'), range(100, 120));
    const src = await openSources({ initial: init, chunks: path.join(root, 'chunks'), testUnseen: [path.join(root, 'held-out')] });
    const order: string[] = [];
    for await (const c of src.iterate()) order.push(`${c.name}:${c.split ? c.split.filter((s) => s === 'train').length : c.n}`);
    expect(order).toEqual(['initial:init:40', '001:30', '002:30', 'test-unseen:held-out:0']);
    const scan = await scanSources(src);
    expect(scan.tests.map((t) => [t.name, t.n])).toEqual([['unseen', 20]]);
    expect(scan.trainChunks).toEqual(['initial:init', '001', '002']);
    // Without any test rows the error names the flags.
    await expect(scanSources(await openSources({ initial: init, chunks: path.join(root, 'chunks') }))).rejects.toThrow(/No test set .*--test DIR .*--split speaker\|random/);
    // --split random holds out part of the initial set, seeded.
    const s = await scanSources(await openSources({ initial: init, chunks: path.join(root, 'chunks'), split: 'random', seed: 4, testFraction: 0.25 }));
    expect(s.tests.reduce((a, t) => a + t.n, 0)).toBe(10);
  });

  it('the leakage check refuses an id shared by the initial set, the chunks and the test sets, or reports it with allowOverlap', async () => {
    const root = path.join(tmp, 'leak');
    const init = path.join(root, 'init');
    numpyChunk(init, range(0, 40));
    numpyChunk(path.join(root, 'chunks', '001'), range(35, 70)); // rows 35..39 again
    numpyChunk(path.join(root, 'test'), [...range(100, 118), 3]); // row 3 again
    const opts = { initial: init, chunks: path.join(root, 'chunks'), tests: [path.join(root, 'test')] };
    const err = await openSources(opts).then(() => null, (e: Error & { code?: string }) => e);
    expect(err?.code).toBe('RAPM_DATA');
    expect(err!.message).toMatch(/^6 utterance id\(s\) appear in more than one place/);
    expect(err!.message).toContain(`${ds.ids[35]}: initial set (train) and chunk 001 (train)`);
    expect(err!.message).toContain(`${ds.ids[3]}: initial set (train) and test set ${path.join(root, 'test')}`);
    expect(err!.message).toContain('--allow-overlap');
    const lines: string[] = [];
    const src = await openSources({ ...opts, allowOverlap: true, warn: (l) => lines.push(l) });
    expect(src.overlaps.map((o) => o.id).sort()).toEqual([3, 35, 36, 37, 38, 39].map((r) => ds.ids[r]).sort());
    expect(lines.join('\n')).toMatch(/^6 utterance id\(s\) appear in more than one place[\s\S]*--allow-overlap: continuing/);
  });
});
