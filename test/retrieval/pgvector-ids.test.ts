/**
 * PgVectorSource's start-up id check compares per-block digests computed by the server with the
 * same digests computed here, and fetches ids only for a block that differs (it used to fetch
 * every id: slow at 200K+ rows). Same refusals as before; ids with multi-byte characters and ':'
 * hash alike on both sides. And searches send queries normalised (pgvector sums squares in float32).
 */
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Datastore } from '../../src/retrieval/datastore.js';
import { PG_ID_BLOCK, PgVectorSource, loadDatastoreIntoPg } from '../../src/retrieval/pgvector.js';
import { randn } from '../helpers/random.js';

const n = 10_000, keyDim = 4, dv = 2;
const keys = randn(n * keyDim, 1), vals = randn(n * dv, 2);
const ids = Array.from({ length: n }, (_, i) => `spk:é${i % 7}_ü${i}`);
function store(idsOf: string[]): Datastore {
  const ds = new Datastore({ keyDim, valueDim: dv });
  ds.addSync(keys, vals, idsOf);
  return ds;
}

/** A pool that counts the result rows it hands back. */
class CountingPool extends pg.Pool {
  rows = 0;
  override query(...args: unknown[]): never {
    const p = (super.query as (...a: unknown[]) => Promise<pg.QueryResult>)(...args);
    return p.then((r) => {
      this.rows += r.rows.length;
      return r;
    }) as never;
  }
}

let db: PGlite;
let server: PGLiteSocketServer;
let url: string;
beforeAll(async () => {
  db = await PGlite.create({ extensions: { vector } });
  server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections: 4 });
  await server.start();
  url = `postgres://postgres@${server.getServerConn()}/postgres`;
  await loadDatastoreIntoPg(store(ids), { url, table: 'id_keys', batch: 5000 });
}, 60_000);
afterAll(async () => {
  await server?.stop();
  await db?.close();
});

async function open(idsOf: string[]): Promise<{ fetched: number; result: PgVectorSource | Error }> {
  const pool = new CountingPool({ connectionString: url, max: 1 });
  try {
    const result = await PgVectorSource.forDatastore(store(idsOf), { pool, table: 'id_keys' }).catch((e: Error) => e);
    if (result instanceof PgVectorSource) await result.close();
    return { fetched: pool.rows, result };
  } finally {
    await pool.end();
  }
}

describe('PgVectorSource start-up id check', () => {
  it('accepts the same ids without fetching them (a few digest rows, not one row per id)', async () => {
    const { fetched, result } = await open(ids);
    expect(result).toBeInstanceOf(PgVectorSource);
    expect(fetched).toBeLessThan(20);
  });

  it('names the first differing row, fetching only the block it is in', async () => {
    const other = ids.slice();
    other[9000] = 'someone-else';
    other[9500] = 'someone-else-too';
    const { fetched, result } = await open(other);
    expect(result).toMatchObject({ code: 'RAPM_DATA', message: "Table id_keys row 9000 holds id 'spk:é5_ü9000' but the datastore's row 9000 is 'someone-else': the table was loaded from another datastore; reload it (rapm pg-load --overwrite)" });
    expect(fetched).toBeLessThanOrEqual(PG_ID_BLOCK + 20);
    // Row 0 differs: the first block names it.
    const first = ids.slice();
    first[0] = 'x';
    expect((await open(first)).result).toMatchObject({ code: 'RAPM_DATA', message: expect.stringMatching(/^Table id_keys row 0 holds id 'spk:é0_ü0' but the datastore's row 0 is 'x'/) });
  });
});

describe('PgVectorSource.search', () => {
  it('a query of tiny or huge (finite, non-zero) values gets the neighbours of its direction, not NaN similarities', async () => {
    const src = await PgVectorSource.forDatastore(store(ids), { url, table: 'id_keys' });
    try {
      const dir = Float32Array.of(0.6, -0.8, 0, 0);
      const want = await src.search(dir, 5);
      for (const scale of [1e-30, 1e-20, 1e19]) {
        const got = await src.search(dir.map((x) => x * scale), 5);
        expect(Array.from(got.similarities).every(Number.isFinite), `scale ${scale}`).toBe(true);
        expect(Array.from(got.rows)).toEqual(Array.from(want.rows));
      }
    } finally {
      await src.close();
    }
  });
});
