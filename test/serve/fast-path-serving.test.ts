/**
 * The fastPath setting end to end: its one definition (src/settings.ts) is the Datastore's
 * default, Datastore.load rebuilds the shadow (files never hold it), rapm serve --fast-path
 * serves with it (bit for bit the exact scan's answers, through the micro-batcher), bundles
 * record it and serve with it unless overridden (logged), and /metrics counts its queries.
 *
 * Sizes: the fast path engages only when the searched rows span at least 8 (k + 32) panels of
 * 32 rows; with k = 3 that is 8,960 rows, so the stores here hold 10,000.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ServeArgs } from '../../src/cli/commands/serve.js';
import { simdLevels } from '../../src/native/simd.js';
import { Datastore, resolveFastPath } from '../../src/retrieval/datastore.js';
import { loadDatastore, saveDatastore } from '../../src/retrieval/persist.js';
import { BUNDLE_FILES, readBundle, writeBundle } from '../../src/serve/bundle.js';
import { Predictor } from '../../src/serve/predictor.js';
import { SETTINGS } from '../../src/settings.js';
import { randn } from '../helpers/random.js';
import { serving } from '../helpers/serving.js';

const keyDim = 24, valueDim = 5, n = 10_000, k = 3, tau = 0.05;
/** This CPU runs the bf16 first pass (and so 'auto' means bf16 here). */
const bf16Hardware = simdLevels().includes('avx512bf16');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-fastpath-'));
const file = path.join(tmp, 'ds.rapm');
const keys = randn(n * keyDim, 11), values = randn(n * valueDim, 12);
const queries = randn(16 * keyDim, 13);
const ids = Array.from({ length: n }, (_, i) => `u${i}`);
let exact: Datastore;
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

beforeAll(async () => {
  exact = new Datastore({ keyDim, valueDim, fastPath: 'off' });
  await exact.add(keys, values, ids);
  await saveDatastore(exact, file);
});

const bits = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

describe('the fastPath setting', () => {
  it('has one definition: the Datastore default is the setting default, auto resolved against this CPU', () => {
    expect(SETTINGS.fastPath.default).toBe('auto');
    expect(SETTINGS.fastPath.choices).toEqual(['auto', 'off', 'bf16', 'int8']);
    const want = bf16Hardware ? 'bf16' : 'off';
    expect(resolveFastPath('auto', 'f32')).toBe(want);
    expect(resolveFastPath('auto', 'bf16')).toBe(want);
    expect(new Datastore({ keyDim: 4, valueDim: 1 }).fastPath).toBe(want);
    expect(new Datastore({ keyDim: 4, valueDim: 1, fastPath: 'auto', precision: 'bf16' }).fastPath).toBe(want);
    for (const v of ['off', 'bf16', 'int8'] as const) expect(new Datastore({ keyDim: 4, valueDim: 1, fastPath: v }).fastPath).toBe(v);
  });

  it('refuses bad values with the setting check: coded, naming the option and the choices', () => {
    expect(() => new Datastore({ keyDim: 4, valueDim: 1, fastPath: 'fp8' as never })).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG', message: "fastPath must be one of auto, off, bf16, int8, got 'fp8'" }));
    expect(() => new Datastore({ keyDim: 4, valueDim: 1, fastPath: 1 as never })).toThrow(expect.objectContaining({ code: 'RAPM_TYPE' }));
    expect(() => SETTINGS.fastPath.check('BF16', 'cli')).toThrow(/--fast-path must be one of auto, off, bf16, int8, got 'BF16'/);
  });

  it('Datastore.load rebuilds the shadow (not stored in the file): same answers bit for bit, the fast path engaged on this CPU', async () => {
    const want = exact.searchSync(queries, { k, tau });
    const bytes = fs.statSync(file).size;
    for (const fastPath of ['off', 'bf16', 'int8', 'auto'] as const) {
      const ds = await Datastore.load(file, { fastPath });
      expect(ds.fastPath).toBe(resolveFastPath(fastPath, 'f32'));
      const got = await ds.search(queries, { k, tau });
      expect(bits(got.neighbors).equals(bits(want.neighbors)), fastPath).toBe(true);
      expect(bits(got.similarities).equals(bits(want.similarities)), fastPath).toBe(true);
      expect(bits(got.prior).equals(bits(want.prior)), fastPath).toBe(true);
      const engaged = ds.fastPath === 'bf16' ? bf16Hardware : ds.fastPath === 'int8' ? bf16Hardware || simdLevels().includes('avx512vnni') : false;
      expect(ds.fastPathStats.queries, fastPath).toBe(engaged ? 16 : 0);
      if (ds.fastPath === 'off') expect(ds.memoryBytes).toBe(exact.memoryBytes);
      else expect(ds.memoryBytes).toBeGreaterThan(exact.memoryBytes); // the shadow lives in memory only
    }
    expect(fs.statSync(file).size).toBe(bytes);
    await expect(loadDatastore(file, { fastPath: 'fast' as never })).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG' });
    await expect(loadDatastore(file, null as never)).rejects.toMatchObject({ code: 'RAPM_TYPE' });
  });
});

/** `rapm serve` with `args` over the test defaults (loopback, port 0). */
const serve = <T>(args: Partial<ServeArgs>, use: (url: string, lines: string[]) => Promise<T>): Promise<T> =>
  serving({ port: 0, host: '127.0.0.1', maxBatch: 64, graceMs: 1000, device: 'cpu', ...args } as ServeArgs, use);

/** 16 concurrent single-row binary requests; the pred rows. */
async function predictRows(url: string): Promise<Float32Array[]> {
  return Promise.all(
    Array.from({ length: 16 }, async (_, q) => {
      const r = await fetch(url + '/predict', { method: 'POST', headers: { 'Content-Type': 'application/octet-stream' }, body: new Uint8Array(queries.slice(q * keyDim, (q + 1) * keyDim).buffer) });
      expect(r.status).toBe(200);
      return new Float32Array(await r.arrayBuffer()).subarray(0, valueDim);
    }),
  );
}

function metric(text: string, name: string): number {
  const m = new RegExp(`^${name} ([\\d.e+-]+)$`, 'm').exec(text);
  if (!m) throw new Error(`${name} not in /metrics`);
  return Number(m[1]);
}

describe('rapm serve --fast-path', () => {
  it('serves bit for bit the exact answers through the micro-batcher, reports the path in /health and counts it in /metrics', async () => {
    const want = await new Predictor(exact, { k, tau }).predict(queries);
    for (const fastPath of ['bf16', 'off'] as const) {
      await serve({ datastore: file, k, tau, fastPath, batching: true }, async (url, lines) => {
        const rows = await predictRows(url);
        rows.forEach((pred, q) => expect(bits(pred).equals(bits(want.pred.subarray(q * valueDim, (q + 1) * valueDim))), `${fastPath} row ${q}`).toBe(true));
        const h = (await (await fetch(url + '/health')).json()) as { fastPath: string };
        expect(h.fastPath).toBe(fastPath);
        expect(lines.join('\n')).toContain(`fast path ${fastPath}`);
        const text = await (await fetch(url + '/metrics')).text();
        expect(metric(text, 'rapm_fast_path_queries')).toBe(fastPath === 'bf16' && bf16Hardware ? 16 : 0);
        expect(metric(text, 'rapm_fast_path_redone')).toBe(0);
        expect(metric(text, 'rapm_batch_seconds_count')).toBe(metric(text, 'rapm_batch_rows_count'));
        expect(metric(text, 'rapm_batch_seconds_count')).toBeGreaterThan(0);
      });
    }
  }, 120_000);

  it('without --fast-path: the setting default (auto); with an approximate source: off (the exact search is unused)', async () => {
    await serve({ datastore: file, k, tau }, async (url) => {
      expect(((await (await fetch(url + '/health')).json()) as { fastPath: string }).fastPath).toBe(resolveFastPath('auto', 'f32'));
    });
    await serve({ datastore: file, k, tau, ann: 'Flat' }, async (url) => {
      expect(((await (await fetch(url + '/health')).json()) as { fastPath: string; source: string }).fastPath).toBe('off');
    });
    await serve({ datastore: file, k, tau, ann: 'Flat', fastPath: 'bf16' }, async (url) => {
      expect(((await (await fetch(url + '/health')).json()) as { fastPath: string }).fastPath).toBe('bf16');
    });
  }, 120_000);
});

describe('bundles record the fast path', () => {
  const settings = { config: 'custom', keyIndices: Array.from({ length: keyDim }, (_, i) => i), valueIndices: Array.from({ length: valueDim }, (_, i) => i), k, tau, aggregate: 'softmax' as const, precision: 'f32' as const };
  const data = { hash: 'sha256:test', source: 'test' };

  it('serves with the recorded path; an override is explicit and logged; an old bundle without one gets the default', async () => {
    const dir = path.join(tmp, 'b-int8');
    await writeBundle(dir, exact, { settings: { ...settings, fastPath: 'int8' }, data });
    expect(readBundle(dir).manifest.settings.fastPath).toBe('int8');
    const p = await Predictor.fromBundle(dir);
    expect(p.info.fastPath).toBe('int8');
    expect(p.bundle!.trained.fastPath).toBe('int8');
    expect(p.bundle!.overrides).toEqual({});
    const log: string[] = [];
    const o = await Predictor.fromBundle(dir, { fastPath: 'off', log: (l) => log.push(l) });
    expect(o.info.fastPath).toBe('off');
    expect(o.bundle!.overrides).toEqual({ fastPath: { trained: 'int8', serving: 'off' } });
    expect(log.join('\n')).toMatch(/override: fastPath int8 -> off \(same answers/);
    // Same answers either way.
    const [a, b] = [await p.predict(queries), await o.predict(queries)];
    expect(bits(a.pred).equals(bits(b.pred))).toBe(true);

    const old = path.join(tmp, 'b-old');
    await writeBundle(old, exact, { settings, data });
    expect(readBundle(old).manifest.settings.fastPath).toBeUndefined();
    expect((await Predictor.fromBundle(old)).info.fastPath).toBe(resolveFastPath('auto', 'f32'));
  });

  it('refuses a manifest whose fastPath no setting allows (RAPM_FORMAT), and a bad one at write time', async () => {
    const dir = path.join(tmp, 'b-bad');
    await writeBundle(dir, exact, { settings, data });
    const mf = path.join(dir, BUNDLE_FILES.manifest);
    const m = JSON.parse(fs.readFileSync(mf, 'utf8')) as { settings: Record<string, unknown> };
    m.settings.fastPath = 'fp8';
    fs.writeFileSync(mf, JSON.stringify(m));
    await expect(Predictor.fromBundle(dir)).rejects.toMatchObject({ code: 'RAPM_FORMAT', message: expect.stringMatching(/settings\.fastPath .*fp8.*; expected one of auto, off, bf16, int8/) });
    await expect(writeBundle(path.join(tmp, 'b-bad2'), exact, { settings: { ...settings, fastPath: 'fast' as never }, data })).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG' });
    expect(fs.existsSync(path.join(tmp, 'b-bad2'))).toBe(false);
  });
});
