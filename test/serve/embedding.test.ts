import http from 'node:http';
import { Writable } from 'node:stream';
import Fastify from 'fastify';
import { afterAll, describe, expect, it } from 'vitest';
import { Datastore } from '../../src/retrieval/datastore.js';
import { createHandler, createServer } from '../../src/serve/http-server.js';
import { Predictor } from '../../src/serve/predictor.js';
import { randn } from '../helpers/random.js';

const keyDim = 32, valueDim = 10, dv = 4;
const ds = new Datastore({ keyDim, valueDim, valueIndices: [1, 2, 6, 9] });
ds.addSync(randn(300 * keyDim, 1), randn(300 * valueDim, 2), Array.from({ length: 300 }, (_, i) => `utt-${i}`));
const bits = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const closers: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of closers) await c();
});

describe('embedding the handler', () => {
  it('a fastify app serves predictions through the exported handler, next to its own routes', async () => {
    const predictor = new Predictor(ds, { k: 5, batching: true });
    const rapm = createHandler({ predictor, basePath: '/rapm' });
    const app = Fastify();
    // rapm reads the raw body itself: in this scope no content-type parser consumes it.
    await app.register(async (scope) => {
      scope.removeAllContentTypeParsers();
      scope.addContentTypeParser('*', (_req, _payload, done) => done(null));
      scope.all('/rapm/*', (request, reply) => {
        reply.hijack();
        rapm(request.raw, reply.raw);
      });
    });
    app.get('/hello', async () => ({ hello: 'world' }));
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    closers.push(() => app.close());

    const en = randn(3 * keyDim, 4);
    const want = await new Predictor(ds, { k: 5 }).predict(en);
    const bin = await fetch(`${url}/rapm/predict`, { method: 'POST', headers: { 'Content-Type': 'application/octet-stream' }, body: new Uint8Array(en.buffer) });
    expect([bin.status, bin.headers.get('x-rapm-shape')]).toEqual([200, `3,${dv}`]);
    const out = new Float32Array(await bin.arrayBuffer());
    expect(bits(out.subarray(0, 3 * dv)).equals(bits(want.pred))).toBe(true);
    const json = await fetch(`${url}/rapm/predict`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ en: Array.from(en.subarray(0, keyDim)) }) });
    const j = (await json.json()) as { pred: number[] };
    expect(bits(Float32Array.from(j.pred)).equals(bits(want.pred.subarray(0, dv)))).toBe(true);
    const health = (await (await fetch(`${url}/rapm/health`)).json()) as Record<string, unknown>;
    expect(health).toMatchObject({ status: 'ok', rows: 300, keyDim, dv, k: 5 });
    const bad = await fetch(`${url}/rapm/predict`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"en": [1' });
    expect([bad.status, ((await bad.json()) as { code: string }).code]).toEqual([400, 'RAPM_BAD_JSON']);
    expect(await (await fetch(`${url}/hello`)).json()).toEqual({ hello: 'world' });
    expect(rapm.inFlight).toBe(0);
  });

  it('mounts in a plain node:http server under a base path', async () => {
    const rapm = createHandler({ predictor: new Predictor(ds, { k: 5 }), basePath: '/v1/' });
    const server = http.createServer((req, res) => {
      if (req.url?.startsWith('/v1/')) return rapm(req, res);
      res.writeHead(204).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise((r) => server.close(r)));
    const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    expect((await fetch(`${base}/v1/health`)).status).toBe(200);
    expect((await fetch(`${base}/other`)).status).toBe(204);
    const nf = await fetch(`${base}/v1/nope`);
    expect([nf.status, ((await nf.json()) as { code: string }).code]).toEqual([404, 'RAPM_NOT_FOUND']);
  });
});

describe('/metrics and the access log', () => {
  it('a scrape shows requests by route and status, latency, batch sizes, queue depth, in-flight and event-loop delay', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(...chunk.toString().split('\n').filter(Boolean));
        cb();
      },
    });
    const predictor = new Predictor(ds, { k: 5, batching: { maxBatchRows: 16, maxWaitUs: 2000 } });
    const srv = createServer({ predictor, accessLog: sink });
    const { url } = await srv.listen(0);
    closers.push(() => srv.close());
    const post = (en: Float32Array) => fetch(`${url}/predict`, { method: 'POST', headers: { 'Content-Type': 'application/octet-stream' }, body: new Uint8Array(en.buffer) });
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => post(randn(keyDim, 50 + i))));
    expect(answers.map((r) => r.status)).toEqual(new Array(12).fill(200));
    expect((await post(new Float32Array(keyDim))).status).toBe(400); // zero norm
    await fetch(`${url}/health`);
    const res = await fetch(`${url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const value = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
    expect(value(/^rapm_http_requests_total\{route="\/predict",method="POST",status="200"\} (\d+)$/m)).toBe(12);
    expect(value(/^rapm_http_requests_total\{route="\/predict",method="POST",status="400"\} (\d+)$/m)).toBe(1);
    expect(value(/^rapm_http_requests_total\{route="\/health",method="GET",status="200"\} (\d+)$/m)).toBe(1);
    expect(value(/^rapm_http_request_duration_seconds_count\{route="\/predict"\} (\d+)$/m)).toBe(13);
    // 13 rows went through the batcher (the zero-norm row too), in fewer batches than requests.
    expect(value(/^rapm_batch_rows_sum (\d+)$/m)).toBe(13);
    const batches = value(/^rapm_batch_rows_count (\d+)$/m);
    expect(batches).toBeGreaterThan(0);
    expect(batches).toBeLessThan(13);
    expect(value(/^rapm_queue_rows (\d+)$/m)).toBe(0);
    expect(value(/^rapm_http_in_flight_requests (\d+)$/m)).toBe(1); // the scrape itself
    expect(value(/^rapm_http_buffered_body_bytes (\d+)$/m)).toBe(0);
    expect(value(/^nodejs_eventloop_lag_p99_seconds ([\d.e+-]+)$/m)).toBeGreaterThanOrEqual(0);
    // Access log: one JSON line per request, with status and latency.
    const entries = lines.map((l) => JSON.parse(l) as { url: string; status: string });
    expect(entries.filter((e) => e.url === '/predict' && e.status === '200')).toHaveLength(12);
    expect(entries.filter((e) => e.url === '/predict' && e.status === '400')).toHaveLength(1);
    expect(entries.filter((e) => e.url === '/health')).toHaveLength(1);
    const first = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(first).toMatchObject({ method: 'POST', url: '/predict', status: '200' });
    expect(typeof first.ms).toBe('number');
  });

  it('off switches: no /metrics route, no access log by default', async () => {
    const srv = createServer({ predictor: new Predictor(ds, { k: 5 }), metrics: false });
    const { url } = await srv.listen(0);
    closers.push(() => srv.close());
    const res = await fetch(`${url}/metrics`);
    expect([res.status, ((await res.json()) as { code: string }).code]).toEqual([404, 'RAPM_NOT_FOUND']);
    expect(srv.handler.registry).toBeNull();
  });
});
