/**
 * Training the fusion nets of one evaluation point, one per training seed (--train-seeds),
 * several at once when the backend trains epochs off the JS thread. Used by fitAndScore
 * (evaluate.ts) for the progressive loop and the experiments.
 */
import { paramLayout, type MlpSpec } from '../fusion/layout.js';
import { checkMlpData, trainMlpOnCheckedData, type EpochStats, type MlpBackend, type MlpData, type TrainOptions, type TrainResult } from '../fusion/train.js';
import { concurrency } from '../native/simd.js';

/**
 * One training seed's net: its seed (initialisation, shuffling, dropout), rows and warm start.
 * The seeds of a point usually share one matrix (fit and val the same MlpData) and differ in
 * fitRows / valRows (trainMlp's trainRows / valRows): no copies, and it is validated once.
 */
export interface SeedJob {
  seed: number;
  fit: MlpData;
  val: MlpData;
  /** Rows of `fit` this net is fitted on (default all). */
  fitRows?: Int32Array | null;
  /** Rows of `val` it validates on (default all). */
  valRows?: Int32Array | null;
  /** Warm start (see TrainOptions.init); null or absent: a fresh seeded initialisation. */
  init?: Float32Array | null;
}

export interface SeedTrainingOptions extends Pick<TrainOptions, 'epochs' | 'patience' | 'batchSize' | 'lr' | 'weightDecay' | 'signal'> {
  /**
   * Nets trained at once. Default: all of them, up to twice the kernel pool's threads
   * (setConcurrency / RAPM_THREADS), each on one thread of its own; with a one-thread pool, one
   * at a time. 1: one after another, each
   * on the whole pool. Only backends
   * that train whole epochs off the JS thread (MlpBackend.trainEpoch) run nets at once; the
   * weights never depend on it (each net's arithmetic is the same for any thread count).
   */
  parallel?: number;
  /** After every epoch of net `s` (index into the jobs). */
  onEpoch?: (s: number, e: EpochStats) => void;
  /** Rows trained so far over all nets and epochs, against the most there can be (every net running every epoch). */
  onProgress?: (done: number, total: number) => void;
  /**
   * Work on net `s` once it has finished training (fitAndScore: scoring its fit rows), run in its
   * lane, so it overlaps the nets still training (a core the last nets leave idle), when every net
   * has a lane of its own (else after all nets, on the pool); `threads` is what to run it on
   * (TrainOptions.threads). Not part of the training time.
   */
  afterNet?: (s: number, result: TrainResult, threads: number) => Promise<void>;
  /** The caller has validated every job's matrices with checkMlpData for this spec (fitAndScore); they are not read again here. */
  dataChecked?: boolean;
}

export interface SeedTrainingResult {
  /** Per job, in job order. */
  results: TrainResult[];
  /** Wall time of training all nets (validation passes included), to the end of the last net's training (afterNet work left then is not in it). */
  seconds: number;
  /** Minibatch rows of all nets and epochs over `seconds`: the throughput of the training phase. */
  samplesPerSecond: number;
  /** Nets that trained at once. */
  parallel: number;
}

/**
 * Train one net per job (the training seeds of an evaluation point), several at once when the
 * backend trains epochs off the JS thread. Each net trains on one thread of its own: a minibatch
 * of 32 rows is too small to split well (in this round's quiet `npm run bench:train` one net ran
 * at 78.5K samples/s on 1 thread and 40.6K on 2; the previous round measured 2 threads at ~1.4x),
 * so by default all nets of a step run at once (up to twice the pool's threads), and a net left
 * alone keeps its one thread rather than taking a pool it would train slower on. The weights are
 * bit-identical to training the jobs one after another (test/experiments/train-seeds.test.ts).
 */
export async function trainFusionSeeds(backend: MlpBackend, spec: MlpSpec, jobs: readonly SeedJob[], o: SeedTrainingOptions): Promise<SeedTrainingResult> {
  const threads = concurrency();
  const canOverlap = backend.trainEpoch !== undefined;
  // A pool of one thread (RAPM_THREADS=1) means one thread in all: the nets then run in turn.
  const parallel = Math.max(1, Math.min(jobs.length, canOverlap ? (o.parallel ?? (threads > 1 ? 2 * threads : 1)) : 1));
  const started = performance.now();
  const results: (TrainResult | undefined)[] = new Array(jobs.length);
  const rows = jobs.map((j) => (j.fitRows ? j.fitRows.length : j.fit.target.length / spec.outDim));
  // Every matrix the nets read is validated once here (the seeds of a point share one), not per net.
  const layout = paramLayout(spec);
  const checked = new Set<MlpData>();
  for (const j of o.dataChecked ? [] : jobs) {
    for (const [name, d] of [['fit', j.fit], ['val', j.val]] as const) {
      if (!checked.has(d)) checkMlpData(j.fit === j.val ? 'train' : name, d, layout);
      checked.add(d);
    }
  }
  const epochs = o.epochs ?? 100;
  const done = new Float64Array(jobs.length); // rows trained per job over finished epochs
  const inEpoch = new Float64Array(jobs.length);
  const total = rows.reduce((a, r) => a + r * epochs, 0);
  const report = () => o.onProgress?.(done.reduce((a, b) => a + b, 0) + inEpoch.reduce((a, b) => a + b, 0), total);
  let next = 0;
  let trainedAt = started;
  const threadsOf = () => (parallel === 1 ? 0 : 1);
  const lane = async (): Promise<void> => {
    for (let s = next++; s < jobs.length; s = next++) {
      const job = jobs[s]!;
      results[s] = await trainMlpOnCheckedData(backend, spec, job.fit, job.val, {
        trainRows: job.fitRows ?? null,
        valRows: job.valRows ?? null,
        epochs: o.epochs,
        patience: o.patience,
        batchSize: o.batchSize,
        lr: o.lr,
        weightDecay: o.weightDecay,
        signal: o.signal,
        seed: job.seed,
        init: job.init ?? null,
        // One thread per net when several may run at once (0: the shared pool, when they run
        // one after another).
        threads: threadsOf,
        onStep: (d) => {
          inEpoch[s] = d;
          report();
        },
        onEpoch: (e) => {
          done[s] = done[s]! + rows[s]!;
          inEpoch[s] = 0;
          o.onEpoch?.(s, e);
        },
      });
      // Stopped early: the epochs it did not run are no longer ahead of the bar.
      done[s] = rows[s]! * epochs;
      report();
      trainedAt = Math.max(trainedAt, performance.now());
      // With a lane per net, at once beside the nets still training; otherwise after them all.
      if (o.afterNet && parallel >= jobs.length) await o.afterNet(s, results[s]!, threadsOf());
    }
  };
  await Promise.all(Array.from({ length: parallel }, lane));
  const seconds = (trainedAt - started) / 1000;
  if (o.afterNet && parallel < jobs.length) for (let s = 0; s < jobs.length; s++) await o.afterNet(s, results[s]!, 0);
  const samples = results.reduce((a, r, s) => a + (r?.history.length ?? 0) * rows[s]!, 0);
  return { results: results as TrainResult[], seconds, samplesPerSecond: samples / Math.max(1e-9, seconds), parallel };
}
