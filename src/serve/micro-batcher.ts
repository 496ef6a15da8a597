/**
 * Dynamic micro-batching of row-independent searches.
 *
 * Concurrent callers submit [b, width] query blocks; the batcher concatenates the blocks
 * queued at one moment into one call of `run` (one native scan of the datastore for up to
 * `maxBatchRows` queries: a one-query scan is memory-bound, so 32 queries cost about the
 * same pass), then splits the result rows back to their callers.
 *
 * When a batch is dispatched:
 * - at once when the queued rows reach `maxBatchRows`;
 * - when the batch in flight finishes (everything that arrived while it ran goes next): as
 *   soon as its search returns, before its callers are answered, so the next search runs
 *   while the event loop writes those responses (otherwise the native threads sit idle
 *   between batches for the time it takes to answer a whole batch);
 * - otherwise after `maxWaitUs` microseconds from the first queued request (below 1,000 us
 *   this is one event-loop turn, setImmediate: the requests parsed in the same turn join;
 *   from 1,000 us up, a timer with Node's millisecond resolution).
 * At most `maxConcurrent` batches run at once (default 1: the addon already splits one
 * batch across all its threads).
 *
 * Results are bit-identical to unbatched calls because the native search computes each
 * query row independently: the dot products of a row are one FMA chain over the key
 * dimension in a fixed order whatever the micro-tile height (kernels/similarity_*.cpp), its
 * top-K is exact with ties to the lower row (so splitting keys across threads, which depends
 * on the batch size, cannot change it), and softmax and the prior are computed per row.
 * test/serve/micro-batcher.test.ts checks it on every SIMD level.
 *
 * The queue is bounded (`maxQueueRows`): a submit that would exceed it is refused at once
 * with RAPM_BUSY (the HTTP service answers 503 with Retry-After). A request larger than
 * maxBatchRows runs as a batch of its own. If a batch fails, each of its requests is run
 * again on its own, so one caller's error never becomes another's.
 */
import { RapmError } from '../errors.js';
import { SettingError, SettingTypeError, checkSetting, defaultsOf, isSettingError } from '../settings.js';
import { checkKnownKeys, is } from '../validate.js';
import { SourceUnavailableError } from '../retrieval/neighbor-source.js';

export interface BatchingOptions {
  /** Most query rows per batch. Default 64. */
  maxBatchRows?: number;
  /** Longest wait for company, in microseconds, when no batch is running. Default 500. */
  maxWaitUs?: number;
  /** Most query rows waiting (not yet dispatched); beyond it submit() fails with RAPM_BUSY. Default 4,096. */
  maxQueueRows?: number;
  /** Batches running at once. Default 1. */
  maxConcurrent?: number;
}

/** Defaults and ranges come from the settings schema (src/settings.ts), shared with `rapm serve`'s flags. */
const D = defaultsOf(['maxBatchRows', 'maxWaitUs', 'maxQueueRows', 'maxConcurrentBatches']);
export const BATCHING_DEFAULTS: Required<BatchingOptions> = { maxBatchRows: D.maxBatchRows, maxWaitUs: D.maxWaitUs, maxQueueRows: D.maxQueueRows, maxConcurrent: D.maxConcurrentBatches };

export function resolveBatching(options: BatchingOptions | undefined): Required<BatchingOptions> {
  if (options !== undefined && !is.object(options)) throw new RapmError('RAPM_TYPE', 'Expected an object for batching');
  const o = options ?? {};
  checkKnownKeys('batching', o, ['maxBatchRows', 'maxWaitUs', 'maxQueueRows', 'maxConcurrent'] satisfies (keyof BatchingOptions)[]);
  return {
    maxBatchRows: checkSetting('maxBatchRows', o.maxBatchRows),
    maxWaitUs: checkSetting('maxWaitUs', o.maxWaitUs),
    maxQueueRows: checkSetting('maxQueueRows', o.maxQueueRows),
    maxConcurrent: checkAs('maxConcurrent', 'maxConcurrentBatches', o.maxConcurrent),
  };
}

/**
 * checkSetting for an option whose name differs from its setting's key (batching.maxConcurrent
 * is the maxConcurrentBatches setting): the error names the option the caller passed.
 */
function checkAs(option: string, key: 'maxConcurrentBatches', value: unknown): number {
  try {
    return checkSetting(key, value);
  } catch (e) {
    if (!isSettingError(e) || !e.message.startsWith(key)) throw e;
    const message = option + e.message.slice(key.length);
    throw e instanceof SettingTypeError ? new SettingTypeError(message, e.flag, option) : new SettingError(e.code, message, e.flag, option);
  }
}

/** A row-batched result: per-row blocks of fixed widths. */
export interface RowBlocks {
  b: number;
  k: number;
  prior: Float32Array; // [b, dv]
  neighbors: Int32Array; // [b, k]
  weights: Float32Array; // [b, k]
  similarities: Float32Array; // [b, k]
}

/** One dispatched batch, as observed by metrics. */
export interface BatchEvent {
  rows: number;
  requests: number;
  /** Milliseconds the oldest request of the batch waited before dispatch. */
  waitMs: number;
}

/** One finished batch: its dispatch event and how long it ran (search and split), in ms. */
export interface BatchDoneEvent extends BatchEvent {
  runMs: number;
}

interface Pending {
  x: Float32Array; // [rows, width]
  rows: number;
  at: number;
  resolve: (r: RowBlocks) => void;
  reject: (e: unknown) => void;
}

export class MicroBatcher {
  readonly options: Required<BatchingOptions>;
  readonly #width: number;
  readonly #run: (x: Float32Array, rows: number) => Promise<RowBlocks>;
  readonly #queue: Pending[] = [];
  #queuedRows = 0;
  #running = 0;
  #timer: NodeJS.Timeout | NodeJS.Immediate | null = null;
  #observers: ((e: BatchEvent) => void)[] = [];
  #doneObservers: ((e: BatchDoneEvent) => void)[] = [];

  constructor(width: number, run: (x: Float32Array /* [rows, width] */, rows: number) => Promise<RowBlocks>, options?: BatchingOptions) {
    this.#width = width;
    this.#run = run;
    this.options = resolveBatching(options);
  }

  /** Rows waiting for dispatch. */
  get queuedRows(): number {
    return this.#queuedRows;
  }
  /** Requests waiting for dispatch. */
  get queuedRequests(): number {
    return this.#queue.length;
  }
  /** Batches running now. */
  get running(): number {
    return this.#running;
  }

  /** Call `fn` for every dispatched batch; returns a function that stops it. */
  observe(fn: (e: BatchEvent) => void): () => void {
    this.#observers.push(fn);
    return () => {
      this.#observers = this.#observers.filter((f) => f !== fn);
    };
  }

  /** Call `fn` when a dispatched batch has finished (its callers' results are settled); returns a function that stops it. */
  observeDone(fn: (e: BatchDoneEvent) => void): () => void {
    this.#doneObservers.push(fn);
    return () => {
      this.#doneObservers = this.#doneObservers.filter((f) => f !== fn);
    };
  }

  /** Queue `x` [rows, width] for the next batch; resolves with its own rows of the result. */
  submit(x: Float32Array, rows: number): Promise<RowBlocks> {
    const { maxQueueRows } = this.options;
    if (this.#queue.length > 0 && this.#queuedRows + rows > maxQueueRows) {
      return Promise.reject(new RapmError('RAPM_BUSY', `The prediction queue is full (${this.#queuedRows} rows waiting, maxQueueRows = ${maxQueueRows}); retry later`));
    }
    return new Promise<RowBlocks>((resolve, reject) => {
      this.#queue.push({ x, rows, at: performance.now(), resolve, reject });
      this.#queuedRows += rows;
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#running >= this.options.maxConcurrent || this.#queue.length === 0) return;
    if (this.#queuedRows >= this.options.maxBatchRows) {
      this.#flush();
      return;
    }
    if (this.#timer !== null) return;
    const us = this.options.maxWaitUs;
    this.#timer = us < 1000 ? setImmediate(() => this.#flush()) : setTimeout(() => this.#flush(), us / 1000);
  }

  #clearTimer(): void {
    if (this.#timer === null) return;
    if (this.options.maxWaitUs < 1000) clearImmediate(this.#timer as NodeJS.Immediate);
    else clearTimeout(this.#timer as NodeJS.Timeout);
    this.#timer = null;
  }

  #flush(): void {
    this.#clearTimer();
    while (this.#running < this.options.maxConcurrent && this.#queue.length > 0) this.#dispatch();
  }

  /** Take queued requests (first come first served) up to maxBatchRows, at least one. */
  #dispatch(): void {
    const max = this.options.maxBatchRows;
    let n = 1;
    let rows = this.#queue[0]!.rows;
    while (n < this.#queue.length && rows + this.#queue[n]!.rows <= max) rows += this.#queue[n++]!.rows;
    const batch = this.#queue.splice(0, n);
    this.#queuedRows -= rows;
    this.#running++;
    const event = { rows, requests: n, waitMs: performance.now() - batch[0]!.at };
    for (const fn of this.#observers) fn(event);
    const t0 = performance.now();
    let released = false;
    // Called once, when this batch no longer needs its slot: whatever queued while it ran has
    // waited a whole search, so it is dispatched now, before this batch's callers are answered.
    const release = (): void => {
      if (released) return;
      released = true;
      this.#running--;
      if (this.#queue.length > 0) this.#flush();
    };
    void this.#execute(batch, rows, release).finally(() => {
      release();
      const done = { ...event, runMs: performance.now() - t0 };
      for (const fn of this.#doneObservers) fn(done);
    });
  }

  async #execute(batch: Pending[], rows: number, release: () => void): Promise<void> {
    if (batch.length === 1) {
      const p = batch[0]!;
      let r: RowBlocks;
      try {
        r = await this.#run(p.x, p.rows);
      } catch (e) {
        release();
        p.reject(e);
        return;
      }
      release();
      p.resolve(r);
      return;
    }
    const w = this.#width;
    const x = new Float32Array(rows * w);
    let o = 0;
    for (const p of batch) {
      x.set(p.x.subarray(0, p.rows * w), o * w);
      o += p.rows;
    }
    let r: RowBlocks;
    try {
      r = await this.#run(x, rows);
    } catch (e) {
      // The source's engine did not answer: every request of the batch would wait for it again
      // (another timeout each, and b queries at a database that is already failing). All fail.
      if (e instanceof SourceUnavailableError) {
        release();
        for (const p of batch) p.reject(e);
        return;
      }
      // Attribute the failure: run each request on its own (still in this batch's slot).
      await Promise.all(batch.map((p) => this.#run(p.x, p.rows).then(p.resolve, p.reject)));
      return;
    }
    release();
    const k = r.k, dv = r.prior.length / r.b;
    o = 0;
    for (const p of batch) {
      const a = o, z = o + p.rows;
      p.resolve({
        b: p.rows,
        k,
        prior: r.prior.slice(a * dv, z * dv),
        neighbors: r.neighbors.slice(a * k, z * k),
        weights: r.weights.slice(a * k, z * k),
        similarities: r.similarities.slice(a * k, z * k),
      });
      o = z;
    }
  }
}
