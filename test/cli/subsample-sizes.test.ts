/**
 * rapm subsample: --sizes against -k up front (the library's "Expected k <= 4 but received k = 5:
 * the datastore holds 5 rows" named neither flag), repeated sizes refused as grid refuses a
 * repeated --ks, and the interval's runs named as data samples x training seeds.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate } from '../../src/data/generate.js';
import { run } from '../helpers/cli.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-subsample-'));
const data = path.join(tmp, 'data');
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

beforeAll(async () => {
  await generate({ out: data, pairs: 60, speakers: 3, seed: 6, format: 'chunks' });
}, 60_000);

const quick = ['--epochs', '2', '--train-seeds', '1', '--resamples', '1000', '--quiet'];

describe('subsample --sizes', () => {
  it('refuses a smallest size that cannot give -k neighbours after leave-one-out, naming --sizes and -k, before reading data', async () => {
    const out = path.join(tmp, 'k');
    const r = await run(['subsample', '--data', data, '--out', out, '--sizes', '5,20', '-k', '5', ...quick]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--sizes 5,20 and -k 5: a sample of 5 pairs gives at most 4 neighbours \(leave-one-out priors exclude the query's own pair\); give sizes of at least 6 or -k 4 or less/);
    expect(r.stderr).not.toMatch(/Expected k <=/);
    expect(fs.existsSync(out)).toBe(false);
    // Without leave-one-out a sample of 5 gives 5 neighbours.
    const leaky = await run(['subsample', '--data', data, '--out', path.join(tmp, 'leaky'), '--sizes', '5', '-k', '5', '--leaky-priors', '--seeds', '1', ...quick]);
    expect(leaky.code, leaky.stderr).toBe(0);
  }, 120_000);

  it('refuses repeated sizes', async () => {
    const r = await run(['subsample', '--data', data, '--out', path.join(tmp, 'dup'), '--sizes', '5,5', '-k', '3', ...quick]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--sizes 5,5 repeats a value \(each would be run and reported twice\)/);
  });

  it('names the runs of the interval as data samples x training seeds', async () => {
    const r = await run(['subsample', '--data', data, '--out', path.join(tmp, 'runs'), '--sizes', '10,20', '--seeds', '2', '-k', '3', ...quick]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Fusion gain at 20 pairs .*, 2 data samples x 1 training seed, .*the 2 runs' own gains from/);
    expect(r.stdout).not.toMatch(/2 training seeds/);
  }, 120_000);
});
