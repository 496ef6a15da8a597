import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDral } from '../../src/data/dataset.js';
import { loadDataset } from '../../src/data/load.js';
import { buildNpyHeader, writeNpySync } from '../../src/data/npy.js';
import { officialSplit } from '../../src/data/split.js';

const D = 1024;
let root: string;
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-dral-'));
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** A feature vector whose first value encodes (lang, row) so rows can be told apart. */
function vec(tag: number, len = D): Float32Array {
  const v = new Float32Array(len);
  for (let j = 0; j < len; j++) v[j] = tag + j / 4096;
  return v;
}

function makeDral(name: string, ids: string[], train: string[] | null, test: string[] | null): string {
  const dir = path.join(root, name);
  fs.mkdirSync(dir);
  ids.forEach((id, i) => {
    writeNpySync(path.join(dir, `EN_${id}_features.npy`), vec(i), [D]);
    writeNpySync(path.join(dir, `ES_${id}_features.npy`), vec(1000 + i), [D]);
  });
  if (train) fs.writeFileSync(path.join(dir, 'train_filelist_en.txt'), train.map((id) => `EN_${id}.wav\n`).join(''));
  if (test) fs.writeFileSync(path.join(dir, 'test_filelist_en.txt'), test.map((id) => `EN_${id}.wav\n`).join(''));
  return dir;
}

describe('loadDral', () => {
  it('loads pairs in id order, speakers from the id, and the filelists as the official split', async () => {
    const ids = ['spkB_002', 'spkA_001', 'spkA_010', 'spkB_001'];
    const dir = makeDral('ok', ids, ['spkA_001', 'spkB_002', 'spkA_010'], ['spkB_001']);
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'ignored');
    const progress: number[] = [];
    const ds = await loadDral(dir, { onProgress: (d) => progress.push(d) });
    expect(ds.ids).toEqual(['spkA_001', 'spkA_010', 'spkB_001', 'spkB_002']);
    expect(ds.speakers).toEqual(['spkA', 'spkA', 'spkB', 'spkB']);
    expect(ds.n).toBe(4);
    expect(ds.en.length).toBe(4 * D);
    // row 0 is spkA_001, written as the 2nd file (tag 1 / 1001)
    expect(ds.en[0]).toBe(1);
    expect(ds.es[0]).toBe(1001);
    expect(ds.en[3 * D + 5]).toBe(Math.fround(0 + 5 / 4096));
    expect(ds.official).toEqual({ train: ['spkA_001', 'spkB_002', 'spkA_010'], test: ['spkB_001'] });
    expect(ds.problems).toEqual([]);
    expect(progress.at(-1)).toBe(4);
    const split = officialSplit(ds);
    expect(Array.from(split.train)).toEqual([0, 1, 3]);
    expect(Array.from(split.test)).toEqual([2]);
    expect((await loadDataset(dir)).ids).toEqual(ds.ids);
  });

  it('takes the speaker from a configurable pattern, or none', async () => {
    const dir = makeDral('pattern', ['conv1-A-7', 'conv1-B-8', 'conv2-A-9'], null, null);
    const ds = await loadDral(dir, { speakerPattern: '^conv\\d+-([AB])' });
    expect(ds.speakers).toEqual(['A', 'B', 'A']);
    expect(ds.official).toBeNull();
    expect((await loadDral(dir, { speakerPattern: /^(conv\d+)/ })).speakers).toEqual(['conv1', 'conv1', 'conv2']);
    expect((await loadDral(dir, { speakerPattern: null })).speakers).toBeNull();
    // The default pattern needs an underscore: every id is reported in one message.
    await expect(loadDral(dir)).rejects.toThrow(/3 data problems[\s\S]*no speaker in id \(3\)[\s\S]*conv1-A-7[\s\S]*conv2-A-9/);
    await expect(loadDral(dir, { speakerPattern: '(' })).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG' });
  });

  it('reports every problem together in one RAPM_DATA message', async () => {
    const ids = ['s1_a', 's1_b', 's1_c', 's2_d', 's2_e', 's2_f'];
    const dir = makeDral('bad', ids, ['s1_a', 's1_b', 's1_b', 's2_d', 's1_ghost', 's2_e'], ['s1_c', 's2_d', 's2_nofile', 's2_f']);
    // missing partners
    fs.rmSync(path.join(dir, 'ES_s1_a_features.npy'));
    writeNpySync(path.join(dir, 'ES_s3_orphan_features.npy'), vec(0), [D]);
    // wrong shapes
    writeNpySync(path.join(dir, 'EN_s2_e_features.npy'), vec(0, 1023), [1023]);
    writeNpySync(path.join(dir, 'ES_s2_f_features.npy'), vec(0, 2 * D), [2, D]);
    // unreadable
    fs.writeFileSync(path.join(dir, 'EN_s1_c_features.npy'), 'not numpy');
    let err: (Error & { code?: string }) | undefined;
    try {
      await loadDral(dir);
    } catch (e) {
      err = e as Error;
    }
    expect(err?.code).toBe('RAPM_DATA');
    const msg = err!.message;
    expect(msg).toContain(dir);
    expect(msg).toMatch(/missing partner \(2\)/);
    expect(msg).toContain('EN_s1_a_features.npy has no ES_s1_a_features.npy');
    expect(msg).toContain('ES_s3_orphan_features.npy has no EN_s3_orphan_features.npy');
    expect(msg).toMatch(/duplicate id \(2\)/);
    expect(msg).toContain('s1_b is listed twice in train_filelist_en.txt (lines 2 and 3)');
    expect(msg).toContain('s2_d is listed in both train_filelist_en.txt and test_filelist_en.txt');
    expect(msg).toMatch(/wrong shape \(2\)/);
    expect(msg).toContain('EN_s2_e_features.npy has shape (1023,), expected (1024,)');
    expect(msg).toContain('ES_s2_f_features.npy has shape (2, 1024): frame-level features (T x 1024)');
    expect(msg).toContain('pass --pool-frames mean');
    expect(msg).toMatch(/unreadable file \(1\)[\s\S]*EN_s1_c_features\.npy: not a \.npy file/);
    expect(msg).toMatch(/bad filelist entry \(no files, or not EN_<uttid>.wav\) \(3\)/);
    expect(msg).toContain('train_filelist_en.txt: EN_s1_ghost.wav has no EN_s1_ghost_features.npy and ES_s1_ghost_features.npy');
    expect(msg).toContain('test_filelist_en.txt: EN_s2_nofile.wav has no EN_s2_nofile_features.npy and ES_s2_nofile_features.npy');
    expect(msg).toContain('train_filelist_en.txt: EN_s1_a.wav has no ES_s1_a_features.npy');
    expect(msg).toMatch(/onProblem: 'skip'/);
    expect(msg).toContain('--on-problem skip');

    // skip: the same problems are returned and the bad pairs dropped. s2_d, in both filelists,
    // is dropped too: kept, it was in neither split, and pack wrote it as a training row.
    const ds = await loadDral(dir, { onProblem: 'skip' });
    expect(ds.ids).toEqual(['s1_b']);
    expect(ds.problems.length).toBe(10);
    expect(ds.official).toEqual({ train: ['s1_b'], test: [] });
    expect(ds.en[0]).toBe(1); // s1_b was row 1 when written
    expect(ds.dropped).toBe(6); // s1_a and s3_orphan (a file missing), s1_c (unreadable), s2_d (both lists), s2_e and s2_f (shapes)
  });

  it('flags a filelist line that is not EN_<uttid>.wav and a missing partner filelist', async () => {
    const dir = makeDral('lines', ['x_1', 'x_2'], ['x_1', 'x_2'], null);
    fs.appendFileSync(path.join(dir, 'train_filelist_en.txt'), 'ES_x_3.wav\n\n# comment\n');
    const err = await loadDral(dir).catch((e: Error) => e);
    expect((err as Error).message).toContain("train_filelist_en.txt line 3: 'ES_x_3.wav' is not of the form EN_<uttid>.wav");
    expect((err as Error).message).toContain('test_filelist_en.txt is missing (train_filelist_en.txt exists)');
    const ds = await loadDral(dir, { filelists: false });
    expect(ds.official).toBeNull();
    expect(ds.n).toBe(2);
  });

  it('accepts float64 files, paths in filelists, and rejects empty or missing folders', async () => {
    const dir = path.join(root, 'f64');
    fs.mkdirSync(dir);
    writeNpySync(path.join(dir, 'EN_a_1_features.npy'), Float64Array.from(vec(1)), [D]);
    writeNpySync(path.join(dir, 'ES_a_1_features.npy'), Float64Array.from(vec(2)), [D]);
    fs.writeFileSync(path.join(dir, 'train_filelist_en.txt'), 'wavs/en/EN_a_1.wav\r\n');
    fs.writeFileSync(path.join(dir, 'test_filelist_en.txt'), '');
    const ds = await loadDral(dir);
    expect(ds.en[0]).toBe(1);
    expect(ds.official!.train).toEqual(['a_1']);
    const empty = path.join(root, 'empty');
    fs.mkdirSync(empty);
    await expect(loadDral(empty)).rejects.toMatchObject({ code: 'RAPM_DATA', message: expect.stringMatching(/holds no EN_<uttid>/) });
    await expect(loadDral(path.join(root, 'missing'))).rejects.toMatchObject({ code: 'RAPM_IO' });
    await expect(loadDral(dir, { onProblem: 'ignore' as 'skip' })).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG' });
  });

  it('accepts float16 feature files (widened exactly), with a BOM on the filelist', async () => {
    const dir = path.join(root, 'f16');
    fs.mkdirSync(dir);
    // Halves 0.5 + i/2048 (i < 1024: exact in float16), written as numpy would ('<f2').
    const halves = new Uint16Array(D).map((_, i) => 0x3800 + (i % 512));
    for (const lang of ['EN', 'ES']) {
      fs.writeFileSync(path.join(dir, `${lang}_b_7_features.npy`), Buffer.concat([Buffer.from(buildNpyHeader('<f2', [D])), Buffer.from(halves.buffer)]));
    }
    fs.writeFileSync(path.join(dir, 'train_filelist_en.txt'), '\ufeffEN_b_7.wav\n');
    fs.writeFileSync(path.join(dir, 'test_filelist_en.txt'), '');
    const ds = await loadDral(dir);
    expect(ds.ids).toEqual(['b_7']);
    expect(Array.from(ds.en.subarray(0, 3))).toEqual([0.5, 0.5 + 1 / 2048, 0.5 + 2 / 2048]);
    expect(ds.es[511]).toBe(0.5 + 511 / 2048);
    expect(ds.official!.train).toEqual(['b_7']);
  });
});
