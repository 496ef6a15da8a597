/**
 * `rapm serve --datastore FILE [--model model.onnx]`: the HTTP prediction service
 * (src/serve/http-server.ts) over a saved datastore. SIGTERM/SIGINT shut it down
 * gracefully: stop accepting, finish in-flight requests, then exit (a second signal cuts
 * the remaining connections).
 */
import type { CommandModule } from 'yargs';
import { loadDatastore } from '../../retrieval/persist.js';
import type { Aggregate } from '../../retrieval/search-options.js';
import { CliUsageError, defineCommand } from '../options.js';
import { applyThreads } from '../run.js';
import { simdLevel } from '../../native/simd.js';
import { Predictor, type FusionModel } from '../../serve/predictor.js';
import { createServer } from '../../serve/http-server.js';

export interface ServeArgs {
  datastore: string;
  model?: string;
  device: 'cpu' | 'cuda' | 'auto';
  port: number;
  host: string;
  k: number;
  tau: number;
  aggregate: Aggregate;
  maxBatch: number;
  maxBodyBytes?: number;
  graceMs: number;
  /** Micro-batching (default on) and its limits. */
  batching?: boolean;
  maxBatchRows?: number;
  maxWaitUs?: number;
  maxQueueRows?: number;
  maxConcurrentBatches?: number;
  /** Body bytes held across all connections (503 beyond). */
  maxBufferedBytes?: number;
  retryAfterSeconds?: number;
  headersTimeoutMs?: number;
  requestTimeoutMs?: number;
  idleTimeoutMs?: number;
  /** GET /metrics (default on). */
  metrics?: boolean;
  /** pino access log on stderr (default off). */
  accessLog?: boolean;
  /** Fusion worker threads (default 1; 0: on the event-loop thread). */
  fusionWorkers?: number;
}

export interface RunServeOptions {
  /** Aborting it shuts the server down like SIGTERM (tests, embedding). */
  signal?: AbortSignal;
  /** Called once listening, with the URL. Default: a line on stdout. */
  onListening?: (url: string) => void;
  /** Also shut down on SIGTERM/SIGINT. Default true. */
  handleSignals?: boolean;
  /** Status lines. Default: stderr. */
  log?: (line: string) => void;
}

/** Load, listen, and wait until a shutdown signal (or `options.signal`), then close gracefully. */
export async function runServe(args: ServeArgs, options: RunServeOptions = {}): Promise<void> {
  const log = options.log ?? ((line: string) => process.stderr.write(`rapm serve: ${line}\n`));
  const ds = await loadDatastore(args.datastore);
  let fusion: (FusionModel & { release(): Promise<void>; provider: string }) | null = null;
  const fusionWorkers = args.fusionWorkers ?? 1;
  if (args.model) {
    const fusionOptions = { enDim: ds.keyDim, outDim: ds.dv, device: args.device, onWarning: log };
    if (fusionWorkers > 0) {
      const { FusionPool } = await import('../../fusion/onnx-pool.js');
      fusion = await FusionPool.create(args.model, { ...fusionOptions, workers: fusionWorkers });
    } else {
      const { FusionSession } = await import('../../fusion/onnx-session.js');
      fusion = await FusionSession.create(args.model, fusionOptions);
    }
  }
  try {
    const batching = args.batching === false ? false : { maxBatchRows: args.maxBatchRows, maxWaitUs: args.maxWaitUs, maxQueueRows: args.maxQueueRows, maxConcurrent: args.maxConcurrentBatches };
    const predictor = new Predictor(ds, { k: args.k, tau: args.tau, aggregate: args.aggregate, fusion, batching });
    const srv = createServer({
      predictor,
      maxBatch: args.maxBatch,
      maxBodyBytes: args.maxBodyBytes,
      maxBufferedBytes: args.maxBufferedBytes,
      retryAfterSeconds: args.retryAfterSeconds,
      headersTimeoutMs: args.headersTimeoutMs,
      requestTimeoutMs: args.requestTimeoutMs,
      idleTimeoutMs: args.idleTimeoutMs,
      metrics: args.metrics,
      accessLog: args.accessLog,
      log,
    });
    const { url } = await srv.listen(args.port, args.host);
    const b = predictor.batcher?.options;
    log(
      `${ds.size} rows (d ${ds.d}, dv ${ds.dv}, ${ds.precision}), k ${args.k}, tau ${args.tau}, ` +
        `fusion ${fusion ? `on (${fusion.provider}, ${fusionWorkers > 0 ? `${fusionWorkers} worker thread(s)` : 'event-loop thread'})` : 'off'}, ` +
        `batching ${b ? `on (max ${b.maxBatchRows} rows, wait ${b.maxWaitUs} us, queue ${b.maxQueueRows} rows)` : 'off'}, simd ${simdLevel()}`,
    );
    (options.onListening ?? ((u: string) => process.stdout.write(`listening on ${u}\n`)))(url);
    await new Promise<void>((resolve) => {
      const handle = options.handleSignals !== false;
      let stopping = false;
      const stop = (why: string) => {
        if (stopping) {
          log(`${why} again: closing ${srv.inFlight} remaining connection(s) now`);
          srv.server.closeAllConnections();
          return;
        }
        stopping = true;
        log(`${why}: no new connections; finishing ${srv.inFlight} in-flight request(s)`);
        srv.close({ graceMs: args.graceMs }).then(() => {
          if (handle) {
            process.off('SIGTERM', onTerm);
            process.off('SIGINT', onInt);
          }
          resolve();
        }, resolve);
      };
      const onTerm = () => stop('SIGTERM');
      const onInt = () => stop('SIGINT');
      if (handle) {
        process.on('SIGTERM', onTerm);
        process.on('SIGINT', onInt);
      }
      if (options.signal) {
        if (options.signal.aborted) stop('aborted');
        else options.signal.addEventListener('abort', () => stop('aborted'), { once: true });
      }
    });
    log('stopped');
  } finally {
    await fusion?.release().catch(() => undefined);
  }
}

export const serveCommand: CommandModule = defineCommand({
  command: 'serve',
  describe: 'Serve predictions over HTTP from a saved datastore (POST /predict, POST /explain, GET /health)',
  settings: [
    'datastore', 'model', 'device', 'port', 'host', 'k', 'tau', 'aggregate', 'maxBatch', 'maxBodyBytes', 'graceMs', 'threads',
    'batching', 'maxBatchRows', 'maxWaitUs', 'maxQueueRows', 'maxConcurrentBatches', 'maxBufferedBytes', 'retryAfterSeconds',
    'headersTimeoutMs', 'requestTimeoutMs', 'idleTimeoutMs', 'metrics', 'accessLog', 'fusionWorkers',
  ],
  overrides: { datastore: { demand: true } },
  check: (a) => {
    if (a.headersTimeoutMs > a.requestTimeoutMs) {
      throw new CliUsageError(`--headers-timeout-ms (${a.headersTimeoutMs}) must be at most --request-timeout-ms (${a.requestTimeoutMs})`);
    }
    const body = a.maxBodyBytes ?? 0;
    if (a.maxBufferedBytes !== undefined && a.maxBufferedBytes < body) {
      throw new CliUsageError(`--max-buffered-bytes (${a.maxBufferedBytes}) must be at least --max-body-bytes (${body}): one largest body must fit`);
    }
  },
  handler: async (a) => {
    applyThreads(a.threads);
    await runServe({ ...a, datastore: a.datastore! });
  },
});
