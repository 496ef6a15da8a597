/**
 * A small HTTP service around a Predictor (node:http, no framework).
 *
 * Endpoints (JSON bodies: Content-Type application/json, text/plain or none)
 *   POST /predict   body JSON `{ "en": number[] | number[][] }` (one row or a batch of rows of
 *                   keyDim numbers), or `application/octet-stream`: little-endian float32 rows of
 *                   keyDim values (b = bytes / (4 keyDim)).
 *                   JSON reply: `{ b, dv, k, pred, prior, neighbors, weights }`; pred and prior are
 *                   number[] for a one-row `en: number[]` and number[][] otherwise (neighbors and
 *                   weights likewise per row). Numbers are float32 values, printed exactly.
 *                   Binary request: binary reply (unless `Accept: application/json`), Content-Type
 *                   application/octet-stream, headers `X-Rapm-Shape: <b>,<dv>` and
 *                   `X-Rapm-Layout: pred,prior`; body = pred [b, dv] then prior [b, dv], float32 LE.
 *   POST /explain   same bodies; JSON reply `{ b, k, neighbors: [[{ id, row, weight, similarity }]] }`
 *                   (one list per row, best first; a single list for a one-row `en: number[]`),
 *                   for binary requests too.
 *   GET  /health    `{ status, rows, keyDim, d, dv, precision, k, tau, aggregate, fusion, simd,
 *                   uptimeSeconds, inFlight, maxBatch, maxBodyBytes }`.
 *
 * Errors are JSON `{ error, code }`: 400 for bad input (RAPM_BAD_JSON, RAPM_INVALID_ARG,
 * RAPM_TYPE, RAPM_SHAPE_MISMATCH, RAPM_NON_FINITE, RAPM_ZERO_NORM), 404 RAPM_NOT_FOUND,
 * 405 RAPM_METHOD, 413 RAPM_BODY_TOO_LARGE / RAPM_BATCH_TOO_LARGE, 415 RAPM_MEDIA_TYPE,
 * 503 RAPM_UNAVAILABLE (shutting down) / RAPM_K_TOO_LARGE / RAPM_STATE (datastore too small),
 * 500 otherwise.
 *
 * close() stops accepting connections, lets in-flight requests finish (new requests on
 * kept-alive connections get 503), closes idle connections, and resolves when all are closed
 * (connections still open after `graceMs` are cut).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { RapmError, isRapmError } from '../errors.js';
import { simdLevel } from '../native/simd.js';
import { Predictor, type PredictResult } from './predictor.js';

if (os.endianness() !== 'LE') throw new RapmError('RAPM_STATE', 'the rapm HTTP service reads float32 bodies as little-endian and needs a little-endian host');

export interface ServerOptions {
  predictor: Predictor;
  /** Largest batch (rows) per request. Default 1024. */
  maxBatch?: number;
  /** Largest request body in bytes. Default: maxBatch rows as JSON at 32 bytes a number (32 MiB for 1024 x 1024), at least 1 MiB. */
  maxBodyBytes?: number;
  /** Receives one line per server-side failure (5xx). */
  log?: (line: string) => void;
}

export interface CloseOptions {
  /** Cut connections still open after this many ms. Default 10,000. */
  graceMs?: number;
}

export interface RapmServer {
  server: http.Server;
  /** Start listening (port 0: an ephemeral port); resolves with the bound address. */
  listen(port?: number, host?: string): Promise<{ port: number; host: string; url: string }>;
  /** Graceful shutdown: stop accepting, finish in-flight requests, close connections. */
  close(options?: CloseOptions): Promise<void>;
  /** Requests being handled now. */
  readonly inFlight: number;
}

export type HttpErrorCode =
  | 'RAPM_BAD_JSON'
  | 'RAPM_NOT_FOUND'
  | 'RAPM_METHOD'
  | 'RAPM_BODY_TOO_LARGE'
  | 'RAPM_BATCH_TOO_LARGE'
  | 'RAPM_MEDIA_TYPE'
  | 'RAPM_UNAVAILABLE'
  | 'RAPM_INTERNAL';

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const STATUS_OF: Record<string, number> = {
  RAPM_INVALID_ARG: 400,
  RAPM_TYPE: 400,
  RAPM_SHAPE_MISMATCH: 400,
  RAPM_NON_FINITE: 400,
  RAPM_ZERO_NORM: 400,
  RAPM_K_TOO_LARGE: 503,
  RAPM_STATE: 503,
};

interface ParsedInput {
  en: Float32Array; // [b, keyDim]
  b: number;
  /** `en` was one flat row (JSON number[]): reply with flat arrays. */
  single: boolean;
  binary: boolean;
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/** Rows of a [b, w] matrix as number[][] (or number[] when single). */
function rowsOf(a: Float32Array | Int32Array, w: number, single: boolean): number[] | number[][] {
  if (single) return Array.from(a.subarray(0, w));
  const out: number[][] = [];
  for (let i = 0; i < a.length; i += w) out.push(Array.from(a.subarray(i, i + w)));
  return out;
}

export function createServer(options: ServerOptions): RapmServer {
  const { predictor } = options;
  if (!(predictor instanceof Predictor)) throw new RapmError('RAPM_TYPE', 'Expected a Predictor for options.predictor');
  const maxBatch = options.maxBatch ?? 1024;
  if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new RapmError('RAPM_INVALID_ARG', `Expected an integer >= 1 for maxBatch but received ${String(maxBatch)}`);
  const keyDim = predictor.keyDim;
  const maxBodyBytes = options.maxBodyBytes ?? Math.max(1 << 20, maxBatch * keyDim * 32);
  if (!Number.isInteger(maxBodyBytes) || maxBodyBytes < 1) throw new RapmError('RAPM_INVALID_ARG', `Expected an integer >= 1 for maxBodyBytes but received ${String(maxBodyBytes)}`);
  const log = options.log ?? (() => undefined);
  const started = Date.now();
  let inFlight = 0;
  let closing = false;

  /** The request body, at most maxBodyBytes, in a fresh ArrayBuffer (offset 0: float32-aligned). */
  function readBody(req: http.IncomingMessage): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      const declared = req.headers['content-length'] === undefined ? -1 : Number(req.headers['content-length']);
      const tooLarge = () => new HttpError(413, 'RAPM_BODY_TOO_LARGE', `Request body larger than maxBodyBytes = ${maxBodyBytes}`);
      if (declared > maxBodyBytes) {
        req.resume();
        reject(tooLarge());
        return;
      }
      let buf = new Uint8Array(declared >= 0 ? declared : 64 * 1024);
      let len = 0;
      let failed = false;
      req.on('data', (chunk: Buffer) => {
        if (failed) return;
        if (len + chunk.length > maxBodyBytes) {
          failed = true;
          reject(tooLarge());
          return;
        }
        if (len + chunk.length > buf.length) {
          const grown = new Uint8Array(Math.min(maxBodyBytes, Math.max(buf.length * 2, len + chunk.length)));
          grown.set(buf.subarray(0, len));
          buf = grown;
        }
        buf.set(chunk, len);
        len += chunk.length;
      });
      req.on('end', () => {
        if (!failed) resolve(len === buf.length ? buf : buf.slice(0, len));
      });
      req.on('error', (e) => {
        if (!failed) reject(e);
        failed = true;
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

  function parseBinary(body: Uint8Array): ParsedInput {
    const rowBytes = 4 * keyDim;
    if (body.length === 0) throw new HttpError(400, 'RAPM_SHAPE_MISMATCH', 'Expected at least one row of float32 values but the body is empty');
    if (body.length % rowBytes !== 0) {
      throw new HttpError(400, 'RAPM_SHAPE_MISMATCH', `Expected whole rows of ${keyDim} float32 values (${rowBytes} bytes each) but received ${body.length} bytes`);
    }
    const b = body.length / rowBytes;
    if (b > maxBatch) throw new HttpError(413, 'RAPM_BATCH_TOO_LARGE', `Expected at most maxBatch = ${maxBatch} rows but received ${b}`);
    const en = body.byteOffset % 4 === 0 ? new Float32Array(body.buffer, body.byteOffset, b * keyDim) : new Float32Array(body.slice().buffer);
    return { en, b, single: false, binary: true };
  }

  async function readInput(req: http.IncomingMessage): Promise<ParsedInput> {
    const type = (req.headers['content-type'] ?? 'application/json').split(';')[0]!.trim().toLowerCase();
    const json = type === 'application/json' || type === 'text/plain'; // text/plain: fetch()'s default for a string body
    if (!json && type !== 'application/octet-stream') {
      req.resume();
      throw new HttpError(415, 'RAPM_MEDIA_TYPE', `Expected Content-Type application/json or application/octet-stream but received ${type}`);
    }
    const body = await readBody(req);
    return json ? parseJson(body) : parseBinary(body);
  }

  function sendPredict(req: http.IncomingMessage, res: http.ServerResponse, input: ParsedInput, r: PredictResult): void {
    const wantsJson = (req.headers.accept ?? '').includes('application/json');
    if (input.binary && !wantsJson) {
      const bytes = r.b * r.dv * 4;
      const body = Buffer.allocUnsafe(2 * bytes);
      body.set(new Uint8Array(r.pred.buffer, r.pred.byteOffset, bytes), 0);
      body.set(new Uint8Array(r.prior.buffer, r.prior.byteOffset, bytes), bytes);
      if (closing) res.setHeader('Connection', 'close');
      res.writeHead(200, {
        'Content-Type': 'application/octet-stream',
        'Content-Length': body.length,
        'X-Rapm-Shape': `${r.b},${r.dv}`,
        'X-Rapm-Layout': 'pred,prior',
      });
      res.end(body);
      return;
    }
    if (closing) res.setHeader('Connection', 'close');
    sendJson(res, 200, {
      b: r.b,
      dv: r.dv,
      k: r.k,
      pred: rowsOf(r.pred, r.dv, input.single),
      prior: rowsOf(r.prior, r.dv, input.single),
      neighbors: rowsOf(r.neighbors, r.k, input.single),
      weights: rowsOf(r.weights, r.k, input.single),
    });
  }

  function health(): Record<string, unknown> {
    return {
      status: closing ? 'shutting-down' : 'ok',
      ...predictor.info,
      simd: simdLevel(),
      uptimeSeconds: (Date.now() - started) / 1000,
      inFlight,
      maxBatch,
      maxBodyBytes,
    };
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (closing) {
      res.setHeader('Connection', 'close');
      req.resume();
      throw new HttpError(503, 'RAPM_UNAVAILABLE', 'The server is shutting down');
    }
    const url = new URL(req.url ?? '/', 'http://localhost');
    const route = url.pathname;
    if (route === '/health') {
      if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'RAPM_METHOD', `Expected GET for /health but received ${req.method}`);
      req.resume();
      sendJson(res, 200, health());
      return;
    }
    if (route !== '/predict' && route !== '/explain') {
      req.resume();
      throw new HttpError(404, 'RAPM_NOT_FOUND', `No endpoint ${route} (POST /predict, POST /explain, GET /health)`);
    }
    if (req.method !== 'POST') {
      req.resume();
      throw new HttpError(405, 'RAPM_METHOD', `Expected POST for ${route} but received ${req.method}`);
    }
    const input = await readInput(req);
    if (route === '/predict') {
      sendPredict(req, res, input, await predictor.predict(input.en));
    } else {
      const neighbors = await predictor.explain(input.en);
      if (closing) res.setHeader('Connection', 'close');
      sendJson(res, 200, { b: input.b, k: predictor.k, neighbors: input.single ? neighbors[0] : neighbors });
    }
  }

  function fail(res: http.ServerResponse, req: http.IncomingMessage, e: unknown): void {
    let status: number, code: string, message: string;
    if (e instanceof HttpError) {
      ({ status, code, message } = e);
    } else if (isRapmError(e)) {
      status = STATUS_OF[e.code] ?? 500;
      code = e.code;
      message = e.message;
    } else {
      status = 500;
      code = 'RAPM_INTERNAL';
      message = 'Internal error';
    }
    if (status >= 500) log(`${req.method} ${req.url} -> ${status} ${code}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    // The body may not have been read: close the connection rather than parse what follows.
    if (closing || status === 413 || status === 415 || status === 503) res.setHeader('Connection', 'close');
    sendJson(res, status, { error: message, code });
  }

  const server = http.createServer((req, res) => {
    inFlight++;
    let done = false;
    const finish = () => {
      if (!done) {
        done = true;
        inFlight--;
        if (closing) setImmediate(() => server.closeIdleConnections());
      }
    };
    res.on('finish', finish);
    res.on('close', finish);
    if (closing) res.setHeader('Connection', 'close');
    handle(req, res).catch((e: unknown) => fail(res, req, e));
  });

  let closed: Promise<void> | undefined;
  return {
    server,
    get inFlight() {
      return inFlight;
    },
    listen(port = 0, host = '127.0.0.1') {
      return new Promise((resolve, reject) => {
        const onError = (e: Error) => reject(new RapmError('RAPM_IO', `Cannot listen on ${host}:${port} (${(e as NodeJS.ErrnoException).code ?? e.message})`, { cause: e }));
        server.once('error', onError);
        server.listen(port, host, () => {
          server.off('error', onError);
          const a = server.address() as AddressInfo;
          const h = a.family === 'IPv6' ? `[${a.address}]` : a.address;
          resolve({ port: a.port, host: a.address, url: `http://${h}:${a.port}` });
        });
      });
    },
    close(closeOptions: CloseOptions = {}) {
      if (closed) return closed;
      closing = true;
      const graceMs = closeOptions.graceMs ?? 10_000;
      closed = new Promise<void>((resolve) => {
        if (!server.listening) {
          resolve();
          return;
        }
        const timer = setTimeout(() => server.closeAllConnections(), graceMs);
        timer.unref();
        server.close(() => {
          clearTimeout(timer);
          resolve();
        });
        server.closeIdleConnections();
      });
      return closed;
    },
  };
}
