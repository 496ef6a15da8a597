// grid's default K list (up to 120) on a small training set: the values above it are left out
// with a warning; K values the user gives above it are still refused, as are repeated values
// (before any data is read).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate } from '../../src/data/generate.js';
import { run } from '../helpers/cli.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-grid-ks-'));
const data = path.join(tmp, 'small');
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
beforeAll(async () => {
  await generate({ out: data, pairs: 60, speakers: 3, seed: 4 });
}, 60_000);

describe('grid --ks on a small training set', () => {
  it('leaves the default K values above the training pairs out, with a warning', async () => {
    const r = await run(['grid', '--data', data, '--out', path.join(tmp, 'g'), '--taus', '0.04', '--config', 'A']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/rapm: warning: the default --ks .*exceed the 48 training pairs of .*; left out/);
  }, 60_000);

  it('refuses a given K above the training pairs, and repeated values before reading data', async () => {
    const big = await run(['grid', '--data', data, '--out', path.join(tmp, 'g2'), '--ks', '5,49']);
    expect(big.code).not.toBe(0);
    expect(big.stderr).toMatch(/--ks 49: more than the 48 training pairs/);
    const rep = await run(['grid', '--data', path.join(tmp, 'missing'), '--out', path.join(tmp, 'g3'), '--ks', '5,5']);
    expect(rep.code).toBe(2);
    expect(rep.stderr).toMatch(/--ks 5,5 repeats a value/);
  }, 60_000);
});
