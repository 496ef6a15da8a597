/**
 * FusionPool: the fusion model run in worker threads (piscina), so ONNX Runtime's run()
 * never blocks the event loop (onnxruntime-node's run() executes on the calling thread:
 * about 8 ms at batch 1,024 on 2 cores).
 *
 * Each worker holds its own FusionSession, created with the same options as an in-thread
 * session: device 'cpu' | 'cuda' | 'auto' keep their meaning ('cuda' fails when the CUDA EP
 * is unavailable, 'auto' falls back to CPU with a warning), and `provider` reports the
 * execution provider the workers actually run on. Errors keep their RAPM_ codes.
 *
 * Cost: the inputs (en [n, enDim] and prior [n, outDim]) are copied to the worker and the
 * outputs back (structured clone): about 4 KiB a row, negligible next to the model.
 */
import os from 'node:os';
import { Piscina } from 'piscina';
import { RapmError, RapmRangeError, RapmTypeError, describe, type RapmErrorCode } from '../errors.js';
import { checkFinite, checkInteger, checkMatrix } from '../validate.js';
import { modelLabel, parseMetadataProps, type FusionRunResult, type FusionSessionOptions, type OnnxProvider } from './onnx-session.js';
import type { WorkerError, WorkerInit, WorkerReply, WorkerTask } from './onnx-worker.js';

export interface FusionPoolOptions extends FusionSessionOptions {
  // threads (intra-op threads per worker session): default max(1, cores / (workers + 1)).
  /** Worker threads, each with its own session. Default 1. */
  workers?: number;
  /** Runs waiting for a worker before run() rejects with RAPM_BUSY. Default 1,024. */
  maxQueue?: number;
}

export const FUSION_POOL_DEFAULTS = { workers: 1, maxQueue: 1024 } as const;

function rethrow(e: WorkerError): never {
  const code = (e.code.startsWith('RAPM_') ? e.code : 'RAPM_ONNX') as RapmErrorCode;
  if (e.name === 'TypeError') throw new RapmTypeError(code, e.message);
  if (e.name === 'RangeError') throw new RapmRangeError(code, e.message);
  throw new RapmError(code, e.message);
}

/** The worker module: compiled JS next to this file, or the TS source through tsx (tests, scripts). */
function workerSpec(): { filename: string; execArgv: string[] } {
  const self = import.meta.url;
  if (self.endsWith('.ts')) {
    return { filename: new URL('./onnx-worker.ts', self).href, execArgv: ['--import', import.meta.resolve('tsx')] };
  }
  return { filename: new URL('./onnx-worker.js', self).href, execArgv: [] };
}

export class FusionPool {
  readonly provider: OnnxProvider;
  readonly fallbackReason: string | null;
  readonly metadataProps: Readonly<Record<string, string>>;
  /** metadata_props parsed, as FusionSession.metadata (model/datastore checks read it). */
  readonly metadata: Readonly<Record<string, unknown>>;
  readonly enDim: number;
  readonly outDim: number;
  readonly batch: number | null;
  readonly workers: number;
  readonly source: string;
  #pool: Piscina | null;

  private constructor(pool: Piscina, init: { provider: OnnxProvider; fallbackReason: string | null; metadataProps: Record<string, string>; enDim: number; outDim: number; batch: number | null; workers: number; source: string }) {
    this.#pool = pool;
    this.provider = init.provider;
    this.fallbackReason = init.fallbackReason;
    this.metadataProps = Object.freeze({ ...init.metadataProps });
    this.metadata = Object.freeze(parseMetadataProps(init.metadataProps));
    this.enDim = init.enDim;
    this.outDim = init.outDim;
    this.batch = init.batch;
    this.workers = init.workers;
    this.source = init.source;
  }

  /** Start the workers and load `model` in each (same errors as FusionSession.create). */
  static async create(model: string | Uint8Array, options: FusionPoolOptions = {}): Promise<FusionPool> {
    if (options === null || typeof options !== 'object') throw new RapmTypeError('RAPM_TYPE', `Expected an object for options but received ${describe(options)}`);
    if (typeof model !== 'string' && !(model instanceof Uint8Array)) {
      throw new RapmTypeError('RAPM_TYPE', `Expected a file name or Uint8Array for model but received ${describe(model)}`);
    }
    const workers = checkInteger('workers', options.workers ?? FUSION_POOL_DEFAULTS.workers, 1, 256);
    const maxQueue = checkInteger('maxQueue', options.maxQueue ?? FUSION_POOL_DEFAULTS.maxQueue, 0, 1 << 20);
    const { onWarning, workers: _w, maxQueue: _q, ...sessionOptions } = options;
    if (onWarning !== undefined && typeof onWarning !== 'function') throw new RapmTypeError('RAPM_TYPE', `Expected a function for onWarning but received ${describe(onWarning)}`);
    // Unless threads is given, the cores are shared between the workers and the rest of the
    // process: a worker's run overlaps the native search and the event loop (in-thread, ORT's
    // run blocks them instead), so each session gets cores / (workers + 1), at least 1.
    if (sessionOptions.threads === undefined) sessionOptions.threads = Math.max(1, Math.floor(os.availableParallelism() / (workers + 1)));
    const init: WorkerInit = { model, options: sessionOptions };
    const { filename, execArgv } = workerSpec();
    const pool = new Piscina({ filename, execArgv, workerData: init, minThreads: workers, maxThreads: workers, maxQueue, concurrentTasksPerWorker: 1, idleTimeout: 2 ** 31 - 1 });
    try {
      // One info task per worker would not be guaranteed to reach each worker; one is enough:
      // every worker loads the same model with the same options, so they agree.
      const reply = (await pool.run({ op: 'info' } satisfies WorkerTask)) as WorkerReply;
      if ('error' in reply) rethrow(reply.error);
      if (!('info' in reply)) throw new RapmError('RAPM_ONNX', 'The fusion worker answered an info request with something else');
      for (const w of reply.info.warnings) onWarning?.(w);
      return new FusionPool(pool, {
        provider: reply.info.provider as OnnxProvider,
        fallbackReason: reply.info.fallbackReason,
        metadataProps: reply.info.metadataProps,
        enDim: sessionOptions.enDim ?? 1024,
        outDim: sessionOptions.outDim ?? 101,
        batch: reply.info.batch,
        workers,
        source: sessionOptions.name ?? (typeof model === 'string' ? model : '<buffer>'),
      });
    } catch (e) {
      await pool.destroy().catch(() => undefined);
      throw e;
    }
  }

  /** Run `n` rows in a worker: `en` [n, enDim], `prior` [n, outDim] (checked here first, like FusionSession.run). */
  async run(en: Float32Array, prior: Float32Array): Promise<FusionRunResult> {
    const pool = this.#pool;
    if (!pool) throw new RapmError('RAPM_STATE', `The fusion pool for ${modelLabel(this.source)} was released`);
    const n = checkMatrix('en', en, this.enDim);
    checkMatrix('prior', prior, this.outDim, n);
    checkFinite('en', en, this.enDim);
    checkFinite('prior', prior, this.outDim);
    let reply: WorkerReply;
    try {
      reply = (await pool.run({ op: 'run', en, prior } satisfies WorkerTask)) as WorkerReply;
    } catch (e) {
      const queueFull = /queue is full/i.test((e as Error).message ?? '');
      throw new RapmError(queueFull ? 'RAPM_BUSY' : 'RAPM_ONNX', `The fusion worker pool failed to run ${n} rows: ${(e as Error).message}`, { cause: e });
    }
    if ('error' in reply) rethrow(reply.error);
    if (!('pred' in reply)) throw new RapmError('RAPM_ONNX', 'The fusion worker answered a run with something else');
    return { pred: reply.pred, delta: reply.delta };
  }

  /** Runs waiting for a worker. */
  get queued(): number {
    return this.#pool?.queueSize ?? 0;
  }

  /** Stop the workers after the runs in flight finish. Idempotent. */
  async release(): Promise<void> {
    const pool = this.#pool;
    if (!pool) return;
    this.#pool = null;
    await pool.close();
  }

  get released(): boolean {
    return this.#pool === null;
  }
}
