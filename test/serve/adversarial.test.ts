/**
 * Adversarial load on the service: many parallel /predict with good and bad bodies mixed
 * (batching on, so bad requests share batches with good ones), clients leaving mid-body, and
 * a neighbour source that returns NaN. Every good request gets exactly its own answer, every bad
 * one its 4xx, the process survives, and the accounting (in flight, buffered bytes) returns to 0.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Datastore } from '../../src/retrieval/datastore.js';
import type { NeighborSource } from '../../src/retrieval/neighbor-source.js';
import { createServer, type RapmServer } from '../../src/serve/http-server.js';
import { Predictor } from '../../src/serve/predictor.js';
import { randn } from '../helpers/random.js';

const keyDim = 16, valueDim = 4, n = 400;
const ds = new Datastore({ keyDim, valueDim });
ds.addSync(randn(n * keyDim, 1), randn(n * valueDim, 2), Array.from({ length: n }, (_, i) => `u${i}`));

const servers: RapmServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close({ graceMs: 200 })));
});

async function start(source?: NeighborSource): Promise<{ srv: RapmServer; url: string; port: number; lines: string[] }> {
  const lines: string[] = [];
  const srv = createServer({ predictor: new Predictor(ds, { k: 7, source, batching: { maxBatchRows: 64, maxWaitUs: 2000 } }), log: (l) => lines.push(l) });
  servers.push(srv);
  const { url, port } = await srv.listen(0);
  return { srv, url, port, lines };
}

const until = async (f: () => boolean, ms = 5000) => {
  for (const t0 = Date.now(); !f() && Date.now() - t0 < ms; ) await new Promise((r) => setTimeout(r, 5));
  return f();
};

describe('adversarial serving', () => {
  it('200 parallel /predict, good and bad mixed, some clients leaving mid-body: each good one gets its own answer', async () => {
    const { srv, url, port, lines } = await start();
    const direct = new Predictor(ds, { k: 7 });
    const bad: [string, number][] = [
      ['{"en": [1, 2]}', 400],
      ['{"en": [[' + '0,'.repeat(keyDim - 1) + '0]]}', 400], // zero norm
      ['{"en": "x"}', 400],
      ['not json', 400],
      ['{"en": [[' + '1e39,'.repeat(keyDim - 1) + '1]]}', 400], // overflows float32
      ['{"en": [[' + '"1",'.repeat(keyDim - 1) + '1]]}', 400],
      ['{"en": [' + '1,'.repeat(keyDim - 1) + '1], "k": 3}', 400],
    ];
    const jobs: Promise<void>[] = [];
    for (let i = 0; i < 200; i++) {
      if (i % 3 === 0) {
        const [body, status] = bad[i % bad.length]!;
        jobs.push(fetch(url + '/predict', { method: 'POST', body }).then(async (r) => {
          expect(r.status, body).toBe(status);
          expect(((await r.json()) as { code: string }).code).toMatch(/^RAPM_/);
        }));
      } else if (i % 7 === 1) {
        // Headers and half a body, then gone.
        jobs.push(new Promise<void>((resolve) => {
          const s = net.connect(port, '127.0.0.1', () => {
            s.write(`POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"en": [0.1, 0.2`);
            setTimeout(() => {
              s.destroy();
              resolve();
            }, 5);
          });
          s.on('error', () => resolve());
        }));
      } else {
        const en = randn(keyDim * (1 + (i % 3)), 100 + i);
        jobs.push(fetch(url + '/predict', { method: 'POST', body: JSON.stringify({ en: Array.from({ length: 1 + (i % 3) }, (_, r) => Array.from(en.subarray(r * keyDim, (r + 1) * keyDim))) }) }).then(async (r) => {
          expect(r.status).toBe(200);
          const body = (await r.json()) as { pred: number[][]; neighbors: number[][] };
          const want = await direct.predict(en);
          expect(body.pred.flat()).toEqual(Array.from(want.pred));
          expect(body.neighbors.flat()).toEqual(Array.from(want.neighbors));
        }));
      }
    }
    await Promise.all(jobs);
    expect(await until(() => srv.inFlight === 0 && srv.handler.bufferedBytes === 0)).toBe(true);
    expect(lines.filter((l) => !/aborted by the client/.test(l))).toEqual([]);
    expect((await fetch(url + '/health')).status).toBe(200);
  });

  it('a source that returns NaN similarities is the source at fault: 500 RAPM_DATA (logged), never a 400 blaming the request or a null in the reply', async () => {
    const source: NeighborSource = {
      name: 'broken',
      keyDim,
      size: n,
      async search(queries, k) {
        const r = ds.searchSync(queries, { k });
        const similarities = r.similarities.slice();
        similarities[0] = NaN;
        return { rows: r.neighbors.slice(), similarities };
      },
    };
    const { url, lines } = await start(source);
    const res = await fetch(url + '/predict', { method: 'POST', body: JSON.stringify({ en: Array.from(randn(keyDim, 9)) }) });
    expect(res.status).toBe(500);
    expect(await res.json()).toMatchObject({ code: 'RAPM_DATA', error: expect.stringMatching(/^The neighbour source 'broken' returned similarity NaN for query 0, slot 0/) });
    expect(lines.join('\n')).toMatch(/-> 500 RAPM_DATA/);
  });
});
