// Ids with leading/trailing whitespace or control characters are data problems at load, in
// every layout, and ids.txt is read as written (only CRLF's '\r' is dropped).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chunkName, loadChunks, writeChunk, writeChunks } from '../../src/data/chunks.js';
import { loadDral } from '../../src/data/dataset.js';
import { writeNpySync } from '../../src/data/npy.js';
import { packDral } from '../../src/data/pack.js';

const D = 1024;
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-ids-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function vec(seed: number): Float32Array {
  return Float32Array.from({ length: D }, (_, j) => Math.sin(seed + j * 0.1) + 0.2);
}

function dral(name: string, ids: string[]): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir);
  ids.forEach((id, i) => {
    writeNpySync(path.join(dir, `EN_${id}_features.npy`), vec(i), [D]);
    writeNpySync(path.join(dir, `ES_${id}_features.npy`), vec(100 + i), [D]);
  });
  return dir;
}

async function rejection(p: Promise<unknown>): Promise<Error & { code?: string }> {
  return p.then(() => {
    throw new Error('expected a rejection');
  }, (e: Error) => e);
}

describe('ids with whitespace or control characters', () => {
  it('a DRAL id with a trailing space is a listed problem, dropped with --on-problem skip (and never packed)', async () => {
    const dir = dral('trailing', ['s001_a', 's001_x ', 's002_b']);
    const err = await rejection(loadDral(dir));
    expect(err.code).toBe('RAPM_DATA');
    expect(err.message).toContain('id with leading or trailing whitespace or a control character (1)');
    expect(err.message).toContain('id "s001_x " ends with whitespace; rename the two files');
    expect(err.message).toContain(dir);
    const ds = await loadDral(dir, { onProblem: 'skip' });
    expect(ds.ids).toEqual(['s001_a', 's002_b']);
    expect(ds.problems.map((p) => p.kind)).toEqual(['bad-id']);
    const r = await packDral([dir], path.join(tmp, 'packed'), { onProblem: 'skip' });
    expect(r.rows).toBe(2);
    expect((await loadChunks(path.join(tmp, 'packed'))).ids).toEqual(['s001_a', 's002_b']);
  });

  it('a DRAL file whose id holds a newline is listed as a problem, not silently ignored', async () => {
    const dir = dral('newline', ['s001_a', 's001_b\nc']);
    const err = await rejection(loadDral(dir));
    expect(err.code).toBe('RAPM_DATA');
    expect(err.message).toContain('id "s001_b\\nc" contains the control character U+000A');
    const ds = await loadDral(dir, { onProblem: 'skip' });
    expect(ds.ids).toEqual(['s001_a']);
    expect(ds.problems).toHaveLength(1);
  });

  it('a leading space or a tab is a problem too', async () => {
    const dir = dral('leading', [' s001_a', 's001_b\t', 's001_c']);
    const ds = await loadDral(dir, { onProblem: 'skip', speakerPattern: null });
    expect(ds.ids).toEqual(['s001_c']);
    expect(ds.problems.map((p) => p.detail).join('\n')).toMatch(/" s001_a" starts with whitespace[\s\S]*"s001_b\\t" contains the control character U\+0009/);
  });

  it('ids.txt is read without trimming: an id with a trailing space is reported with its line, not changed or taken for a duplicate', async () => {
    const dir = path.join(tmp, 'chunks');
    const n = 3;
    const en = new Float32Array(n * D).fill(0.5);
    await writeChunks({ ids: ['a_1', 'a_2', 'a_3'], speakers: null, en, es: en.slice(), n }, dir, { chunkSize: 3 });
    const idsFile = path.join(dir, chunkName(0), 'ids.txt');
    fs.writeFileSync(idsFile, 'a_1\r\na_1 \r\na_3\r\n'); // CRLF is fine; the space is not
    const err = await rejection(loadChunks(dir));
    expect(err.code).toBe('RAPM_DATA');
    expect(err.message).toContain(`chunk ${chunkName(0)}: ids.txt line 2: id "a_1 " ends with whitespace; fix ids.txt`);
    expect(err.message).not.toContain('duplicate id');
    fs.writeFileSync(idsFile, 'a_1\r\na_2\r\na_3\r\n');
    expect((await loadChunks(dir)).ids).toEqual(['a_1', 'a_2', 'a_3']);
  });

  it('writeChunk refuses an id that ids.txt could not hold as it is', async () => {
    const en = new Float32Array(D);
    for (const id of ['a\nb', 'a ', ' a', '']) {
      await expect(writeChunk(path.join(tmp, 'w'), 'c', { ids: [id], en, es: en })).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG', message: expect.stringContaining('ids[0]') });
    }
  });
});
