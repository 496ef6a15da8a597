/**
 * The progressive run's initial-set split: the library's testFraction default was 0.2 while the
 * CLI's (the setting's) is 578/2894, so the same run split differently from the library and the
 * CLI; a testFraction without a split was ignored; and the record did not say how the initial
 * set was split. Now one default, a refusal, and record.config.dataSelection.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate } from '../../src/data/generate.js';
import { loadDataSource } from '../../src/data/load.js';
import { chooseSplit } from '../../src/data/split.js';
import { nativeMlpBackend } from '../../src/fusion/native-mlp.js';
import { runProgressive } from '../../src/experiments/progressive.js';
import { openSources } from '../../src/experiments/progressive-sources.js';
import { SETTINGS } from '../../src/settings.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-prog-split-'));
const big = path.join(tmp, 'big');
const small = path.join(tmp, 'small');
const chunks = path.join(tmp, 'chunks');
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
beforeAll(async () => {
  await generate({ out: big, pairs: 2894, seed: 2 });
  await generate({ out: small, pairs: 300, seed: 3, speakers: 8 });
  await generate({ out: chunks, pairs: 200, seed: 9, speakers: 8, format: 'chunks', chunkSize: 100 });
});

async function initialTestRows(o: Parameters<typeof openSources>[0]): Promise<number> {
  const src = await openSources(o);
  for await (const c of src.iterate()) return (c.split ?? []).filter((s) => s === 'test').length;
  return -1;
}

describe('progressive: the initial set split', () => {
  it('the library default testFraction is the setting\'s (578/2894), as on the CLI', async () => {
    const d = await loadDataSource({ data: big }, {});
    const want = chooseSplit(d, 'random', 1, SETTINGS.testFraction.default).test.length;
    expect(want).not.toBe(chooseSplit(d, 'random', 1, 0.2).test.length); // the test can tell them apart
    expect(await initialTestRows({ initial: big, split: 'random', seed: 1 })).toBe(want);
  });

  it('refuses testFraction without a split made here', async () => {
    await expect(openSources({ initial: small, testFraction: 0.3 })).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG', message: expect.stringContaining('testFraction') });
  });

  it('records how the initial set was split', async () => {
    const out = path.join(tmp, 'run');
    await runProgressive({ chunks, allowOverlap: true, initial: small, split: 'speaker', seed: 5, testFraction: 0.25, out, maxSteps: 1, epochs: 1, trainSeeds: 1, k: 5, resamples: 1000, backend: nativeMlpBackend });
    const r = JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8')) as { record: { config: Record<string, unknown> } };
    expect(r.record.config.dataSelection).toMatchObject({ split: 'speaker', testFraction: 0.25, splitSeed: 5, onProblem: 'fail', allowOverlap: true });
  });
});
