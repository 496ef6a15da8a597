/**
 * PostgreSQL + pgvector as a NeighborSource, through the `pg` client.
 *
 * The engine holds only keys: a table `(row integer PRIMARY KEY, id text NOT NULL, key
 * vector(d) NOT NULL)` whose `row` is the Datastore row number and `key` the stored key (after
 * key selection, L2-normalised). Values and utterance ids stay with rapm (a Datastore file),
 * which aggregates the neighbours' values and applies fusion on top (predictFromSource).
 *
 * Search is one SQL statement per batch of queries (unnest + LATERAL top-k), cosine distance
 * `<=>`, similarity = 1 - distance:
 * - mode 'exact': `ORDER BY key <=> q, row` — a full scan with ties broken to the lower row, as
 *   rapm's exact search does (the secondary key keeps any vector index out of the plan);
 * - mode 'index': `ORDER BY key <=> q` so an HNSW / IVFFlat index (vector_cosine_ops) answers;
 *   `efSearch` sets `hnsw.ef_search` and `probes` sets `ivfflat.probes` on every connection.
 *   Such an index must exist (checked at open): without one the same SQL is a full scan (the
 *   cost of mode 'exact', without its tie rule), so it is refused rather than served as indexed.
 *   A knob for the other kind of index (efSearch with only an IVFFlat index, probes with only
 *   an HNSW one) would be ignored by PostgreSQL, so it is refused at open (RAPM_INVALID_ARG).
 *
 * Timeouts (timeoutMs, default PG_TIMEOUT_MS = 30 s): connecting (or waiting for a free pooled
 * connection) and each search or table lookup are bounded on the client (pg's
 * connectionTimeoutMillis and query_timeout), so a database that accepts TCP but never answers,
 * or a host that drops packets, fails the call with RAPM_IO naming the database, the table and
 * the timeout instead of holding it forever (a server-side statement_timeout cannot end a wait
 * on a hung server). A connection whose query timed out is dropped, not pooled again. A search
 * waits at most about 2 x timeoutMs (a connection, then the answer).
 *
 * Any server speaking the PostgreSQL protocol with pgvector works: a local postgres, a managed
 * one (RDS / Cloud SQL / Azure / Supabase / Neon: pass their URL, `?sslmode=require`), or a
 * distributed one (Citus: distribute the table by `row`; the same SQL runs on every shard).
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { RapmError, RapmRangeError, RapmTypeError, describe, invalidParam } from '../errors.js';
import { selectColumns } from '../data/indices.js';
import { checkInteger, checkKnownKeys, checkMatrix, is } from '../validate.js';
import { EF_SEARCH_MAX_PGVECTOR, NPROBE_MAX_PGVECTOR, SETTINGS } from '../settings.js';
import { refuseSearchKnobs } from './ann.js';
import { Datastore } from './datastore.js';
import { SourceUnavailableError, datastoreKeys, keySelection, singleFlight, withDeadline, type NeighborSource } from './neighbor-source.js';

export type PgSearchMode = 'exact' | 'index';

/** How long PgVectorSource.check() waits for PostgreSQL by default, ms. */
export const PG_CHECK_TIMEOUT_MS = 2000;
export type PgIndexKind = 'none' | 'hnsw' | 'ivfflat';

/** The pgvector search knobs in messages: nprobe is ivfflat.probes (option probes), efSearch hnsw.ef_search. */
const PG_KNOB_NAMES = { nprobe: 'probes (--nprobe, ivfflat.probes)', efSearch: 'efSearch (--ef-search, hnsw.ef_search)' } as const;

const IDENT = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** Check and quote `table` or `schema.table` (plain identifiers only). */
export function quoteTable(table: unknown, flag = 'table'): string {
  if (typeof table !== 'string') throw invalidParam(flag, 'string table name', table);
  const parts = table.split('.');
  if (parts.length > 2 || !parts.every((p) => IDENT.test(p))) {
    throw new RapmRangeError('RAPM_INVALID_ARG', `Expected ${flag} to be a table name such as rapm_keys or public.rapm_keys (letters, digits, _; at most 63 each) but received ${JSON.stringify(table)}`);
  }
  return parts.map((p) => pg.escapeIdentifier(p)).join('.');
}

/** Check a postgres:// URL; returns it. The password never appears in messages. */
export function checkPgUrl(url: unknown, flag = 'url'): string {
  if (typeof url !== 'string') throw invalidParam(flag, 'postgres:// URL string', url);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new RapmRangeError('RAPM_INVALID_ARG', `Expected ${flag} to be a URL such as postgres://user@host:5432/db but received ${JSON.stringify(redact(url))}`);
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') {
    throw new RapmRangeError('RAPM_INVALID_ARG', `Expected ${flag} to start with postgres:// or postgresql:// but received ${u.protocol}//...`);
  }
  if (u.hostname === '' && !u.searchParams.has('host')) throw new RapmRangeError('RAPM_INVALID_ARG', `Expected a host in ${flag} (postgres://user@host:5432/db)`);
  return url;
}

function redact(url: string): string {
  return url.replace(/(\/\/[^:/@]*:)[^@]*@/, '$1***@');
}

/** pg's errors for a connection or a query that timed out (query_timeout, connectionTimeoutMillis). */
const PG_TIMEOUT = /^(Query read timeout|timeout expired|Connection terminated due to connection timeout|timeout exceeded when trying to connect)$/;
/** pg's errors for a connection the server (or the network) ended. */
const PG_GONE = /^(Connection terminated( unexpectedly)?|Client was closed and is not queryable|Client has encountered a connection error and is not queryable)$/;
/** Socket errors: the server cannot be reached. */
const NET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ETIMEDOUT', 'EHOSTUNREACH', 'EHOSTDOWN', 'ENETUNREACH', 'ENETDOWN', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE']);

/**
 * True when `e` says PostgreSQL did not answer (refused, reset or timed-out connection, a server
 * shutting down or out of connections: SQLSTATE class 08, 57P01-57P03, 53300), as opposed to a
 * statement that failed (a missing table, a permission, a type error: a bug or a broken setup).
 */
function isPgOutage(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  if (PG_TIMEOUT.test(e.message) || PG_GONE.test(e.message)) return true;
  const code = (e as { code?: unknown }).code;
  if (typeof code !== 'string') return false;
  return NET_CODES.has(code) || code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03' || code === '53300';
}

/** What a pool is bounded by and connects to, for messages. */
interface PgBound {
  timeoutMs: number;
  /** host[:port]/database (never user or password). */
  database: string;
}

/**
 * A pg error (connection refused, SQL error, ...) as RAPM_IO naming what was being done and,
 * with `bound`, the database; one that ran into `bound`'s timeout says so, naming the timeout.
 * When PostgreSQL did not answer (isPgOutage) it is a SourceUnavailableError (HTTP 503).
 */
function pgError(what: string, e: unknown, bound?: PgBound): RapmError {
  const code = (e as { code?: unknown })?.code;
  const msg = e instanceof Error ? e.message : String(e);
  const outage = isPgOutage(e);
  if (bound !== undefined && e instanceof Error && PG_TIMEOUT.test(e.message)) {
    return new SourceUnavailableError(`PostgreSQL ${what} got no answer from ${bound.database} within ${bound.timeoutMs} ms (timeoutMs; pg: ${msg}): the database is down, hung or unreachable`, { cause: e });
  }
  const text = `PostgreSQL ${what}${bound !== undefined ? ` at ${bound.database}` : ''} failed: ${msg}${typeof code === 'string' ? ` (${code})` : ''}`;
  return outage ? new SourceUnavailableError(text, { cause: e }) : new RapmError('RAPM_IO', text, { cause: e });
}

/** pgvector's text form of a row: '[x0,x1,...]' (shortest round-trip decimal of each float32). */
export function vectorLiteral(m: Float32Array, d: number, row: number): string {
  let s = '[';
  const base = row * d;
  for (let j = 0; j < d; j++) {
    const x = m[base + j]!;
    if (!Number.isFinite(x)) throw new RapmRangeError('RAPM_NON_FINITE', `Expected finite values but row ${row}, column ${j} is ${String(x)}`);
    s += (j ? ',' : '') + String(x);
  }
  return s + ']';
}

const PG_CONNECT_KEYS = ['url', 'pool', 'maxConnections', 'timeoutMs'] as const satisfies readonly (keyof PgConnectOptions)[];

/**
 * Default bound on waiting for PostgreSQL, ms: for a connection (a new one, or a free one of
 * the pool) and for the answer to each search and table lookup. A database that accepts TCP
 * but never answers (or a host that drops packets) otherwise held a /predict forever.
 */
export const PG_TIMEOUT_MS: number = SETTINGS.pgTimeoutMs.default;

export interface PgConnectOptions {
  /** postgres:// URL (or give `pool`). */
  url?: string;
  /** An existing pg.Pool (the caller ends it; its own connectionTimeoutMillis bounds connecting). */
  pool?: pg.Pool;
  /** Pool size when `url` is given. Default 4. */
  maxConnections?: number;
  /**
   * Longest wait for a connection (pool from `url`) and for the answer to each search and
   * table lookup, ms; beyond it the call fails with RAPM_IO. Loads (loadDatastoreIntoPg) bound
   * only connecting: building an index can take longer. Default 30,000 (PG_TIMEOUT_MS).
   */
  timeoutMs?: number;
}

/** host[:port]/database of a postgres URL, without user or password. */
function databaseOf(url: string | undefined): string {
  if (url === undefined) return 'the database';
  try {
    const u = new URL(url);
    return `${u.host || (u.searchParams.get('host') ?? '')}${u.pathname === '/' ? '' : u.pathname}`;
  } catch {
    return 'the database';
  }
}

function openPool(options: PgConnectOptions, flag: string): { pool: pg.Pool; owned: boolean; bound: PgBound } {
  const { lo, hi } = SETTINGS.pgTimeoutMs.bounds!;
  const timeoutMs = options.timeoutMs === undefined ? PG_TIMEOUT_MS : checkInteger('timeoutMs', options.timeoutMs, lo, hi);
  if (options.pool !== undefined) {
    if (!(options.pool instanceof pg.Pool)) throw invalidParam('pool', 'pg.Pool', options.pool);
    const own = (options.pool as unknown as { options?: { connectionString?: string; host?: string; port?: number; database?: string } }).options ?? {};
    const database = own.connectionString !== undefined ? databaseOf(own.connectionString) : own.host !== undefined ? `${own.host}${own.port ? `:${own.port}` : ''}/${own.database ?? ''}` : 'the database';
    return { pool: options.pool, owned: false, bound: { timeoutMs, database } };
  }
  const url = checkPgUrl(options.url, flag);
  const max = options.maxConnections === undefined ? 4 : checkInteger('maxConnections', options.maxConnections, 1, 1000);
  // connectionTimeoutMillis bounds connecting and waiting for a free pooled connection; each
  // query gets its own query_timeout (searches and lookups only: see timeoutMs).
  const pool = new pg.Pool({ connectionString: url, max, connectionTimeoutMillis: timeoutMs });
  pool.on('error', () => {}); // idle-client errors surface on the next query instead of crashing the process
  return { pool, owned: true, bound: { timeoutMs, database: databaseOf(url) } };
}

interface TableInfo {
  exists: boolean;
  d: number;
}

async function tableInfo(pool: pg.Pool | pg.PoolClient, quoted: string, table: string, bound?: PgBound): Promise<TableInfo> {
  let r: pg.QueryResult;
  try {
    r = await pool.query({
      text: `SELECT format_type(a.atttypid, a.atttypmod) AS t FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attname = 'key' AND NOT a.attisdropped`,
      values: [quoted],
      query_timeout: bound?.timeoutMs,
    } as pg.QueryConfig);
  } catch (e) {
    throw pgError(`looking up table ${table}`, e, bound);
  }
  if (r.rows.length === 0) {
    const ex = await pool.query({ text: 'SELECT to_regclass($1) IS NOT NULL AS e', values: [quoted], query_timeout: bound?.timeoutMs } as pg.QueryConfig).catch((e: unknown) => {
      throw pgError(`looking up table ${table}`, e, bound);
    });
    if (ex.rows[0].e) throw new RapmError('RAPM_DATA', `Table ${table} has no column "key" (expected (row integer, id text, key vector(d)), as written by rapm pg-load)`);
    return { exists: false, d: 0 };
  }
  const m = /^vector\((\d+)\)$/.exec(String(r.rows[0].t));
  if (!m) throw new RapmError('RAPM_DATA', `Column "key" of table ${table} is ${String(r.rows[0].t)}, expected vector(d) (pgvector)`);
  return { exists: true, d: Number(m[1]) };
}

/** A vector index on `key` (pgvector's HNSW or IVFFlat access method). */
export interface PgKeyIndex {
  name: string;
  method: 'hnsw' | 'ivfflat';
  /** Operator class: only vector_cosine_ops answers the cosine `<=>` of the search. */
  opclass: string;
}

/** The valid, non-partial HNSW / IVFFlat indexes whose first column is `key`. */
async function keyIndexes(pool: pg.Pool, quoted: string, table: string, bound: PgBound): Promise<PgKeyIndex[]> {
  try {
    const r = await pool.query<PgKeyIndex>({
      text:
        `SELECT c.relname AS name, am.amname AS method, oc.opcname AS opclass FROM pg_index i ` +
        `JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam ` +
        `JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] JOIN pg_opclass oc ON oc.oid = i.indclass[0] ` +
        `WHERE i.indrelid = to_regclass($1) AND a.attname = 'key' AND am.amname IN ('hnsw', 'ivfflat') AND i.indisvalid AND i.indpred IS NULL ORDER BY c.relname`,
      values: [quoted],
      query_timeout: bound.timeoutMs,
    } as pg.QueryConfig);
    return r.rows;
  } catch (e) {
    throw pgError(`looking up the indexes of ${table}`, e, bound);
  }
}

/** Rows per id digest (checkIds): a mismatch fetches at most this many ids. */
export const PG_ID_BLOCK = 4096;

/** md5 of each id's UTF-8 byte length, ':' and the id, for ids[lo, hi): what checkIds' SQL computes per block. */
function idDigest(ids: readonly string[], lo: number, hi: number): string {
  const h = createHash('md5');
  for (let i = lo; i < hi; i++) h.update(`${Buffer.byteLength(ids[i]!, 'utf8')}:${ids[i]}`, 'utf8');
  return h.digest('hex');
}

/**
 * Refuse (RAPM_DATA, naming the first row that differs) a table whose ids are not `ids` in row
 * order. The server sends one md5 per block of PG_ID_BLOCK rows (of each id's byte length, ':'
 * and the id, in row order), compared with the same digests computed here; only a block whose
 * digest differs is fetched, to name its first differing row. (Every id used to be fetched:
 * seconds and hundreds of MB at 200K+ rows.) A block whose digest differs but whose ids are
 * equal (a server encoding other than UTF-8 hashes other bytes) is accepted, as before.
 */
async function checkIds(pool: pg.Pool, quoted: string, table: string, ids: readonly string[], bound: PgBound): Promise<void> {
  const query = async (text: string, values: unknown[] = []): Promise<pg.QueryResult> => {
    try {
      return await pool.query({ text, values, query_timeout: bound.timeoutMs } as pg.QueryConfig);
    } catch (e) {
      throw pgError(`reading ${table}`, e, bound);
    }
  };
  const digests = await query(
    `SELECT (row / ${PG_ID_BLOCK})::integer AS blk, md5(string_agg(octet_length(id)::text || ':' || id, '' ORDER BY row)) AS h FROM ${quoted} GROUP BY 1 ORDER BY 1`,
  );
  const server = new Map<number, string | null>(digests.rows.map((r: { blk: number; h: string | null }) => [Number(r.blk), r.h]));
  for (let lo = 0; lo < ids.length; lo += PG_ID_BLOCK) {
    const hi = Math.min(ids.length, lo + PG_ID_BLOCK);
    if (server.get(lo / PG_ID_BLOCK) === idDigest(ids, lo, hi)) continue;
    const got = await query(`SELECT id FROM ${quoted} WHERE row >= $1 AND row < $2 ORDER BY row`, [lo, hi]);
    const i = got.rows.findIndex((x: { id: string }, j: number) => x.id !== ids[lo + j]);
    if (i >= 0) {
      const r = lo + i;
      throw new RapmError('RAPM_DATA', `Table ${table} row ${r} holds id '${String(got.rows[i].id)}' but the datastore's row ${r} is '${ids[r]}': the table was loaded from another datastore; reload it (rapm pg-load --overwrite)`);
    }
    if (got.rows.length !== hi - lo) throw new RapmError('RAPM_DATA', `Table ${table} holds ${got.rows.length} rows numbered ${lo}..${hi - 1}, not ${hi - lo}: each of rows 0..${ids.length - 1} must be there once; reload it (rapm pg-load --overwrite)`);
  }
}

export interface PgLoadOptions extends PgConnectOptions {
  /** Target table (created; `schema.table` allowed). */
  table: string;
  /** Drop an existing table of that name first. Default false: an existing table is an error. */
  replace?: boolean;
  /** Rows per INSERT statement. Default 1,000. */
  batch?: number;
  /** Vector index to build after loading: 'none' (exact scans only, default), 'hnsw' or 'ivfflat'. */
  index?: PgIndexKind;
  /** HNSW: m (default 16) and ef_construction (default 64); IVFFlat: lists (default 4 sqrt(rows), at least 1). */
  m?: number;
  efConstruction?: number;
  lists?: number;
  /** Called after every batch with the rows loaded so far. */
  onProgress?: (rows: number, total: number) => void;
}

export interface PgLoadResult {
  table: string;
  rows: number;
  d: number;
  index: PgIndexKind;
  seconds: number;
}

/**
 * Load a Datastore's keys and ids into `table` in one transaction (CREATE TABLE, batched
 * INSERT ... SELECT FROM unnest(...), optional vector index): a failed load leaves no table
 * behind. `row` = Datastore row number.
 */
export async function loadDatastoreIntoPg(ds: Datastore, options: PgLoadOptions): Promise<PgLoadResult> {
  if (!(ds instanceof Datastore)) throw new RapmTypeError('RAPM_TYPE', `Expected a Datastore for datastore but received ${describe(ds)}`);
  if (!is.object(options as unknown)) throw invalidParam('options', 'object', options);
  checkKnownKeys('loadDatastoreIntoPg', options, [...PG_CONNECT_KEYS, 'table', 'replace', 'batch', 'index', 'm', 'efConstruction', 'lists', 'onProgress'] satisfies (keyof PgLoadOptions)[]);
  const quoted = quoteTable(options.table);
  const batch = options.batch === undefined ? 1000 : checkInteger('batch', options.batch, 1, 100_000);
  const index = options.index ?? 'none';
  if (!['none', 'hnsw', 'ivfflat'].includes(index)) throw invalidParam('index', "'none', 'hnsw' or 'ivfflat'", index);
  const m = options.m === undefined ? 16 : checkInteger('m', options.m, 2, 100);
  const efConstruction = options.efConstruction === undefined ? 64 : checkInteger('efConstruction', options.efConstruction, 4, 1000);
  const n = ds.size;
  if (n === 0) throw new RapmError('RAPM_STATE', 'The datastore is empty: nothing to load');
  const lists = options.lists === undefined ? Math.max(1, Math.min(32768, Math.round(4 * Math.sqrt(n)))) : checkInteger('lists', options.lists, 1, 32768);
  const d = ds.d;
  if (d > 16000) throw new RapmRangeError('RAPM_INVALID_ARG', `pgvector stores at most 16,000 dimensions but the datastore's keys have ${d}`);
  const t0 = performance.now();
  const { pool, owned, bound } = openPool(options, 'url');
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (e) {
    if (owned) await pool.end().catch(() => {});
    throw pgError('connect', e, bound);
  }
  let inTx = false;
  try {
    await client.query('CREATE EXTENSION IF NOT EXISTS vector').catch((e: unknown) => {
      throw pgError('CREATE EXTENSION vector (is pgvector installed on the server?)', e);
    });
    await client.query('BEGIN');
    inTx = true;
    if (options.replace === true) await client.query(`DROP TABLE IF EXISTS ${quoted}`);
    else if ((await client.query('SELECT to_regclass($1) IS NOT NULL AS e', [quoted])).rows[0].e) {
      throw new RapmError('RAPM_STATE', `Table ${options.table} already exists: choose another table, or pass replace: true (rapm pg-load --overwrite) to drop it first`);
    }
    await client.query(`CREATE TABLE ${quoted} (row integer PRIMARY KEY, id text NOT NULL, key vector(${d}) NOT NULL)`);
    for (let r0 = 0; r0 < n; r0 += batch) {
      const r1 = Math.min(n, r0 + batch);
      const keys = datastoreKeys(ds, r0, r1);
      const rows: number[] = [];
      const ids: string[] = [];
      const vecs: string[] = [];
      for (let r = r0; r < r1; r++) {
        rows.push(r);
        ids.push(ds.idOf(r));
        vecs.push(vectorLiteral(keys, d, r - r0));
      }
      await client.query(`INSERT INTO ${quoted} (row, id, key) SELECT * FROM unnest($1::integer[], $2::text[], $3::vector[])`, [rows, ids, vecs]);
      options.onProgress?.(r1, n);
    }
    if (index === 'hnsw') await client.query(`CREATE INDEX ON ${quoted} USING hnsw (key vector_cosine_ops) WITH (m = ${m}, ef_construction = ${efConstruction})`);
    else if (index === 'ivfflat') await client.query(`CREATE INDEX ON ${quoted} USING ivfflat (key vector_cosine_ops) WITH (lists = ${lists})`);
    await client.query('COMMIT');
    inTx = false;
    await client.query(`ANALYZE ${quoted}`);
  } catch (e) {
    if (inTx) await client.query('ROLLBACK').catch(() => {});
    if (e instanceof RapmError || e instanceof RapmRangeError || e instanceof RapmTypeError) throw e;
    throw pgError(`loading ${options.table}`, e);
  } finally {
    client.release();
    if (owned) await pool.end().catch(() => {});
  }
  return { table: options.table, rows: n, d, index, seconds: (performance.now() - t0) / 1000 };
}

export interface PgVectorSourceOptions extends PgConnectOptions {
  table: string;
  /** Query width (before key selection). */
  keyDim: number;
  /** Query columns the table's d key columns come from (null / absent: all; keyDim must equal d). */
  keyIndices?: Int32Array | null;
  /** 'exact' (default): full scan, ties to the lower row; 'index': let a vector index answer. */
  mode?: PgSearchMode;
  /** 'index' mode: hnsw.ef_search (pgvector default 40; must be >= k for k results). */
  efSearch?: number;
  /** 'index' mode: ivfflat.probes (pgvector default 1). */
  probes?: number;
  /** Rows the table must hold (0..size-1), e.g. the Datastore's size. Checked at open. */
  expectRows?: number;
  /**
   * The id of every row, in row order (the Datastore's): the table's ids must match, so a table
   * loaded from another datastore of the same size and width is refused instead of serving its
   * neighbours under this datastore's ids. Checked at open.
   */
  expectIds?: readonly string[];
}

/** Top-k by cosine from a pgvector table written by loadDatastoreIntoPg / `rapm pg-load`. */
export class PgVectorSource implements NeighborSource {
  readonly name = 'pgvector';
  readonly table: string;
  readonly keyDim: number;
  readonly d: number;
  readonly size: number;
  readonly mode: PgSearchMode;
  /** Mode 'index': the index that answers (checked at open); mode 'exact': null. */
  readonly index: PgKeyIndex | null;
  readonly keyIndices: Int32Array | null;
  readonly #pool: pg.Pool;
  readonly #owned: boolean;
  /** timeoutMs and the database, for searches and their errors. */
  readonly #bound: PgBound;
  readonly #quoted: string;
  readonly #sql: string;
  /** The health check in flight (check()), if any: never more than one, also when it hangs. */
  readonly #check = singleFlight((timeoutMs: number) =>
    withDeadline((signal) => this.#ping(signal, timeoutMs), timeoutMs, () => new SourceUnavailableError(`PostgreSQL health check on ${this.table} got no answer from ${this.#bound.database} within ${timeoutMs} ms`)),
  );
  /** Session settings (SET ...) run once on every pooled connection before its first search. */
  readonly #settings: string[];
  readonly #ready = new WeakSet<pg.PoolClient>();

  private constructor(pool: pg.Pool, owned: boolean, bound: PgBound, table: string, quoted: string, keyDim: number, keyIndices: Int32Array | null, d: number, size: number, mode: PgSearchMode, index: PgKeyIndex | null, settings: string[]) {
    this.#pool = pool;
    this.#bound = bound;
    this.index = index;
    this.#settings = settings;
    this.#owned = owned;
    this.#quoted = quoted;
    this.table = table;
    this.keyDim = keyDim;
    this.keyIndices = keyIndices;
    this.d = d;
    this.size = size;
    this.mode = mode;
    const order = mode === 'exact' ? `t.key <=> q.v::vector(${d}), t.row` : `t.key <=> q.v::vector(${d})`;
    this.#sql =
      `SELECT q.i::integer AS i, n.row, n.dist FROM unnest($1::text[]) WITH ORDINALITY AS q(v, i) ` +
      `CROSS JOIN LATERAL (SELECT t.row, t.key <=> q.v::vector(${d}) AS dist FROM ${quoted} t ORDER BY ${order} LIMIT $2) n ORDER BY q.i, n.dist, n.row`;
  }

  /** Connect, check the table (exists, key vector(d), rows 0..n-1; mode 'index': a cosine HNSW / IVFFlat index on key), set the index search parameters. */
  static async open(options: PgVectorSourceOptions): Promise<PgVectorSource> {
    if (!is.object(options as unknown)) throw invalidParam('options', 'object', options);
    checkKnownKeys('PgVectorSource.open', options, [...PG_CONNECT_KEYS, 'table', 'keyDim', 'keyIndices', 'mode', 'efSearch', 'probes', 'expectRows', 'expectIds'] satisfies (keyof PgVectorSourceOptions)[]);
    const quoted = quoteTable(options.table);
    const keyDim = checkInteger('keyDim', options.keyDim, 1);
    const keyIndices = options.keyIndices ?? null;
    if (keyIndices !== null && !(keyIndices instanceof Int32Array)) throw invalidParam('keyIndices', 'Int32Array or null', keyIndices);
    const mode = options.mode ?? 'exact';
    if (mode !== 'exact' && mode !== 'index') throw invalidParam('mode', "'exact' or 'index'", mode);
    const efSearch = options.efSearch === undefined ? undefined : checkInteger('efSearch', options.efSearch, 1, EF_SEARCH_MAX_PGVECTOR);
    const probes = options.probes === undefined ? undefined : checkInteger('probes', options.probes, 1, NPROBE_MAX_PGVECTOR);
    if ((efSearch !== undefined || probes !== undefined) && mode !== 'index') {
      throw new RapmRangeError('RAPM_INVALID_ARG', "efSearch (--ef-search) and probes (--nprobe) apply to mode 'index' (--pg-mode index) only: mode 'exact' scans every row");
    }
    const expectRows = options.expectRows === undefined ? undefined : checkInteger('expectRows', options.expectRows, 0);
    const { pool, owned, bound } = openPool(options, 'url');
    const settings: string[] = [];
    if (efSearch !== undefined) settings.push(`SET hnsw.ef_search = ${efSearch}`);
    if (probes !== undefined) settings.push(`SET ivfflat.probes = ${probes}`);
    try {
      const info = await tableInfo(pool, quoted, options.table, bound);
      if (!info.exists) throw new RapmError('RAPM_DATA', `Table ${options.table} does not exist: load it first (rapm pg-load --datastore FILE --pg-url URL --pg-table ${options.table})`);
      const d = info.d;
      if (keyIndices !== null ? keyIndices.length !== d : keyDim !== d) {
        throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `Table ${options.table} holds vector(${d}) keys but the queries select ${keyIndices !== null ? keyIndices.length : keyDim} columns: load the table from this datastore`);
      }
      if (keyIndices !== null) for (const c of keyIndices) if (c < 0 || c >= keyDim) throw new RapmRangeError('RAPM_INVALID_ARG', `Expected keyIndices in [0, ${keyDim}) but found ${c}`);
      // Without an index that answers `ORDER BY key <=> q`, mode 'index' runs as a full scan
      // (mode 'exact''s cost without its tie rule) while it looks indexed: refuse it here.
      let index: PgKeyIndex | null = null;
      if (mode === 'index') {
        const found = await keyIndexes(pool, quoted, options.table, bound);
        index = found.find((x) => x.opclass === 'vector_cosine_ops') ?? null;
        if (index === null) {
          const other = found.length > 0 ? ` (${found.map((x) => `${x.name} uses ${x.opclass}, which cannot answer cosine <=> searches`).join('; ')})` : '';
          throw new RapmError(
            'RAPM_DATA',
            `Table ${options.table} has no HNSW or IVFFlat index on "key" with vector_cosine_ops${other}, so mode 'index' (--pg-mode index) would scan every row: ` +
              `create one (rapm pg-load --overwrite --pg-index hnsw, or CREATE INDEX ON ${options.table} USING hnsw (key vector_cosine_ops)) or use mode 'exact' (--pg-mode exact)`,
          );
        }
        // hnsw.ef_search does nothing to an IVFFlat scan and ivfflat.probes nothing to an HNSW
        // one: a knob for an index the table does not have would be set and silently ignored.
        const methods = new Set(found.filter((x) => x.opclass === 'vector_cosine_ops').map((x) => x.method));
        // A table with cosine indexes of both kinds takes either knob.
        if (methods.size === 1) {
          const { method, name } = index;
          const family = method === 'hnsw' ? 'HNSW' : 'IVFFlat';
          refuseSearchKnobs(method === 'hnsw' ? 'hnsw' : 'ivf', { nprobe: probes, efSearch }, `table ${options.table}`, { knob: (k) => PG_KNOB_NAMES[k], family: { ivf: 'IVFFlat', hnsw: 'HNSW' }, is: () => `is searched through the ${family} index ${name}` });
        }
      }
      let stats: pg.QueryResult;
      try {
        stats = await pool.query({ text: `SELECT count(*)::bigint AS n, coalesce(min(row), 0) AS lo, coalesce(max(row), -1) AS hi FROM ${quoted}`, query_timeout: bound.timeoutMs } as pg.QueryConfig);
      } catch (e) {
        throw pgError(`reading ${options.table}`, e, bound);
      }
      const n = Number(stats.rows[0].n);
      if (n === 0) throw new RapmError('RAPM_DATA', `Table ${options.table} is empty`);
      if (Number(stats.rows[0].lo) !== 0 || Number(stats.rows[0].hi) !== n - 1) {
        throw new RapmError('RAPM_DATA', `Table ${options.table} must hold rows 0..${n - 1} (Datastore row numbers) but holds ${stats.rows[0].lo}..${stats.rows[0].hi}`);
      }
      if (expectRows !== undefined && n !== expectRows) {
        throw new RapmError('RAPM_DATA', `Table ${options.table} holds ${n} rows but the datastore holds ${expectRows}: reload it (rapm pg-load --overwrite)`);
      }
      const expectIds = options.expectIds;
      if (expectIds !== undefined) {
        if (!Array.isArray(expectIds) || expectIds.length !== n) throw invalidParam('expectIds', `an array of ${n} ids (one per row)`, expectIds);
        await checkIds(pool, quoted, options.table, expectIds, bound);
      }
      return new PgVectorSource(pool, owned, bound, options.table, quoted, keyDim, keyIndices, d, n, mode, index, settings);
    } catch (e) {
      if (owned) await pool.end().catch(() => {});
      throw e;
    }
  }

  /** Open a source over the table loaded from `ds` (same key selection; row count and ids checked). */
  static async forDatastore(ds: Datastore, options: Omit<PgVectorSourceOptions, 'keyDim' | 'keyIndices' | 'expectRows'>): Promise<PgVectorSource> {
    if (!(ds instanceof Datastore)) throw new RapmTypeError('RAPM_TYPE', `Expected a Datastore for datastore but received ${describe(ds)}`);
    return PgVectorSource.open({ ...options, keyDim: ds.keyDim, keyIndices: keySelection(ds), expectRows: ds.size, expectIds: ds._ids() });
  }

  async search(queries: Float32Array, k: number): Promise<{ rows: Int32Array; similarities: Float32Array }> {
    const b = checkMatrix('queries', queries, this.keyDim);
    checkInteger('k', k, 1);
    if (k > this.size) throw new RapmRangeError('RAPM_K_TOO_LARGE', `Expected k <= ${this.size} (rows in ${this.table}) but received k = ${k}`);
    const q = this.keyIndices ? selectColumns(queries, this.keyDim, this.keyIndices) : queries;
    // Queries are sent L2-normalised (in double, then float32), as rapm's own search normalises
    // them: pgvector sums squares in float32, so a query of tiny values (1e-30) had a norm of 0
    // there and every distance came back NaN (a 400 'non-finite similarities' and arbitrary rows),
    // and one of huge values overflowed the same way. Cosine does not change.
    const d = this.d;
    const unit = new Float32Array(b * d);
    const lits: string[] = [];
    for (let i = 0; i < b; i++) {
      let s = 0;
      for (let j = i * d; j < (i + 1) * d; j++) s += q[j]! * q[j]!;
      if (!Number.isFinite(s)) vectorLiteral(q, d, i); // throws RAPM_NON_FINITE naming the value
      if (s === 0) throw new RapmRangeError('RAPM_ZERO_NORM', `Expected non-zero queries but query ${i} is all zeros (cosine undefined)`);
      const inv = 1 / Math.sqrt(s);
      for (let j = i * d; j < (i + 1) * d; j++) unit[j] = q[j]! * inv;
      lits.push(vectorLiteral(unit, d, i));
    }
    let res: pg.QueryResult<{ i: number; row: number; dist: number }>;
    // Bounded on the client (query_timeout): statement_timeout cannot end a wait on a server
    // that is itself hung, or on a network that drops the packets.
    const query = { text: this.#sql, values: [lits, k], query_timeout: this.#bound.timeoutMs } as pg.QueryConfig;
    try {
      if (this.#settings.length === 0) res = await this.#pool.query<{ i: number; row: number; dist: number }>(query); // a failed query's connection is dropped by the pool
      else {
        const c = await this.#pool.connect();
        try {
          if (!this.#ready.has(c)) {
            for (const sql of this.#settings) await c.query({ text: sql, query_timeout: this.#bound.timeoutMs } as pg.QueryConfig);
            this.#ready.add(c);
          }
          res = await c.query<{ i: number; row: number; dist: number }>(query);
        } catch (e) {
          // Dropped, not pooled again: after a timeout the query may still be pending on it.
          c.release(e instanceof Error ? e : true);
          throw e;
        }
        c.release();
      }
    } catch (e) {
      throw pgError(`search on ${this.table}`, e, this.#bound);
    }
    const rows = new Int32Array(b * k).fill(-1);
    const similarities = new Float32Array(b * k).fill(-Infinity);
    const filled = new Int32Array(b);
    for (const r of res.rows) {
      const qi = r.i - 1;
      const slot = filled[qi]!;
      if (qi < 0 || qi >= b || slot >= k) throw new RapmError('RAPM_DATA', `PostgreSQL returned an unexpected result row (query ${qi + 1}, slot ${slot})`);
      rows[qi * k + slot] = r.row;
      similarities[qi * k + slot] = 1 - Number(r.dist);
      filled[qi] = slot + 1;
    }
    return { rows, similarities };
  }

  /**
   * Health check (NeighborSource.check, run by GET /health): `SELECT 1 FROM table LIMIT 1` on a
   * connection of its own (the pool's settings), so the server answers and the table is
   * readable. The whole check, connecting included, is bounded by `timeoutMs`: past it the check
   * rejects with RAPM_IO (SourceUnavailableError) and its connection, made or still being made,
   * is closed. (Through the pool, connecting was bounded only by the pool's timeoutMs, 30 s by
   * default: a hung connect kept the check, shared by every later call, pending that long, so
   * /health stayed 'degraded' for up to 30 s after the database came back.) One check at a time:
   * a call while one is pending shares it (under the first call's timeoutMs).
   */
  async check(timeoutMs = PG_CHECK_TIMEOUT_MS): Promise<void> {
    checkInteger('timeoutMs', timeoutMs, 1, 2 ** 31 - 1);
    return this.#check(timeoutMs);
  }

  async #ping(signal: AbortSignal, timeoutMs: number): Promise<void> {
    const t0 = performance.now();
    const bound: PgBound = { timeoutMs, database: this.#bound.database };
    // The pool's connection settings (its password is a non-enumerable property: copied as is).
    const config = Object.defineProperties({}, Object.getOwnPropertyDescriptors(this.#pool.options)) as pg.ClientConfig;
    config.connectionTimeoutMillis = timeoutMs;
    const Client = (this.#pool as unknown as { Client?: typeof pg.Client }).Client ?? pg.Client;
    const client = new Client(config);
    client.on('error', () => {}); // a connection lost after the check settled must not crash the process
    const close = () => void client.end().catch(() => {});
    signal.addEventListener('abort', close, { once: true });
    try {
      try {
        await client.connect();
      } catch (e) {
        throw pgError(`health check on ${this.table} (connect)`, e, bound);
      }
      if (signal.aborted) return;
      const left = Math.max(1, Math.round(timeoutMs - (performance.now() - t0)));
      try {
        await client.query({ text: `SELECT 1 FROM ${this.#quoted} LIMIT 1`, query_timeout: left } as pg.QueryConfig);
      } catch (e) {
        throw pgError(`health check on ${this.table}`, e, bound);
      }
    } finally {
      signal.removeEventListener('abort', close);
      close();
    }
  }

  /** Close the pool (only one this source opened from a URL). */
  async close(): Promise<void> {
    if (this.#owned) await this.#pool.end();
  }
}
