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
  try {
    const predictor = new Predictor(ds, { k: args.k, tau: args.tau, aggregate: args.aggregate, fusion });
    const srv = createServer({ predictor, maxBatch: args.maxBatch, maxBodyBytes: args.maxBodyBytes, log });
    const { url } = await srv.listen(args.port, args.host);
    log(`${ds.size} rows (d ${ds.d}, dv ${ds.dv}, ${ds.precision}), k ${args.k}, tau ${args.tau}, fusion ${fusion ? 'on' : 'off'}, simd ${simdLevel()}`);
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
  settings: ['datastore', 'model', 'device', 'port', 'host', 'k', 'tau', 'aggregate', 'maxBatch', 'maxBodyBytes', 'graceMs', 'threads'],
  overrides: { datastore: { demand: true } },
  handler: async (a) => {
    applyThreads(a.threads);
    await runServe({ ...a, datastore: a.datastore! });
  },
});
