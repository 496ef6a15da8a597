// EN rows that cannot be keys (zero norm, squared L2 norm overflowing float32) are reported by
// the loaders with file, row and id, like NaN, not later as a datastore row number.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chunkName, iterateChunks, loadChunks, writeChunks } from '../../src/data/chunks.js';
import { F32_MAX, checkKeyRows, firstBadKeyRow, loadDral } from '../../src/data/dataset.js';
import { writeNpySync } from '../../src/data/npy.js';

const D = 1024;
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-keynorm-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function vec(seed: number): Float32Array {
  return Float32Array.from({ length: D }, (_, j) => Math.sin(seed + j * 0.1) + 0.2);
}

function dral(name: string, bad: Record<string, Float32Array | Float64Array>): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir);
  ['s1_a', 's1_b', 's2_c'].forEach((id, i) => {
    writeNpySync(path.join(dir, `EN_${id}_features.npy`), vec(i), [D]);
    writeNpySync(path.join(dir, `ES_${id}_features.npy`), vec(10 + i), [D]);
  });
  for (const [id, en] of Object.entries(bad)) {
    writeNpySync(path.join(dir, `EN_${id}_features.npy`), en, [D]);
    writeNpySync(path.join(dir, `ES_${id}_features.npy`), vec(99), [D]);
  }
  return dir;
}

async function rejection(p: Promise<unknown>): Promise<Error & { code?: string }> {
  return p.then(() => {
    throw new Error('expected a rejection');
  }, (e: Error) => e);
}

describe('EN rows that cannot be keys', () => {
  it('DRAL: an all-zero EN vector, and float64 values that round to 0 in float32, are zero-norm problems naming file and id', async () => {
    const dir = dral('zero', { s3_zero: new Float32Array(D), s3_tiny: new Float64Array(D).fill(1e-50) });
    const err = await rejection(loadDral(dir));
    expect(err.code).toBe('RAPM_DATA');
    expect(err.message).toContain('EN vector that cannot be a key (zero norm, or squared L2 norm overflowing float32) (2)');
    expect(err.message).toContain(`${path.join(dir, 'EN_s3_zero_features.npy')} (id s3_zero): zero norm: cannot be normalised`);
    expect(err.message).toContain(`${path.join(dir, 'EN_s3_tiny_features.npy')} (id s3_tiny): zero norm: cannot be normalised`);
    const ds = await loadDral(dir, { onProblem: 'skip' });
    expect(ds.ids).toEqual(['s1_a', 's1_b', 's2_c']);
    expect(ds.problems.map((p) => p.kind)).toEqual(['bad-norm', 'bad-norm']);
  });

  it('DRAL: a squared L2 norm beyond float32 is refused with the limit the predictor uses; just below it loads', async () => {
    const over = vec(5);
    over[7] = 2e19; // 4e38 > 3.4e38
    const under = vec(6).fill(0);
    under[0] = 1.8e19; // 3.24e38 fits (column 0 is a Config B column too: config-b-key.test.ts)
    const dir = dral('overflow', { s3_over: over, s3_under: under });
    const err = await rejection(loadDral(dir));
    expect(err.message).toContain(`${path.join(dir, 'EN_s3_over_features.npy')} (id s3_over): squared L2 norm overflows float32`);
    expect(err.message).not.toContain('s3_under');
    expect((await loadDral(dir, { onProblem: 'skip' })).ids).toContain('s3_under');
    expect(F32_MAX).toBe(3.4028234663852886e38);
    expect(firstBadKeyRow(Float32Array.of(Math.fround(Math.sqrt(F32_MAX)) * 1.0001), 1)).not.toBeNull();
  });

  it('chunks: a zero or overflowing EN row is fatal (like NaN there) and names chunk, file, row and id', async () => {
    const n = 4;
    const en = new Float32Array(n * D);
    for (let i = 0; i < n; i++) en.set(vec(i), i * D);
    const ids = ['a_1', 'a_2', 'a_3', 'a_4'];
    const dir = path.join(tmp, 'chunks');
    await writeChunks({ ids, speakers: null, en, es: en.slice(), n }, dir, { chunkSize: 2 });
    const file = path.join(dir, chunkName(1), 'en.npy');
    const c1 = en.slice(2 * D);
    c1.fill(0, D, 2 * D);
    writeNpySync(file, c1, [2, D]);
    for (const onProblem of ['fail', 'skip'] as const) {
      const err = await rejection(loadChunks(dir, { onProblem }));
      expect(err.code).toBe('RAPM_DATA');
      expect(err.message).toBe(`chunk ${chunkName(1)}: ${file} row 1 (id a_4): zero norm: cannot be normalised (every value is 0 in float32); fix or drop that row`);
    }
    const seen: string[] = [];
    const iterErr = await rejection((async () => {
      for await (const c of iterateChunks(dir)) seen.push(c.name);
    })());
    expect(iterErr.message).toContain('row 1 (id a_4): zero norm');
    expect(seen).toEqual([chunkName(0)]);
    c1.fill(0, D, 2 * D);
    c1[D] = 3e19;
    writeNpySync(file, c1, [2, D]);
    expect((await rejection(loadChunks(dir))).message).toContain('row 1 (id a_4): squared L2 norm overflows float32');
  });
});

describe('checkKeyRows: both EN checks in one pass', () => {
  it('null for clean rows; a NaN anywhere comes before a zero-norm row above it; else the bad row', () => {
    const rows = new Float32Array(4 * 3).fill(0.5);
    expect(checkKeyRows(rows, 3)).toBeNull();
    rows.fill(0, 3, 6); // row 1: zero norm
    expect(checkKeyRows(rows, 3)).toEqual({ badKey: { row: 1, reason: expect.stringMatching(/^zero norm/) } });
    rows[3 * 3 + 2] = Number.NaN; // row 3, after the zero row: still reported first, as before
    expect(checkKeyRows(rows, 3)).toEqual({ nonFinite: 'row 3, column 2 is NaN' });
    rows[3 * 3 + 2] = Number.POSITIVE_INFINITY;
    expect(checkKeyRows(rows, 3)).toEqual({ nonFinite: 'row 3, column 2 is Infinity' });
  });
});
