/**
 * Slow clients and the body-memory budget (maxBufferedBytes). A request used to reserve (and
 * allocate) its whole declared Content-Length on arrival, so a few connections that declared
 * large bodies and trickled bytes held the budget and every other request got 503 RAPM_BUSY
 * until requestTimeoutMs (30 s by default). Now a body reserves what it holds as its bytes
 * arrive (BODY_FIRST_BYTES, then doubling, never past its declared length): slow declarers
 * hold little, and the budget still refuses once the bytes really held would pass it.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Datastore } from '../../src/retrieval/datastore.js';
import { BODY_FIRST_BYTES } from '../../src/serve/handler.js';
import { createServer, type RapmServer, type ServerOptions } from '../../src/serve/http-server.js';
import { Predictor } from '../../src/serve/predictor.js';
import { randn } from '../helpers/random.js';

const keyDim = 32, valueDim = 4;
const rowBytes = 4 * keyDim;
const MiB = 1 << 20;
const ds = new Datastore({ keyDim, valueDim });
ds.addSync(randn(200 * keyDim, 1), randn(200 * valueDim, 2));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const servers: RapmServer[] = [];
const sockets: net.Socket[] = [];
const timers: NodeJS.Timeout[] = [];
afterEach(async () => {
  timers.splice(0).forEach(clearInterval);
  sockets.splice(0).forEach((s) => s.destroy());
  await Promise.all(servers.splice(0).map((s) => s.close({ graceMs: 200 })));
});

async function start(options: Partial<ServerOptions>) {
  const srv = createServer({ predictor: new Predictor(ds, { k: 5 }), maxBatch: 1 << 16, ...options });
  servers.push(srv);
  const { port } = await srv.listen(0);
  return { srv, port };
}

/** A raw connection that sent the headers of a binary /predict declaring `declared` bytes. */
async function declare(port: number, declared: number) {
  const socket = net.connect({ port, host: '127.0.0.1' });
  sockets.push(socket);
  const state = { data: '' };
  socket.on('data', (d: Buffer) => (state.data += d.toString('latin1')));
  socket.on('error', () => undefined);
  await new Promise<void>((r) => socket.once('connect', () => r()));
  socket.write(`POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: ${declared}\r\n\r\n`);
  return { socket, state };
}

async function until(cond: () => boolean, ms = 5000): Promise<boolean> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) return false;
    await sleep(5);
  }
  return true;
}

const predict = (port: number, body: Uint8Array) =>
  fetch(`http://127.0.0.1:${port}/predict`, { method: 'POST', headers: { 'Content-Type': 'application/octet-stream' }, body });

describe('slow clients declaring large bodies cannot starve the others', () => {
  it('8 connections declaring maxBodyBytes and trickling bytes: a normal /predict still gets 200 at once', async () => {
    // The budget is 8 declared bodies: up-front reservation filled it exactly.
    const { srv, port } = await start({ maxBodyBytes: 8 * MiB, maxBufferedBytes: 64 * MiB });
    const slow = await Promise.all(Array.from({ length: 8 }, () => declare(port, 8 * MiB)));
    const trickle = Buffer.alloc(64, 1);
    for (const c of slow) c.socket.write(trickle);
    timers.push(setInterval(() => slow.forEach((c) => c.socket.write(trickle)), 50));
    expect(await until(() => srv.inFlight === 8), 'all eight slow requests are being read').toBe(true);
    await sleep(150);
    // Each holds its first buffer only, not its 8 MiB.
    expect(srv.handler.bufferedBytes).toBeLessThanOrEqual(8 * BODY_FIRST_BYTES);
    const res = await predict(port, new Uint8Array(randn(4 * keyDim, 3).buffer));
    expect([res.status, await res.text().then((t) => (res.status === 200 ? 'ok' : t))]).toEqual([200, 'ok']);
    // "At once" as an event, not a wall time: the reply came while all eight slow bodies were
    // still being read (none answered, refused or timed out), so it waited for none of them.
    expect(srv.inFlight, 'the eight slow requests are still in flight').toBeGreaterThanOrEqual(8);
    expect(slow.every((c) => c.state.data === ''), 'the slow clients are still being read, not refused').toBe(true);
  });

  it('the budget still bounds the bytes really held: full bodies in flight refuse the next request with 503 RAPM_BUSY, released when they leave', async () => {
    const { srv, port } = await start({ maxBodyBytes: 1 * MiB, maxBufferedBytes: 4 * MiB, retryAfterSeconds: 3 });
    const body = Buffer.alloc(MiB);
    const held = await Promise.all(Array.from({ length: 4 }, () => declare(port, MiB)));
    for (const c of held) c.socket.write(body.subarray(0, MiB - 100)); // all but the last 100 bytes
    expect(await until(() => srv.handler.bufferedBytes === 4 * MiB), `held ${srv.handler.bufferedBytes}`).toBe(true);
    const res = await predict(port, new Uint8Array(randn(keyDim, 4).buffer));
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('3');
    expect(((await res.json()) as { code: string }).code).toBe('RAPM_BUSY');
    // A fifth large sender is refused once its bytes would pass the budget, never above it.
    const fifth = await declare(port, MiB);
    fifth.socket.write(body);
    expect(await until(() => /HTTP\/1\.1 503/.test(fifth.state.data))).toBe(true);
    expect(fifth.state.data).toContain('"code":"RAPM_BUSY"');
    expect(srv.handler.bufferedBytes).toBeLessThanOrEqual(4 * MiB);
    held.forEach((c) => c.socket.destroy());
    expect(await until(() => srv.handler.bufferedBytes === 0)).toBe(true);
    expect((await predict(port, new Uint8Array(randn(keyDim, 4).buffer))).status).toBe(200);
  });

  it('a body grown piece by piece is read exactly (same reply as sent at once), and one maxBodyBytes body fits a budget of maxBodyBytes', async () => {
    const rows = Math.floor(MiB / rowBytes);
    const { srv, port } = await start({ maxBodyBytes: rows * rowBytes, maxBufferedBytes: rows * rowBytes });
    const body = Buffer.from(randn(rows * keyDim, 6).buffer);
    const first = await predict(port, body);
    expect(first.status).toBe(200);
    const once = Buffer.from(await first.arrayBuffer());
    const c = await declare(port, body.length);
    for (let o = 0; o < body.length; o += 40_000) {
      c.socket.write(body.subarray(o, Math.min(body.length, o + 40_000)));
      await sleep(1);
    }
    expect(await until(() => c.state.data.includes('\r\n\r\n') && Buffer.byteLength(c.state.data.split('\r\n\r\n').slice(1).join('\r\n\r\n'), 'latin1') >= once.length)).toBe(true);
    expect(c.state.data).toMatch(/^HTTP\/1\.1 200/);
    const replied = Buffer.from(c.state.data.slice(c.state.data.indexOf('\r\n\r\n') + 4), 'latin1');
    expect(replied.equals(once)).toBe(true);
    expect(await until(() => srv.handler.bufferedBytes === 0)).toBe(true);
  });
});
