/**
 * An EN row that is zero only on the 103 Config B key columns (ENGLISH_WINNERS) cannot be a
 * Config B key. It used to pass the loaders' whole-row check and fail inside the datastore as
 * 'keys row N'; the loaders now report it like a zero-norm row: file, row and id, before any
 * training step (a problem under fail, dropped under skip for DRAL, fatal in chunks like NaN).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chunkName, loadChunks, writeChunks } from '../../src/data/chunks.js';
import { firstBadKeyRow, loadDral } from '../../src/data/dataset.js';
import { ENGLISH_WINNERS } from '../../src/data/indices.js';
import { writeNpySync } from '../../src/data/npy.js';

const D = 1024;
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-configb-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const vec = (seed: number): Float32Array => Float32Array.from({ length: D }, (_, j) => Math.sin(seed + j * 0.1) + 0.2);
/** A row with a normal norm whose Config B columns are all 0. */
function zeroOnB(seed: number): Float32Array {
  const v = vec(seed);
  for (const c of ENGLISH_WINNERS) v[c] = 0;
  return v;
}

describe('EN rows that are zero on the Config B columns only', () => {
  it('firstBadKeyRow names them; a row with one Config B column set is fine', () => {
    const rows = new Float32Array(3 * D);
    rows.set(vec(1), 0);
    rows.set(zeroOnB(2), D);
    rows.set(vec(3), 2 * D);
    expect(firstBadKeyRow(rows, D)).toEqual({ row: 1, reason: expect.stringContaining('zero norm on the 103 Config B key columns (ENGLISH_WINNERS)') });
    rows[D + ENGLISH_WINNERS[50]!] = 1e-20;
    expect(firstBadKeyRow(rows, D)).toBeNull();
  });

  it('DRAL: a data problem naming the file and id; dropped under skip', async () => {
    const dir = path.join(tmp, 'dral');
    fs.mkdirSync(dir);
    ['s1_a', 's1_b', 's2_c'].forEach((id, i) => {
      writeNpySync(path.join(dir, `EN_${id}_features.npy`), id === 's1_b' ? zeroOnB(i) : vec(i), [D]);
      writeNpySync(path.join(dir, `ES_${id}_features.npy`), vec(10 + i), [D]);
    });
    await expect(loadDral(dir)).rejects.toMatchObject({
      code: 'RAPM_DATA',
      message: expect.stringContaining(`${path.join(dir, 'EN_s1_b_features.npy')} (id s1_b): zero norm on the 103 Config B key columns`),
    });
    const ds = await loadDral(dir, { onProblem: 'skip' });
    expect(ds.ids).toEqual(['s1_a', 's2_c']);
    expect(ds.problems.map((p) => p.kind)).toEqual(['bad-norm']);
  });

  it('chunks: fatal, naming chunk, file, row and id', async () => {
    const n = 4;
    const en = new Float32Array(n * D);
    for (let i = 0; i < n; i++) en.set(i === 2 ? zeroOnB(i) : vec(i), i * D);
    const dir = path.join(tmp, 'chunks');
    await writeChunks({ ids: ['a_1', 'a_2', 'a_3', 'a_4'], speakers: null, en, es: en.slice(), n }, dir, { chunkSize: 2 });
    await expect(loadChunks(dir)).rejects.toMatchObject({
      code: 'RAPM_DATA',
      message: expect.stringMatching(new RegExp(`^chunk ${chunkName(1)}: .*en\\.npy row 0 \\(id a_3\\): zero norm on the 103 Config B key columns`)),
    });
  });
});
