import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import yargs from 'yargs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { runServe, serveCommand, type ServeArgs } from '../../src/cli/commands/serve.js';
import { Datastore } from '../../src/retrieval/datastore.js';
import { saveDatastore } from '../../src/retrieval/persist.js';
import { fusionSpec, initParams, paramLayout } from '../../src/fusion/layout.js';
import { exportOnnx } from '../../src/fusion/onnx-export.js';
import { FusionSession } from '../../src/fusion/onnx-session.js';
import { createServer, type RapmServer } from '../../src/serve/http-server.js';
import { Predictor, type FusionModel } from '../../src/serve/predictor.js';
import { randn } from '../helpers/random.js';

const keyDim = 32, valueDim = 10, dv = 4, k = 6;
const ds = new Datastore({ keyDim, valueDim, valueIndices: [1, 2, 6, 9] });
ds.addSync(randn(300 * keyDim, 1), randn(300 * valueDim, 2), Array.from({ length: 300 }, (_, i) => `utt-${i}`));
const predictor = new Predictor(ds, { k, tau: 0.05 });
let srv: RapmServer;
let base: string;

beforeAll(async () => {
  srv = createServer({ predictor, maxBatch: 16, maxBodyBytes: 64 * 1024 });
  base = (await srv.listen(0)).url;
});
afterAll(() => srv.close());

const bits = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const f32 = (rows: number[] | number[][]) => Float32Array.from((rows as number[][]).flat ? (rows as number[][]).flat() : (rows as number[]));

async function post(route: string, body: string | Uint8Array, type = 'application/json', headers: Record<string, string> = {}) {
  const res = await fetch(base + route, { method: 'POST', body, headers: { 'Content-Type': type, ...headers } });
  return res;
}
async function errorOf(res: Response): Promise<[number, string]> {
  const j = (await res.json()) as { error: string; code: string };
  expect(typeof j.error).toBe('string');
  return [res.status, j.code];
}

describe('HTTP service', () => {
  it('POST /predict JSON (one row and a batch) equals predictor.predict bit for bit', async () => {
    const en = randn(3 * keyDim, 7);
    const want = await predictor.predict(en);
    const rows = Array.from({ length: 3 }, (_, i) => Array.from(en.subarray(i * keyDim, (i + 1) * keyDim)));
    const res = await post('/predict', JSON.stringify({ en: rows }));
    expect(res.status).toBe(200);
    const j = (await res.json()) as { b: number; dv: number; k: number; pred: number[][]; prior: number[][]; neighbors: number[][]; weights: number[][] };
    expect([j.b, j.dv, j.k]).toEqual([3, dv, k]);
    expect(bits(f32(j.pred)).equals(bits(want.pred)) && bits(f32(j.prior)).equals(bits(want.prior))).toBe(true);
    expect(j.neighbors.flat()).toEqual(Array.from(want.neighbors));
    expect(bits(f32(j.weights)).equals(bits(want.weights))).toBe(true);
    const one = (await (await post('/predict', JSON.stringify({ en: rows[1] }))).json()) as { pred: number[]; neighbors: number[] };
    expect(bits(Float32Array.from(one.pred)).equals(bits(want.pred.subarray(dv, 2 * dv)))).toBe(true);
    expect(one.neighbors).toEqual(Array.from(want.neighbors.subarray(k, 2 * k)));
  });

  it('POST /predict binary: float32 rows in, pred then prior out, shapes in headers', async () => {
    const en = randn(5 * keyDim, 8);
    const want = await predictor.predict(en);
    const res = await post('/predict', new Uint8Array(en.buffer), 'application/octet-stream');
    expect([res.status, res.headers.get('content-type'), res.headers.get('x-rapm-shape'), res.headers.get('x-rapm-layout')]).toEqual([200, 'application/octet-stream', `5,${dv}`, 'pred,prior']);
    const body = new Float32Array(await res.arrayBuffer());
    expect(bits(body.subarray(0, 5 * dv)).equals(bits(want.pred)) && bits(body.subarray(5 * dv)).equals(bits(want.prior))).toBe(true);
    const asJson = await post('/predict', new Uint8Array(en.buffer), 'application/octet-stream', { Accept: 'application/json' });
    expect(bits(f32(((await asJson.json()) as { pred: number[][] }).pred)).equals(bits(want.pred))).toBe(true);
    // A request may state its own shape; a matching X-Rapm-Shape changes nothing.
    const shaped = await post('/predict', new Uint8Array(en.buffer), 'application/octet-stream', { 'X-Rapm-Shape': ` 5, ${keyDim}` });
    expect(shaped.status).toBe(200);
    expect(bits(new Float32Array(await shaped.arrayBuffer())).equals(bits(body))).toBe(true);
  });

  it('POST /explain: ids, rows, weights, similarities', async () => {
    const en = randn(2 * keyDim, 9);
    const want = await predictor.explain(en);
    const res = await post('/explain', new Uint8Array(en.buffer), 'application/octet-stream');
    const j = (await res.json()) as { b: number; k: number; neighbors: { id: string; row: number; weight: number; similarity: number }[][] };
    expect([res.status, j.b, j.k]).toEqual([200, 2, k]);
    expect(j.neighbors).toEqual(want);
    expect(j.neighbors[0]![0]!.id).toBe(`utt-${j.neighbors[0]![0]!.row}`);
  });

  it('GET /health', async () => {
    const res = await fetch(base + '/health');
    const h = (await res.json()) as Record<string, unknown>;
    expect(res.status).toBe(200);
    expect(h).toMatchObject({ status: 'ok', rows: 300, keyDim, dv, k, tau: 0.05, fusion: false, maxBatch: 16, maxBodyBytes: 64 * 1024 });
    expect(typeof h.simd).toBe('string');
    expect(h.uptimeSeconds).toBeGreaterThanOrEqual(0);
  });

  it('validation errors are 4xx JSON with codes', async () => {
    const row = Array.from(randn(keyDim, 3));
    const nanRow = randn(keyDim, 4);
    nanRow[5] = NaN;
    const cases: [Promise<Response>, number, string][] = [
      [post('/predict', JSON.stringify({ en: row.slice(1) })), 400, 'RAPM_SHAPE_MISMATCH'],
      [post('/predict', JSON.stringify({ en: [row, row.slice(2)] })), 400, 'RAPM_SHAPE_MISMATCH'],
      [post('/predict', JSON.stringify({ en: [] })), 400, 'RAPM_SHAPE_MISMATCH'],
      [post('/predict', JSON.stringify({ en: [...row.slice(1), 'x'] })), 400, 'RAPM_TYPE'],
      [post('/predict', JSON.stringify({ vectors: [row] })), 400, 'RAPM_INVALID_ARG'],
      // Fields the service does not read are refused, not ignored (k and tau are the server's).
      [post('/predict', JSON.stringify({ en: row, k: 3 })), 400, 'RAPM_INVALID_ARG'],
      [post('/explain', JSON.stringify({ en: [row], tau: 1 })), 400, 'RAPM_INVALID_ARG'],
      // A request X-Rapm-Shape must describe the body.
      [post('/predict', new Uint8Array(4 * keyDim), 'application/octet-stream', { 'X-Rapm-Shape': `2,${keyDim}` }), 400, 'RAPM_SHAPE_MISMATCH'],
      [post('/predict', new Uint8Array(4 * keyDim), 'application/octet-stream', { 'X-Rapm-Shape': `1,${keyDim + 1}` }), 400, 'RAPM_SHAPE_MISMATCH'],
      [post('/predict', new Uint8Array(4 * keyDim), 'application/octet-stream', { 'X-Rapm-Shape': 'one row' }), 400, 'RAPM_SHAPE_MISMATCH'],
      [post('/predict', '{"en": [1, 2'), 400, 'RAPM_BAD_JSON'],
      [post('/predict', `{"en": [1e999${', 0'.repeat(keyDim - 1)}]}`), 400, 'RAPM_NON_FINITE'],
      [post('/predict', JSON.stringify({ en: new Array(keyDim).fill(0) })), 400, 'RAPM_ZERO_NORM'],
      [post('/predict', new Uint8Array(nanRow.buffer), 'application/octet-stream'), 400, 'RAPM_NON_FINITE'],
      [post('/predict', new Uint8Array(4 * keyDim + 4), 'application/octet-stream'), 400, 'RAPM_SHAPE_MISMATCH'],
      [post('/explain', new Uint8Array(0), 'application/octet-stream'), 400, 'RAPM_SHAPE_MISMATCH'],
      [post('/predict', JSON.stringify({ en: new Array(17).fill(row) })), 413, 'RAPM_BATCH_TOO_LARGE'],
      [post('/predict', new Uint8Array(17 * 4 * keyDim), 'application/octet-stream'), 413, 'RAPM_BATCH_TOO_LARGE'],
      [post('/predict', new Uint8Array(65 * 1024), 'application/octet-stream'), 413, 'RAPM_BODY_TOO_LARGE'],
      [post('/predict', 'hello', 'text/html'), 415, 'RAPM_MEDIA_TYPE'],
      // A compressed body, or JSON in another charset, is refused, not parsed as raw UTF-8 bytes.
      [post('/predict', JSON.stringify({ en: row }), 'application/json', { 'Content-Encoding': 'gzip' }), 415, 'RAPM_MEDIA_TYPE'],
      [post('/predict', JSON.stringify({ en: row }), 'application/json; charset=utf-16'), 415, 'RAPM_MEDIA_TYPE'],
      [fetch(base + '/predict'), 405, 'RAPM_METHOD'],
      [post('/health', '{}'), 405, 'RAPM_METHOD'],
      [fetch(base + '/nope'), 404, 'RAPM_NOT_FOUND'],
    ];
    for (const [res, status, code] of cases) expect(await errorOf(await res)).toEqual([status, code]);
  });

  it('close() finishes in-flight requests, then refuses new connections', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const slow: FusionModel = {
      run: async (_en, prior) => {
        await gate;
        return { pred: prior.map((x) => x + 1), delta: prior.map(() => 1) };
      },
    };
    const s = createServer({ predictor: new Predictor(ds, { k, fusion: slow }) });
    const { url } = await s.listen(0);
    const inflight = fetch(url + '/predict', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ en: Array.from(randn(keyDim, 5)) }) });
    for (let i = 0; s.inFlight === 0 && i < 2000; i++) await new Promise((r) => setTimeout(r, 2));
    const closing = s.close();
    let closed = false;
    void closing.then(() => (closed = true));
    await new Promise((r) => setTimeout(r, 30));
    expect([closed, s.inFlight]).toEqual([false, 1]); // waits for the request
    release();
    const res = await inflight;
    expect(res.status).toBe(200);
    expect(((await res.json()) as { pred: number[] }).pred).toHaveLength(dv);
    await closing;
    await expect(fetch(url + '/health')).rejects.toThrow();
  });
});

describe('rapm serve', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-serve-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('loads a saved datastore, serves, and stops gracefully when aborted', async () => {
    const file = path.join(tmp, 'ds.rds');
    await saveDatastore(ds, file);
    const ac = new AbortController();
    let url = '';
    const lines: string[] = [];
    const args: ServeArgs = { datastore: file, port: 0, host: '127.0.0.1', k: 5, tau: 0.1, aggregate: 'softmax', maxBatch: 8, graceMs: 1000, device: 'cpu' };
    const running = runServe(args, { signal: ac.signal, handleSignals: false, onListening: (u) => (url = u), log: (l) => lines.push(l) });
    while (!url) await new Promise((r) => setTimeout(r, 5));
    const h = (await (await fetch(url + '/health')).json()) as Record<string, unknown>;
    expect(h).toMatchObject({ rows: 300, k: 5, tau: 0.1, maxBatch: 8, fusion: false });
    const en = randn(keyDim, 12);
    const res = await new Promise<Buffer>((resolve, reject) => {
      const req = http.request(url + '/predict', { method: 'POST', headers: { 'Content-Type': 'application/octet-stream' } }, (r) => {
        const parts: Buffer[] = [];
        r.on('data', (c: Buffer) => parts.push(c)).on('end', () => resolve(Buffer.concat(parts)));
      });
      req.on('error', reject);
      req.end(Buffer.from(en.buffer));
    });
    const want = ds.searchSync(en, { k: 5, tau: 0.1 });
    expect(res.subarray(0, 4 * dv).equals(bits(want.prior))).toBe(true);
    ac.abort();
    await running;
    expect(lines.at(-1)).toBe('stopped');
  });

  it('the yargs command parses its options and stops gracefully on SIGTERM', async () => {
    const file = path.join(tmp, 'ds2.rds');
    await saveDatastore(ds, file);
    const port = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (probe.address() as net.AddressInfo).port;
        probe.close(() => resolve(p));
      });
    });
    const sigtermListeners = process.listenerCount('SIGTERM');
    const out = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      const parsed = yargs(['serve', '--datastore', file, '--port', String(port), '--k', '3', '--max-batch', '4']).command(serveCommand as never).strict().exitProcess(false).parseAsync();
      let health: Record<string, unknown> | undefined;
      for (let i = 0; i < 400 && !health; i++) {
        await new Promise((r) => setTimeout(r, 10));
        health = await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.json() as Promise<Record<string, unknown>>, () => undefined);
      }
      expect(health).toMatchObject({ rows: 300, k: 3, maxBatch: 4, tau: 0.04 });
      expect(out.mock.calls.map((c) => String(c[0])).join('')).toContain(`listening on http://127.0.0.1:${port}`);
      process.emit('SIGTERM');
      await parsed;
      expect(err.mock.calls.map((c) => String(c[0])).join('')).toContain('rapm serve: stopped');
      expect(process.listenerCount('SIGTERM')).toBe(sigtermListeners);
      await expect(fetch(`http://127.0.0.1:${port}/health`)).rejects.toThrow();
    } finally {
      out.mockRestore();
      err.mockRestore();
    }
  });

  it('serves a fusion model from a worker thread with micro-batching, or in-thread without it; /health shows which', async () => {
    const file = path.join(tmp, 'ds3.rds');
    await saveDatastore(ds, file);
    const model = path.join(tmp, 'f.onnx');
    const layout = paramLayout(fusionSpec({ enDim: keyDim, outDim: dv, hidden: [8] }));
    const params = initParams(layout, 4);
    const last = layout.layers[layout.layers.length - 1]!;
    for (let i = 0; i < last.in * last.out; i++) params[last.w + i] = Math.sin(i) * 0.1;
    await exportOnnx(layout, params, model);
    const session = await FusionSession.create(model, { enDim: keyDim, outDim: dv, threads: 1 });
    const en = randn(3 * keyDim, 31);
    const want = await new Predictor(ds, { k: 5, tau: 0.1, fusion: session }).predict(en);
    await session.release();
    expect(bits(want.pred).equals(bits(want.prior))).toBe(false);
    for (const variant of [{ fusionWorkers: 1, batching: true, maxBatchRows: 8 }, { fusionWorkers: 0, batching: false }]) {
      const ac = new AbortController();
      let url = '';
      const lines: string[] = [];
      const args: ServeArgs = { datastore: file, model, port: 0, host: '127.0.0.1', k: 5, tau: 0.1, aggregate: 'softmax', maxBatch: 8, graceMs: 1000, device: 'cpu', ...variant };
      const running = runServe(args, { signal: ac.signal, handleSignals: false, onListening: (u) => (url = u), log: (l) => lines.push(l) });
      while (!url) await new Promise((r) => setTimeout(r, 5));
      const h = (await (await fetch(url + '/health')).json()) as { fusion: boolean; batching: { maxBatchRows: number } | null };
      expect(h.fusion).toBe(true);
      expect(h.batching?.maxBatchRows ?? null).toBe(variant.batching ? 8 : null);
      const replies = await Promise.all(
        [0, 1, 2].map(async (q) => {
          const r = await fetch(url + '/predict', { method: 'POST', headers: { 'Content-Type': 'application/octet-stream' }, body: new Uint8Array(en.slice(q * keyDim, (q + 1) * keyDim).buffer) });
          return new Float32Array(await r.arrayBuffer()).subarray(0, dv);
        }),
      );
      replies.forEach((pred, q) => expect(bits(pred).equals(bits(want.pred.subarray(q * dv, (q + 1) * dv))), `row ${q}`).toBe(true));
      expect(lines.join('\n')).toContain(variant.fusionWorkers ? 'fusion on (cpu, 1 worker thread(s))' : 'fusion on (cpu, event-loop thread)');
      ac.abort();
      await running;
    }
  });
});
