import { afterAll, describe, expect, it } from 'vitest';
import { Datastore } from '../../src/retrieval/datastore.js';
import { predictFromSource, type NeighborSource } from '../../src/retrieval/neighbor-source.js';
import { createServer, type RapmServer } from '../../src/serve/http-server.js';
import { Predictor } from '../../src/serve/predictor.js';
import { randn } from '../helpers/random.js';

// A neighbour source's bad result is the source's fault: RAPM_DATA naming the source and the
// query / slot, HTTP 500 (never a 400 blaming the client), from Predictor and predictFromSource
// alike (one check, checkSourceResult), and never a reply echoing the bad row.
const keyDim = 8, dv = 3, n = 20, k = 3;
const ds = new Datastore({ keyDim, valueDim: dv });
ds.addSync(randn(n * keyDim, 1), randn(n * dv, 2));
const values = randn(n * dv, 2);
const query = randn(keyDim, 5);

/** The exact search with `spoil` applied to query 0's rows / similarities. */
const source = (spoil: (rows: Int32Array, sims: Float32Array) => void): NeighborSource => ({
  name: 'spoilt',
  keyDim,
  size: n,
  async search(q, kk) {
    const r = ds.searchSync(q, { k: kk });
    const rows = r.neighbors.slice(), sims = r.similarities.slice();
    spoil(rows, sims);
    return { rows, similarities: sims };
  },
});

const cases: [string, (rows: Int32Array, sims: Float32Array) => void, RegExp][] = [
  ['an Infinity similarity', (_r, s) => void (s[0] = Infinity), /similarity Infinity for query 0, slot 0/],
  ['a -Infinity similarity', (_r, s) => void (s[1] = -Infinity), /similarity -Infinity for query 0, slot 1/],
  ['row -5', (r) => void (r[2] = -5), /row -5 for query 0, slot 2/],
  ['a -1 before a found row', (r) => void (r[1] = -1), /row \d+ for query 0, slot 2 after an empty slot \(-1 at slot 1\)/],
];

const servers: RapmServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.close({ graceMs: 100 });
});

describe("a neighbour source's bad result", () => {
  it.each(cases)('%s: RAPM_DATA naming the source from predictFromSource and Predictor', async (_name, spoil, where) => {
    const a = await predictFromSource(source(spoil), values, query, { k }).catch((e: Error) => e);
    const p = new Predictor(ds, { k, source: source(spoil) });
    const b = await p.predict(query).then((r) => r, (e: Error) => e);
    for (const e of [a, b]) {
      expect(e).toBeInstanceOf(Error);
      expect(e).toMatchObject({ code: 'RAPM_DATA', message: expect.stringContaining("The neighbour source 'spoilt'") });
      expect((e as Error).message).toMatch(where);
    }
  });

  it.each(cases)('%s: HTTP 500 RAPM_DATA, not a 400', async (_name, spoil) => {
    const srv = createServer({ predictor: new Predictor(ds, { k, source: source(spoil) }) });
    servers.push(srv);
    const base = (await srv.listen(0)).url;
    const res = await fetch(`${base}/predict`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ en: Array.from(query) }) });
    expect(res.status).toBe(500);
    expect(await res.json()).toMatchObject({ code: 'RAPM_DATA' });
  });

  it('a source that found fewer than k (trailing -1) is still served', async () => {
    const spoil = (r: Int32Array, s: Float32Array) => {
      r[2] = -1;
      s[2] = -Infinity; // an empty slot's similarity is not read
    };
    const a = await predictFromSource(source(spoil), values, query, { k });
    expect(Array.from(a.found)).toEqual([2]);
    const b = await new Predictor(ds, { k, source: source(spoil) }).predict(query);
    expect(b.neighbors[2]).toBe(-1);
  });
});
