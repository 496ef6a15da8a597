/**
 * The rapm request handler: `(req, res) => void` over a Predictor, mountable in any
 * node:http server, in fastify (reply.hijack()) or in express (app.use). createServer
 * (http-server.ts) wraps it in a node:http server with timeouts and graceful shutdown.
 *
 * Endpoints (paths after `basePath`)
 *   POST /predict   body JSON `{ "en": number[] | number[][] }` (one row or a batch of rows of
 *                   keyDim numbers; Content-Type application/json, text/plain or none), or
 *                   `application/octet-stream`: little-endian float32 rows of keyDim values
 *                   (b = bytes / (4 keyDim)); an optional `X-Rapm-Shape: <b>,<keyDim>` header
 *                   must then match the body. Fields of a JSON body other than `en` are refused
 *                   (400 RAPM_INVALID_ARG): k, tau and the aggregate are the server's settings.
 *                   JSON reply: `{ b, dv, k, pred, prior, neighbors, weights }`; pred and prior are
 *                   number[] for a one-row `en: number[]` and number[][] otherwise (neighbors and
 *                   weights likewise per row). Numbers are float32 values, printed exactly.
 *                   A JSON reply larger than one piece (STREAM_PIECE_CHARS) is streamed: chunked
 *                   transfer encoding, no Content-Length, same bytes as one JSON.stringify.
 *                   Binary request: binary reply (unless `Accept: application/json`), Content-Type
 *                   application/octet-stream, headers `X-Rapm-Shape: <b>,<dv>` and
 *                   `X-Rapm-Layout: pred,prior`; body = pred [b, dv] then prior [b, dv], float32 LE.
 *   POST /explain   same bodies; JSON reply `{ b, k, neighbors: [[{ id, row, weight, similarity }]] }`.
 *   GET  /health    predictor.info's fields and `{ status, simd, uptimeSeconds, inFlight, maxBatch,
 *                   maxBodyBytes, maxBufferedBytes, bufferedBytes, queueRows }`. With a neighbour
 *                   source that has a check() (pgvector: the database answers), it runs it first:
 *                   if that fails, 503 with status 'degraded' and `sourceError` (why); else 200 'ok'
 *                   (or 'shutting-down') as always. `source` is the source's name either way.
 *   GET  /metrics   Prometheus text format (metrics.ts), unless `metrics: false`.
 *
 * Errors are JSON `{ error, code }`: 400 bad input (RAPM_BAD_JSON, RAPM_INVALID_ARG, RAPM_TYPE,
 * RAPM_SHAPE_MISMATCH, RAPM_NON_FINITE: also a row whose squared norm overflows float32 or a
 * fusion output that is not finite, RAPM_ZERO_NORM), 404 RAPM_NOT_FOUND, 405 RAPM_METHOD,
 * 413 RAPM_BODY_TOO_LARGE / RAPM_BATCH_TOO_LARGE, 415 RAPM_MEDIA_TYPE (also a Content-Encoding
 * other than identity, or JSON in a charset other than UTF-8), 503 with
 * `Retry-After` for RAPM_BUSY (batch queue full, or the bodies buffered across all requests
 * would pass maxBufferedBytes) and RAPM_UNAVAILABLE (draining / shutting down), 503
 * RAPM_K_TOO_LARGE / RAPM_STATE (datastore too small), 503 with `Retry-After` for RAPM_IO when the
 * neighbour source's engine is down, hung or unreachable (SourceUnavailableError: logged as one
 * line, no stack), 500 otherwise (logged with its stack). errorReply() decides all of this.
 * A client that goes away first is counted as `aborted` and logged as one line, not an error.
 *
 * In-flight accounting: a request counts from the moment it reaches the handler until its
 * response is written or its connection closes, whichever comes first, exactly once (also
 * for pipelined requests queued on a connection that closes). A streamed reply is written
 * when its last piece is: it stays in flight while its pieces go out.
 */
import type http from 'node:http';
import type net from 'node:net';
import os from 'node:os';
import { setImmediate as nextTurn } from 'node:timers/promises';
import pino from 'pino';
import { RapmError, isRapmError } from '../errors.js';
import { checkKnownKeys } from '../validate.js';
import { simdLevel } from '../native/simd.js';
import { checkSetting } from '../settings.js';
import { SourceUnavailableError, singleFlight, withDeadline, type NeighborSource } from '../retrieval/neighbor-source.js';
import { createMetrics, type HandlerMetrics } from './metrics.js';
import { Predictor, type PredictResult } from './predictor.js';

if (os.endianness() !== 'LE') throw new RapmError('RAPM_STATE', 'the rapm HTTP service reads float32 bodies as little-endian and needs a little-endian host');

export interface HandlerOptions {
  predictor: Predictor;
  /** Largest batch (rows) per request. Default 1024. */
  maxBatch?: number;
  /** Largest request body in bytes. Default: maxBatch rows as JSON at 32 bytes a number (32 MiB for 1024 x 1024), at least 1 MiB. */
  maxBodyBytes?: number;
  /** Most request-body bytes held at once across all requests; beyond it, 503 RAPM_BUSY with Retry-After. Default max(256 MiB, 2 x maxBodyBytes). */
  maxBufferedBytes?: number;
  /** Seconds in the Retry-After header of 503 replies. Default 1. */
  retryAfterSeconds?: number;
  /** Path prefix the endpoints live under (e.g. '/rapm'); requests outside it get 404. Default ''. */
  basePath?: string;
  /** Serve GET /metrics (Prometheus). Default true. */
  metrics?: boolean;
  /** Structured access log (pino, one JSON line per request): true for stderr, or a pino destination. Default off. */
  accessLog?: boolean | pino.DestinationStream;
  /** Receives one line per server-side failure (5xx, with its stack) and per client abort. Default: none. */
  log?: (line: string) => void;
}

/** maxBatch and retryAfterSeconds defaults are the settings schema's (src/settings.ts); minBufferedBytes is the floor of maxBufferedBytes' default. */
export const HANDLER_DEFAULTS = { maxBatch: checkSetting('maxBatch', undefined), retryAfterSeconds: checkSetting('retryAfterSeconds', undefined), minBufferedBytes: 256 * 2 ** 20 } as const;

export interface RapmHandler {
  (req: http.IncomingMessage, res: http.ServerResponse): void;
  /** Requests being handled now. */
  readonly inFlight: number;
  /** Body bytes held now across all requests. */
  readonly bufferedBytes: number;
  readonly maxBatch: number;
  readonly maxBodyBytes: number;
  readonly maxBufferedBytes: number;
  /** The Prometheus registry behind GET /metrics (null with `metrics: false`). */
  readonly registry: HandlerMetrics['registry'] | null;
  /** True after drain(): new requests get 503 RAPM_UNAVAILABLE, responses carry Connection: close. */
  readonly draining: boolean;
  /** Refuse new requests (503 + Retry-After); requests already received are answered. Resolves when none is in flight. */
  drain(): Promise<void>;
  /** @internal (createServer) Called with each request's socket when it is done. */
  onDone?: (socket: net.Socket) => void;
  /**
   * @internal (createServer, when graceMs runs out) If the request next in line on `socket` has
   * no reply started (its body may still be arriving), write a 503 RAPM_UNAVAILABLE with
   * Connection: close on the socket, end its writable side, count and log the request, and
   * return true (the caller then closes the socket); false when there is nothing to answer.
   */
  cutAtShutdown(socket: net.Socket): boolean;
  /** Stop the metrics observers. */
  close(): void;
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** The client went away before its reply (not a server error). */
class ClientAbort extends Error {}

/**
 * Why the server itself ended a connection whose request was still arriving, set by the HTTP
 * server before it does (http-server.ts): 'timeout' (requestTimeoutMs ran out: the client got a
 * 408) or 'shutdown' (graceMs ran out while closing). Such a request is counted and logged as that,
 * not as aborted by the client.
 */
export const serverCut = new WeakMap<object, 'timeout' | 'shutdown'>();

const STATUS_OF: Record<string, number> = {
  RAPM_INVALID_ARG: 400,
  RAPM_TYPE: 400,
  RAPM_SHAPE_MISMATCH: 400,
  RAPM_NON_FINITE: 400,
  RAPM_ZERO_NORM: 400,
  RAPM_K_TOO_LARGE: 503,
  RAPM_STATE: 503,
  RAPM_BUSY: 503,
};

/**
 * The one place an error becomes a reply: its status, code and message, and what the log gets.
 * - HttpError: as it says (bad request, 404, 413, busy, shutting down); not logged.
 * - SourceUnavailableError (the neighbour source's engine is down, hung or unreachable: RAPM_IO):
 *   503 with Retry-After, its message (naming the database and table), logged as one line
 *   without a stack: a dependency outage, not a bug of this service.
 * - any other rapm error: STATUS_OF its code (400 bad input, 503 k too large / busy), else 500
 *   logged with its stack;
 * - anything else (a bug): 500 RAPM_INTERNAL 'Internal error' (the reply never carries a stack),
 *   logged with its stack.
 */
export function errorReply(e: unknown): { status: number; code: string; message: string; log: 'stack' | 'line' | null } {
  if (e instanceof HttpError) return { status: e.status, code: e.code, message: e.message, log: null };
  if (e instanceof SourceUnavailableError) return { status: 503, code: e.code, message: e.message, log: 'line' };
  if (isRapmError(e)) {
    const status = STATUS_OF[e.code] ?? 500;
    return { status, code: e.code, message: e.message, log: status === 500 ? 'stack' : null };
  }
  return { status: 500, code: 'RAPM_INTERNAL', message: 'Internal error', log: 'stack' };
}

interface ParsedInput {
  en: Float32Array; // [b, keyDim]
  b: number;
  /** `en` was one flat row (JSON number[]): reply with flat arrays. */
  single: boolean;
  binary: boolean;
}

/** Per-request bookkeeping. */
interface Ctx {
  req: http.IncomingMessage;
  res: http.ServerResponse;
  route: string;
  started: number;
  reserved: number;
  done: boolean;
  /** Answered 503 on the socket itself when graceMs ran out (cutAtShutdown): nothing more is written for it. */
  cut?: boolean;
  finisher?: () => void;
  /** Bytes of a streamed reply written so far (it has no Content-Length to log). */
  bytesOut?: number;
}

/**
 * Size of the pieces a JSON reply is written in, in UTF-16 units (about bytes: the text is
 * ASCII except for ids). A reply that fits one piece is sent whole with Content-Length, as
 * before; a larger one is streamed piece by piece, yielding to the event loop between pieces.
 * One JSON.stringify of a /explain of 1,024 rows at k = 1,601 built a ~160 MB string and
 * held the event loop (every other request) for seconds; a piece takes well under a millisecond.
 */
const STREAM_PIECE_CHARS = 64 * 1024;

/**
 * Longest wait for a neighbour source's check() in GET /health, ms: a check that has not
 * settled by then counts as failed, so a hung database cannot hang /health. Sources bound
 * their own checks below it (PgVectorSource: PG_CHECK_TIMEOUT_MS, 2 s) to report their own cause.
 */
export const HEALTH_CHECK_TIMEOUT_MS = 5000;

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string | number> = {}): void {
  sendJsonText(res, status, JSON.stringify(body), headers);
}

function sendJsonText(res: http.ServerResponse, status: number, text: string, headers: Record<string, string | number> = {}): void {
  res.writeHead(status, { ...headers, 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/** A JSON array whose elements are stringified one at a time (jsonPieces), never all at once. */
class JsonRows {
  constructor(
    readonly length: number,
    readonly at: (i: number) => unknown,
  ) {}
}

/**
 * The text of JSON.stringify(body) in pieces: one per element of each JsonRows field, one per
 * other field. Each element goes through JSON.stringify itself, so numbers print exactly as
 * they did when the whole reply was one JSON.stringify (the bytes are identical).
 */
function* jsonPieces(body: Record<string, unknown>): Generator<string> {
  let sep = '{';
  for (const [key, value] of Object.entries(body)) {
    // JSON.stringify leaves out such fields; so do the pieces.
    if (value === undefined || typeof value === 'function' || typeof value === 'symbol') continue;
    const head = `${sep}${JSON.stringify(key)}:`;
    sep = ',';
    if (!(value instanceof JsonRows)) {
      yield head + JSON.stringify(value);
    } else if (value.length === 0) {
      yield head + '[]';
    } else {
      // In an array, what JSON.stringify cannot print (undefined) is null.
      for (let i = 0; i < value.length; i++) yield (i === 0 ? head + '[' : ',') + (JSON.stringify(value.at(i)) ?? 'null');
      yield ']';
    }
  }
  yield sep === '{' ? '{}' : '}';
}

/** Until `res` can take more ('drain') or is gone ('close'). */
function drained(res: http.ServerResponse): Promise<void> {
  if (res.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/** Rows of a [b, w] matrix as a number[][] written row by row (or one number[] when single). */
function rowsOf(a: Float32Array | Int32Array, w: number, single: boolean): number[] | JsonRows {
  if (single) return Array.from(a.subarray(0, w));
  return new JsonRows(a.length / w, (i) => Array.from(a.subarray(i * w, (i + 1) * w)));
}

const KNOWN_ROUTES = new Set(['/predict', '/explain', '/health', '/metrics']);

/** A request body's first buffer (or its declared length, when smaller); it then doubles as bytes arrive. */
export const BODY_FIRST_BYTES = 16 * 1024;

/** Every key HandlerOptions has (createServer adds its timeouts): any other key is refused, not ignored. */
export const HANDLER_OPTION_KEYS = ['predictor', 'maxBatch', 'maxBodyBytes', 'maxBufferedBytes', 'retryAfterSeconds', 'basePath', 'metrics', 'accessLog', 'log'] as const satisfies readonly (keyof HandlerOptions)[];

export function createHandler(options: HandlerOptions): RapmHandler {
  if (options === null || typeof options !== 'object') throw new RapmError('RAPM_TYPE', 'Expected an options object');
  checkKnownKeys('createHandler', options, HANDLER_OPTION_KEYS);
  const { predictor } = options;
  if (!(predictor instanceof Predictor)) throw new RapmError('RAPM_TYPE', 'Expected a Predictor for options.predictor');
  const maxBatch = checkSetting('maxBatch', options.maxBatch);
  const keyDim = predictor.keyDim;
  const maxBodyBytes = checkSetting('maxBodyBytes', options.maxBodyBytes) ?? Math.max(1 << 20, maxBatch * keyDim * 32);
  const maxBufferedBytes = checkSetting('maxBufferedBytes', options.maxBufferedBytes) ?? Math.max(HANDLER_DEFAULTS.minBufferedBytes, 2 * maxBodyBytes);
  if (maxBufferedBytes < maxBodyBytes) {
    throw new RapmError('RAPM_INVALID_ARG', `Expected maxBufferedBytes (${maxBufferedBytes}) >= maxBodyBytes (${maxBodyBytes}): one largest body must fit`);
  }
  // The smallest request is one binary row (4 bytes per key column): below that every request
  // would get 413, so such a limit is refused at start, not served.
  if (maxBodyBytes < 4 * keyDim) {
    throw new RapmError('RAPM_INVALID_ARG', `Expected maxBodyBytes (${maxBodyBytes}) >= ${4 * keyDim}, one binary row of ${keyDim} float32 keys: every request would be refused`);
  }
  const retryAfter = String(checkSetting('retryAfterSeconds', options.retryAfterSeconds));
  const basePath = (options.basePath ?? '').replace(/\/+$/, '');
  if (basePath !== '' && !basePath.startsWith('/')) throw new RapmError('RAPM_INVALID_ARG', `Expected basePath to start with '/' but received '${basePath}'`);
  const log = options.log ?? (() => undefined);
  const access =
    options.accessLog === undefined || options.accessLog === false
      ? null
      : pino({ base: undefined, messageKey: 'msg' }, options.accessLog === true ? pino.destination(2) : options.accessLog);
  const started = Date.now();
  let inFlight = 0;
  let buffered = 0;
  let draining = false;
  let drainWaiters: (() => void)[] = [];
  const metrics = options.metrics === false ? null : createMetrics(predictor.batcher, { inFlight: () => inFlight, buffered: () => buffered, fastPath: () => predictor.datastore.fastPathStats });
  /** Per socket: its requests still counted, in arrival order (the socket's 'close' finishes them all). */
  const perSocket = new WeakMap<net.Socket, Set<Ctx>>();
  /**
   * The neighbour source's check (NeighborSource.check): null when it passed, else why it failed
   * (also when it has not settled within HEALTH_CHECK_TIMEOUT_MS). One at a time: concurrent
   * /health calls share the one in flight instead of each sending a query to the engine.
   */
  const runSourceCheck = singleFlight((source: NeighborSource & { check(): Promise<void> }) =>
    withDeadline(() => source.check(), HEALTH_CHECK_TIMEOUT_MS, () => new Error(`the check did not settle within ${HEALTH_CHECK_TIMEOUT_MS} ms`)).then(
      () => null,
      (e: unknown) => (e instanceof Error ? e.message : String(e)),
    ),
  );
  /** runSourceCheck of the predictor's source; undefined when it has no check (exact, ann): nothing to wait for. */
  function checkSource(): Promise<string | null> | undefined {
    const source = predictor.source;
    if (typeof source?.check !== 'function') return undefined;
    return runSourceCheck(source as NeighborSource & { check(): Promise<void> });
  }

  function overBudget(): HttpError {
    return new HttpError(503, 'RAPM_BUSY', `The server holds ${buffered} bytes of request bodies (maxBufferedBytes = ${maxBufferedBytes}); retry later`);
  }

  /** The request body, at most maxBodyBytes, in a fresh ArrayBuffer (offset 0: float32-aligned). */
  function readBody(req: http.IncomingMessage, ctx: Ctx): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      const declared = req.headers['content-length'] === undefined ? -1 : Number(req.headers['content-length']);
      const tooLarge = () => new HttpError(413, 'RAPM_BODY_TOO_LARGE', `Request body larger than maxBodyBytes = ${maxBodyBytes}`);
      if (declared > maxBodyBytes) {
        reject(tooLarge());
        return;
      }
      const reserve = (n: number): boolean => {
        if (buffered + n > maxBufferedBytes) return false;
        buffered += n;
        ctx.reserved += n;
        return true;
      };
      // The buffer grows as bytes arrive (at least BODY_FIRST_BYTES, then doubling, never past
      // the declared length), and only what is allocated is reserved. Reserving the declared
      // length up front let ~8 clients that declare 32 MiB and send a byte a second hold the
      // whole 256 MiB budget, so every other request got 503 RAPM_BUSY until requestTimeoutMs.
      // Now a body holds at most max(BODY_FIRST_BYTES, 2 x the bytes it has sent), and the
      // budget still bounds the memory really held.
      const cap = declared >= 0 ? declared : maxBodyBytes;
      let buf = new Uint8Array(0);
      let len = 0;
      let failed = false;
      const fail = (e: unknown) => {
        if (failed) return;
        failed = true;
        reject(e);
      };
      req.on('data', (chunk: Buffer) => {
        // Also once counted out (answered 503 at shutdown while the body still arrives): its
        // bytes are dropped, not reserved again after finish() released them.
        if (failed || ctx.done) return;
        if (len + chunk.length > maxBodyBytes) return fail(tooLarge());
        if (len + chunk.length > buf.length) {
          const need = len + chunk.length;
          const size = Math.max(need, Math.min(cap, Math.max(buf.length * 2, BODY_FIRST_BYTES)));
          // The growth only: the old buffer is dropped right after the copy, within this
          // callback, so no other request sees both held (and one maxBodyBytes body fits a
          // budget of maxBodyBytes, as createHandler promises).
          if (!reserve(size - buf.length)) return fail(overBudget());
          const grown = new Uint8Array(size);
          grown.set(buf.subarray(0, len));
          buf = grown;
        }
        buf.set(chunk, len);
        len += chunk.length;
      });
      req.on('end', () => {
        if (!failed) {
          failed = true;
          resolve(len === buf.length ? buf : buf.subarray(0, len));
        }
      });
      req.on('error', () => fail(new ClientAbort('request stream error')));
      req.on('close', () => {
        if (!req.complete) fail(new ClientAbort('the client closed the connection before sending the whole body'));
      });
    });
  }

  function parseJson(body: Uint8Array): ParsedInput {
    let v: unknown;
    try {
      v = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'));
    } catch (e) {
      throw new HttpError(400, 'RAPM_BAD_JSON', `Request body is not valid JSON (${(e as Error).message})`);
    }
    const en = (v as { en?: unknown } | null)?.en;
    if (typeof v !== 'object' || v === null || Array.isArray(v) || !Array.isArray(en)) {
      throw new HttpError(400, 'RAPM_INVALID_ARG', 'Expected a JSON object { "en": number[] | number[][] }');
    }
    // A field the service does not read is refused rather than ignored: `{ "en": ..., "k": 10 }`
    // would otherwise be answered with the server's k as if it were the caller's.
    const extra = Object.keys(v).find((key) => key !== 'en');
    if (extra !== undefined) {
      throw new HttpError(
        400,
        'RAPM_INVALID_ARG',
        `Unknown field ${JSON.stringify(extra)} in the request body: only "en" is read. k, tau and the aggregate are the server's settings (rapm serve --k, --tau, --aggregate; GET /health shows them)`,
      );
    }
    if (en.length === 0) throw new HttpError(400, 'RAPM_SHAPE_MISMATCH', 'Expected at least one row in en but received an empty array');
    const single = !Array.isArray(en[0]);
    const rows = (single ? [en] : en) as unknown[];
    if (rows.length > maxBatch) throw new HttpError(413, 'RAPM_BATCH_TOO_LARGE', `Expected at most maxBatch = ${maxBatch} rows but received ${rows.length}`);
    const out = new Float32Array(rows.length * keyDim);
    rows.forEach((row, r) => {
      if (!Array.isArray(row)) throw new HttpError(400, 'RAPM_TYPE', `Expected en[${r}] to be an array of ${keyDim} numbers`);
      if (row.length !== keyDim) {
        throw new HttpError(400, 'RAPM_SHAPE_MISMATCH', `Expected ${keyDim} numbers in ${single ? 'en' : `en[${r}]`} but received ${row.length}`);
      }
      for (let j = 0; j < keyDim; j++) {
        const x = row[j];
        if (typeof x !== 'number') throw new HttpError(400, 'RAPM_TYPE', `Expected a number at ${single ? 'en' : `en[${r}]`}[${j}] but received ${x === null ? 'null' : typeof x}`);
        out[r * keyDim + j] = x;
      }
    });
    return { en: out, b: rows.length, single, binary: false };
  }

  function parseBinary(body: Uint8Array, shape: string | string[] | undefined): ParsedInput {
    const rowBytes = 4 * keyDim;
    if (body.length === 0) throw new HttpError(400, 'RAPM_SHAPE_MISMATCH', 'Expected at least one row of float32 values but the body is empty');
    if (body.length % rowBytes !== 0) {
      throw new HttpError(400, 'RAPM_SHAPE_MISMATCH', `Expected whole rows of ${keyDim} float32 values (${rowBytes} bytes each) but received ${body.length} bytes`);
    }
    const b = body.length / rowBytes;
    // Optional on requests (replies always carry it): when sent, it must describe the body.
    if (shape !== undefined) {
      const text = Array.isArray(shape) ? shape.join(',') : shape;
      const m = /^\s*(\d+)\s*,\s*(\d+)\s*$/.exec(text);
      if (!m || Number(m[1]) !== b || Number(m[2]) !== keyDim) {
        throw new HttpError(400, 'RAPM_SHAPE_MISMATCH', `X-Rapm-Shape says ${JSON.stringify(text)} but the body holds ${b},${keyDim} (${body.length} bytes of float32 rows of ${keyDim} values)`);
      }
    }
    if (b > maxBatch) throw new HttpError(413, 'RAPM_BATCH_TOO_LARGE', `Expected at most maxBatch = ${maxBatch} rows but received ${b}`);
    const en = body.byteOffset % 4 === 0 ? new Float32Array(body.buffer, body.byteOffset, b * keyDim) : new Float32Array(body.slice().buffer);
    return { en, b, single: false, binary: true };
  }

  /** Wait until the request body has been read and dropped (bodies up to maxBodyBytes). */
  function discardBody(req: http.IncomingMessage): Promise<void> {
    const declared = req.headers['content-length'] === undefined ? -1 : Number(req.headers['content-length']);
    if (req.complete || declared > maxBodyBytes) return Promise.resolve();
    return new Promise((resolve, reject) => {
      let seen = 0;
      req.on('data', (c: Buffer) => {
        seen += c.length;
        if (seen > maxBodyBytes) resolve(); // stop waiting: the reply closes the connection
      });
      req.once('end', () => resolve());
      req.once('close', () => (req.complete ? resolve() : reject(new ClientAbort('the client left during shutdown'))));
      req.resume();
    });
  }

  async function readInput(req: http.IncomingMessage, ctx: Ctx): Promise<ParsedInput> {
    const type = (req.headers['content-type'] ?? 'application/json').split(';')[0]!.trim().toLowerCase();
    const json = type === 'application/json' || type === 'text/plain'; // text/plain: fetch()'s default for a string body
    if (!json && type !== 'application/octet-stream') {
      throw new HttpError(415, 'RAPM_MEDIA_TYPE', `Expected Content-Type application/json or application/octet-stream but received ${type}`);
    }
    // The body is read as sent: a compressed one (gzip bodies were parsed as raw bytes), or JSON
    // in a charset other than UTF-8, is refused rather than misread.
    const encoding = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
    if (encoding !== 'identity') throw new HttpError(415, 'RAPM_MEDIA_TYPE', `Content-Encoding ${encoding} is not accepted: send the body uncompressed`);
    const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(req.headers['content-type'] ?? '')?.[1]?.toLowerCase();
    if (json && charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
      throw new HttpError(415, 'RAPM_MEDIA_TYPE', `Expected JSON in UTF-8 but Content-Type says charset=${charset}`);
    }
    const body = await readBody(req, ctx);
    return json ? parseJson(body) : parseBinary(body, req.headers['x-rapm-shape']);
  }

  /**
   * Connection: close on replies while draining (the server closes the socket after them),
   * but only on the last request of its connection: Node drops the pipelined requests queued
   * behind a reply that closes the connection.
   */
  function closeHeader(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (draining && !res.headersSent && (perSocket.get(req.socket)?.size ?? 0) <= 1) res.setHeader('Connection', 'close');
  }

  /**
   * A 200 JSON reply (/predict, /explain): whole with Content-Length when it fits one piece,
   * else streamed (chunked) piece by piece. Each write yields one event-loop turn, so other
   * connections are served between pieces, and then waits for 'drain' if the socket's buffer
   * is still full, so a slow client holds a few pieces, not the reply. A piece's JsonRows
   * elements are built as it is (/explain's neighbour objects: one row at a time). A client that goes
   * away stops the writing (ClientAbort: counted and logged as aborted).
   */
  async function sendJsonReply(res: http.ServerResponse, ctx: Ctx, body: Record<string, unknown>): Promise<void> {
    const pieces = jsonPieces(body);
    let text = '';
    let next = pieces.next();
    for (; !next.done && text.length < STREAM_PIECE_CHARS; next = pieces.next()) text += next.value;
    if (next.done) {
      sendJsonText(res, 200, text);
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8' });
    ctx.bytesOut = 0;
    for (;;) {
      for (; !next.done && text.length < STREAM_PIECE_CHARS; next = pieces.next()) text += next.value;
      if (next.done) break;
      ctx.bytesOut += Buffer.byteLength(text);
      const room = res.write(text);
      text = '';
      // One event-loop turn after every piece, also when the socket is full: its 'drain' can come
      // on the next tick when the kernel takes the bytes at once, so waiting for 'drain' alone
      // wrote megabytes of pieces without letting any other request in.
      await nextTurn();
      if (!room && res.writableNeedDrain) await drained(res);
      if (res.destroyed) throw new ClientAbort('the client closed the connection during the reply');
    }
    ctx.bytesOut += Buffer.byteLength(text);
    res.end(text);
  }

  async function sendPredict(req: http.IncomingMessage, res: http.ServerResponse, ctx: Ctx, input: ParsedInput, r: PredictResult): Promise<void> {
    closeHeader(req, res);
    const wantsJson = input.binary && (req.headers.accept ?? '').includes('application/json');
    if (input.binary && !wantsJson) {
      const bytes = r.b * r.dv * 4;
      const body = Buffer.allocUnsafe(2 * bytes);
      body.set(new Uint8Array(r.pred.buffer, r.pred.byteOffset, bytes), 0);
      body.set(new Uint8Array(r.prior.buffer, r.prior.byteOffset, bytes), bytes);
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': body.length, 'X-Rapm-Shape': `${r.b},${r.dv}`, 'X-Rapm-Layout': 'pred,prior' });
      res.end(body);
      return;
    }
    await sendJsonReply(res, ctx, {
      b: r.b,
      dv: r.dv,
      k: r.k,
      pred: rowsOf(r.pred, r.dv, input.single),
      prior: rowsOf(r.prior, r.dv, input.single),
      neighbors: rowsOf(r.neighbors, r.k, input.single),
      weights: rowsOf(r.weights, r.k, input.single),
    });
  }

  /** The /health body; `sourceError`: why the neighbour source's check failed (null: it passed or there is none). */
  function health(sourceError: string | null): Record<string, unknown> {
    const info = predictor.info;
    return {
      status: draining ? 'shutting-down' : sourceError !== null ? 'degraded' : 'ok',
      ...info,
      // `source` stays the source's name (a string, as in predictor.info); why its check failed is a field of its own.
      ...(sourceError !== null ? { sourceError } : {}),
      simd: simdLevel(),
      uptimeSeconds: (Date.now() - started) / 1000,
      inFlight,
      maxBatch,
      maxBodyBytes,
      maxBufferedBytes,
      bufferedBytes: buffered,
      queueRows: predictor.batcher?.queuedRows ?? 0,
    };
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse, ctx: Ctx): Promise<void> {
    if (draining) {
      // Read (and drop) the body first, so the connection can still carry the replies of
      // pipelined requests behind this one; an oversized body closes the connection instead.
      await discardBody(req);
      throw new HttpError(503, 'RAPM_UNAVAILABLE', 'The server is shutting down');
    }
    const path = (req.url ?? '/').split('?')[0]!;
    if (basePath && path !== basePath && !path.startsWith(basePath + '/')) throw new HttpError(404, 'RAPM_NOT_FOUND', `No endpoint ${path} (rapm serves under ${basePath})`);
    const route = path.slice(basePath.length) || '/';
    ctx.route = KNOWN_ROUTES.has(route) ? route : 'other';
    if (route === '/health' || (route === '/metrics' && metrics)) {
      if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'RAPM_METHOD', `Expected GET for ${route} but received ${req.method}`);
      req.resume();
      if (route === '/health') {
        const sourceError = (await checkSource()) ?? null;
        if (gone(ctx)) throw new ClientAbort('gone');
        closeHeader(req, res);
        // 503 so that load balancers and orchestrators take a replica whose engine is down out of
        // rotation; while shutting down the status says so, and the code stays what it was.
        sendJson(res, sourceError !== null && !draining ? 503 : 200, health(sourceError));
      } else {
        closeHeader(req, res);
        const text = await metrics!.registry.metrics();
        if (gone(ctx)) throw new ClientAbort('gone');
        res.writeHead(200, { 'Content-Type': metrics!.registry.contentType, 'Content-Length': Buffer.byteLength(text) });
        res.end(text);
      }
      return;
    }
    if (route !== '/predict' && route !== '/explain') {
      throw new HttpError(404, 'RAPM_NOT_FOUND', `No endpoint ${route} (POST /predict, POST /explain, GET /health${metrics ? ', GET /metrics' : ''})`);
    }
    if (req.method !== 'POST') throw new HttpError(405, 'RAPM_METHOD', `Expected POST for ${route} but received ${req.method}`);
    const input = await readInput(req, ctx);
    if (gone(ctx)) throw new ClientAbort('gone');
    if (route === '/predict') {
      const r = await predictor.predict(input.en);
      if (gone(ctx)) throw new ClientAbort('gone');
      await sendPredict(req, res, ctx, input, r);
    } else {
      // Each row's { id, row, weight, similarity } objects are built as its piece is written,
      // never the whole batch's at once (predictor.explain() would, before the first byte).
      const r = await predictor._explainRows(input.en);
      if (gone(ctx)) throw new ClientAbort('gone');
      closeHeader(req, res);
      let neighbors: JsonRows;
      if (input.single) {
        const list = r.neighborsOf(0);
        neighbors = new JsonRows(list.length, (i) => list[i]);
      } else neighbors = new JsonRows(r.b, r.neighborsOf);
      await sendJsonReply(res, ctx, { b: input.b, k: predictor.k, neighbors });
    }
  }

  /** The reply can no longer be written: the client left, or the request was answered 503 at shutdown. */
  function gone(ctx: Ctx): boolean {
    return ctx.res.destroyed || ctx.cut === true;
  }

  /** Why a request without a written reply ended: '408' (requestTimeoutMs), 'shutdown' (graceMs) or 'aborted' (the client). */
  function endedBy(req: http.IncomingMessage): string {
    const cut = req.socket ? serverCut.get(req.socket) : undefined;
    return cut === 'timeout' ? '408' : cut === 'shutdown' ? 'shutdown' : 'aborted';
  }

  function fail(req: http.IncomingMessage, res: http.ServerResponse, ctx: Ctx, e: unknown): void {
    if (ctx.cut) return; // answered (503) and logged by cutAtShutdown
    if (e instanceof ClientAbort || (res.destroyed && !res.writableFinished)) {
      const ms = (performance.now() - ctx.started).toFixed(1);
      const why = endedBy(req);
      if (why === '408') log(`${req.method} ${req.url} timed out after ${ms} ms (requestTimeoutMs): 408 RAPM_TIMEOUT`);
      else if (why === 'shutdown') log(`${req.method} ${req.url} cut at shutdown after ${ms} ms (graceMs ran out while ${res.headersSent ? 'its reply was being streamed' : 'its body was still arriving'})`);
      else log(`${req.method} ${req.url} aborted by the client after ${ms} ms`);
      finish(req, res, ctx, why);
      return;
    }
    const { status, code, message, log: logged } = errorReply(e);
    if (logged === 'stack') log(`${req.method} ${req.url} -> ${status} ${code}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    else if (logged === 'line') log(`${req.method} ${req.url} -> ${status} ${code}: ${message}`);
    metrics?.errors.inc({ route: ctx.route, status: String(status), code });
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const headers: Record<string, string> = {};
    if (status === 503) headers['Retry-After'] = retryAfter;
    // The body may not have been read: close the connection rather than parse what follows.
    if (!req.complete) headers.Connection = 'close';
    else closeHeader(req, res);
    if (!req.complete) req.resume();
    sendJson(res, status, { error: message, code }, headers);
  }

  /** Count the request out, exactly once: response written, or connection gone. */
  function finish(req: http.IncomingMessage, res: http.ServerResponse, ctx: Ctx, status: string): void {
    if (ctx.done) return;
    ctx.done = true;
    inFlight--;
    buffered -= ctx.reserved;
    ctx.reserved = 0;
    const seconds = (performance.now() - ctx.started) / 1000;
    metrics?.requests.inc({ route: ctx.route, method: req.method ?? '', status });
    metrics?.duration.observe({ route: ctx.route }, seconds);
    access?.info({ method: req.method, url: req.url, status, ms: Math.round(seconds * 1e4) / 10, remote: req.socket?.remoteAddress, bytesOut: ctx.bytesOut ?? res.getHeader('content-length') });
    const socket = req.socket;
    if (socket) {
      perSocket.get(socket)?.delete(ctx);
      handler.onDone?.(socket);
    }
    if (inFlight === 0 && drainWaiters.length > 0) {
      const w = drainWaiters;
      drainWaiters = [];
      for (const f of w) f();
    }
  }

  const handler = ((req: http.IncomingMessage, res: http.ServerResponse) => {
    inFlight++;
    const ctx: Ctx = { req, res, route: 'other', started: performance.now(), reserved: 0, done: false };
    // The one place a request's counted status is decided: the reply's code when it was written,
    // else why the connection ended (the socket's 'close' runs this before fail() sees the cut, and
    // finish counts once, so fail() deciding it too counted server cuts as 'aborted').
    const onEnd = () => finish(req, res, ctx, res.writableFinished ? String(res.statusCode) : endedBy(req));
    ctx.finisher = onEnd;
    res.once('finish', onEnd);
    res.once('close', onEnd);
    const socket = req.socket;
    if (socket) {
      let set = perSocket.get(socket);
      if (!set) {
        const s = new Set<Ctx>();
        perSocket.set(socket, s);
        set = s;
        socket.once('close', () => {
          for (const c of [...s]) c.finisher!();
        });
      }
      set.add(ctx);
    }
    handle(req, res, ctx).catch((e: unknown) => fail(req, res, ctx, e));
  }) as RapmHandler;

  Object.defineProperties(handler, {
    inFlight: { get: () => inFlight },
    bufferedBytes: { get: () => buffered },
    maxBatch: { value: maxBatch },
    maxBodyBytes: { value: maxBodyBytes },
    maxBufferedBytes: { value: maxBufferedBytes },
    registry: { value: metrics?.registry ?? null },
    draining: { get: () => draining },
  });
  handler.drain = () => {
    draining = true;
    if (inFlight === 0) return Promise.resolve();
    return new Promise<void>((resolve) => drainWaiters.push(resolve));
  };
  handler.close = () => metrics?.close();
  handler.cutAtShutdown = (socket) => {
    const ctx = perSocket.get(socket)?.values().next().value;
    if (ctx === undefined || ctx.done || ctx.res.headersSent || socket.destroyed || !socket.writable) return false;
    const { req, res } = ctx;
    ctx.cut = true;
    const ms = (performance.now() - ctx.started).toFixed(1);
    const why = req.complete ? 'before its reply started' : 'while its body was still arriving';
    log(`${req.method} ${req.url} cut at shutdown after ${ms} ms (graceMs ran out ${why}): 503 RAPM_UNAVAILABLE, connection closed`);
    // Written on the socket itself, not through `res`: Node would destroy the socket as soon as
    // the reply was flushed, and a client still sending would be reset before reading it.
    const body = JSON.stringify({ error: `The server is shutting down: graceMs ran out ${why}`, code: 'RAPM_UNAVAILABLE' });
    socket.end(
      `HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
        `Retry-After: ${retryAfter}\r\nConnection: close\r\n\r\n${body}`,
    );
    finish(req, res, ctx, '503');
    return true;
  };
  return handler;
}
