/**
 * An EN row that is zero only on the 103 Config B key columns (ENGLISH_WINNERS) cannot be a
 * Config B key, but is a fine Config A key (the whole row). The loaders check it exactly when
 * told the key columns (`keyColumns`, which the CLI sets from --config; grid, running both
 * configs, asks for Config B's): then it is reported like a zero-norm row, with file, row and
 * id, before any training step (a problem under fail, dropped under skip for DRAL, fatal in
 * chunks like a whole-row zero norm). Without it (Config A, the default) the row loads; 56b0276
 * refused it for every run, so Config A runs on such data failed (in chunks even under skip).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chunkName, iterateChunks, loadChunks, writeChunks } from '../../src/data/chunks.js';
import { firstBadKeyRow, loadDral } from '../../src/data/dataset.js';
import { ENGLISH_WINNERS, keyIndices } from '../../src/data/indices.js';
import { loadDataSource } from '../../src/data/load.js';
import { writeNpySync } from '../../src/data/npy.js';
import { openSources, scanSources } from '../../src/experiments/progressive-sources.js';
import { run } from '../helpers/cli.js';

const D = 1024;
const B = keyIndices('B');
let tmp: string;
let dral: string;
let chunks: string;
const ZERO_B = 'zero norm on the 103 Config B key columns (ENGLISH_WINNERS)';

const vec = (seed: number): Float32Array => Float32Array.from({ length: D }, (_, j) => Math.sin(seed + j * 0.1) + 0.2);
/** A row with a normal norm whose Config B columns are all 0. */
function zeroOnB(seed: number): Float32Array {
  const v = vec(seed);
  for (const c of ENGLISH_WINNERS) v[c] = 0;
  return v;
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-configb-'));
  // DRAL: 12 pairs of 3 speakers, one zero on the Config B columns (s1_b).
  dral = path.join(tmp, 'dral');
  fs.mkdirSync(dral);
  const ids = Array.from({ length: 12 }, (_, i) => `s${i % 3}_${String.fromCharCode(97 + i)}`);
  ids.forEach((id, i) => {
    writeNpySync(path.join(dral, `EN_${id}_features.npy`), id === 's1_b' ? zeroOnB(i) : vec(i), [D]);
    writeNpySync(path.join(dral, `ES_${id}_features.npy`), vec(10 + i), [D]);
  });
  fs.writeFileSync(path.join(dral, 'train_filelist_en.txt'), ids.slice(0, 9).map((id) => `EN_${id}.wav\n`).join(''));
  fs.writeFileSync(path.join(dral, 'test_filelist_en.txt'), ids.slice(9).map((id) => `EN_${id}.wav\n`).join(''));
  // Chunks: 12 rows, row 2 (id a_3, chunk 1 row 0) zero on the Config B columns; the last 4 rows are test rows.
  const n = 12;
  const en = new Float32Array(n * D);
  for (let i = 0; i < n; i++) en.set(i === 2 ? zeroOnB(i) : vec(i), i * D);
  const cids = Array.from({ length: n }, (_, i) => `s${i % 3}_${i + 1}`).map((id, i) => (i === 2 ? 'a_3' : id));
  chunks = path.join(tmp, 'chunks');
  const official = { train: cids.slice(0, 8), test: cids.slice(8) };
  await writeChunks({ ids: cids, speakers: cids.map((id) => id.split('_')[0]!), en, es: en.map((x) => x * 0.5), n, official }, chunks, { chunkSize: 2 });
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('EN rows that are zero on the Config B columns only', () => {
  it('firstBadKeyRow names them only when given those key columns', () => {
    const rows = new Float32Array(3 * D);
    rows.set(vec(1), 0);
    rows.set(zeroOnB(2), D);
    rows.set(vec(3), 2 * D);
    expect(firstBadKeyRow(rows, D)).toBeNull();
    expect(firstBadKeyRow(rows, D, keyIndices('A'))).toBeNull();
    expect(firstBadKeyRow(rows, D, B)).toEqual({ row: 1, reason: expect.stringContaining(ZERO_B) });
    rows[D + ENGLISH_WINNERS[50]!] = 1e-20;
    expect(firstBadKeyRow(rows, D, B)).toBeNull();
  });

  it('a key column outside the row is refused', async () => {
    await expect(loadDral(dral, { keyColumns: [0, D] })).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG', message: expect.stringContaining('keyColumns[1]') });
    await expect(loadChunks(chunks, { keyColumns: [-1] })).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG' });
  });

  it('DRAL: loads without key columns (Config A); with Config B columns a data problem naming file and id, dropped under skip', async () => {
    expect((await loadDral(dral)).n).toBe(12);
    expect((await loadDral(dral, { keyColumns: keyIndices('A') })).n).toBe(12);
    await expect(loadDral(dral, { keyColumns: B })).rejects.toMatchObject({
      code: 'RAPM_DATA',
      message: expect.stringContaining(`${path.join(dral, 'EN_s1_b_features.npy')} (id s1_b): ${ZERO_B}`),
    });
    const ds = await loadDataSource(dral, { onProblem: 'skip', keyColumns: B });
    expect(ds.ids).not.toContain('s1_b');
    expect(ds.n).toBe(11);
    expect(ds.problems.map((p) => p.kind)).toEqual(['bad-norm']);
    expect(ds.dropped).toBe(1);
  });

  it('chunks: load without key columns; with Config B columns fatal (also under skip), naming chunk, file, row and id', async () => {
    expect((await loadChunks(chunks)).n).toBe(12);
    expect((await loadChunks(chunks, { onProblem: 'skip' })).n).toBe(12);
    const fatal = { code: 'RAPM_DATA', message: expect.stringMatching(new RegExp(`^chunk ${chunkName(1, 6)}: .*en\\.npy row 0 \\(id a_3\\): ${ZERO_B.replace(/[()]/g, '\\$&')}`)) };
    for (const policy of ['fail', 'skip'] as const) {
      await expect(loadChunks(chunks, { onProblem: policy, keyColumns: B })).rejects.toMatchObject(fatal);
      const it = async (): Promise<void> => {
        for await (const _ of iterateChunks(chunks, { onProblem: policy, keyColumns: B })) { /* read */ }
      };
      await expect(it()).rejects.toMatchObject(fatal);
    }
  });

  it('progressive sources: the first pass refuses it under Config B columns only', async () => {
    await expect(scanSources(await openSources({ chunks }))).resolves.toBeDefined();
    await expect(scanSources(await openSources({ chunks, keyColumns: B }))).rejects.toMatchObject({ code: 'RAPM_DATA', message: expect.stringContaining(`(id a_3): ${ZERO_B}`) });
  });
});

describe('the CLI sets the key columns from --config', () => {
  for (const [what, data, extra] of [['DRAL', () => dral, []], ['chunks', () => chunks, ['--on-problem', 'skip']]] as const) {
    it(`${what}: index and train with Config A (the default) succeed`, async () => {
      for (const cmd of ['index', 'train'] as const) {
        const out = path.join(tmp, `${what}-${cmd}-A`);
        const r = await run([cmd, '--data', data(), ...extra, '--out', out, '-k', '3', '--quiet', ...(cmd === 'train' ? ['--epochs', '1', '--train-seeds', '1'] : [])]);
        expect(r.stderr).toBe('');
        expect(r.code).toBe(0);
        expect(fs.existsSync(path.join(out, 'rapm.json'))).toBe(true);
      }
    }, 60_000);

    it(`${what}: Config B (index, train, grid) refuses it naming file, row and id before training`, async () => {
      const file = what === 'DRAL' ? `${path.join(dral, 'EN_s1_b_features.npy')} (id s1_b)` : `${path.join(chunks, chunkName(1, 6), 'en.npy')} row 0 (id a_3)`;
      for (const args of [['index', '--config', 'B'], ['train', '--config', 'B'], ['grid']]) {
        const out = path.join(tmp, `${what}-${args.join('-')}`);
        const r = await run([...args, '--data', data(), '--out', out, '-k', '3', '--quiet'].filter((a, i, all) => !(args[0] === 'grid' && (a === '-k' || all[i - 1] === '-k'))));
        expect(r.code).not.toBe(0);
        expect(r.stderr).toContain(`${file}: ${ZERO_B}`);
        expect(fs.existsSync(out)).toBe(false);
      }
    }, 60_000);
  }

  it('grid --config A and progressive --config A run; progressive --config B refuses in its first pass', async () => {
    const g = await run(['grid', '--data', chunks, '--config', 'A', '--ks', '3', '--taus', '1', '--out', path.join(tmp, 'grid-A'), '--quiet']);
    expect(g.stderr).toBe('');
    expect(g.code).toBe(0);
    const pOut = path.join(tmp, 'prog-B');
    const p = await run(['progressive', '--chunks', chunks, '--config', 'B', '--out', pOut, '-k', '3', '--quiet']);
    expect(p.code).not.toBe(0);
    expect(p.stderr).toContain(`(id a_3): ${ZERO_B}`);
    expect(fs.existsSync(pOut)).toBe(false);
  }, 60_000);
});
