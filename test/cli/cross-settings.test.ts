/**
 * Rules between settings (src/settings.ts CROSS_SETTING_RULES) are defined once and applied by
 * the library and by every command that lists the settings, before any data is read: the data
 * paths point below a regular file, so reaching the data would fail with RAPM_IO (exit 1).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Datastore } from '../../src/retrieval/datastore.js';
import { EF_SEARCH_MAX_FAISS, EF_SEARCH_MAX_PGVECTOR, NPROBE_MAX_PGVECTOR, SETTINGS, crossSettingProblem } from '../../src/settings.js';
import { run } from '../helpers/cli.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-cross-'));
const file = path.join(tmp, 'a-file');
fs.writeFileSync(file, 'not a folder');
const missing = path.join(file, 'data');
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('--precision int8 with --fast-path bf16', () => {
  for (const cmd of ['index', 'train']) {
    it(`${cmd} refuses the pair before reading data, naming both flags`, async () => {
      const r = await run([cmd, '--data', missing, '--out', path.join(missing, 'out'), '--precision', 'int8', '--fast-path', 'bf16', '--quiet']);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain('--fast-path bf16');
      expect(r.stderr).toContain('--precision int8');
      expect(r.stderr).not.toMatch(/RAPM_IO|ENOTDIR/);
    });
    it(`${cmd} takes --precision int8 with --fast-path int8 or off (reaches the data)`, async () => {
      for (const fp of ['int8', 'off', 'auto']) {
        const r = await run([cmd, '--data', missing, '--out', path.join(missing, 'out'), '--precision', 'int8', '--fast-path', fp, '--quiet']);
        expect(r.code, `${fp}: ${r.stderr}`).toBe(1);
      }
    });
  }

  it('the library refuses it with the same rule, naming the keys', () => {
    expect(() => new Datastore({ keyDim: 8, valueDim: 4, precision: 'int8', fastPath: 'bf16' })).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG', message: expect.stringContaining("fastPath 'bf16' needs f32 or bf16 keys: precision 'int8'") }));
    expect(crossSettingProblem({ precision: 'int8', fastPath: 'bf16' })).toMatch(/^fastPath 'bf16' needs/);
    expect(crossSettingProblem({ precision: 'bf16', fastPath: 'bf16' })).toBeNull();
  });
});

describe('--ef-search and --nprobe: one range per source', () => {
  it('the settings take the widest range any source accepts (faiss efSearch up to 2^20)', () => {
    expect(SETTINGS.efSearch.check(String(EF_SEARCH_MAX_FAISS), 'cli')).toBe(EF_SEARCH_MAX_FAISS);
    expect(() => SETTINGS.efSearch.check(String(EF_SEARCH_MAX_FAISS + 1), 'cli')).toThrow(/--ef-search/);
    expect(SETTINGS.efSearch.bounds!.hi).toBe(EF_SEARCH_MAX_FAISS);
  });

  it('serve --ann takes an --ef-search above pgvector\'s limit (reaches the datastore)', async () => {
    const r = await run(['serve', '--datastore', path.join(missing, 'ds.rapm'), '--port', '0', '--ann', 'HNSW8,Flat', '--ef-search', String(EF_SEARCH_MAX_PGVECTOR + 1)]);
    expect(r.code, r.stderr).toBe(1);
  });

  it('serve --pg-url refuses --ef-search and --nprobe above pgvector\'s limits, naming the flags', async () => {
    const pg = ['serve', '--datastore', path.join(missing, 'ds.rapm'), '--port', '0', '--pg-url', 'postgres://u@127.0.0.1:1/db', '--pg-mode', 'index'];
    const ef = await run([...pg, '--ef-search', String(EF_SEARCH_MAX_PGVECTOR + 1)]);
    expect(ef.code, ef.stderr).toBe(2);
    expect(ef.stderr).toContain(`--ef-search ${EF_SEARCH_MAX_PGVECTOR + 1}`);
    expect(ef.stderr).toContain('--pg-url');
    const np = await run([...pg, '--nprobe', String(NPROBE_MAX_PGVECTOR + 1)]);
    expect(np.code, np.stderr).toBe(2);
    expect(np.stderr).toContain(`--nprobe ${NPROBE_MAX_PGVECTOR + 1}`);
    expect(np.stderr).toContain('--pg-url');
    // At the limits: past the CLI checks (the datastore is missing).
    const ok = await run([...pg, '--ef-search', String(EF_SEARCH_MAX_PGVECTOR)]);
    expect(ok.code, ok.stderr).toBe(1);
  });
});
