/**
 * The pgvector adapter against a real PostgreSQL wire-protocol server started here: PGlite
 * (Postgres compiled to WASM) with its pgvector extension, served on 127.0.0.1 (ephemeral
 * port) by @electric-sql/pglite-socket, reached through the `pg` client like any server.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RapmError } from '../../src/errors.js';
import { runServe, type ServeArgs } from '../../src/cli/commands/serve.js';
import { faissAvailable, recallAtK } from '../../src/retrieval/ann.js';
import { saveDatastore } from '../../src/retrieval/persist.js';
import { run } from '../helpers/cli.js';
import { Datastore, type SearchResult } from '../../src/retrieval/datastore.js';
import { ExactSource, datastoreValues, predictFromSource } from '../../src/retrieval/neighbor-source.js';
import { PgVectorSource, checkPgUrl, loadDatastoreIntoPg, quoteTable } from '../../src/retrieval/pgvector.js';
import { openNeighborSource } from '../../src/retrieval/sources.js';
import { maxRelErr } from '../helpers/compare.js';
import { randn } from '../helpers/random.js';

// Config-B-like: queries keyDim wide, the datastore keeps d of those columns.
const n = 3000, keyDim = 24, d = 16, dv = 4, b = 32, k = 20, centres = 30;
const keyIndices = Array.from({ length: d }, (_, i) => 2 + i);

function clustered(rows: number, seed: number): Float32Array {
  const c = randn(centres * keyDim, 7);
  const noise = randn(rows * keyDim, seed);
  const out = new Float32Array(rows * keyDim);
  for (let r = 0; r < rows; r++) {
    const j = (r * 7919 + seed) % centres;
    for (let t = 0; t < keyDim; t++) out[r * keyDim + t] = c[j * keyDim + t]! + 1.2 * noise[r * keyDim + t]!;
  }
  return out;
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (e) {
    return (e as { code?: string }).code;
  }
  throw new Error('expected a rejection');
}

// One server for the file (PGlite's WASM start-up takes seconds).
let db: PGlite;
let server: PGLiteSocketServer;
let url: string;

beforeAll(async () => {
  db = await PGlite.create({ extensions: { vector } });
  // PGlite is one session: the socket server multiplexes connections onto it query by query.
  server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections: 8 });
  await server.start();
  url = `postgres://postgres@${server.getServerConn()}/postgres`;
});

afterAll(async () => {
  await server?.stop();
  await db?.close();
});

describe('PgVectorSource (PostgreSQL + pgvector over the wire: PGlite + pglite-socket)', () => {
  const ds = new Datastore({ keyDim, valueDim: dv, keyIndices });
  const values = randn(n * dv, 2);
  const queries = clustered(b, 3);
  let exact: SearchResult;

  beforeAll(async () => {
    const ids = Array.from({ length: n }, (_, r) => `utt-${Math.floor(r / 3)}`);
    ds.addSync(clustered(n, 1), values, ids);
    exact = ds.searchSync(queries, { k });
    const load = await loadDatastoreIntoPg(ds, { url, table: 'rapm_exact', batch: 700 });
    expect([load.rows, load.d, load.index]).toEqual([n, d, 'none']);
  });

  it('exact mode returns the same neighbours, similarities and prior as rapm exact search', async () => {
    const src = await PgVectorSource.forDatastore(ds, { url, table: 'rapm_exact' });
    try {
      expect([src.name, src.size, src.d, src.keyDim, src.mode]).toEqual(['pgvector', n, d, keyDim, 'exact']);
      const got = await predictFromSource(src, datastoreValues(ds), queries, { k });
      expect(got.missing).toBe(0);
      // pgvector computes cosine distance in its own float arithmetic: similarities agree to
      // ~1e-6, and ids agree except between neighbours whose similarities tie to that precision
      // (both sides break exact ties to the lower row).
      expect(maxRelErr(got.similarities, exact.similarities)).toBeLessThan(1e-5);
      let differ = 0;
      for (let i = 0; i < exact.neighbors.length; i++) {
        if (got.neighbors[i] !== exact.neighbors[i]) {
          differ++;
          expect(Math.abs(got.similarities[i]! - exact.similarities[i]!)).toBeLessThan(1e-5);
        }
      }
      expect(differ).toBeLessThanOrEqual(2);
      expect(maxRelErr(got.prior, exact.prior)).toBeLessThan(1e-4);
      expect(maxRelErr(got.weights, exact.weights)).toBeLessThan(1e-4);
      // Row numbers map back to utterance ids (explain()).
      expect(ds.idOf(got.neighbors[0]!)).toBe(ds.idOf(exact.neighbors[0]!));
      // Single-row queries through a pool of connections, concurrently.
      const one = await Promise.all([0, 1, 2, 3].map((q) => src.search(queries.subarray(q * keyDim, (q + 1) * keyDim), k)));
      for (let q = 0; q < 4; q++) expect(Array.from(one[q]!.rows)).toEqual(Array.from(got.neighbors.subarray(q * k, (q + 1) * k)));
    } finally {
      await src.close();
    }
  });

  it('ExactSource + predictFromSource is bit-identical to Datastore.search', async () => {
    const got = await predictFromSource(new ExactSource(ds), datastoreValues(ds), queries, { k, tau: 0.05 });
    const want = ds.searchSync(queries, { k, tau: 0.05 });
    expect(Array.from(got.neighbors)).toEqual(Array.from(want.neighbors));
    expect(Array.from(got.similarities)).toEqual(Array.from(want.similarities));
    expect(maxRelErr(got.prior, want.prior)).toBeLessThan(1e-6);
  });

  it('an HNSW index (vector_cosine_ops) answers in index mode; its recall@k against exact is reported', async () => {
    const load = await loadDatastoreIntoPg(ds, { url, table: 'public.rapm_hnsw', index: 'hnsw', m: 16, efConstruction: 64 });
    expect(load.index).toBe('hnsw');
    const plan = await db.query<{ 'QUERY PLAN': string }>(`EXPLAIN SELECT row FROM rapm_hnsw ORDER BY key <=> '[${Array(d).fill(1).join(',')}]' LIMIT 5`);
    expect(plan.rows.map((r) => r['QUERY PLAN']).join('\n')).toMatch(/Index Scan using rapm_hnsw_key_idx/);
    const recalls: Record<number, number> = {};
    for (const efSearch of [20, 100]) {
      const src = await PgVectorSource.forDatastore(ds, { url, table: 'public.rapm_hnsw', mode: 'index', efSearch, maxConnections: 1 });
      try {
        const got = await src.search(queries, k);
        recalls[efSearch] = recallAtK(got.rows, exact.neighbors, k);
      } finally {
        await src.close();
      }
    }
    console.log(`pgvector HNSW (m 16, ef_construction 64), ${n} rows, d ${d}, k ${k}: recall@${k} ef_search 20 = ${recalls[20]!.toFixed(3)}, ef_search 100 = ${recalls[100]!.toFixed(3)}`);
    expect(recalls[100]!).toBeGreaterThanOrEqual(recalls[20]!);
    expect(recalls[100]!).toBeGreaterThan(0.9);
    expect(recalls[100]!).toBeLessThanOrEqual(1);
  });

  it("index mode refuses a table without a cosine HNSW / IVFFlat index on key (the SQL would scan every row); with one it is accepted", async () => {
    // No vector index at all (rapm_exact was loaded with index 'none').
    await expect(PgVectorSource.forDatastore(ds, { url, table: 'rapm_exact', mode: 'index' })).rejects.toMatchObject({
      code: 'RAPM_DATA',
      message: expect.stringMatching(/^Table rapm_exact has no HNSW or IVFFlat index on "key" with vector_cosine_ops, so mode 'index' \(--pg-mode index\) would scan every row: create one .* or use mode 'exact' \(--pg-mode exact\)$/),
    });
    // An index of another operator class cannot answer <=>: refused, naming it.
    await db.exec('CREATE TABLE rapm_idx AS SELECT * FROM rapm_exact; CREATE INDEX rapm_idx_l2 ON rapm_idx USING hnsw (key vector_l2_ops) WITH (m = 4, ef_construction = 8)');
    await expect(PgVectorSource.forDatastore(ds, { url, table: 'rapm_idx', mode: 'index' })).rejects.toMatchObject({
      code: 'RAPM_DATA',
      message: expect.stringMatching(/^Table rapm_idx has no HNSW or IVFFlat index .*\(rapm_idx_l2 uses vector_l2_ops, which cannot answer cosine <=> searches\)/),
    });
    // Exact mode needs no index.
    const exactMode = await PgVectorSource.forDatastore(ds, { url, table: 'rapm_exact' });
    expect(exactMode.index).toBe(null);
    await exactMode.close();
    await db.exec('CREATE INDEX rapm_idx_cos ON rapm_idx USING hnsw (key vector_cosine_ops) WITH (m = 4, ef_construction = 8)');
    const src = await PgVectorSource.forDatastore(ds, { url, table: 'rapm_idx', mode: 'index', efSearch: 40 });
    try {
      expect(src.index).toEqual({ name: 'rapm_idx_cos', method: 'hnsw', opclass: 'vector_cosine_ops' });
      expect((await src.search(queries.subarray(0, keyDim), k)).rows.every((r) => r >= 0)).toBe(true);
    } finally {
      await src.close();
    }
  });

  it('index mode refuses the search knob of the other kind of index (ef_search for IVFFlat, probes for HNSW), naming both; the right one is accepted', async () => {
    // rapm_hnsw (HNSW, built above) and an IVFFlat copy of the keys; both cosine.
    await db.exec('CREATE TABLE rapm_ivf AS SELECT * FROM rapm_exact; CREATE INDEX rapm_ivf_cos ON rapm_ivf USING ivfflat (key vector_cosine_ops) WITH (lists = 8)');
    await expect(PgVectorSource.forDatastore(ds, { url, table: 'public.rapm_hnsw', mode: 'index', probes: 4 })).rejects.toMatchObject({
      code: 'RAPM_INVALID_ARG',
      message: 'probes (--nprobe, ivfflat.probes) applies to IVFFlat indexes only, but table public.rapm_hnsw is searched through the HNSW index rapm_hnsw_key_idx: set efSearch (--ef-search, hnsw.ef_search) instead, or drop probes (--nprobe, ivfflat.probes)',
    });
    await expect(PgVectorSource.forDatastore(ds, { url, table: 'rapm_ivf', mode: 'index', efSearch: 40 })).rejects.toMatchObject({
      code: 'RAPM_INVALID_ARG',
      message: 'efSearch (--ef-search, hnsw.ef_search) applies to HNSW indexes only, but table rapm_ivf is searched through the IVFFlat index rapm_ivf_cos: set probes (--nprobe, ivfflat.probes) instead, or drop efSearch (--ef-search, hnsw.ef_search)',
    });
    // The knob that applies, or none, is accepted.
    for (const [table, knobs] of [['rapm_ivf', { probes: 8 }], ['rapm_ivf', {}], ['public.rapm_hnsw', { efSearch: 40 }]] as const) {
      const src = await PgVectorSource.forDatastore(ds, { url, table, mode: 'index', ...knobs });
      try {
        expect((await src.search(queries.subarray(0, keyDim), k)).rows.every((r) => r >= 0), table).toBe(true);
      } finally {
        await src.close();
      }
    }
  });

  it('bad input: URL, table name, missing table, dimension and row-count mismatch, existing table, refused connection', async () => {
    expect(() => checkPgUrl('http://x/y')).toThrow(/postgres:\/\//);
    expect(() => checkPgUrl('not a url')).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG' }));
    expect(() => checkPgUrl('postgres://u:secret@')).toThrow(expect.not.stringContaining('secret'));
    expect(() => quoteTable('a;drop table x')).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG' }));
    expect(quoteTable('public.t1')).toBe('"public"."t1"');
    expect(await codeOf(PgVectorSource.forDatastore(ds, { url, table: 'no_such_table' }))).toBe('RAPM_DATA');
    const other = new Datastore({ keyDim: 8, valueDim: dv });
    other.addSync(clustered(10, 5).subarray(0, 80), values.subarray(0, 40));
    expect(await codeOf(PgVectorSource.forDatastore(other, { url, table: 'rapm_exact' }))).toBe('RAPM_SHAPE_MISMATCH');
    const longer = new Datastore({ keyDim, valueDim: dv, keyIndices });
    longer.addSync(clustered(n + 1, 1), randn((n + 1) * dv, 2));
    expect(await codeOf(PgVectorSource.forDatastore(longer, { url, table: 'rapm_exact' }))).toBe('RAPM_DATA');
    // Same size and width, other data: its ids differ, so the table is not this datastore's.
    const twin = new Datastore({ keyDim, valueDim: dv, keyIndices });
    twin.addSync(clustered(n, 7), randn(n * dv, 8), Array.from({ length: n }, (_, r) => `other-${r}`));
    await expect(PgVectorSource.forDatastore(twin, { url, table: 'rapm_exact' })).rejects.toMatchObject({ code: 'RAPM_DATA', message: expect.stringMatching(/rapm_exact row 0 holds id 'utt-0' but the datastore's row 0 is 'other-0': the table was loaded from another datastore/) });
    expect(await codeOf(loadDatastoreIntoPg(ds, { url, table: 'rapm_exact' }))).toBe('RAPM_STATE');
    expect(await codeOf(PgVectorSource.forDatastore(ds, { url, table: 'rapm_exact', efSearch: 10 }))).toBe('RAPM_INVALID_ARG');
    // Misspelt options are refused before any connection (ef_search / btach used to be ignored).
    await expect(PgVectorSource.forDatastore(ds, { url, table: 'rapm_exact', ef_search: 10 } as never)).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG', message: expect.stringMatching(/'ef_search' for PgVectorSource.open/) });
    await expect(loadDatastoreIntoPg(ds, { url, table: 'rapm_x', btach: 5 } as never)).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG', message: expect.stringMatching(/'btach' for loadDatastoreIntoPg \(did you mean 'batch'\?\)/) });
    // A port nothing listens on (bound then closed here).
    const port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    expect(await codeOf(PgVectorSource.forDatastore(ds, { url: `postgres://postgres@127.0.0.1:${port}/postgres`, table: 'rapm_exact' }))).toBe('RAPM_IO');
    expect(await codeOf(loadDatastoreIntoPg(ds, { url, table: 'rapm_bad', batch: 0 }))).toBe('RAPM_INVALID_ARG');
    // A load that fails half-way leaves no table behind (one transaction).
    let batches = 0;
    const abort = loadDatastoreIntoPg(ds, {
      url,
      table: 'rapm_bad',
      batch: 1000,
      onProgress: () => {
        if (++batches === 2) throw new RapmError('RAPM_STATE', 'stop after two batches');
      },
    });
    expect(await codeOf(abort)).toBe('RAPM_STATE');
    expect(batches).toBe(2);
    expect((await db.query<{ e: boolean }>(`SELECT to_regclass('rapm_bad') IS NOT NULL AS e`)).rows[0]!.e).toBe(false);
    const src = await PgVectorSource.forDatastore(ds, { url, table: 'rapm_exact' });
    try {
      expect(await codeOf(src.search(queries, n + 1))).toBe('RAPM_K_TOO_LARGE');
      expect(await codeOf(src.search(new Float32Array(keyDim), k))).toBe('RAPM_ZERO_NORM');
      expect(await codeOf(src.search(queries.subarray(0, keyDim - 1), k))).toBe('RAPM_SHAPE_MISMATCH');
    } finally {
      await src.close();
    }
  });
});

describe('rapm pg-load and rapm serve --pg-url / --ann (CLI over the same wire server)', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-pg-'));
  const file = path.join(tmp, 'ds.rds');
  const ds = new Datastore({ keyDim, valueDim: dv, keyIndices });
  const n2 = 600;

  beforeAll(async () => {
    ds.addSync(clustered(n2, 11), randn(n2 * dv, 12), Array.from({ length: n2 }, (_, r) => `u${r >> 1}`));
    await saveDatastore(ds, file);
  });

  afterAll(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('pg-load loads the table; again without --overwrite it refuses; bad URL / table are named by flag', async () => {
    const r = await run(['pg-load', '--datastore', file, '--pg-url', url, '--pg-table', 'cli_keys', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ table: 'cli_keys', rows: n2, d, index: 'none' });
    expect((await db.query<{ n: number }>('SELECT count(*)::int AS n FROM cli_keys')).rows[0]!.n).toBe(n2);
    const again = await run(['pg-load', '--datastore', file, '--pg-url', url, '--pg-table', 'cli_keys']);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/already exists.*--replace|already exists/);
    const over = await run(['pg-load', '--datastore', file, '--pg-url', url, '--pg-table', 'cli_keys', '--overwrite', '--pg-index', 'hnsw', '--quiet']);
    expect(over.code, over.stderr).toBe(0);
    const badUrl = await run(['pg-load', '--datastore', path.join(tmp, 'missing.rds'), '--pg-url', 'http://x', '--pg-table', 't']);
    expect([badUrl.code !== 0, badUrl.stderr.includes('--pg-url')]).toEqual([true, true]);
    const badTable = await run(['pg-load', '--datastore', path.join(tmp, 'missing.rds'), '--pg-url', url, '--pg-table', 'x; drop']);
    expect([badTable.code !== 0, badTable.stderr.includes('--pg-table')]).toEqual([true, true]);
  });

  async function serveOnce(extra: Partial<ServeArgs>, en: Float32Array): Promise<{ health: Record<string, unknown>; explain: { neighbors: { id: string; row: number; similarity: number }[] }; lines: string[] }> {
    const ac = new AbortController();
    let base = '';
    const lines: string[] = [];
    const args: ServeArgs = { datastore: file, port: 0, host: '127.0.0.1', k: 10, tau: 0.04, aggregate: 'softmax', maxBatch: 8, graceMs: 1000, device: 'cpu', ...extra };
    const running = runServe(args, { signal: ac.signal, handleSignals: false, onListening: (u) => (base = u), log: (l) => lines.push(l) });
    try {
      while (!base) await Promise.race([new Promise((r) => setTimeout(r, 5)), running]);
      const health = (await (await fetch(base + '/health')).json()) as Record<string, unknown>;
      const explain = (await (await fetch(base + '/explain', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ en: Array.from(en) }) })).json()) as {
        neighbors: { id: string; row: number; similarity: number }[];
      };
      return { health, explain, lines };
    } finally {
      ac.abort();
      await running;
    }
  }

  it('serve --pg-url answers /explain with the ids and rows of exact serve', async () => {
    const en = clustered(1, 99);
    const exact = await serveOnce({}, en);
    const viaPg = await serveOnce({ pgUrl: url, pgTable: 'cli_keys' }, en);
    expect(viaPg.health).toMatchObject({ source: 'pgvector', rows: n2 });
    expect(exact.health).toMatchObject({ source: 'exact' });
    expect(viaPg.explain.neighbors.map((x) => x.row)).toEqual(exact.explain.neighbors.map((x) => x.row));
    expect(viaPg.explain.neighbors.map((x) => x.id)).toEqual(exact.explain.neighbors.map((x) => x.id));
    expect(viaPg.lines.some((l) => l.includes('PostgreSQL table cli_keys'))).toBe(true);
    // cli_keys was reloaded with --pg-index hnsw: --pg-mode index names the index that answers.
    const viaIndex = await serveOnce({ pgUrl: url, pgTable: 'cli_keys', pgMode: 'index' }, en);
    expect(viaIndex.lines.some((l) => /cli_keys \(600 rows, vector\(16\), mode index: hnsw index cli_keys_key_idx\)/.test(l)), viaIndex.lines.join('\n')).toBe(true);
    // A table from another datastore is refused before serving.
    await expect(serveOnce({ pgUrl: url, pgTable: 'no_such' }, en)).rejects.toMatchObject({ code: 'RAPM_DATA' });
  });

  it.skipIf(!faissAvailable())('serve --ann builds (and with --ann-index saves, then reloads) a faiss index; IVF with nprobe = nlist equals exact', async () => {
    const en = clustered(1, 98);
    const exact = await serveOnce({}, en);
    const indexFile = path.join(tmp, 'ivf.faiss');
    const built = await serveOnce({ ann: 'IVF8,Flat', nprobe: 8, annIndex: indexFile }, en);
    expect(fs.existsSync(indexFile)).toBe(true);
    expect(built.health).toMatchObject({ source: 'ann' });
    expect(built.explain.neighbors.map((x) => x.row)).toEqual(exact.explain.neighbors.map((x) => x.row));
    const loaded = await serveOnce({ ann: 'IVF8,Flat', nprobe: 8, annIndex: indexFile }, en);
    expect(loaded.lines.some((l) => l.includes(`loaded from ${indexFile}`))).toBe(true);
    expect(loaded.explain.neighbors.map((x) => x.row)).toEqual(exact.explain.neighbors.map((x) => x.row));
    await expect(serveOnce({ ann: 'HNSW8,Flat', nprobe: 4 }, en)).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG' });
  });

  /** `rapm serve ...` in-process; if it gets as far as serving, SIGTERM stops it (so a knob that is not refused ends, exit 0). */
  async function serveCli(argv: string[]): Promise<{ code: number; stderr: string }> {
    const stop = setInterval(() => process.emit('SIGTERM'), 300);
    try {
      return await run(['serve', '--datastore', file, '--port', '0', ...argv]);
    } finally {
      clearInterval(stop);
    }
  }

  it('serve refuses a search knob its index ignores, as a usage error naming the flag, the index and the knob that applies (pgvector)', async () => {
    // cli_keys holds an HNSW index (pg-load --pg-index hnsw above).
    const ivf = await serveCli(['--pg-url', url, '--pg-table', 'cli_keys', '--pg-mode', 'index', '--nprobe', '4']);
    expect(ivf.code, ivf.stderr).toBe(2);
    expect(ivf.stderr).toContain('probes (--nprobe, ivfflat.probes) applies to IVFFlat indexes only, but table cli_keys is searched through the HNSW index cli_keys_key_idx: set efSearch (--ef-search, hnsw.ef_search) instead');
    // Exact mode has no index to tune: refused before anything is opened.
    const exactMode = await serveCli(['--pg-url', url, '--pg-table', 'cli_keys', '--ef-search', '40']);
    expect(exactMode.code, exactMode.stderr).toBe(2);
    expect(exactMode.stderr).toContain('--ef-search sets the search of a vector index, but --pg-mode exact scans every row: add --pg-mode index or drop --ef-search');
  });

  it.skipIf(!faissAvailable())('serve --ann refuses a search knob its factory ignores before building the index, as a usage error naming the knob that applies', async () => {
    const hnsw = await serveCli(['--ann', 'HNSW8,Flat', '--nprobe', '4']);
    expect(hnsw.code, hnsw.stderr).toBe(2);
    expect(hnsw.stderr).toContain('nprobe (--nprobe) applies to IVF indexes only, but --ann HNSW8,Flat is an HNSW index: set efSearch (--ef-search) instead, or drop nprobe (--nprobe)');
    expect(hnsw.stderr).not.toContain('building the approximate index');
    const ivf = await serveCli(['--ann', 'IVF8,Flat', '--ef-search', '32']);
    expect(ivf.code, ivf.stderr).toBe(2);
    expect(ivf.stderr).toContain('efSearch (--ef-search) applies to HNSW indexes only, but --ann IVF8,Flat is an IVF index: set nprobe (--nprobe) instead');
    expect(ivf.stderr).not.toContain('building the approximate index');
    const flat = await serveCli(['--ann', 'Flat', '--ef-search', '32']);
    expect(flat.code, flat.stderr).toBe(2);
    expect(flat.stderr).toContain('but --ann Flat is a flat index (an exact scan, no search knob): drop efSearch (--ef-search)');
    // The library says the same, with RAPM_INVALID_ARG.
    await expect(openNeighborSource(ds, { ann: 'HNSW8,Flat', nprobe: 4 })).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG', message: expect.stringMatching(/^nprobe \(--nprobe\) applies to IVF indexes only, but --ann HNSW8,Flat is an HNSW index/) });
    // A nprobe above the factory's lists is refused before the build too.
    const lines: string[] = [];
    await expect(openNeighborSource(ds, { ann: 'IVF8,Flat', nprobe: 9, log: (l) => lines.push(l) })).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG' });
    expect(lines.join('\n')).not.toContain('building');
  });
});
