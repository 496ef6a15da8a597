/**
 * Large JSON replies are streamed (handler.ts sendJsonReply): same bytes as one JSON.stringify,
 * chunked only when larger than one piece, other connections served between pieces, a slow
 * client held by backpressure, a client that leaves mid-reply counted and logged as aborted.
 * Ordering and buffered bytes are asserted, never durations.
 */
import http from 'node:http';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Datastore } from '../../src/retrieval/datastore.js';
import { createServer, type RapmServer, type ServerOptions } from '../../src/serve/http-server.js';
import { Predictor, type PredictorOptions } from '../../src/serve/predictor.js';
import { randn } from '../helpers/random.js';

const keyDim = 16, valueDim = 6, n = 3000;
const ds = new Datastore({ keyDim, valueDim, valueIndices: [0, 2, 3, 5] });
ds.addSync(randn(n * keyDim, 1), randn(n * valueDim, 2), Array.from({ length: n }, (_, i) => `utt-${i}`));

const servers: RapmServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close({ graceMs: 200 })));
});

async function start(predictorOptions: PredictorOptions, options: Partial<ServerOptions> = {}) {
  const predictor = new Predictor(ds, predictorOptions);
  const srv = createServer({ predictor, ...options });
  servers.push(srv);
  const { port } = await srv.listen(0);
  return { srv, port, predictor };
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

/** POST `body` (float32 rows, or a JSON string) on a connection of its own; the reply as text. */
function post(port: number, route: string, body: Float32Array | string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const json = typeof body === 'string';
    const req = http.request({ host: '127.0.0.1', port, path: route, method: 'POST', agent: false, headers: { 'Content-Type': json ? 'application/json' : 'application/octet-stream', Accept: 'application/json' } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text: Buffer.concat(parts).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(json ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength));
  });
}

/** The /predict reply as the handler built it before streaming: one JSON.stringify of number[][] (number[] for one flat row). */
function predictText(r: Awaited<ReturnType<Predictor['predict']>>, single: boolean): string {
  const rows = (a: Float32Array | Int32Array, w: number) => (single ? Array.from(a.subarray(0, w)) : Array.from({ length: a.length / w }, (_, i) => Array.from(a.subarray(i * w, (i + 1) * w))));
  return JSON.stringify({ b: r.b, dv: r.dv, k: r.k, pred: rows(r.pred, r.dv), prior: rows(r.prior, r.dv), neighbors: rows(r.neighbors, r.k), weights: rows(r.weights, r.k) });
}

async function until(cond: () => boolean, ms = 10_000): Promise<boolean> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) return false;
    await new Promise((r) => setTimeout(r, 5));
  }
  return true;
}

describe('streamed JSON replies', () => {
  it('the bytes equal one JSON.stringify of the reply: one row, many rows, one flat row; chunked only when larger than a piece', async () => {
    const k = 60;
    const { port, predictor } = await start({ k, tau: 0.01 }); // a low tau: weights down to ~1e-11, printed with exponents
    const many = randn(300 * keyDim, 3); // ~ 450 KB of /predict JSON and ~ 1.5 MB of /explain: streamed
    const one = many.subarray(0, keyDim);
    const flat = JSON.stringify({ en: Array.from(one) });

    const cases: [string, Float32Array | string, string][] = [
      ['/predict', many, predictText(await predictor.predict(many), false)],
      ['/predict', one, predictText(await predictor.predict(one), false)],
      ['/predict', flat, predictText(await predictor.predict(one), true)],
      ['/explain', many, JSON.stringify({ b: 300, k, neighbors: await predictor.explain(many) })],
      ['/explain', one, JSON.stringify({ b: 1, k, neighbors: await predictor.explain(one) })],
      ['/explain', flat, JSON.stringify({ b: 1, k, neighbors: (await predictor.explain(one))[0] })],
    ];
    for (const [route, body, want] of cases) {
      const got = await post(port, route, body);
      const what = `${route} ${typeof body === 'string' ? 'flat row' : `${body.length / keyDim} row(s)`}`;
      expect(got.status, what).toBe(200);
      expect(got.text === want, `${what}: ${got.text.length} chars, expected ${want.length}`).toBe(true);
      if (want.length > 64 * 1024) {
        expect([got.headers['transfer-encoding'], got.headers['content-length']], what).toEqual(['chunked', undefined]);
      } else {
        expect([got.headers['transfer-encoding'], got.headers['content-length']], what).toEqual([undefined, String(Buffer.byteLength(want))]);
      }
    }
    // Numbers print as JSON.stringify prints them, exponents included (tiny softmax weights).
    expect(/"weight":\d\.\d+e-\d+/.test(cases[3]![2]) && /-\d/.test(cases[0]![2])).toBe(true);
  });

  it('a large /explain does not hold the event loop: /health on another connection is answered while it is written', async () => {
    const k = 1000, b = 200; // ~ 15 MB of JSON
    const { srv, port, predictor } = await start({ k, tau: 0.05 });
    const en = randn(b * keyDim, 4);
    const want = JSON.stringify({ b, k, neighbors: await predictor.explain(en) });
    let explainRes: http.ServerResponse | undefined;
    /** Whether the explain reply had been ended (its last byte written) when /health's reply was. */
    let explainEndedAtHealth: boolean | undefined;
    srv.server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      if (req.url === '/explain') explainRes = res;
      if (req.url === '/health') res.once('finish', () => (explainEndedAtHealth = explainRes?.writableEnded));
    });
    const order: string[] = [];
    let health: Promise<void> | undefined;
    const explain = new Promise<string>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path: '/explain', method: 'POST', agent: false, headers: { 'Content-Type': 'application/octet-stream', Accept: 'application/json' } }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => {
          parts.push(c);
          // The reply is streaming (its first bytes are here): now ask /health on another connection.
          health ??= new Promise<void>((ok, fail) => {
            http
              .get({ host: '127.0.0.1', port, path: '/health', agent: false }, (h) => {
                h.resume();
                h.on('end', () => {
                  order.push('health');
                  ok();
                });
              })
              .on('error', fail);
          });
        });
        res.on('end', () => {
          order.push('explain');
          resolve(Buffer.concat(parts).toString('utf8'));
        });
      });
      req.on('error', reject);
      req.end(Buffer.from(en.buffer));
    });
    const text = await explain;
    await health;
    // Held by one JSON.stringify, the server read /health only after ending the whole /explain reply.
    expect(explainEndedAtHealth, '/explain reply already ended when /health was answered').toBe(false);
    expect(order).toEqual(['health', 'explain']);
    expect(text === want, `${text.length} chars, expected ${want.length}`).toBe(true);
    expect(srv.inFlight).toBe(0);
  });

  it('a large /explain builds its neighbour objects row by row between event-loop turns, not the whole batch before its first byte', async () => {
    const k = 1000, b = 200; // 200,000 { id, row, weight, similarity } objects, ~ 15 MB of JSON
    const { port, predictor } = await start({ k, tau: 0.05 });
    const en = randn(b * keyDim, 6);
    const want = JSON.stringify({ b, k, neighbors: await predictor.explain(en) });
    // Every neighbour object is built with one idOf() call: count them between two turns of
    // the event loop (setImmediate ticks), server side, while the reply is built and written.
    const idOf = ds.idOf.bind(ds);
    let built = 0;
    const spy = vi.spyOn(ds, 'idOf').mockImplementation((row: number) => {
      built++;
      return idOf(row);
    });
    let ticking = true, last = 0, maxPerTurn = 0, turns = 0;
    const tick = () => {
      maxPerTurn = Math.max(maxPerTurn, built - last);
      last = built;
      turns++;
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    try {
      const got = await post(port, '/explain', en);
      expect(got.status).toBe(200);
      expect(got.text === want, `${got.text.length} chars, expected ${want.length}`).toBe(true);
    } finally {
      ticking = false;
      spy.mockRestore();
    }
    expect(built).toBe(b * k);
    // One piece (64 KiB) holds about one row at this k: a turn builds a few rows' objects at most.
    // Built all at once (predictor.explain() before the reply), one turn built all b * k.
    expect(maxPerTurn, `most objects built in one event-loop turn (of ${turns} turns)`).toBeLessThanOrEqual(4 * k);
  });

  it('a client that stops reading holds a few pieces, not the reply; one that leaves mid-reply stops it, counted and logged as aborted', async () => {
    const k = 1000, b = 200;
    const lines: string[] = [];
    const { srv, port } = await start({ k, tau: 0.05 }, { log: (l) => lines.push(l) });
    let explainRes: http.ServerResponse | undefined;
    srv.server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      if (req.url === '/explain') explainRes = res;
    });
    const en = randn(b * keyDim, 5);
    const req = http.request({ host: '127.0.0.1', port, path: '/explain', method: 'POST', agent: false, headers: { 'Content-Type': 'application/octet-stream', Accept: 'application/json' } });
    const first = new Promise<http.IncomingMessage>((resolve) => req.on('response', (res) => res.once('data', () => resolve(res.pause()))));
    req.on('error', () => undefined);
    req.end(Buffer.from(en.buffer));
    await first;
    // The client reads nothing more: the server waits for 'drain' with a bounded buffer.
    expect(await until(() => explainRes?.writableNeedDrain === true), 'the server waits for the client').toBe(true);
    expect(explainRes!.writableEnded, 'the reply was not handed over whole').toBe(false);
    expect(explainRes!.writableLength).toBeLessThan(4 * 64 * 1024);
    req.destroy();
    expect(await until(() => srv.inFlight === 0 && lines.length > 0)).toBe(true);
    expect(lines).toEqual([expect.stringMatching(/^POST \/explain aborted by the client after [\d.]+ ms$/)]);
    expect(explainRes!.writableEnded, 'no more pieces after the client left').toBe(false);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toMatch(/rapm_http_requests_total\{route="\/explain",method="POST",status="aborted"\} 1/);
  });
});
