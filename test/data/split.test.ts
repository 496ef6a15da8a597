import { describe, expect, it } from 'vitest';
import type { Dataset } from '../../src/data/dataset.js';
import { officialSplit, randomSplit, speakerDisjointSplit, splitSpeakers } from '../../src/data/split.js';

function fakeDataset(speakerSizes: number[]): Dataset {
  const speakers: string[] = [];
  speakerSizes.forEach((size, s) => {
    for (let i = 0; i < size; i++) speakers.push(`spk${String(s).padStart(2, '0')}`);
  });
  const n = speakers.length;
  return { ids: speakers.map((s, i) => `${s}_${i}`), speakers, en: new Float32Array(n * 4), es: new Float32Array(n * 4), n };
}

const sizes = Array.from({ length: 40 }, (_, s) => 5 + ((s * 7) % 23));
const ds = fakeDataset(sizes);

function expectPartition(split: { train: Int32Array; test: Int32Array }, n: number): void {
  const all = [...split.train, ...split.test].sort((a, b) => a - b);
  expect(all).toEqual(Array.from({ length: n }, (_, i) => i));
  for (const part of [split.train, split.test]) for (let i = 1; i < part.length; i++) expect(part[i]!).toBeGreaterThan(part[i - 1]!);
}

describe('randomSplit', () => {
  it('is a seeded partition with round(n * f) test rows', () => {
    const a = randomSplit(ds.n, 7, 0.2);
    expectPartition(a, ds.n);
    expect(a.test.length).toBe(Math.round(ds.n * 0.2));
    expect(randomSplit(ds, 7, 0.2)).toEqual(a);
    expect(randomSplit(ds.n, 8, 0.2).test).not.toEqual(a.test);
    expect(randomSplit(2894, 1, 578 / 2894).test.length).toBe(578);
  });

  it('keeps at least one row on each side and validates its arguments', () => {
    expect(randomSplit(2, 0, 0.01).test.length).toBe(1);
    expect(randomSplit(2, 0, 0.99).train.length).toBe(1);
    expect(() => randomSplit(10, 0, 1)).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG' }));
    expect(() => randomSplit(10, 0, 0)).toThrow(/strictly between 0 and 1/);
    expect(() => randomSplit(1, 0)).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG' }));
    expect(() => randomSplit(10, -1)).toThrow(/seed/);
  });
});

describe('speakerDisjointSplit', () => {
  it('puts every row of a test speaker in test, so no test speaker is seen in training', () => {
    for (const seed of [0, 1, 2, 3]) {
      const split = speakerDisjointSplit(ds, seed, { testFraction: 0.2 });
      expectPartition(split, ds.n);
      const { trainSpeakers, testSpeakers, unseen } = splitSpeakers(ds, split);
      expect(trainSpeakers.filter((s) => testSpeakers.includes(s))).toEqual([]);
      expect(unseen).toEqual(testSpeakers);
      expect(split.test.length).toBeGreaterThanOrEqual(0.2 * ds.n);
      expect(split.test.length).toBeLessThan(0.2 * ds.n + Math.max(...sizes));
    }
  });

  it('is deterministic per seed and differs across seeds', () => {
    expect(speakerDisjointSplit(ds, 5)).toEqual(speakerDisjointSplit(ds, 5));
    expect(speakerDisjointSplit(ds, 5).test).not.toEqual(speakerDisjointSplit(ds, 6).test);
  });

  it('takes a speaker count or an explicit list', () => {
    const five = speakerDisjointSplit(ds, 1, { testSpeakerCount: 5 });
    expect(splitSpeakers(ds, five).testSpeakers.length).toBe(5);
    const listed = speakerDisjointSplit(ds, 1, { testSpeakers: ['spk03', 'spk10'] });
    expect(splitSpeakers(ds, listed).testSpeakers).toEqual(['spk03', 'spk10']);
    expect(listed.test.length).toBe(sizes[3]! + sizes[10]!);
    expect(() => speakerDisjointSplit(ds, 1, { testSpeakers: ['nobody'] })).toThrow(/Unknown test speaker\(s\): nobody/);
    expect(() => speakerDisjointSplit(ds, 1, { testSpeakerCount: 40 })).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG' }));
  });

  it('needs speakers', () => {
    expect(() => speakerDisjointSplit({ ...ds, speakers: null }, 1)).toThrow(expect.objectContaining({ code: 'RAPM_DATA' }));
    expect(() => speakerDisjointSplit(fakeDataset([10]), 1)).toThrow(/at least 2 speakers/);
  });
});

describe('officialSplit', () => {
  it('maps the official ids to rows and leaves unlisted rows out', () => {
    const small = fakeDataset([2, 2]);
    const split = officialSplit({ ...small, official: { train: [small.ids[3]!, small.ids[0]!], test: [small.ids[1]!] } });
    expect(Array.from(split.train)).toEqual([0, 3]);
    expect(Array.from(split.test)).toEqual([1]);
    expect(() => officialSplit(small)).toThrow(expect.objectContaining({ code: 'RAPM_DATA' }));
    expect(() => officialSplit({ ...small, official: { train: ['ghost'], test: [] } })).toThrow(/ghost/);
  });
});

describe('randomSplit: one path with and without test-folder rows', () => {
  // Outputs pinned from the code before the forced-rows branch was folded in (exact rows).
  const mk = (n: number, only: number[]): Dataset => ({ ids: Array.from({ length: n }, (_, i) => `s_${i}`), speakers: null, en: new Float32Array(n), es: new Float32Array(n), n, testOnly: only.map((i) => `s_${i}`) });
  const rows = (s: { train: Int32Array; test: Int32Array }) => ({ train: [...s.train], test: [...s.test] });
  it('gives the same rows as before', () => {
    expect(rows(randomSplit(12, 5, 0.25))).toEqual({ train: [0, 1, 2, 5, 7, 8, 9, 10, 11], test: [3, 4, 6] });
    expect(rows(randomSplit(mk(12, []), 5, 0.25))).toEqual({ train: [0, 1, 2, 5, 7, 8, 9, 10, 11], test: [3, 4, 6] });
    expect(rows(randomSplit(mk(12, [1, 4, 9]), 5, 0.25))).toEqual({ train: [3, 5, 6, 7, 8, 10, 11], test: [0, 1, 2, 4, 9] });
    expect(rows(randomSplit(mk(4, [0, 1, 3]), 9))).toEqual({ train: [2], test: [0, 1, 3] });
    expect(rows(randomSplit(mk(1, []), 2))).toEqual({ train: [0], test: [] });
    expect(() => randomSplit(mk(3, [0, 1, 2]), 1)).toThrow(/Every one of the 3 rows is in a test folder/);
  });
});
