/**
 * A neighbour source whose engine is down (SourceUnavailableError, RAPM_IO) is a dependency
 * outage: 503 with Retry-After and the message, one log line without a stack, counted by code;
 * a bug in a source stays 500 (no stack or message in the reply, the stack in the log). A
 * micro-batch that failed for an outage is not retried request by request.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Datastore } from '../../src/retrieval/datastore.js';
import { SourceUnavailableError, type NeighborSource } from '../../src/retrieval/neighbor-source.js';
import { errorReply } from '../../src/serve/handler.js';
import { createServer, type RapmServer } from '../../src/serve/http-server.js';
import { Predictor } from '../../src/serve/predictor.js';
import { randn } from '../helpers/random.js';

const keyDim = 8, dv = 3, n = 50;
const ds = new Datastore({ keyDim, valueDim: dv });
ds.addSync(randn(n * keyDim, 1), randn(n * dv, 2), Array.from({ length: n }, (_, i) => `u${i}`));

const servers: RapmServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close({ graceMs: 200 })));
});

function failing(make: () => Error): NeighborSource & { calls: number } {
  const src = {
    name: 'remote',
    keyDim,
    size: n,
    calls: 0,
    async search(): Promise<{ rows: Int32Array; similarities: Float32Array }> {
      src.calls++;
      await new Promise((r) => setTimeout(r, 20));
      throw make();
    },
  };
  return src;
}

async function serve(source: NeighborSource, lines: string[], batching: boolean): Promise<string> {
  return (await serveWith(source, lines, batching)).url;
}

async function serveWith(source: NeighborSource, lines: string[], batching: boolean): Promise<{ url: string; predictor: Predictor }> {
  const predictor = new Predictor(ds, { k: 5, source, batching: batching ? { maxBatchRows: 64, maxWaitUs: 20_000, maxConcurrent: 1 } : false });
  const srv = createServer({ predictor, log: (l) => lines.push(l) });
  servers.push(srv);
  return { url: (await srv.listen(0)).url, predictor };
}

/** Resolves once `ready()` holds (checked every millisecond): waits for an event, not for a time. */
async function until(ready: () => boolean): Promise<void> {
  while (!ready()) await new Promise((r) => setTimeout(r, 1));
}

const post = async (url: string, seed: number) => {
  const res = await fetch(url + '/predict', { method: 'POST', body: JSON.stringify({ en: Array.from(randn(keyDim, seed)) }) });
  return { status: res.status, retryAfter: res.headers.get('retry-after'), body: (await res.json()) as Record<string, unknown> };
};

describe('a neighbour source that is unavailable', () => {
  it('errorReply: the one mapping of errors to replies', () => {
    expect(errorReply(new SourceUnavailableError('db down'))).toEqual({ status: 503, code: 'RAPM_IO', message: 'db down', log: 'line' });
    expect(errorReply(new TypeError('x is undefined'))).toEqual({ status: 500, code: 'RAPM_INTERNAL', message: 'Internal error', log: 'stack' });
  });

  it('is 503 RAPM_IO with Retry-After, one log line without a stack; a bug is still 500 with its stack in the log only', async () => {
    const lines: string[] = [];
    const url = await serve(failing(() => new SourceUnavailableError('PostgreSQL search on t at db:5432/x failed: connect ECONNREFUSED (ECONNREFUSED)')), lines, false);
    expect(await post(url, 3)).toEqual({ status: 503, retryAfter: '1', body: { code: 'RAPM_IO', error: 'PostgreSQL search on t at db:5432/x failed: connect ECONNREFUSED (ECONNREFUSED)' } });
    expect(lines).toEqual(['POST /predict -> 503 RAPM_IO: PostgreSQL search on t at db:5432/x failed: connect ECONNREFUSED (ECONNREFUSED)']);
    const metrics = await (await fetch(url + '/metrics')).text();
    expect(metrics).toMatch(/rapm_http_errors_total\{route="\/predict",status="503",code="RAPM_IO"\} 1/);

    const bugLines: string[] = [];
    const bug = await serve(failing(() => new TypeError("Cannot read properties of undefined (reading 'rows')")), bugLines, false);
    const r = await post(bug, 4);
    expect(r).toEqual({ status: 500, retryAfter: null, body: { code: 'RAPM_INTERNAL', error: 'Internal error' } });
    expect(bugLines).toHaveLength(1);
    expect(bugLines[0]).toMatch(/^POST \/predict -> 500 RAPM_INTERNAL: TypeError: Cannot read properties[^\n]*\n\s+at /);
  });

  it('fails a whole micro-batch at once, without asking the engine again for each request', async () => {
    // Deterministic on a loaded machine: the first search holds the only batch slot until the
    // other three requests are seen queued, so they form exactly one batch of three, whatever
    // their arrival times (a 20 ms window could split them into two batches).
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const searched: number[] = []; // rows of each search the engine was asked
    const src: NeighborSource = {
      name: 'remote',
      keyDim,
      size: n,
      async search(queries) {
        searched.push(queries.length / keyDim);
        if (searched.length === 1) await gate;
        throw new SourceUnavailableError('engine down');
      },
    };
    const lines: string[] = [];
    const { url, predictor } = await serveWith(src, lines, true);
    const batches: { rows: number; requests: number }[] = [];
    predictor.batcher!.observe((e) => batches.push({ rows: e.rows, requests: e.requests }));
    const first = post(url, 1);
    await until(() => searched.length === 1);
    const rest = [2, 3, 4].map((s) => post(url, s));
    await until(() => predictor.batcher!.queuedRequests === 3);
    open();
    const replies = await Promise.all([first, ...rest]);
    for (const r of replies) expect(r).toMatchObject({ status: 503, body: { code: 'RAPM_IO', error: 'engine down' } });
    expect(batches).toEqual([{ rows: 1, requests: 1 }, { rows: 3, requests: 3 }]);
    // The batch of three failed at once: the engine was asked once for it, not again per request (3, then 1, 1, 1).
    expect(searched).toEqual([1, 3]);
  });
});
