/**
 * A training split with no pair (or, with leave-one-out priors, one pair) is refused as what it
 * is, naming the data and where the split comes from, before any -k check: index used to say
 * "-k 1 is more than the 0 neighbours ... pass -k 1 or less", train "-1 neighbours".
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate } from '../../src/data/generate.js';
import { run } from '../helpers/cli.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-empty-train-'));
const empty = path.join(tmp, 'empty');
const one = path.join(tmp, 'one');
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

beforeAll(async () => {
  await generate({ out: empty, pairs: 60, speakers: 3, seed: 2, format: 'dral' });
  fs.cpSync(empty, one, { recursive: true });
  const first = fs.readFileSync(path.join(empty, 'train_filelist_en.txt'), 'utf8').split('\n')[0]!;
  fs.writeFileSync(path.join(empty, 'train_filelist_en.txt'), '');
  fs.writeFileSync(path.join(one, 'train_filelist_en.txt'), `${first}\n`);
}, 60_000);

const EMPTY = /The training split of .*empty is empty: its official split \(train_filelist_en\.txt, or split\.txt in chunks\) puts no pair in training/;

describe('an empty or too small training split', () => {
  for (const cmd of ['index', 'train'] as const) {
    it(`${cmd} refuses an empty training split naming the data and the split source, and suggests no -k`, async () => {
      const out = path.join(tmp, `${cmd}-out`);
      const r = await run([cmd, '--data', empty, '--out', out, '-k', '1', '--quiet']);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(EMPTY);
      expect(r.stderr).not.toMatch(/neighbours|pass -k/);
      expect(fs.existsSync(out)).toBe(false);
    });
  }

  it('the experiments refuse it the same way (subsample used to fail on a 0-column datastore)', async () => {
    const r = await run(['subsample', '--data', empty, '--out', path.join(tmp, 'sub'), '--sizes', '5', '-k', '1', '--quiet']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(EMPTY);
  });

  it('train refuses a one-pair training split (leave-one-out leaves no neighbour) without suggesting a k below 1', async () => {
    const r = await run(['train', '--data', one, '--out', path.join(tmp, 'one-out'), '-k', '1', '--quiet']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/The training split of .*one is too small: 1 training pair, and leave-one-out priors exclude each query's own pair, so no neighbour is left; give at least 2 training pairs/);
    expect(r.stderr).not.toMatch(/-1 neighbours|pass -k/);
  });
});
