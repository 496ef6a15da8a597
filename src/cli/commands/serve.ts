/**
 * `rapm serve --datastore FILE [--model model.onnx]`: the HTTP prediction service
 * (src/serve/http-server.ts) over a saved datastore. SIGTERM/SIGINT shut it down
 * gracefully: stop accepting, finish in-flight requests, then exit (a second signal cuts
 * the remaining connections).
 */
import type { CommandModule } from 'yargs';
import { loadDatastore } from '../../retrieval/persist.js';
import type { Aggregate } from '../../retrieval/search-options.js';
import { defineCommand } from '../options.js';
import { applyThreads } from '../run.js';
import { simdLevel } from '../../native/simd.js';
import { Predictor, type FusionModel } from '../../serve/predictor.js';
import { createServer } from '../../serve/http-server.js';
import { closeSource, openNeighborSource, type SourceSettings } from '../../retrieval/sources.js';
import { SETTINGS } from '../../settings.js';
import { CliUsageError } from '../options.js';

/** The serve settings; the neighbour source ones (--ann, --pg-url, ...) are SourceSettings (src/retrieval/sources.ts). */
export interface ServeArgs extends Omit<SourceSettings, 'log'> {
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
  let fusion: (FusionModel & { release(): Promise<void> }) | null = null;
  if (args.model) {
    const { FusionSession } = await import('../../fusion/onnx-session.js');
    fusion = await FusionSession.create(args.model, { enDim: ds.keyDim, outDim: ds.dv, device: args.device, onWarning: log });
  }
  const source = await openNeighborSource(ds, { ...args, log }).catch(async (e: unknown) => {
    await fusion?.release().catch(() => undefined);
    throw e;
  });
  try {
    const predictor = new Predictor(ds, { k: args.k, tau: args.tau, aggregate: args.aggregate, fusion, source });
    const srv = createServer({ predictor, maxBatch: args.maxBatch, maxBodyBytes: args.maxBodyBytes, log });
    const { url } = await srv.listen(args.port, args.host);
    log(`${ds.size} rows (d ${ds.d}, dv ${ds.dv}, ${ds.precision}), k ${args.k}, tau ${args.tau}, fusion ${fusion ? 'on' : 'off'}, neighbours ${source?.name ?? 'exact'}, simd ${simdLevel()}`);
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
    await closeSource(source).catch(() => undefined);
    await fusion?.release().catch(() => undefined);
  }
}

export const serveCommand: CommandModule = defineCommand({
  command: 'serve',
  describe: 'Serve predictions over HTTP from a saved datastore (POST /predict, POST /explain, GET /health)',
  settings: ['datastore', 'model', 'device', 'port', 'host', 'k', 'tau', 'aggregate', 'maxBatch', 'maxBodyBytes', 'graceMs', 'threads', 'ann', 'annIndex', 'nprobe', 'efSearch', 'pgUrl', 'pgTable', 'pgMode'],
  overrides: { datastore: { demand: true } },
  check: (_a, given) => {
    if (given.has('ann') && given.has('pgUrl')) throw new CliUsageError('--ann and --pg-url exclude each other: neighbours come from one source');
    for (const k of ['annIndex'] as const) if (given.has(k) && !given.has('ann')) throw new CliUsageError(`--${SETTINGS[k].flag} needs --ann`);
    for (const k of ['pgTable', 'pgMode'] as const) if (given.has(k) && !given.has('pgUrl')) throw new CliUsageError(`--${SETTINGS[k].flag} needs --pg-url`);
    for (const k of ['nprobe', 'efSearch'] as const) {
      if (given.has(k) && !given.has('ann') && !given.has('pgUrl')) throw new CliUsageError(`--${SETTINGS[k].flag} needs --ann (faiss) or --pg-url with --pg-mode index`);
    }
  },
  handler: async (a) => {
    applyThreads(a.threads);
    await runServe({ ...a, datastore: a.datastore! });
  },
});
