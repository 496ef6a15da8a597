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
import type { Datastore, FastPathSetting, KeyPrecision } from '../../retrieval/datastore.js';
import { SEARCH_DEFAULTS, type Aggregate } from '../../retrieval/search-options.js';
import { applyOverrides, checkModelMatchesDatastore, readBundle, tauOverrideProblem } from '../../serve/bundle.js';
import { FAST_PATH_PRECISION_RULE, checkSetting, sayFor, type SayValue } from '../../settings.js';
import { CliUsageError, defineCommand, refuseTauWithoutSoftmax } from '../options.js';
import { applyThreads } from '../run.js';
import { simdLevel } from '../../native/simd.js';
import { Predictor, type FusionModel, type PredictorOptions } from '../../serve/predictor.js';
import { createServer } from '../../serve/http-server.js';
import { closeSource, isSourceSettingError, openNeighborSource, type SourceSettings } from '../../retrieval/sources.js';
import { SETTINGS } from '../../settings.js';

/** The serve settings; the neighbour source ones (--ann, --pg-url, ...) are SourceSettings (src/retrieval/sources.ts). */
export interface ServeArgs extends Omit<SourceSettings, 'log'> {
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
  /** The fast search path; absent: as the bundle records, else the setting's default ('auto'). */
  fastPath?: FastPathSetting;
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

/** The micro-batching option of `args` for PredictorOptions.batching. */
function batchingOf(args: ServeArgs): PredictorOptions['batching'] {
  return args.batching === false ? false : { maxBatchRows: args.maxBatchRows, maxWaitUs: args.maxWaitUs, maxQueueRows: args.maxQueueRows, maxConcurrent: args.maxConcurrentBatches };
}

/**
 * The fast path to load the datastore with: as given; else, with another neighbour source
 * (--ann, --pg-url), 'off' (the exact search is not used, so a shadow would only cost memory);
 * else undefined (as the bundle records, or the setting's default).
 */
function fastPathOf(args: ServeArgs): FastPathSetting | undefined {
  if (args.fastPath !== undefined) return args.fastPath;
  return hasSource(args) ? 'off' : undefined;
}

/** Neighbours come from another source (--ann, --pg-url), not the exact search. */
const hasSource = (args: ServeArgs): boolean => args.ann !== undefined || args.pgUrl !== undefined;

/**
 * The shared rule between key precision and fast path (FAST_PATH_PRECISION_RULE) for the keys
 * `what` (a bundle, a datastore file) holds: a usage error in CLI words, the keys' precision
 * named as `what`'s in place of --precision, a flag serve does not have.
 */
function refuseFastPathFor(precision: KeyPrecision, fastPath: FastPathSetting, what: string): void {
  const cli = sayFor('cli');
  const say: SayValue = (key, value) => (key === 'precision' ? `${what}'s ${value === undefined ? 'key precision' : String(value)}` : cli(key, value));
  const problem = FAST_PATH_PRECISION_RULE.problem({ precision, fastPath }, say);
  if (problem !== null) throw new CliUsageError(problem);
}

/**
 * Checks against what the bundle records, once its manifest is read and before anything is
 * loaded: flags that would be accepted and have no effect are usage errors (exit 2), as they are
 * without a bundle. The library applies the tau rule in Predictor.fromBundle too (RAPM_INVALID_ARG).
 */
function checkBundleArgs(a: { bundle?: string; tau: number; aggregate: Aggregate; fastPath: FastPathSetting }, given: ReadonlySet<string>): void {
  if (a.bundle === undefined) return;
  const { manifest } = readBundle(a.bundle);
  if (given.has('fastPath')) refuseFastPathFor(manifest.settings.precision, a.fastPath, `bundle ${a.bundle}`);
  if (manifest.model === null) {
    for (const k of ['device', 'fusionWorkers'] as const) {
      if (given.has(k)) throw new CliUsageError(`--${SETTINGS[k].flag} sets where the fusion model runs, but bundle ${a.bundle} holds no model (a retrieval bundle from rapm index) and serves the retrieval prior: drop --${SETTINGS[k].flag}`);
    }
  }
  const problem = tauOverrideProblem(manifest.settings, { tau: given.has('tau') ? a.tau : undefined, aggregate: given.has('aggregate') ? a.aggregate : undefined }, `bundle ${a.bundle}`, 'cli');
  if (problem !== null) throw new CliUsageError(problem);
}

/** The predictor of `args`: a bundle, or a datastore (+ model) checked against each other. */
async function openPredictor(args: ServeArgs, log: (line: string) => void): Promise<Predictor> {
  if (args.bundle !== undefined) {
    if (args.datastore !== undefined || args.model !== undefined) throw new RapmError('RAPM_INVALID_ARG', 'Give a bundle (--bundle) or a datastore and model (--datastore, --model), not both');
    // With --ann / --pg-url and no --fast-path the bundle loads without the fast path (fromBundle
    // does that for a source, and it is not an override: nobody asked for it).
    const source = hasSource(args) ? (ds: Datastore) => openNeighborSource(ds, { ...args, log }) : undefined;
    const p = await Predictor.fromBundle(args.bundle, { k: args.k, tau: args.tau, aggregate: args.aggregate, fastPath: args.fastPath, device: args.device, log, batching: batchingOf(args), fusionWorkers: args.fusionWorkers ?? 1, source });
    log(`bundle ${args.bundle} (${p.bundle!.kind}, trained k ${p.bundle!.trained.k}, tau ${p.bundle!.trained.tau}, ${p.bundle!.trained.aggregate}, Config ${p.bundle!.trained.config}, data ${p.bundle!.dataHash})`);
    return p;
  }
  if (args.datastore === undefined) throw new RapmError('RAPM_INVALID_ARG', 'Give --bundle DIR (from rapm train --out or rapm index) or --datastore FILE');
  const header = await readDatastoreHeader(args.datastore);
  if (args.fastPath !== undefined) refuseFastPathFor(header.precision, args.fastPath, `datastore ${args.datastore}`);
  const ds = await loadDatastore(args.datastore, { fastPath: fastPathOf(args) });
  let fusion: (FusionModel & Pick<FusionSession, 'enDim' | 'outDim' | 'metadata' | 'release'>) | null = null;
  let trained = { k: SEARCH_DEFAULTS.k, tau: SEARCH_DEFAULTS.tau, aggregate: SEARCH_DEFAULTS.aggregate };
  if (args.model) {
    const fusionOptions = { enDim: ds.keyDim, outDim: ds.dv, device: args.device, onWarning: log };
    const workers = args.fusionWorkers ?? 1;
    if (workers > 0) {
      const { FusionPool } = await import('../../fusion/onnx-pool.js');
      fusion = await FusionPool.create(args.model, { ...fusionOptions, workers });
    } else {
      const { FusionSession } = await import('../../fusion/onnx-session.js');
      fusion = await FusionSession.create(args.model, fusionOptions);
    }
    try {
      await checkModelMatchesDatastore(fusion, ds, { model: args.model, datastore: args.datastore }, header.meta, log);
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
    // --tau with a model trained with --aggregate mean or top1 would change nothing: a usage error.
    const problem = tauOverrideProblem(trained, { tau: args.tau, aggregate: args.aggregate }, `model ${args.model}`, 'cli');
    if (problem !== null) {
      await fusion.release().catch(() => undefined);
      throw new CliUsageError(problem);
    }
  }
  const s = applyOverrides(trained, { k: args.k, tau: args.tau, aggregate: args.aggregate }, ds.size, log, args.model ? 'trained' : 'default');
  try {
    const source = await openNeighborSource(ds, { ...args, log });
    return new Predictor(ds, { k: s.k, tau: s.tau, aggregate: s.aggregate, fusion, batching: batchingOf(args), source });
  } catch (e) {
    await fusion?.release().catch(() => undefined);
    throw e;
  }
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
    const info = predictor.info;
    const b = predictor.batcher?.options;
    const workers = args.fusionWorkers ?? 1;
    log(
      `${info.rows} rows (d ${info.d}, dv ${info.dv}, ${info.precision}, fast path ${info.fastPath}), k ${info.k}, tau ${info.tau}, ${info.aggregate}, ` +
        `fusion ${info.fusion ? `on (${info.provider}, ${workers > 0 ? `${workers} worker thread(s)` : 'event-loop thread'})` : 'off'}, ` +
        `batching ${b ? `on (max ${b.maxBatchRows} rows, wait ${b.maxWaitUs} us, queue ${b.maxQueueRows} rows)` : 'off'}, neighbours ${info.source}, simd ${simdLevel()}`,
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
    await closeSource(predictor.source as Parameters<typeof closeSource>[0]).catch(() => undefined);
    await fusion?.release?.().catch(() => undefined);
  }
}

export const serveCommand: CommandModule = defineCommand({
  command: 'serve',
  describe: 'Serve predictions over HTTP from a bundle or a saved datastore (POST /predict, POST /explain, GET /health)',
  settings: [
    'bundle', 'datastore', 'model', 'device', 'port', 'host', 'k', 'tau', 'aggregate', 'fastPath', 'maxBatch', 'maxBodyBytes', 'graceMs', 'threads',
    'batching', 'maxBatchRows', 'maxWaitUs', 'maxQueueRows', 'maxConcurrentBatches', 'maxBufferedBytes', 'retryAfterSeconds',
    'headersTimeoutMs', 'requestTimeoutMs', 'idleTimeoutMs', 'metrics', 'accessLog', 'fusionWorkers',
    'ann', 'annIndex', 'nprobe', 'efSearch', 'pgUrl', 'pgTable', 'pgMode', 'pgTimeoutMs',
  ],
  overrides: {
    // The bundle (or model) decides these: no single [default: ...] to show.
    k: { help: `Neighbours per query; default: as trained (bundle or model), else ${SETTINGS.k.default}. An explicit value is an override, logged`, hideDefault: true },
    tau: { help: `Softmax temperature; default: as trained, else ${SETTINGS.tau.default}. An explicit value is an override, logged (refused where the aggregate is not softmax)`, hideDefault: true },
    aggregate: { help: `Neighbour weighting; default: as trained, else ${SETTINGS.aggregate.default}. An explicit value is an override, logged`, hideDefault: true },
    fastPath: { help: `${SETTINGS.fastPath.help}. Default: as the bundle records, else ${SETTINGS.fastPath.default}; off with --ann or --pg-url`, hideDefault: true },
  },
  check: (a, given) => {
    if (given.has('ann') && given.has('pgUrl')) throw new CliUsageError('--ann and --pg-url exclude each other: neighbours come from one source');
    for (const k of ['annIndex'] as const) if (given.has(k) && !given.has('ann')) throw new CliUsageError(`--${SETTINGS[k].flag} needs --ann`);
    for (const k of ['pgTable', 'pgMode', 'pgTimeoutMs'] as const) if (given.has(k) && !given.has('pgUrl')) throw new CliUsageError(`--${SETTINGS[k].flag} needs --pg-url`);
    for (const k of ['nprobe', 'efSearch'] as const) {
      if (given.has(k) && !given.has('ann') && !given.has('pgUrl')) throw new CliUsageError(`--${SETTINGS[k].flag} needs --ann (faiss) or --pg-url with --pg-mode index`);
      if (given.has(k) && given.has('pgUrl') && a.pgMode !== 'index') {
        throw new CliUsageError(`--${SETTINGS[k].flag} sets the search of a vector index, but --pg-mode ${a.pgMode} scans every row: add --pg-mode index or drop --${SETTINGS[k].flag}`);
      }
    }
    // Whether --nprobe (IVF) or --ef-search (HNSW) fits the index is known once the source is
    // open (the faiss factory's index, the table's pgvector index): refused then, as a usage error.
    // Options that would be accepted and then have no effect are refused, naming both flags.
    refuseTauWithoutSoftmax(a, given);
    if (given.has('datastore') && !given.has('model')) {
      for (const k of ['device', 'fusionWorkers'] as const) {
        if (given.has(k)) throw new CliUsageError(`--${SETTINGS[k].flag} sets where the fusion model runs, but --datastore without --model serves the retrieval prior: drop --${SETTINGS[k].flag} or add --model`);
      }
    }
    if (given.has('batching') && a.batching === false) {
      for (const k of ['maxBatchRows', 'maxWaitUs', 'maxQueueRows', 'maxConcurrentBatches'] as const) {
        if (given.has(k)) throw new CliUsageError(`--${SETTINGS[k].flag} sets micro-batching, which --no-batching turns off: drop one of them`);
      }
    }
    if (given.has('fastPath') && a.fastPath !== 'off' && (given.has('ann') || given.has('pgUrl'))) {
      throw new CliUsageError(
        `--fast-path ${a.fastPath} speeds up the exact search, which --${given.has('ann') ? 'ann' : 'pg-url'} replaces (neighbours come from that source; the shadow would only cost memory): drop --fast-path`,
      );
    }
    if (a.bundle === undefined && a.datastore === undefined) throw new CliUsageError('Give --bundle DIR (from rapm train --out or rapm index) or --datastore FILE');
    if (a.bundle !== undefined && (a.datastore !== undefined || a.model !== undefined)) throw new CliUsageError('--bundle already holds the datastore and model: drop --datastore / --model');
    checkBundleArgs(a, given);
    if (a.headersTimeoutMs > a.requestTimeoutMs) {
      throw new CliUsageError(`--headers-timeout-ms (${a.headersTimeoutMs}) must be at most --request-timeout-ms (${a.requestTimeoutMs})`);
    }
    const body = a.maxBodyBytes ?? 0;
    if (a.maxBufferedBytes !== undefined && a.maxBufferedBytes < body) {
      throw new CliUsageError(`--max-buffered-bytes (${a.maxBufferedBytes}) must be at least --max-body-bytes (${body}): one largest body must fit`);
    }
  },
  handler: async (a, given) => {
    applyThreads(a.threads);
    try {
      await runServe({
        ...a,
        k: given.has('k') ? a.k : undefined,
        tau: given.has('tau') ? a.tau : undefined,
        aggregate: given.has('aggregate') ? a.aggregate : undefined,
        fastPath: given.has('fastPath') ? a.fastPath : undefined,
      });
    } catch (e) {
      // A neighbour-source flag refused once the source is open (a --nprobe for an HNSW index, ...).
      if (isSourceSettingError(e)) throw new CliUsageError(e.message);
      throw e;
    }
  },
});
