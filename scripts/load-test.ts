/**
 * npm run bench:load -- [--pairs 200000 --configs B,A --precision f32 --concurrency 32
 *                        --requests 30000 --seconds 20 --fusion-requests 3000 --fusion-b 64
 *                        --fusion-concurrency 8 --sample-every 16 --out results/load-test.json
 *                        --variants '[{"fastPath":"off"},{"fastPath":"auto"}]' --data uniform
 *                        --cache DIR --prepare --min-recall 0.95]
 *
 * A bounded load run of `rapm serve` on 127.0.0.1 only, driven by autocannon (a standard
 * HTTP load generator), with the service in a child process (the serve command's runServe).
 *
 * For each key config (B: the 103 English winners, A: all 1024 dims; values: the 101 Spanish
 * winners) it builds a datastore of random pairs, saves it, and runs the same single-row
 * binary load (POST /predict, one float32 row, concurrency --concurrency, keep-alive, no
 * pipelining) against services side by side: micro-batching off (--no-batching, with the
 * first variant's other settings) and, for every entry of --variants (a JSON list of serve
 * settings, by library key, e.g. {"fastPath": "bf16", "maxBatchRows": 32}), micro-batching on
 * with those settings over the serve defaults. The default variants compare the exact scan
 * (fastPath off) with the serve default (auto: the bf16 fast path where the CPU has
 * AVX512_BF16). Each run is bounded by --requests and by --seconds, whichever ends first. Then, on the first config, a fusion model (the default 1125-256-128-101 net, random
 * weights) serves --fusion-b-row requests with ONNX Runtime on the event-loop thread
 * (--fusion-workers 0) and in a worker thread (--fusion-workers 1).
 *
 * Each run reports throughput, p50/p99 latency (autocannon), errors (connection errors,
 * timeouts, non-2xx: must be 0), the server's event-loop delay during the run
 * (perf_hooks.monitorEventLoopDelay through prom-client's nodejs_eventloop_lag_* gauges,
 * reset by a scrape just before the run), the mean micro-batch size (rapm_batch_rows), and a
 * check: one request in --sample-every asks for a JSON reply (Accept: application/json) and
 * its pred and prior must equal a direct library call (Predictor.predict, unbatched, with an
 * in-thread FusionSession for the fusion runs, on a datastore with fastPath 'off': the exact
 * scan) bit for bit. Every server must exit 0 on
 * SIGTERM. Prints a table and writes the results JSON atomically. Exit code 1 if any run had
 * errors or mismatches.
 *
 * --serve-extra '{"ann": "IVF4096,Flat", "nprobe": 32, "annIndex": "..."}' adds serve options to
 * every server (e.g. a neighbour source); the direct library calls then use the same source
 * (openNeighborSource from src/retrieval/sources.ts), and the run reports that source's
 * recall@K against the exact search on the 256 single-row queries (exit 1 below --min-recall,
 * default 0.95). The faiss source searches on a libuv worker thread (AnnIndex.searchAsync), so
 * the event loop keeps serving while a batch's approximate search runs.
 *
 * --data uniform (default): keys and values are uniform noise (fast to make; fine for exact
 * search, whose cost does not depend on the data). --data rapm: rapm's calibrated DRAL-like
 * generator (src/data/generate.ts) in blocks of 100,000 pairs with 100 speakers each, and the
 * queries are held-out rows of the last block: approximate search needs realistic
 * neighbourhoods (its recall on noise says nothing). 2M pairs take many minutes to generate.
 *
 * --cache DIR keeps each generated datastore (and its queries) in DIR and reuses it on the next
 * run with the same --data, --configs, --pairs and --precision; --prepare builds the datastores
 * and the --serve-extra neighbour source (e.g. the faiss index at its annIndex path), then
 * exits. So the slow part runs outside the benchmark lock:
 *   npx tsx scripts/load-test.ts --data rapm --pairs 2000000 --configs B --cache results --serve-extra '{...}' --prepare
 *   flock /work/bench.lock npx tsx scripts/load-test.ts ...the same arguments without --prepare
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import autocannon from 'autocannon';
import { ensureDir, writeFileAtomicSync } from '../src/io/atomic.js';
import { FEATURE_DIM, keyIndices, valueIndices, type KeyConfig } from '../src/data/indices.js';
import { fusionSpec, initParams, paramLayout } from '../src/fusion/layout.js';
import { exportOnnx } from '../src/fusion/onnx-export.js';
import { FusionSession } from '../src/fusion/onnx-session.js';
import { simdLevel, concurrency, setConcurrency } from '../src/native/simd.js';
import { generateDataset } from '../src/data/generate.js';
import { recallAtK } from '../src/retrieval/ann.js';
import { Datastore, resolveFastPath, type FastPath, type KeyPrecision } from '../src/retrieval/datastore.js';
import { loadDatastore, saveDatastore } from '../src/retrieval/persist.js';
import { Predictor, type FusionModel, type PredictorNeighborSource } from '../src/serve/predictor.js';
import type { ServeArgs } from '../src/cli/commands/serve.js';
import { SETTINGS } from '../src/settings.js';

const self = fileURLToPath(import.meta.url);
const { values: args } = parseArgs({
  options: {
    role: { type: 'string', default: 'client' },
    'serve-args': { type: 'string' },
    pairs: { type: 'string', default: '200000' },
    configs: { type: 'string', default: 'B,A' },
    precision: { type: 'string', default: 'f32' },
    // Defaults and ranges from the settings schema (src/settings.ts), like rapm serve.
    k: { type: 'string', default: String(SETTINGS.k.default) },
    tau: { type: 'string', default: String(SETTINGS.tau.default) },
    concurrency: { type: 'string', default: '32' },
    requests: { type: 'string', default: '30000' },
    seconds: { type: 'string', default: '20' },
    'fusion-requests': { type: 'string', default: '3000' },
    'fusion-b': { type: 'string', default: '64' },
    'fusion-concurrency': { type: 'string', default: '8' },
    'sample-every': { type: 'string', default: '16' },
    out: { type: 'string', default: 'results/load-test.json' },
    'serve-extra': { type: 'string', default: '{}' },
    variants: { type: 'string', default: '[{"fastPath":"off"},{"fastPath":"auto"}]' },
    data: { type: 'string', default: 'uniform' },
    cache: { type: 'string' },
    prepare: { type: 'boolean', default: false },
    'min-recall': { type: 'string', default: '0.95' },
  },
});
if (args.data !== 'uniform' && args.data !== 'rapm') throw new Error(`--data takes uniform or rapm, got ${args.data}`);
const K = SETTINGS.k.check(args.k, 'cli'), TAU = SETTINGS.tau.check(args.tau, 'cli');
/** The recall@K an approximate --serve-extra source must reach against the exact search (else exit 1). */
const MIN_RECALL = Number(args['min-recall']);
if (!(MIN_RECALL >= 0 && MIN_RECALL <= 1)) throw new Error(`--min-recall takes a number in [0, 1], got ${args['min-recall']}`);

/** xorshift32 uniforms in [-1, 1): fast enough to fill 400M values. */
function filler(seed: number): (a: Float32Array) => Float32Array {
  let s = seed >>> 0 || 1;
  return (a) => {
    for (let i = 0; i < a.length; i++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      a[i] = (s >>> 0) / 2147483648 - 1;
    }
    return a;
  };
}

// ---------------------------------------------------------------- server role (child process)

if (args.role === 'server') {
  const { runServe } = await import('../src/cli/commands/serve.js');
  const serveArgs = JSON.parse(args['serve-args']!) as ServeArgs & { threads?: number };
  // Native search threads (rapm serve --threads); default: one per core.
  if (serveArgs.threads !== undefined) setConcurrency(serveArgs.threads);
  await runServe(serveArgs, { onListening: (url) => process.stdout.write(`LISTENING ${url}\n`), log: () => undefined });
  process.exit(0);
}

// ---------------------------------------------------------------- client role

interface RunResult {
  name: string;
  config: string;
  batching: boolean;
  /** The serve settings of this run beyond the defaults (a --variants entry). */
  variant: Record<string, unknown>;
  /** The fast path the server's datastore kept (fastPath 'auto' resolved on this CPU). */
  fastPath: FastPath;
  /** Queries the server's fast path served during the run, and of those redone by the exact scan. */
  fastPathQueries: number;
  fastPathRedone: number;
  fusion: 'off' | 'event-loop thread' | 'worker thread';
  rowsPerRequest: number;
  concurrency: number;
  plannedRequests: number;
  capSeconds: number;
  requests: number;
  seconds: number;
  requestsPerSecond: number;
  rowsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  maxMs: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  eventLoopDelayP99Ms: number;
  eventLoopDelayMaxMs: number;
  eventLoopDelayMeanMs: number;
  meanBatchRows: number | null;
  batches: number;
  /** Mean time of one batched search (dispatch to results split), ms. */
  meanBatchMs: number | null;
  /** Mean wait of the oldest request of a batch before dispatch, ms. */
  meanBatchWaitMs: number | null;
  /** Mean server time per request (received to last byte written), ms. */
  meanServerMs: number | null;
  checked: number;
  mismatches: number;
  serverExitCode: number | null;
}

const bits = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

async function startServer(serveArgs: ServeArgs): Promise<{ url: string; stop: () => Promise<number | null> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', self, '--role', 'server', '--serve-args', JSON.stringify(serveArgs)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    let text = '';
    child.stdout.on('data', (d: Buffer) => {
      text += d.toString();
      const m = /LISTENING (\S+)/.exec(text);
      if (m) resolve(m[1]!);
    });
    void exit.then((c) => reject(new Error(`server exited early (${c})`)));
  });
  if (!/^http:\/\/127\.0\.0\.1:\d+$/.test(url)) {
    child.kill('SIGKILL');
    throw new Error(`refusing to load-test a non-loopback address ${url}`);
  }
  return {
    url,
    stop: async () => {
      child.kill('SIGTERM');
      return exit;
    },
  };
}

async function scrape(url: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out: Record<string, number> = {};
  // Unlabelled samples by name; labelled ones by name{labels} and summed under the name.
  for (const line of text.split('\n')) {
    const m = /^([a-z0-9_]+)(\{[^}]*\})? ([-\d.e+]+|NaN)$/.exec(line);
    if (!m) continue;
    const v = Number(m[3]);
    if (m[2]) out[m[1]! + m[2]] = v;
    out[m[1]!] = m[2] ? (out[m[1]!] ?? 0) + v : v;
  }
  return out;
}

interface LoadPlan {
  name: string;
  config: string;
  batching: boolean;
  variant: Record<string, unknown>;
  fastPath: FastPath;
  fusion: RunResult['fusion'];
  rows: number;
  connections: number;
  amount: number;
  seconds: number;
  queries: Float32Array; // [Q * rows, 1024]
  predictor: Predictor; // the direct library call
  serveArgs: ServeArgs;
}

async function run(plan: LoadPlan): Promise<RunResult> {
  const server = await startServer(plan.serveArgs);
  const { url } = server;
  const Q = plan.queries.length / (plan.rows * FEATURE_DIM);
  const bodies = Array.from({ length: Q }, (_, q) => Buffer.from(plan.queries.buffer, q * plan.rows * FEATURE_DIM * 4, plan.rows * FEATURE_DIM * 4));
  const every = Number(args['sample-every']);
  const samples: { q: number; body: string }[] = [];
  let nextClient = 0;
  const binary = { 'Content-Type': 'application/octet-stream' };
  type Ctx = { q?: number; step?: number; client?: number };
  const pick = (req: Record<string, unknown>, ctx: Ctx) => {
    if (ctx.client === undefined) {
      ctx.client = nextClient++;
      ctx.step = 0;
    }
    ctx.q = (ctx.client * 7 + ctx.step!++) % Q;
    return { ...req, body: bodies[ctx.q] };
  };
  const plain = { method: 'POST' as const, path: '/predict', headers: binary, setupRequest: pick };
  const sampled = {
    method: 'POST' as const,
    path: '/predict',
    headers: { ...binary, Accept: 'application/json' },
    setupRequest: pick,
    onResponse: (status: number, body: string, ctx: Ctx) => {
      if (status === 200) samples.push({ q: ctx.q!, body });
    },
  };
  // Each connection's first request, then one in `every`, asks for JSON and is checked.
  const requests = [sampled, ...Array.from({ length: every - 1 }, () => plain)];
  const common = { url, connections: plan.connections, pipelining: 1, timeout: 30, requests: requests as unknown as autocannon.Request[] };
  // Warm-up (not measured): a few requests per connection.
  await autocannon({ ...common, amount: plan.connections * 4 });
  samples.length = 0;
  await scrape(url); // resets the event-loop delay gauges and batch histograms are read as deltas
  const before = await scrape(url);
  const instance = autocannon({ ...common, amount: plan.amount });
  const cap = setTimeout(() => (instance as unknown as { stop(): void }).stop(), plan.seconds * 1000);
  const r = await instance;
  clearTimeout(cap);
  const after = await scrape(url);
  const exitCode = await server.stop();

  let mismatches = 0;
  for (const s of samples) {
    const en = plan.queries.subarray(s.q * plan.rows * FEATURE_DIM, (s.q + 1) * plan.rows * FEATURE_DIM);
    const want = await plan.predictor.predict(en);
    const j = JSON.parse(s.body) as { pred: number[][]; prior: number[][] };
    if (!bits(Float32Array.from(j.pred.flat())).equals(bits(want.pred)) || !bits(Float32Array.from(j.prior.flat())).equals(bits(want.prior))) mismatches++;
  }
  const delta = (name: string) => (after[name] ?? 0) - (before[name] ?? 0);
  const batches = delta('rapm_batch_rows_count');
  const batchRows = delta('rapm_batch_rows_sum');
  const perBatch = (name: string) => (batches > 0 ? (delta(name) / batches) * 1000 : null);
  const served = delta('rapm_http_request_duration_seconds_count{route="/predict"}');
  const done = r['2xx'] + r.non2xx;
  return {
    name: plan.name,
    config: plan.config,
    batching: plan.batching,
    variant: plan.variant,
    fastPath: plan.fastPath,
    fastPathQueries: delta('rapm_fast_path_queries'),
    fastPathRedone: delta('rapm_fast_path_redone'),
    fusion: plan.fusion,
    rowsPerRequest: plan.rows,
    concurrency: plan.connections,
    plannedRequests: plan.amount,
    capSeconds: plan.seconds,
    requests: done,
    seconds: r.duration,
    requestsPerSecond: done / r.duration,
    rowsPerSecond: (done * plan.rows) / r.duration,
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    meanMs: r.latency.average,
    maxMs: r.latency.max,
    errors: r.errors,
    timeouts: r.timeouts,
    non2xx: r.non2xx,
    eventLoopDelayP99Ms: (after.nodejs_eventloop_lag_p99_seconds ?? NaN) * 1000,
    eventLoopDelayMaxMs: (after.nodejs_eventloop_lag_max_seconds ?? NaN) * 1000,
    eventLoopDelayMeanMs: (after.nodejs_eventloop_lag_mean_seconds ?? NaN) * 1000,
    meanBatchRows: batches > 0 ? batchRows / batches : null,
    batches,
    meanBatchMs: perBatch('rapm_batch_seconds_sum'),
    meanBatchWaitMs: perBatch('rapm_batch_wait_seconds_sum'),
    meanServerMs: served > 0 ? (delta('rapm_http_request_duration_seconds_sum{route="/predict"}') / served) * 1000 : null,
    checked: samples.length,
    mismatches,
    serverExitCode: exitCode,
  };
}

/** Adds `pairs` pairs to `ds` in blocks; returns 256 query rows [256, 1024] not in the datastore. */
async function fillDatastore(ds: Datastore, pairs: number): Promise<Float32Array> {
  const Q = 256;
  if (args.data === 'uniform') {
    const fill = filler(12345);
    const block = 10_000;
    const en = new Float32Array(block * FEATURE_DIM), es = new Float32Array(block * FEATURE_DIM);
    for (let r0 = 0; r0 < pairs; r0 += block) {
      const m = Math.min(block, pairs - r0);
      await ds.add(fill(en.subarray(0, m * FEATURE_DIM)), fill(es.subarray(0, m * FEATURE_DIM)), Array.from({ length: m }, (_, i) => `pair-${r0 + i}`));
    }
    return filler(777)(new Float32Array(Q * FEATURE_DIM));
  }
  // rapm's generator, in blocks with their own seed and speakers, on one worker thread per core
  // (added in block order); the last Q rows of the last block are the queries.
  const block = 50_000;
  const total = pairs + Q;
  const blocks: { r0: number; m: number; i: number }[] = [];
  for (let r0 = 0, i = 0; r0 < total; r0 += block, i++) blocks.push({ r0, m: Math.min(block, total - r0), i });
  const made = blocks.map(() => {
    let resolve!: (g: { en: Float32Array; es: Float32Array; ids: string[] }) => void, reject!: (e: unknown) => void;
    const promise = new Promise<{ en: Float32Array; es: Float32Array; ids: string[] }>((a, b) => ((resolve = a), (reject = b)));
    return { promise, resolve, reject };
  });
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < blocks.length) {
      const b = blocks[next++]!;
      const w = new Worker(WORKER_BOOT, { eval: true, workerData: { pairs: b.m, seed: 1000 + b.i } });
      try {
        made[b.i]!.resolve(await new Promise((resolve, reject) => w.once('message', resolve).once('error', reject)));
      } catch (e) {
        made[b.i]!.reject(e);
      } finally {
        await w.terminate();
      }
    }
  };
  const workers = Promise.all(Array.from({ length: Math.min(os.cpus().length, blocks.length) }, worker));
  let queries: Float32Array | null = null;
  for (const { r0, m, i } of blocks) {
    const g = await made[i]!.promise;
    const keep = r0 + m > pairs ? pairs - r0 : m;
    if (keep > 0) await ds.add(g.en.subarray(0, keep * FEATURE_DIM), g.es.subarray(0, keep * FEATURE_DIM), g.ids.slice(0, keep).map((id) => `b${i}-${id}`));
    if (keep < m) queries = g.en.slice(keep * FEATURE_DIM, m * FEATURE_DIM);
    process.stdout.write(`\rgenerating: ${Math.min(r0 + m, pairs)} / ${pairs} pairs`);
  }
  await workers;
  process.stdout.write('\n');
  return queries!;
}

/** One generator block on a worker thread (tsx's hooks registered first: workers do not inherit them). */
const WORKER_BOOT = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((m) => { m.register(); return import(${JSON.stringify(import.meta.url)}); })`;
if (!isMainThread && (workerData as { pairs?: number } | null)?.pairs !== undefined) {
  const { pairs, seed } = workerData as { pairs: number; seed: number };
  const g = generateDataset({ pairs, seed, speakers: Math.max(2, Math.round(pairs / 1000)) });
  parentPort!.postMessage({ en: g.en, es: g.es, ids: g.ids }, [g.en.buffer as ArrayBuffer, g.es.buffer as ArrayBuffer]);
}

async function buildDatastore(config: KeyConfig, precision: KeyPrecision, pairs: number, file: string): Promise<{ ds: Datastore; queries: Float32Array; info: Record<string, unknown> }> {
  const queriesFile = `${file}.queries.f32`;
  if (args.cache !== undefined && fs.existsSync(file) && fs.existsSync(queriesFile)) {
    const t0 = performance.now();
    const ds = await loadDatastore(file, { fastPath: 'off' });
    const buf = fs.readFileSync(queriesFile);
    const queries = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
    if (ds.size !== pairs || queries.length !== 256 * FEATURE_DIM) throw new Error(`${file}: a cached datastore of ${ds.size} rows and ${queries.length / FEATURE_DIM} queries; delete it to rebuild`);
    console.log(`datastore from the cache ${file}`);
    return { ds, queries, info: { pairs, data: args.data, config, d: ds.d, dv: ds.dv, precision, memoryBytes: ds.memoryBytes, fileBytes: fs.statSync(file).size, cached: true, loadSeconds: { off: (performance.now() - t0) / 1000 } } };
  }
  const t = performance.now();
  // The exact scan: the direct library calls the responses are compared with.
  const ds = new Datastore({ keyIndices: keyIndices(config), valueIndices: valueIndices(), precision, fastPath: 'off' });
  const queries = await fillDatastore(ds, pairs);
  const buildSeconds = (performance.now() - t) / 1000;
  const saved = await saveDatastore(ds, file);
  if (args.cache !== undefined) writeFileAtomicSync(queriesFile, bits(queries));
  // What a server pays to load it, with and without the fast-path shadow (rebuilt at load, not stored).
  const loadSeconds: Record<string, number> = {};
  for (const fastPath of pairs <= 1_000_000 ? (['off', 'bf16'] as const) : []) {
    const t0 = performance.now();
    await loadDatastore(file, { fastPath });
    loadSeconds[fastPath] = (performance.now() - t0) / 1000;
  }
  return { ds, queries, info: { pairs, data: args.data, config, d: ds.d, dv: ds.dv, precision, memoryBytes: ds.memoryBytes, fileBytes: saved.bytes, buildSeconds, loadSeconds } };
}

const extra = JSON.parse(args['serve-extra']!) as Partial<ServeArgs> & Record<string, unknown>;
/** The servers' fastPath when a run does not set one: rapm serve loads with 'off' under another neighbour source. */
const defaultFastPath = extra.fastPath ?? (extra.ann !== undefined || extra.pgUrl !== undefined ? 'off' : SETTINGS.fastPath.default);

/** The neighbour source the servers use (--serve-extra), for the direct library calls; null: exact search. */
async function sourceFor(ds: Datastore): Promise<PredictorNeighborSource | null> {
  if (!['ann', 'annIndex', 'pgUrl'].some((key) => extra[key] !== undefined)) return null;
  const mod = (await import(String(new URL('../src/retrieval/sources.js', import.meta.url)))) as {
    openNeighborSource(ds: Datastore, args: Record<string, unknown>): Promise<PredictorNeighborSource>;
  };
  return mod.openNeighborSource(ds, { ...extra, log: (line: string) => console.log(line) });
}

async function main(): Promise<void> {
  const pairs = Number(args.pairs);
  const configs = args.configs!.split(',').map((c) => c.trim().toUpperCase()) as KeyConfig[];
  if (configs.some((c) => c !== 'A' && c !== 'B')) throw new Error(`--configs takes A and/or B, got ${args.configs}`);
  const precision = args.precision as KeyPrecision;
  const conc = Number(args.concurrency);
  const amount = Number(args.requests);
  const seconds = Number(args.seconds);
  const fusionB = Number(args['fusion-b']);
  const fusionAmount = Number(args['fusion-requests']);
  const fusionConc = Number(args['fusion-concurrency']);
  const variants = JSON.parse(args.variants!) as Record<string, unknown>[];
  if (!Array.isArray(variants) || variants.length === 0 || variants.some((v) => v === null || typeof v !== 'object' || Array.isArray(v))) throw new Error('--variants takes a non-empty JSON list of objects');
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-load-'));
  if (args.cache !== undefined) ensureDir(args.cache);
  const results: RunResult[] = [];
  const recalls: Record<string, unknown>[] = [];
  const datastores: Record<string, unknown>[] = [];
  const base = { port: 0, host: '127.0.0.1', k: K, tau: TAU, aggregate: 'softmax' as const, maxBatch: 1024, graceMs: 10_000, device: 'cpu' as const, ...extra };
  try {
    for (const [ci, config] of configs.entries()) {
      const file = args.cache !== undefined ? path.join(args.cache, `load-${args.data}-${config}-${pairs}-${precision}.rds`) : path.join(tmpDir, `load-${config}.rds`);
      const { ds, queries: singles, info } = await buildDatastore(config, precision, pairs, file);
      datastores.push(info);
      const loads = info.loadSeconds as Record<string, number>;
      console.log(
        `datastore: ${pairs} pairs (${args.data}), Config ${config} (d ${ds.d}, dv ${ds.dv}), ${precision}, ${(ds.memoryBytes / 2 ** 20).toFixed(1)} MiB, ` +
          (info.cached ? 'from the cache, ' : `built in ${(info.buildSeconds as number).toFixed(1)} s, `) +
          (loads.off === undefined ? '' : `loaded in ${loads.off.toFixed(1)} s (fast path off)`) +
          (loads.bf16 === undefined ? '' : ` / ${loads.bf16.toFixed(1)} s (with the bf16 shadow)`),
      );
      const source = await sourceFor(ds);
      if (args.prepare) {
        console.log(`prepared ${file}${source ? ` and the neighbour source ${source.name}` : ''}`);
        continue;
      }
      const direct = new Predictor(ds, { k: K, tau: TAU, source });
      if (source) {
        // The approximate source's recall@K against the exact search, on the queries the load sends.
        const exact = await ds.search(singles, { k: K });
        const approx = await source.search(singles, K);
        const recall = recallAtK(approx.rows, exact.neighbors, K);
        recalls.push({ config, source: source.name, k: K, queries: singles.length / FEATURE_DIM, recall, minRecall: MIN_RECALL, ok: recall >= MIN_RECALL });
        console.log(`recall@${K} of ${source.name} against the exact search: ${recall.toFixed(4)} (${singles.length / FEATURE_DIM} queries; required >= ${MIN_RECALL}: ${recall >= MIN_RECALL ? 'ok' : 'BELOW'})`);
      }
      const plans: { batching: boolean; variant: Record<string, unknown> }[] = [{ batching: false, variant: variants[0]! }, ...variants.map((variant) => ({ batching: true, variant }))];
      for (const { batching, variant } of plans) {
        const fastPath = resolveFastPath(SETTINGS.fastPath.check(variant.fastPath ?? defaultFastPath), precision);
        const shown = Object.entries(variant).map(([key, v]) => `${key} ${String(v)}${key === 'fastPath' && v !== fastPath ? ` (${fastPath})` : ''}`).join(', ');
        const name = `Config ${config} b=1 binary, batching ${batching ? 'on' : 'off'}${shown ? `, ${shown}` : ''}`;
        console.log(`running: ${name} (${amount} requests or ${seconds} s, concurrency ${conc})`);
        results.push(
          await run({ name, config, batching, variant, fastPath, fusion: 'off', rows: 1, connections: conc, amount, seconds, queries: singles, predictor: direct, serveArgs: { ...base, ...variant, datastore: file, batching } as ServeArgs }),
        );
      }
      if (ci === 0 && fusionAmount > 0) {
        // The fusion model: the default net with random weights (a non-zero last layer, so pred != prior).
        const layout = paramLayout(fusionSpec({ enDim: FEATURE_DIM, outDim: ds.dv }));
        const params = initParams(layout, 9);
        const last = layout.layers[layout.layers.length - 1]!;
        const w = filler(99)(new Float32Array(last.in * last.out));
        for (let i = 0; i < w.length; i++) params[last.w + i] = w[i]! * 0.05;
        const model = path.join(tmpDir, 'fusion.onnx');
        await exportOnnx(layout, params, model);
        const session = await FusionSession.create(model, { enDim: FEATURE_DIM, outDim: ds.dv });
        const withFusion = new Predictor(ds, { k: K, tau: TAU, fusion: session as FusionModel, source: await sourceFor(ds) });
        const batchQueries = filler(4242)(new Float32Array(16 * fusionB * FEATURE_DIM));
        try {
          for (const workers of [0, 1]) {
            const name = `Config ${config} b=${fusionB} binary + fusion, ORT on ${workers ? 'a worker thread' : 'the event loop'}`;
            console.log(`running: ${name} (${fusionAmount} requests or ${seconds} s, concurrency ${fusionConc})`);
            results.push(
              await run({
                name,
                config,
                batching: true,
                variant: {},
                fastPath: resolveFastPath(SETTINGS.fastPath.check(defaultFastPath), precision),
                fusion: workers ? 'worker thread' : 'event-loop thread',
                rows: fusionB,
                connections: fusionConc,
                amount: fusionAmount,
                seconds,
                queries: batchQueries,
                predictor: withFusion,
                serveArgs: { ...base, datastore: file, model, fusionWorkers: workers, batching: true },
              }),
            );
          }
        } finally {
          await session.release();
        }
      }
    }
  } finally {
    fs.rmSync(tmpDir, { recursive: true, force: true });
  }

  if (args.prepare) return;
  const row = (cells: (string | number)[]) => cells.map((c, i) => String(c).padStart(i === 0 ? 84 : 9)).join(' ');
  const ms = (v: number | null) => (v === null ? '-' : v.toFixed(1));
  console.log(row(['run', 'requests', 'seconds', 'req/s', 'rows/s', 'p50 ms', 'p99 ms', 'errors', 'loop p99', 'loop max', 'batch', 'batch ms', 'wait ms', 'server ms', 'fast q', 'checked', 'mismatch']));
  for (const r of results) {
    console.log(
      row([
        r.name,
        r.requests,
        r.seconds.toFixed(1),
        r.requestsPerSecond.toFixed(0),
        r.rowsPerSecond.toFixed(0),
        r.p50Ms,
        r.p99Ms,
        r.errors + r.timeouts + r.non2xx,
        r.eventLoopDelayP99Ms.toFixed(1),
        r.eventLoopDelayMaxMs.toFixed(1),
        r.meanBatchRows === null ? '-' : r.meanBatchRows.toFixed(1),
        ms(r.meanBatchMs),
        ms(r.meanBatchWaitMs),
        ms(r.meanServerMs),
        r.fastPathQueries > 0 ? `${r.fastPathQueries}${r.fastPathRedone ? ` (${r.fastPathRedone} redone)` : ''}` : '-',
        r.checked,
        r.mismatches,
      ]),
    );
  }
  for (const config of configs) {
    const off = results.find((r) => r.config === config && r.fusion === 'off' && !r.batching);
    const ons = results.filter((r) => r.config === config && r.fusion === 'off' && r.batching);
    for (const on of ons) {
      if (off) console.log(`Config ${config}: batching on (${JSON.stringify(on.variant)}) / off throughput ${(on.requestsPerSecond / off.requestsPerSecond).toFixed(2)}x, p99 ${on.p99Ms} vs ${off.p99Ms} ms`);
    }
    if (ons.length > 1) console.log(`Config ${config}, batching on: ${ons.map((r) => `${JSON.stringify(r.variant)} ${(r.requestsPerSecond / ons[0]!.requestsPerSecond).toFixed(2)}x`).join(', ')} (throughput vs the first variant)`);
  }
  const f0 = results.find((r) => r.fusion === 'event-loop thread'), f1 = results.find((r) => r.fusion === 'worker thread');
  if (f0 && f1) console.log(`fusion: event-loop delay p99 ${f0.eventLoopDelayP99Ms.toFixed(1)} ms (ORT on the event loop) vs ${f1.eventLoopDelayP99Ms.toFixed(1)} ms (worker thread)`);

  const out = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, totalMemoryBytes: os.totalmem(), simd: simdLevel(), threads: concurrency(), node: process.version },
    datastores,
    recalls,
    settings: { k: K, tau: TAU, data: args.data, variants, serveExtra: extra, concurrency: conc, requests: amount, capSeconds: seconds, sampleEvery: Number(args['sample-every']), host: '127.0.0.1', client: 'autocannon 8, keep-alive, pipelining 1' },
    runs: results,
  };
  ensureDir(path.dirname(path.resolve(args.out!)));
  writeFileAtomicSync(args.out!, JSON.stringify(out, null, 2) + '\n');
  console.log(`wrote ${args.out}`);
  for (const r of recalls) console.log(`Config ${String(r.config)}: recall@${K} of ${String(r.source)} ${(r.recall as number).toFixed(4)} (required >= ${MIN_RECALL}: ${r.ok ? 'ok' : 'BELOW'})`);
  const bad = results.some((r) => r.errors + r.timeouts + r.non2xx > 0 || r.mismatches > 0 || r.checked === 0 || r.serverExitCode !== 0) || recalls.some((r) => !r.ok);
  process.exitCode = bad ? 1 : 0;
}

if (isMainThread) await main();
