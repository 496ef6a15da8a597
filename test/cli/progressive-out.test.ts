/**
 * `rapm progressive --out` inside a data folder is refused before anything is created: --out
 * cin/results used to create cin/results, then refuse it as a broken chunk ("chunk results:
 * ids.txt is missing"), leaving the empty folder to break every later run on cin.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate } from '../../src/data/generate.js';
import { run } from '../helpers/cli.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-prog-out-'));
const chunks = path.join(tmp, 'cin');
const test = path.join(tmp, 'held');
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

beforeAll(async () => {
  await generate({ out: chunks, pairs: 60, speakers: 3, seed: 4, format: 'chunks' });
  await generate({ out: test, pairs: 30, speakers: 3, seed: 9, format: 'dral' });
}, 60_000);

const quick = ['-k', '5', '--epochs', '1', '--train-seeds', '1', '--quiet'];

describe('progressive --out inside a data folder', () => {
  it('--out inside --chunks is refused naming both flags, and nothing is created', async () => {
    const before = fs.readdirSync(chunks).sort();
    const r = await run(['progressive', '--chunks', chunks, '--out', path.join(chunks, 'results'), ...quick]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--out .*cin\/results is inside the folder of --chunks .*cin: the results would be read as part of the data/);
    expect(fs.readdirSync(chunks).sort()).toEqual(before);
    // The chunks still run (nothing was left behind to break them).
    const ok = await run(['progressive', '--chunks', chunks, '--out', path.join(tmp, 'results'), ...quick]);
    expect(ok.code, ok.stderr).toBe(0);
  }, 120_000);

  it('--out equal to --chunks, or inside a --test / --test-unseen folder, is refused the same way', async () => {
    const same = await run(['progressive', '--chunks', chunks, '--out', chunks, ...quick]);
    expect(same.code).toBe(2);
    expect(same.stderr).toMatch(/--out .*cin is the folder of --chunks .*cin:/);
    for (const flag of ['--test', '--test-unseen']) {
      const out = path.join(test, 'runs', 'one');
      const r = await run(['progressive', '--chunks', chunks, flag, test, '--out', out, ...quick]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`--out .*held/runs/one is inside the folder of ${flag} .*held:`));
      expect(fs.existsSync(path.join(test, 'runs'))).toBe(false);
    }
  }, 60_000);
});
