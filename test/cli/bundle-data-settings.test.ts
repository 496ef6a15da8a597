/**
 * rapm.json records the data-selection settings (split, testFraction, the split's seed,
 * speakerPattern, onProblem, poolFrames, filelists): with the dataset they decide which rows
 * train and which test, so its metrics can be reproduced from it alone.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate } from '../../src/data/generate.js';
import { keyIndices } from '../../src/data/indices.js';
import { loadExperimentData } from '../../src/cli/data-args.js';
import { mean, rowCosines } from '../../src/eval/cosine.js';
import { Datastore } from '../../src/retrieval/datastore.js';
import { BUNDLE_FILES } from '../../src/serve/bundle.js';
import { run } from '../helpers/cli.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-bundle-data-'));
const data = path.join(tmp, 'data');
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
beforeAll(async () => {
  await generate({ out: data, pairs: 400, seed: 3, speakers: 12 });
});

type Manifest = { settings: Record<string, unknown>; data: { rows: number }; metrics: { tests: { name: string; n: number; plain: number }[] } | null };
const manifest = (dir: string): Manifest => JSON.parse(fs.readFileSync(path.join(dir, BUNDLE_FILES.manifest), 'utf8')) as Manifest;

describe('rapm.json records how the data was selected', () => {
  it('index: official and --split speaker runs record different, complete data settings', async () => {
    const official = path.join(tmp, 'idx-official');
    const split = path.join(tmp, 'idx-split');
    expect((await run(['index', '--data', data, '--out', official, '-k', '5', '--quiet'])).code).toBe(0);
    expect((await run(['index', '--data', data, '--out', split, '-k', '5', '--split', 'speaker', '--seed', '7', '--test-fraction', '0.3', '--on-problem', 'skip', '--quiet'])).code).toBe(0);
    expect(manifest(official).settings).toMatchObject({ split: null, testFraction: null, splitSeed: null, speakerPattern: null, onProblem: 'fail', poolFrames: null, filelists: null });
    expect(manifest(split).settings).toMatchObject({ split: 'speaker', testFraction: 0.3, splitSeed: 7, speakerPattern: null, onProblem: 'skip' });
    expect(manifest(split).data.rows).not.toBe(manifest(official).data.rows);
  });

  it('train: the recorded settings select the same rows again and reproduce the plain scores', async () => {
    const out = path.join(tmp, 'train-split');
    const r = await run(['train', '--data', data, '--out', out, '-k', '5', '--split', 'random', '--seed', '11', '--test-fraction', '0.25', '--speaker-pattern', '^([^_]+)_', '--epochs', '1', '--train-seeds', '1', '--resamples', '1000', '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    const m = manifest(out);
    const s = m.settings;
    expect(s).toMatchObject({ split: 'random', testFraction: 0.25, splitSeed: 11, seed: 11, speakerPattern: '^([^_]+)_', onProblem: 'fail' });
    // A fresh evaluation from rapm.json alone: the same split, pool and plain retrieval scores.
    const again = await loadExperimentData({
      data,
      features: undefined,
      filelists: (s.filelists as string | null) ?? undefined,
      split: s.split as 'random',
      testFraction: s.testFraction as number,
      seed: s.splitSeed as number,
      onProblem: s.onProblem as 'fail',
      poolFrames: (s.poolFrames as 'mean' | null) ?? undefined,
      speakerPattern: (s.speakerPattern as string | null) ?? undefined,
    }, [s.config as 'A']);
    expect(again.pool.n).toBe(m.data.rows);
    const ds = new Datastore({ keyIndices: keyIndices(s.config as 'A'), valueDim: again.pool.values.length / again.pool.n });
    await ds.add(again.pool.en, again.pool.values, again.pool.ids);
    expect(again.tests.map((t) => [t.name, t.n])).toEqual(m.metrics!.tests.map((t) => [t.name, t.n]));
    for (const [i, t] of again.tests.entries()) {
      const prior = (await ds.search(t.en, { k: s.k as number, tau: s.tau as number, aggregate: s.aggregate as 'softmax' })).prior;
      expect(mean(rowCosines(prior, t.target, ds.dv))).toBeCloseTo(m.metrics!.tests[i]!.plain, 9);
    }
  });
});
