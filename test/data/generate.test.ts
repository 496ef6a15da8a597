import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import yargs from 'yargs';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { generateCommand } from '../../src/cli/commands/generate.js';
import { loadChunks } from '../../src/data/chunks.js';
import { loadDral } from '../../src/data/dataset.js';
import {
  DEFAULT_DATASET,
  DEFAULT_MODEL,
  ensureDefaultData,
  generate,
  generateDataset,
  readManifest,
  resolveModel,
} from '../../src/data/generate.js';
import { hashChunks, hashDataset } from '../../src/data/hash.js';
import { FEATURE_DIM as D, SPANISH_WINNERS } from '../../src/data/indices.js';
import { writeNpySync } from '../../src/data/npy.js';
import { officialSplit, splitSpeakers } from '../../src/data/split.js';

let root: string;
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-gen-'));
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());

describe('generateDataset', () => {
  it('is deterministic per seed', () => {
    const a = generateDataset({ pairs: 300, seed: 5 });
    const b = generateDataset({ pairs: 300, seed: 5 });
    expect(hashDataset(a)).toBe(hashDataset(b));
    expect(a.official).toEqual(b.official);
    expect(hashDataset(generateDataset({ pairs: 300, seed: 6 }))).not.toBe(hashDataset(a));
  });

  it('has the published split shape, sorted ids, speakers from the ids and ~70 speakers', () => {
    const ds = generateDataset({ ...DEFAULT_DATASET });
    expect(ds.n).toBe(2894);
    expect(ds.official!.train.length).toBe(2316);
    expect(ds.official!.test.length).toBe(578);
    expect([...ds.ids].sort()).toEqual(ds.ids);
    expect(ds.ids.every((id, i) => id.startsWith(`${ds.speakers![i]}_`))).toBe(true);
    const speakers = new Set(ds.speakers);
    expect(speakers.size).toBeGreaterThanOrEqual(60);
    expect(speakers.size).toBeLessThanOrEqual(70);
    // Test speakers are all seen in training by default.
    expect(splitSpeakers(ds, officialSplit(ds)).unseen).toEqual([]);
    // A large common offset: unrelated EN vectors still have high cosine.
    const cos = (i: number, j: number): number => {
      let ab = 0;
      let aa = 0;
      let bb = 0;
      for (let k = 0; k < D; k++) {
        const x = ds.en[i * D + k]!;
        const y = ds.en[j * D + k]!;
        ab += x * y;
        aa += x * x;
        bb += y * y;
      }
      return ab / Math.sqrt(aa * bb);
    };
    // Unrelated utterances (different speakers) share the offset; same-speaker pairs share timbre too.
    let other = 0;
    let same = 0;
    let nOther = 0;
    let nSame = 0;
    for (let i = 0; i < 400; i += 7) {
      for (let j = i + 1; j < 400; j += 5) {
        if (ds.speakers![i] === ds.speakers![j]) {
          same += cos(i, j);
          nSame++;
        } else {
          other += cos(i, j);
          nOther++;
        }
      }
    }
    expect(other / nOther).toBeGreaterThan(0.3);
    expect(same / nSame).toBeGreaterThan(other / nOther + 0.2);
    for (const x of ds.en.subarray(0, 10 * D)) expect(Number.isFinite(x)).toBe(true);
  });

  it('puts only unseen speakers in test when asked', () => {
    const ds = generateDataset({ pairs: 500, testPairs: 100, unseenSpeakers: 5, seed: 2 });
    const split = officialSplit(ds);
    expect(split.test.length).toBe(100);
    const s = splitSpeakers(ds, split);
    expect(s.unseen).toEqual(s.testSpeakers);
    expect(s.testSpeakers.every((x) => x.startsWith('u'))).toBe(true);
    expect(s.testSpeakers.length).toBeLessThanOrEqual(5);
  });

  it('adds the synthetic bias ES[:, spanish_winners[k]] += s * EN[:, k] and nothing else', () => {
    const base = generateDataset({ pairs: 50, seed: 3 });
    const biased = generateDataset({ pairs: 50, seed: 3, biasStrength: 0.5 });
    expect(biased.en).toEqual(base.en);
    const target = new Set(SPANISH_WINNERS);
    for (let r = 0; r < 50; r++) {
      for (let j = 0; j < D; j++) {
        const diff = biased.es[r * D + j]! - base.es[r * D + j]!;
        if (!target.has(j)) expect(diff).toBe(0);
      }
      SPANISH_WINNERS.forEach((j, k) => {
        expect(biased.es[r * D + j]!).toBeCloseTo(base.es[r * D + j]! + 0.5 * base.en[r * D + k]!, 5);
      });
    }
  });

  it('validates options and knobs', () => {
    expect(() => generateDataset({ pairs: 1 })).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG' }));
    expect(() => generateDataset({ pairs: 2_000_001 })).toThrow(/pairs/);
    expect(() => generateDataset({ pairs: 10, testPairs: 10 })).toThrow(/testPairs/);
    expect(() => generateDataset({ pairs: 10, testFraction: 1 })).toThrow(/testFraction/);
    expect(() => generateDataset({ pairs: 10, model: { esNoise: -1 } })).toThrow(/model\.esNoise/);
    expect(() => generateDataset({ pairs: 10, model: { esNoise: 1e308 } })).toThrow(/number in \[0, 1000000\] for model\.esNoise/); // made Infinity features
    expect(() => generateDataset({ pairs: 10, biasStrength: 1e300 })).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG', message: expect.stringMatching(/biasStrength/) }));
    expect(() => generateDataset({ pairs: 10, model: { nope: 1 } as never })).toThrow(/Unknown generator model knob 'nope'/);
    expect(() => generateDataset({ pairs: 10, model: { esTimbreIdiosyncratic: 1.5 } })).toThrow(/esTimbreIdiosyncratic/);
    expect(() => generateDataset({ pairs: 10, model: { intentDim: 0 } })).toThrow(/intentDim/);
    expect(resolveModel({ esNoise: 0.1 })).toEqual({ ...DEFAULT_MODEL, esNoise: 0.1 });
    // Knobs change the data.
    const a = generateDataset({ pairs: 20, seed: 1 });
    const b = generateDataset({ pairs: 20, seed: 1, model: { esNoise: 0.1 } });
    expect(b.en).toEqual(a.en);
    expect(b.es).not.toEqual(a.es);
  });
});

describe('generate to disk', () => {
  it('writes the same data as DRAL and as chunks, whatever the chunk size', async () => {
    const opts = { pairs: 240, seed: 9, unseenSpeakers: 2, testPairs: 40 };
    const mem = generateDataset(opts);
    const dral = await generate({ ...opts, out: path.join(root, 'dral'), format: 'dral' });
    const ch1 = await generate({ ...opts, out: path.join(root, 'ch1'), format: 'chunks', chunkSize: 100 });
    const ch2 = await generate({ ...opts, out: path.join(root, 'ch2'), format: 'chunks', chunkSize: 77 });
    expect(dral.hash).toBe(hashDataset(mem));
    expect(ch1.hash).toBe(dral.hash);
    expect(ch2.hash).toBe(dral.hash);
    const fromDral = await loadDral(dral.out);
    expect(hashDataset(fromDral)).toBe(dral.hash);
    expect(fromDral.official).toEqual(mem.official);
    const fromChunks = await loadChunks(ch2.out);
    expect(hashDataset(fromChunks)).toBe(dral.hash);
    expect(fromChunks.official).toEqual(mem.official);
    expect(await hashChunks(ch1.out)).toBe(dral.hash);
    expect(fs.readdirSync(ch2.out).filter((f) => f.startsWith('chunk-')).length).toBe(4);
    expect(readManifest(dral.out)).toMatchObject({ format: 'rapm-generated', layout: 'dral', n: 240, train: 200, test: 40, hash: dral.hash });
    expect(fs.readFileSync(path.join(dral.out, 'test_filelist_en.txt'), 'utf8').split('\n')[0]).toMatch(/^EN_u\d+_\d{7}\.wav$/);
    expect(fs.readdirSync(root).filter((f) => f.includes('.tmp-'))).toEqual([]);
    expect(dral).toMatchObject({ format: 'dral', n: 240, train: 200, test: 40, seenSpeakers: 70, unseenSpeakers: 2 });
  });

  it('refuses a non-empty output unless overwrite, and cleans up after a failure', async () => {
    const out = path.join(root, 'busy');
    fs.mkdirSync(out);
    fs.writeFileSync(path.join(out, 'mine.txt'), 'keep');
    await expect(generate({ out, pairs: 10 })).rejects.toMatchObject({ code: 'RAPM_IO', message: expect.stringMatching(/not empty/) });
    expect(fs.readFileSync(path.join(out, 'mine.txt'), 'utf8')).toBe('keep');
    const progress: number[] = [];
    const res = await generate({ out, pairs: 10, overwrite: true, onProgress: (d) => progress.push(d) });
    expect(res.n).toBe(10);
    expect(progress.at(-1)).toBe(10);
    expect(fs.existsSync(path.join(out, 'mine.txt'))).toBe(false);
    // A failure midway leaves neither a partial folder nor temporaries.
    const failing = path.join(root, 'failing');
    vi.spyOn(fs, 'writeFileSync').mockImplementation(() => {
      throw Object.assign(new Error('disk full'), { code: 'ENOSPC' });
    });
    await expect(generate({ out: failing, pairs: 10 })).rejects.toMatchObject({ code: 'RAPM_IO', message: expect.stringMatching(/ENOSPC/) });
    vi.restoreAllMocks();
    expect(fs.existsSync(failing)).toBe(false);
    expect(fs.readdirSync(root).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });
});

describe('ensureDefaultData', () => {
  it('generates the default dataset once, and never touches user data', async () => {
    const dir = path.join(root, 'default');
    const first = await ensureDefaultData(dir);
    expect(first.generated).toBe(true);
    expect(first.manifest).toMatchObject({ n: 2894, train: 2316, test: 578, layout: 'dral' });
    const ds = await loadDral(dir);
    expect(ds.n).toBe(2894);
    expect(hashDataset(ds)).toBe(first.manifest!.hash);
    const again = await ensureDefaultData(dir);
    expect(again.generated).toBe(false);
    // An outdated generated folder is regenerated.
    const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'generated.json'), 'utf8'));
    manifest.generatorVersion = 0;
    fs.writeFileSync(path.join(dir, 'generated.json'), JSON.stringify(manifest));
    expect((await ensureDefaultData(dir)).generated).toBe(true);
    // A dataset generated here with other options is left alone.
    const custom = path.join(root, 'custom');
    await generate({ out: custom, pairs: 30 });
    expect(await ensureDefaultData(custom)).toMatchObject({ generated: false, manifest: { n: 30 } });
    // The user's own DRAL folder is left alone.
    const user = path.join(root, 'user');
    fs.mkdirSync(user);
    writeNpySync(path.join(user, 'EN_a_1_features.npy'), new Float32Array(D), [D]);
    const res = await ensureDefaultData(user);
    expect(res).toMatchObject({ generated: false, manifest: null });
    expect(fs.readdirSync(user)).toEqual(['EN_a_1_features.npy']);
  });
});

describe('rapm generate', () => {
  it('parses its options and writes chunks', async () => {
    const out = path.join(root, 'cli');
    const write = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    await yargs()
      .command(generateCommand)
      .strict()
      .parseAsync(['generate', out, '--pairs', '120', '--seed', '4', '--format', 'chunks', '--chunk-size', '50', '--unseen-speakers', '3', '--test-pairs', '20', '--bias-strength', '0.25', '--model', '{"esNoise":0.7}', '--quiet']);
    const printed = write.mock.calls.map((c) => String(c[0])).join('');
    write.mockRestore();
    expect(printed).toMatch(/Generated 120 pairs \(100 train \/ 20 test, 70 speakers \+ 3 unseen in test\) into .*cli as packed chunks/);
    const m = readManifest(out)!;
    expect(m.options).toMatchObject({ pairs: 120, seed: 4, unseenSpeakers: 3, testPairs: 20, biasStrength: 0.25, chunkSize: 50 });
    expect(m.model.esNoise).toBe(0.7);
    const same = generateDataset({ pairs: 120, seed: 4, unseenSpeakers: 3, testPairs: 20, biasStrength: 0.25, model: { esNoise: 0.7 } });
    expect(m.hash).toBe(hashDataset(same));
    await expect(
      yargs().command(generateCommand).fail(false).parseAsync(['generate', path.join(root, 'cli2'), '--model', '{bad', '--quiet']),
    ).rejects.toMatchObject({ code: 'RAPM_USAGE', message: expect.stringMatching(/^--model must be a JSON object/) });
  });
});
