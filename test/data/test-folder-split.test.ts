import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chunkName, writeChunks } from '../../src/data/chunks.js';
import type { Dataset } from '../../src/data/dataset.js';
import { loadDataset } from '../../src/data/load.js';
import { chooseSplit, randomSplit, speakerDisjointSplit } from '../../src/data/split.js';

const D = 1024;
let root: string;
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-testfolder-'));
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** 60 rows, 6 speakers (rows 10s..10s+9 by default, so the last 20 rows are speakers s4 and s5), no official split. */
function toy(n = 60, speakerOf = (i: number): number => Math.floor(i / 10)): Dataset {
  const en = new Float32Array(n * D);
  const es = new Float32Array(n * D);
  for (let i = 0; i < n * D; i++) {
    en[i] = Math.sin(i * 0.37) + 0.1;
    es[i] = Math.cos(i * 0.11);
  }
  const ids = Array.from({ length: n }, (_, i) => `s${speakerOf(i)}_${String(i).padStart(4, '0')}`);
  return { ids, speakers: ids.map((id) => id.slice(0, 2)), en, es, n, official: null };
}

/** A chunk set of 3 chunks of 20 rows whose last chunk folder is renamed test-unseen (split.txt removed). */
async function withTestFolder(name: string, speakerOf?: (i: number) => number): Promise<{ dir: string; testIds: string[] }> {
  const dir = path.join(root, name);
  const ds = toy(60, speakerOf);
  await writeChunks(ds, dir, { chunkSize: 20 });
  fs.renameSync(path.join(dir, chunkName(2)), path.join(dir, 'test-unseen'));
  for (const c of ['chunk-00000', 'chunk-00001', 'test-unseen']) fs.rmSync(path.join(dir, c, 'split.txt'), { force: true });
  return { dir, testIds: ds.ids.slice(40) };
}

describe('test folders under every split mode (a test folder never gives training data)', () => {
  it('--split random keeps every test-folder row in test and splits only the other rows', async () => {
    const { dir, testIds } = await withTestFolder('random');
    const ds = await loadDataset(dir);
    expect(ds.official).toBeNull();
    for (const seed of [1, 2, 3, 7]) {
      const s = chooseSplit(ds, 'random', seed, 0.2);
      const test = new Set(Array.from(s.test, (r) => ds.ids[r]!));
      const train = Array.from(s.train, (r) => ds.ids[r]!);
      for (const id of testIds) expect(test.has(id)).toBe(true);
      expect(train.filter((id) => testIds.includes(id))).toEqual([]);
      expect(s.train.length + s.test.length).toBe(60);
      // 20% of the 40 other rows are held out besides the 20 test-folder rows.
      expect(s.test.length).toBe(20 + 8);
      expect(randomSplit(ds, seed, 0.2)).toEqual(s);
    }
    expect(ds.testOnly).toEqual(testIds);
  });

  it('--split speaker keeps every test-folder row in test, and their speakers out of training', async () => {
    const { dir, testIds } = await withTestFolder('speaker');
    const ds = await loadDataset(dir);
    const s = chooseSplit(ds, 'speaker', 1, 0.2);
    const test = new Set(Array.from(s.test, (r) => ds.ids[r]!));
    for (const id of testIds) expect(test.has(id)).toBe(true);
    const trainSpeakers = new Set(Array.from(s.train, (r) => ds.speakers![r]!));
    const testSpeakers = new Set(Array.from(s.test, (r) => ds.speakers![r]!));
    for (const sp of testSpeakers) expect(trainSpeakers.has(sp)).toBe(false);
    expect(s.train.length).toBeGreaterThan(0);
    // When the test folder holds every speaker, no speaker-disjoint split can train on anything.
    const mixed = await loadDataset((await withTestFolder('speaker-mixed', (i) => i % 6)).dir);
    expect(() => chooseSplit(mixed, 'speaker', 1)).toThrow(expect.objectContaining({ code: 'RAPM_DATA', message: expect.stringMatching(/Every speaker \(6\) has rows in a test folder/) }));
  });

  it('a dataset that is all test folder is refused under random and speaker splits, naming the rule', async () => {
    const { dir } = await withTestFolder('alltest');
    const ds = await loadDataset(path.join(dir, 'test-unseen'));
    expect(ds.testOnly).toHaveLength(20);
    expect(() => chooseSplit(ds, 'random', 1)).toThrow(expect.objectContaining({ code: 'RAPM_DATA', message: expect.stringMatching(/test folder never gives training data/) }));
    expect(() => speakerDisjointSplit(ds, 1)).toThrow(expect.objectContaining({ code: 'RAPM_DATA' }));
  });

  it('datasets without test folders split exactly as before', () => {
    const ds = toy();
    expect(randomSplit(ds, 5, 0.2)).toEqual(randomSplit(ds.n, 5, 0.2));
    expect(speakerDisjointSplit(ds, 5)).toEqual(speakerDisjointSplit({ ...ds, testOnly: [] }, 5));
  });
});
