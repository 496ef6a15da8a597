/**
 * `rapm serve --bundle DIR` or `rapm serve --datastore FILE [--model model.onnx]`: the HTTP
 * prediction service (src/serve/http-server.ts) over a bundle (run with its trained settings;
 * explicit --k/--tau/--aggregate are logged overrides) or a datastore and model checked
 * against each other. SIGTERM/SIGINT shut it down
 * gracefully: stop accepting, finish in-flight requests, then exit (a second signal cuts
 * the remaining connections).
 */
import type { CommandModule } from 'yargs';
import { RapmError } from '../../errors.js';
import type { FusionSession } from '../../fusion/onnx-session.js';
import { loadDatastore, readDatastoreHeader } from '../../retrieval/persist.js';
import { SEARCH_DEFAULTS, type Aggregate } from '../../retrieval/search-options.js';
import { applyOverrides, checkModelMatchesDatastore } from '../../serve/bundle.js';
import { checkSetting } from '../../settings.js';
import { CliUsageError, defineCommand } from '../options.js';
import { applyThreads } from '../run.js';
import { simdLevel } from '../../native/simd.js';
import { Predictor, type FusionModel } from '../../serve/predictor.js';
import { createServer } from '../../serve/http-server.js';

export interface ServeArgs {
  /** A bundle folder (rapm train --out / rapm index): served with its trained settings. */
  bundle?: string;
  /** Or a datastore file (and optionally a fusion model). */
  datastore?: string;
  model?: string;
  device: 'cpu' | 'cuda' | 'auto';
  port: number;
  host: string;
  /** Explicit settings: override the bundle's (or the model's) trained ones, logged. Absent: as trained, else the schema defaults. */
  k?: number;
  tau?: number;
  aggregate?: Aggregate;
  maxBatch: number;
  maxBodyBytes?: number;
  graceMs: number;
}

/** The predictor of `args`: a bundle, or a datastore (+ model) checked against each other. */
async function openPredictor(args: ServeArgs, log: (line: string) => void): Promise<Predictor> {
  if (args.bundle !== undefined) {
    if (args.datastore !== undefined || args.model !== undefined) throw new RapmError('RAPM_INVALID_ARG', 'Give a bundle (--bundle) or a datastore and model (--datastore, --model), not both');
    const p = await Predictor.fromBundle(args.bundle, { k: args.k, tau: args.tau, aggregate: args.aggregate, device: args.device, log });
    log(`bundle ${args.bundle} (${p.bundle!.kind}, trained k ${p.bundle!.trained.k}, tau ${p.bundle!.trained.tau}, ${p.bundle!.trained.aggregate}, Config ${p.bundle!.trained.config}, data ${p.bundle!.dataHash})`);
    return p;
  }
  if (args.datastore === undefined) throw new RapmError('RAPM_INVALID_ARG', 'Give --bundle DIR (from rapm train --out or rapm index) or --datastore FILE');
  const header = await readDatastoreHeader(args.datastore);
  const ds = await loadDatastore(args.datastore);
  let fusion: FusionSession | null = null;
  let trained = { k: SEARCH_DEFAULTS.k, tau: SEARCH_DEFAULTS.tau, aggregate: SEARCH_DEFAULTS.aggregate };
  if (args.model) {
    const { FusionSession } = await import('../../fusion/onnx-session.js');
    fusion = await FusionSession.create(args.model, { enDim: ds.keyDim, outDim: ds.dv, device: args.device, onWarning: log });
    try {
      await checkModelMatchesDatastore(fusion, ds, { model: args.model, datastore: args.datastore }, header.meta);
    } catch (e) {
      await fusion.release().catch(() => undefined);
      throw e;
    }
    // The model records the retrieval settings its priors used: serve with those unless told otherwise.
    const m = fusion.metadata;
    trained = {
      k: typeof m['rapm.k'] === 'number' ? m['rapm.k'] : trained.k,
      tau: typeof m['rapm.tau'] === 'number' ? m['rapm.tau'] : trained.tau,
      aggregate: typeof m['rapm.aggregate'] === 'string' ? checkSetting('aggregate', m['rapm.aggregate']) : trained.aggregate,
    };
  }
  const s = applyOverrides(trained, { k: args.k, tau: args.tau, aggregate: args.aggregate }, ds.size, log);
  return new Predictor(ds, { k: s.k, tau: s.tau, aggregate: s.aggregate, fusion });
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
  const predictor = await openPredictor(args, log);
  const fusion = predictor.fusion as (FusionModel & { release?: () => Promise<void> }) | null;
  try {
    const srv = createServer({ predictor, maxBatch: args.maxBatch, maxBodyBytes: args.maxBodyBytes, log });
    const { url } = await srv.listen(args.port, args.host);
    const info = predictor.info;
    log(`${info.rows} rows (d ${info.d}, dv ${info.dv}, ${info.precision}), k ${info.k}, tau ${info.tau}, ${info.aggregate}, fusion ${info.fusion ? `on (${info.provider})` : 'off'}, simd ${simdLevel()}`);
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
    await fusion?.release?.().catch(() => undefined);
  }
}

export const serveCommand: CommandModule = defineCommand({
  command: 'serve',
  describe: 'Serve predictions over HTTP from a bundle or a saved datastore (POST /predict, POST /explain, GET /health)',
  settings: ['bundle', 'datastore', 'model', 'device', 'port', 'host', 'k', 'tau', 'aggregate', 'maxBatch', 'maxBodyBytes', 'graceMs', 'threads'],
  overrides: {
    k: { help: 'Neighbours per query; default: as trained (bundle or model), else 90. An explicit value is an override, logged' },
    tau: { help: 'Softmax temperature; default: as trained, else 0.04. An explicit value is an override, logged' },
    aggregate: { help: 'Neighbour weighting; default: as trained, else softmax. An explicit value is an override, logged' },
  },
  check: (a) => {
    if (a.bundle === undefined && a.datastore === undefined) throw new CliUsageError('Give --bundle DIR (from rapm train --out or rapm index) or --datastore FILE');
    if (a.bundle !== undefined && (a.datastore !== undefined || a.model !== undefined)) throw new CliUsageError('--bundle already holds the datastore and model: drop --datastore / --model');
  },
  handler: async (a, given) => {
    applyThreads(a.threads);
    await runServe({
      ...a,
      k: given.has('k') ? a.k : undefined,
      tau: given.has('tau') ? a.tau : undefined,
      aggregate: given.has('aggregate') ? a.aggregate : undefined,
    });
  },
});
