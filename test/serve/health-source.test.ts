/**
 * GET /health runs the neighbour source's check(): with PostgreSQL + pgvector (PGlite served
 * over the wire by @electric-sql/pglite-socket, as in test/retrieval/pgvector.test.ts), a
 * database that is down or hung turns /health into 503 `degraded`, naming the source; one
 * check at a time is shared by concurrent /health calls.
 */
import net from 'node:net';
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Datastore } from '../../src/retrieval/datastore.js';
import type { NeighborSource } from '../../src/retrieval/neighbor-source.js';
import { PgVectorSource, loadDatastoreIntoPg } from '../../src/retrieval/pgvector.js';
import { openNeighborSource } from '../../src/retrieval/sources.js';
import { run } from '../helpers/cli.js';
import { createServer, type RapmServer } from '../../src/serve/http-server.js';
import { Predictor } from '../../src/serve/predictor.js';
import { randn } from '../helpers/random.js';

const keyDim = 8, dv = 3, n = 200;
const ds = new Datastore({ keyDim, valueDim: dv });
ds.addSync(randn(n * keyDim, 1), randn(n * dv, 2), Array.from({ length: n }, (_, i) => `u${i}`));

/** A free TCP port on 127.0.0.1 (bound, then released). */
function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

/**
 * A TCP relay in front of the database: `hang()` keeps accepting and reading but forwards
 * nothing more (a database that stopped answering), `resume()` relays again on new connections.
 * `cut()` closes the connections open now (a pool's idle ones included); `open()` counts them.
 */
async function relay(target: number) {
  let hung = false;
  const pairs = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const db = net.connect(target, '127.0.0.1');
    pairs.add(client).add(db);
    client.on('data', (d) => (hung ? undefined : db.write(d)));
    db.on('data', (d) => (hung ? undefined : client.write(d)));
    const end = () => {
      client.destroy();
      db.destroy();
      pairs.delete(client);
      pairs.delete(db);
    };
    client.on('close', end).on('error', end);
    db.on('close', end).on('error', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    hang: () => (hung = true),
    resume: () => (hung = false),
    cut: () => {
      for (const p of pairs) p.destroy();
    },
    open: () => pairs.size / 2,
    close: () => {
      for (const s of pairs) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

let db: PGlite;
let port: number;
let pgServer: PGLiteSocketServer | null = null;

async function startPg(): Promise<void> {
  const s = new PGLiteSocketServer({ db, host: '127.0.0.1', port, maxConnections: 8 });
  await s.start();
  pgServer = s;
}

async function stopPg(): Promise<void> {
  const s = pgServer;
  pgServer = null;
  await s?.stop();
}

beforeAll(async () => {
  db = await PGlite.create({ extensions: { vector } });
  port = await freePort(); // fixed, so the server can be stopped and started again on it
  await startPg();
  await loadDatastoreIntoPg(ds, { url: `postgres://postgres@127.0.0.1:${port}/postgres`, table: 'health_keys' });
});
afterAll(async () => {
  await stopPg();
  await db?.close();
});

const servers: RapmServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close({ graceMs: 200 })));
});

async function serve(source: NeighborSource): Promise<string> {
  const srv = createServer({ predictor: new Predictor(ds, { k: 5, source }) });
  servers.push(srv);
  return (await srv.listen(0)).url;
}

async function health(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url + '/health');
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('GET /health checks the neighbour source', () => {
  it('pgvector: 503 degraded, naming the source, while the database is down; 200 ok before and after', async () => {
    const src = await PgVectorSource.forDatastore(ds, { url: `postgres://postgres@127.0.0.1:${port}/postgres`, table: 'health_keys' });
    try {
      const url = await serve(src);
      expect(await health(url)).toMatchObject({ status: 200, body: { status: 'ok', source: 'pgvector', rows: n } });
      await stopPg();
      const down = await health(url);
      expect(down).toMatchObject({
        status: 503,
        body: { status: 'degraded', rows: n, source: 'pgvector', sourceError: expect.stringMatching(/^PostgreSQL health check on health_keys.* failed: .*ECONNREFUSED/) },
      });
      // The other fields are still there: the service itself answers.
      expect(down.body.k).toBe(5);
      await startPg();
      expect(await health(url)).toMatchObject({ status: 200, body: { status: 'ok', source: 'pgvector' } });
      // And searches go through again (the pool dropped its dead connections).
      const res = await fetch(url + '/predict', { method: 'POST', body: JSON.stringify({ en: Array.from(randn(keyDim, 3)) }) });
      expect(res.status).toBe(200);
    } finally {
      if (pgServer === null) await startPg();
      await src.close();
    }
  });

  it('pgvector: a database that stops answering makes /health 503 degraded after the check timeout, not hang it', async () => {
    const r = await relay(port);
    const src = await PgVectorSource.forDatastore(ds, { url: `postgres://postgres@127.0.0.1:${r.port}/postgres`, table: 'health_keys', maxConnections: 2 });
    try {
      const url = await serve(src);
      expect((await health(url)).status).toBe(200);
      r.hang();
      const hung = await health(url);
      expect(hung).toMatchObject({ status: 503, body: { status: 'degraded', source: 'pgvector', sourceError: `PostgreSQL health check on health_keys got no answer from 127.0.0.1:${r.port}/postgres within 2000 ms` } });
      r.resume();
      // The connection whose query hung was dropped, not pooled again: checks and searches work.
      await expect(src.check()).resolves.toBeUndefined();
      expect((await health(url)).status).toBe(200);
      const res = await fetch(url + '/predict', { method: 'POST', body: JSON.stringify({ en: Array.from(randn(keyDim, 4)) }) });
      expect(res.status).toBe(200);
    } finally {
      await src.close();
      await r.close();
    }
  });

  it('pgvector: the whole check, connecting included, is bounded by its timeout; the connection it was making is closed, and the next check after recovery passes', async () => {
    const r = await relay(port);
    // The pool's own bound (timeoutMs) is 30 s: the check must not depend on it.
    const src = await PgVectorSource.forDatastore(ds, { url: `postgres://postgres@127.0.0.1:${r.port}/postgres`, table: 'health_keys', maxConnections: 2 });
    try {
      await expect(src.check(500)).resolves.toBeUndefined();
      r.hang();
      r.cut(); // no idle pooled connection left: a check has to connect, to a database that never answers
      await new Promise((res) => setTimeout(res, 50));
      const t0 = performance.now();
      await expect(src.check(400)).rejects.toMatchObject({ code: 'RAPM_IO', message: `PostgreSQL health check on health_keys got no answer from 127.0.0.1:${r.port}/postgres within 400 ms` });
      // The message already says the check's own 400 ms deadline fired; the bound only rules out
      // the pool's 30 s one, with a margin a loaded machine meets.
      expect(performance.now() - t0).toBeLessThan(10_000);
      // The connection the check was making is let go of, not left to the pool's 30 s.
      for (let i = 0; r.open() > 0 && i < 100; i++) await new Promise((res) => setTimeout(res, 10));
      expect(r.open()).toBe(0);
      // The database is back: the next check passes at once (it used to share the connect still pending).
      r.resume();
      await expect(src.check(1000)).resolves.toBeUndefined();
    } finally {
      await src.close();
      await r.close();
    }
  });

  it('pgvector: /predict and /explain through a database that stops answering get 503 RAPM_IO (Retry-After) naming the database, table and timeout, logged without a stack and counted by code, instead of hanging', async () => {
    const r = await relay(port);
    const database = `127.0.0.1:${r.port}/postgres`;
    const src = await PgVectorSource.forDatastore(ds, { url: `postgres://postgres@${database}`, table: 'health_keys', maxConnections: 1, timeoutMs: 300 });
    const call = async (route: string, seed: number) => {
      // The client's own bound only turns a hang into a failure of this test; the server's is 300 ms.
      const res = await fetch(url + route, { method: 'POST', body: JSON.stringify({ en: Array.from(randn(keyDim, seed)) }), signal: AbortSignal.timeout(15_000) });
      return { status: res.status, retryAfter: res.headers.get('retry-after'), body: (await res.json()) as Record<string, unknown> };
    };
    const predict = (seed: number) => call('/predict', seed);
    const lines: string[] = [];
    const srv = createServer({ predictor: new Predictor(ds, { k: 5, source: src }), log: (l) => lines.push(l) });
    servers.push(srv);
    const { url } = await srv.listen(0);
    try {
      expect((await predict(5)).status).toBe(200);
      r.hang();
      // On the pooled connection: the query gets no answer (query_timeout).
      expect(await predict(6)).toEqual({
        status: 503,
        retryAfter: '1',
        body: { code: 'RAPM_IO', error: `PostgreSQL search on health_keys got no answer from ${database} within 300 ms (timeoutMs; pg: Query read timeout): the database is down, hung or unreachable` },
      });
      // That connection was dropped: the next search connects anew, and the connection gets no answer.
      expect(await call('/explain', 7)).toMatchObject({ status: 503, retryAfter: '1', body: { code: 'RAPM_IO', error: expect.stringMatching(/^PostgreSQL search on health_keys got no answer from 127\.0\.0\.1:\d+\/postgres within 300 ms \(timeoutMs; pg: Connection terminated due to connection timeout\)/) } });
      // A dependency outage is one log line each, without a stack, and counted apart from a bug's 500.
      expect(lines.filter((l) => / -> 503 RAPM_IO: PostgreSQL search on health_keys/.test(l))).toHaveLength(2);
      expect(lines.join('\n')).not.toMatch(/\n\s+at |-> 500/);
      const scrape = await (await fetch(url + '/metrics')).text();
      expect(scrape).toMatch(/rapm_http_errors_total\{route="\/predict",status="503",code="RAPM_IO"\} 1/);
      expect(scrape).toMatch(/rapm_http_errors_total\{route="\/explain",status="503",code="RAPM_IO"\} 1/);
      expect(scrape).toMatch(/rapm_http_requests_total\{route="\/predict",method="POST",status="503"\} 1/);
      r.resume();
      expect((await predict(8)).status).toBe(200);
      // Opening through a hung database fails the same way, at the first lookup.
      r.hang();
      await expect(PgVectorSource.forDatastore(ds, { url: `postgres://postgres@${database}`, table: 'health_keys', timeoutMs: 300 })).rejects.toMatchObject({
        code: 'RAPM_IO',
        message: expect.stringMatching(/^PostgreSQL looking up table health_keys got no answer from 127\.0\.0\.1:\d+\/postgres within 300 ms/),
      });
      // rapm serve's --pg-timeout-ms (setting pgTimeoutMs) is the bound the source gets.
      await expect(openNeighborSource(ds, { pgUrl: `postgres://postgres@${database}`, pgTable: 'health_keys', pgTimeoutMs: 250 })).rejects.toMatchObject({
        code: 'RAPM_IO',
        message: expect.stringMatching(/within 250 ms/),
      });
    } finally {
      await src.close();
      await r.close();
    }
  });

  it('concurrent /health calls share one check; a source without check() is not asked', async () => {
    let calls = 0;
    let fail!: (e: Error) => void;
    const base: NeighborSource = {
      name: 'remote',
      keyDim,
      size: n,
      search: async (queries, k) => {
        const r = ds.searchSync(queries, { k });
        return { rows: r.neighbors, similarities: r.similarities };
      },
    };
    const url = await serve({
      ...base,
      check: () => {
        calls++;
        return new Promise<void>((_, reject) => (fail = reject));
      },
    });
    const srv = servers.at(-1)!;
    const replies = Array.from({ length: 5 }, () => health(url));
    for (let i = 0; srv.inFlight < 5 && i < 2000; i++) await new Promise((r) => setTimeout(r, 2));
    expect(srv.inFlight, 'all five /health calls are waiting on the check').toBe(5);
    expect(calls).toBe(1);
    fail(new Error('remote engine unreachable'));
    for (const h of await Promise.all(replies)) {
      expect(h).toMatchObject({ status: 503, body: { status: 'degraded', source: 'remote', sourceError: 'remote engine unreachable' } });
    }
    // The next call runs a check of its own.
    const again = health(url);
    for (let i = 0; calls < 2 && i < 2000; i++) await new Promise((r) => setTimeout(r, 2));
    expect(calls).toBe(2);
    fail(new Error('still unreachable'));
    expect((await again).body).toMatchObject({ source: 'remote', sourceError: 'still unreachable' });
    expect(await health(await serve(base))).toMatchObject({ status: 200, body: { status: 'ok', source: 'remote' } });
    // A check() that throws synchronously is one failed check, not a failure cached for good.
    let down = true;
    const flaky = await serve({
      ...base,
      check: () => {
        if (down) throw new Error('engine down');
        return Promise.resolve();
      },
    });
    expect(await health(flaky)).toMatchObject({ status: 503, body: { sourceError: 'engine down' } });
    down = false;
    expect(await health(flaky)).toMatchObject({ status: 200, body: { status: 'ok' } });
  });
});

describe('--pg-timeout-ms', () => {
  it('is a serve and pg-load flag, refused without --pg-url, range-checked', async () => {
    const alone = await run(['serve', '--datastore', 'x.rapm', '--pg-timeout-ms', '100']);
    expect(alone.code).toBe(2);
    expect(alone.stderr).toMatch(/--pg-timeout-ms needs --pg-url/);
    const zero = await run(['serve', '--datastore', 'x.rapm', '--pg-url', 'postgres://u@h/db', '--pg-timeout-ms', '0']);
    expect(zero.code).toBe(2);
    expect(zero.stderr).toMatch(/--pg-timeout-ms.*an integer in \[1, 2147483647\]/);
    expect((await run(['pg-load', '--help'])).stdout).toMatch(/--pg-timeout-ms/);
  });
});
