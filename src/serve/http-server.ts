/**
 * The rapm HTTP service: the request handler (handler.ts: endpoints, errors, metrics) in a
 * node:http server with timeouts, half-close support and a graceful shutdown.
 *
 * Limits and timeouts (ServerOptions; every default below is SERVER_DEFAULTS):
 * - headersTimeoutMs (10 s): the request headers must arrive within it (else 408, closed);
 * - requestTimeoutMs (30 s): the whole request (headers and body) must arrive within it
 *   (else 408, closed; a stalled body is released then);
 * - idleTimeoutMs (5 s): a kept-alive connection with no request is closed after it;
 * Node checks the first two every min(1 s, timeout / 2). The handler adds maxBatch,
 * maxBodyBytes, maxBufferedBytes (all bodies at once) and the Predictor's batch queue.
 *
 * A client that half-closes its side (shutdown(SHUT_WR)) after a complete request still gets
 * its reply; the connection closes after it.
 *
 * close(): stops accepting connections and answers every request already received, with its
 * result if it was being handled or with 503 RAPM_UNAVAILABLE (Retry-After, Connection: close)
 * if it was not; also pipelined requests queued behind others, and requests that reach an
 * idle kept-alive connection within idleDrainMs (100 ms) of close() (bytes sent before
 * close() that the event loop had not read yet). Connections idle after that are closed;
 * connections still open after graceMs (10 s) are cut.
 *
 * What a client sees once close() has run (rapm serve: on SIGTERM / SIGINT):
 * - a new connection: ECONNREFUSED (the listening socket is closed: no new connections);
 * - a connection whose TCP handshake the kernel completed but that Node had not accepted yet
 *   (in the listen backlog when close() ran): ECONNRESET, before any byte of a reply. The
 *   kernel resets these when the listening socket closes; no request on them was read;
 * - a connection Node had accepted (new, or kept alive) whose request arrives within
 *   idleDrainMs: 503 RAPM_UNAVAILABLE with Retry-After and Connection: close; a request
 *   already being handled gets its reply (with Connection: close);
 * - an accepted connection with no request by then: closed by the server (end of stream, or
 *   ECONNRESET if the client writes after the close);
 * - when graceMs runs out: a request whose reply has not started (its body still arriving, or
 *   still being handled) gets 503 RAPM_UNAVAILABLE with Retry-After and Connection: close; the
 *   server then reads and drops what the client still sends for up to SHUTDOWN_LINGER_MS (1 s)
 *   before closing, so that a client still sending can read the 503 rather than be reset. A
 *   reply already being streamed is cut (the client sees a truncated chunked body).
 * Every case without a 200 means the request was not served: it is safe to retry elsewhere.
 */
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { RapmError } from '../errors.js';
import { checkSetting } from '../settings.js';
import { checkInteger, checkKnownKeys } from '../validate.js';
import { createHandler, HANDLER_OPTION_KEYS, serverCut, type HandlerOptions, type RapmHandler } from './handler.js';

export { createHandler, HANDLER_DEFAULTS, type HandlerOptions, type RapmHandler } from './handler.js';

export interface ServerOptions extends HandlerOptions {
  /** Time for the request headers, ms. Default 10,000. */
  headersTimeoutMs?: number;
  /** Time for the whole request (headers and body), ms. Default 30,000. */
  requestTimeoutMs?: number;
  /** A kept-alive connection with no request is closed after this, ms. Default 5,000. */
  idleTimeoutMs?: number;
}

export interface CloseOptions {
  /** Cut connections still open after this many ms. Default 10,000. */
  graceMs?: number;
  /** Idle kept-alive connections stay open this long for requests already on their way, ms. Default 100. */
  idleDrainMs?: number;
}

/** Timeout and grace defaults: the settings schema's (src/settings.ts), except idleDrainMs (library only). */
export const SERVER_DEFAULTS = {
  headersTimeoutMs: checkSetting('headersTimeoutMs', undefined),
  requestTimeoutMs: checkSetting('requestTimeoutMs', undefined),
  idleTimeoutMs: checkSetting('idleTimeoutMs', undefined),
  graceMs: checkSetting('graceMs', undefined),
  idleDrainMs: 100,
} as const;
/**
 * How long a connection answered 503 when graceMs ran out is kept open, reading and dropping
 * what the client still sends, ms: closing it with the client's bytes unread would reset the
 * connection, and a client still sending could lose the 503 before reading it.
 */
export const SHUTDOWN_LINGER_MS = 1000;

/** Largest timeout or grace period accepted, ms (24 days: setTimeout's limit is 2^31 - 1). */
export const MAX_DURATION_MS = 2 ** 31 - 1;

export interface RapmServer {
  server: http.Server;
  /** The request handler behind the server. */
  handler: RapmHandler;
  /** Start listening (port 0: an ephemeral port); resolves with the bound address. */
  listen(port?: number, host?: string): Promise<{ port: number; host: string; url: string }>;
  /** Graceful shutdown: stop accepting, answer every request received, close connections. */
  close(options?: CloseOptions): Promise<void>;
  /** Requests being handled now. */
  readonly inFlight: number;
}


/** A duration in ms: an integer in [min, MAX_DURATION_MS]. */
export function checkDurationMs(name: string, v: unknown, min = 0): number {
  return checkInteger(name, v, min, MAX_DURATION_MS);
}

export function createServer(options: ServerOptions): RapmServer {
  if (options === null || typeof options !== 'object') throw new RapmError('RAPM_TYPE', 'Expected an options object');
  const { headersTimeoutMs: _h, requestTimeoutMs: _r, idleTimeoutMs: _i, ...handlerOptions } = options;
  checkKnownKeys('createServer', options, [...HANDLER_OPTION_KEYS, 'headersTimeoutMs', 'requestTimeoutMs', 'idleTimeoutMs']);
  const headersTimeout = checkSetting('headersTimeoutMs', options.headersTimeoutMs);
  const requestTimeout = checkSetting('requestTimeoutMs', options.requestTimeoutMs);
  const idleTimeout = checkSetting('idleTimeoutMs', options.idleTimeoutMs);
  if (headersTimeout > requestTimeout) {
    throw new RapmError('RAPM_INVALID_ARG', `Expected headersTimeoutMs (${headersTimeout}) <= requestTimeoutMs (${requestTimeout})`);
  }
  const handler = createHandler(handlerOptions);
  const server = http.createServer({
    headersTimeout,
    requestTimeout,
    keepAliveTimeout: idleTimeout,
    connectionsCheckingInterval: Math.max(10, Math.min(1000, Math.floor(headersTimeout / 2), Math.floor(requestTimeout / 2))),
  });
  // Reply to clients that half-close after their request (Node's default aborts the request).
  (server as http.Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;

  /** Open connections and their requests in flight. */
  const sockets = new Map<net.Socket, number>();
  /** Connections answered 503 at the end of graceMs, open until the client stops sending (or SHUTDOWN_LINGER_MS). */
  const lingering = new WeakSet<net.Socket>();
  let closing = false;
  let idleDrainMs: number = SERVER_DEFAULTS.idleDrainMs;
  server.on('connection', (socket: net.Socket) => {
    sockets.set(socket, 0);
    socket.once('close', () => sockets.delete(socket));
    if (closing) scheduleIdleClose(socket);
  });
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const s = req.socket;
    sockets.set(s, (sockets.get(s) ?? 0) + 1);
    handler(req, res);
  });
  handler.onDone = (socket) => {
    const n = (sockets.get(socket) ?? 1) - 1;
    if (sockets.has(socket)) sockets.set(socket, n);
    if (closing && n === 0) scheduleIdleClose(socket);
  };
  // Node's own 408 / 400 replies (timeouts, malformed requests) close the connection; nothing to count.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => {
    if (!socket.writable || err.code === 'ECONNRESET') {
      socket.destroy();
      return;
    }
    const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    if (status === 408) serverCut.set(socket, 'timeout'); // a request in the handler is counted as a 408, not a client abort
    const body = JSON.stringify({ error: status === 408 ? 'Request timed out' : 'Bad request', code: status === 408 ? 'RAPM_TIMEOUT' : 'RAPM_BAD_REQUEST' });
    socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  });

  /** Close a connection with no request in flight once it has stayed so for idleDrainMs. */
  function scheduleIdleClose(socket: net.Socket): void {
    const t = setTimeout(() => {
      if ((sockets.get(socket) ?? 0) === 0 && !socket.destroyed && !lingering.has(socket)) socket.destroy();
    }, idleDrainMs);
    t.unref();
  }

  /** After the 503 of cutAtShutdown: drop what the client still sends, close when it stops or after SHUTDOWN_LINGER_MS. */
  function linger(socket: net.Socket): void {
    lingering.add(socket);
    const t = setTimeout(() => socket.destroy(), SHUTDOWN_LINGER_MS);
    socket.once('close', () => clearTimeout(t));
    socket.once('end', () => socket.destroy());
    socket.on('error', () => socket.destroy());
    socket.resume();
  }

  let closed: Promise<void> | undefined;
  return {
    server,
    handler,
    get inFlight() {
      return handler.inFlight;
    },
    listen(port = 0, host = '127.0.0.1') {
      const p = checkSetting('port', port);
      if (typeof host !== 'string' || host.length === 0) throw new RapmError('RAPM_INVALID_ARG', `Expected a host name or address for host but received ${String(host)}`);
      return new Promise((resolve, reject) => {
        const onError = (e: Error) => reject(new RapmError('RAPM_IO', `Cannot listen on ${host}:${p} (${(e as NodeJS.ErrnoException).code ?? e.message})`, { cause: e }));
        server.once('error', onError);
        server.listen(p, host, () => {
          server.off('error', onError);
          const a = server.address() as AddressInfo;
          const h = a.family === 'IPv6' ? `[${a.address}]` : a.address;
          resolve({ port: a.port, host: a.address, url: `http://${h}:${a.port}` });
        });
      });
    },
    close(closeOptions: CloseOptions = {}) {
      if (closed) return closed;
      let graceMs: number;
      try {
        graceMs = checkSetting('graceMs', closeOptions.graceMs);
        idleDrainMs = checkDurationMs('idleDrainMs', closeOptions.idleDrainMs ?? SERVER_DEFAULTS.idleDrainMs);
      } catch (e) {
        return Promise.reject(e);
      }
      closing = true;
      void handler.drain();
      closed = new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          handler.close();
          // Also stops Node's connection-checking interval (http.Server's close does that).
          http.Server.prototype.close.call(server);
          resolve();
        };
        const timer = setTimeout(() => {
          for (const socket of [...sockets.keys()]) {
            serverCut.set(socket, 'shutdown');
            // A request with no reply started gets a 503 rather than a silent cut.
            if (!socket.destroyed && handler.cutAtShutdown(socket)) linger(socket);
            else socket.destroy();
          }
        }, graceMs);
        timer.unref();
        if (!server.listening) {
          done();
          return;
        }
        // net.Server's close: stop accepting without http.Server's immediate closeIdleConnections(),
        // which resets connections whose request bytes arrived but were not read yet.
        net.Server.prototype.close.call(server, () => done());
        for (const [socket, n] of sockets) if (n === 0) scheduleIdleClose(socket);
      });
      return closed;
    },
  };
}
