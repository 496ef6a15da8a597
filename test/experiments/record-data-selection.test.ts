/**
 * The experiments' run record (results.json "record.config") carries the data-selection settings,
 * as rapm.json does: a run on --split speaker is told from one on the official split, with the
 * split's seed and test fraction.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate } from '../../src/data/generate.js';
import { run } from '../helpers/cli.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-record-data-'));
const data = path.join(tmp, 'data');
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
beforeAll(async () => {
  await generate({ out: data, pairs: 300, seed: 6, speakers: 8 });
});

const config = (out: string) => (JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8')) as { record: { config: Record<string, unknown> } }).record.config;

describe('experiment records name how the rows were chosen', () => {
  it('grid: official vs --split speaker --seed 4', async () => {
    const a = path.join(tmp, 'grid-official');
    const b = path.join(tmp, 'grid-split');
    expect((await run(['grid', '--data', data, '--out', a, '--ks', '5', '--taus', '0.04', '--quiet'])).code).toBe(0);
    expect((await run(['grid', '--data', data, '--out', b, '--ks', '5', '--taus', '0.04', '--split', 'speaker', '--seed', '4', '--test-fraction', '0.3', '--quiet'])).code).toBe(0);
    expect(config(a).dataSelection).toMatchObject({ split: null, testFraction: null, splitSeed: null, onProblem: 'fail' });
    expect(config(b).dataSelection).toMatchObject({ split: 'speaker', testFraction: 0.3, splitSeed: 4, onProblem: 'fail' });
  });

  it('gap (a point experiment): --split random and --speaker-pattern are recorded', async () => {
    const out = path.join(tmp, 'gap');
    const r = await run(['gap', '--data', data, '--out', out, '--sizes', '100', '-k', '5', '--epochs', '1', '--train-seeds', '1', '--split', 'random', '--speaker-pattern', '^([^_]+)_', '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    expect(config(out).dataSelection).toMatchObject({ split: 'random', splitSeed: 1, speakerPattern: '^([^_]+)_' });
  });
});
