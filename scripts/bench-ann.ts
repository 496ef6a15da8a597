/**
 * npx tsx scripts/bench-ann.ts [--n 2000000] [--b 256] [--d 103] [--k 90] [--data rapm|clusters]
 *   [--indexes ivf,ivfsq8 (also: flat, hnsw, hnswsq8)] [--nlist N] [--nprobes 1,8,32,64]
 *   [--efs 16,128,256] [--train 100000] [--threads 2] [--runs 5]
 *   [--scaling 50000,200000,1000000,2000000] [--out results/bench-ann.json]
 *
 * Exact rapm search (Datastore, f32) against approximate faiss indexes (src/retrieval/ann.ts).
 * The data must have realistic neighbourhood structure (ANN recall on uniform noise says
 * nothing), so by default it is rapm's calibrated DRAL-like generator (--data rapm; Config B:
 * keys = the 103 english_winners, values = the 101 spanish_winners; ~1,000 utterances per
 * speaker; 2M pairs take ~1.5 min on 2 worker threads), with B held-out rows as queries whose
 * ES vectors are the targets. --data clusters is a simpler model (2,000 Gaussian clusters with
 * a 12-dim latent shared by key and value); at 2M it is easy for IVF (recall 1.0 at nprobe 8).
 *
 * For every index and search setting: build time (train + add, including L2 normalisation),
 * memory (serialised size), search time for the batch
 * (best of --runs) and for single queries (median of 32), speed-up vs exact, recall@K against
 * the exact top-K, and the end-to-end effect on R-APM: mean cosine(ANN prior, exact prior) and
 * the change in mean cosine(prior, target). Also exact search time vs N (rowRange prefixes of
 * the same datastore, b = 1 and b = --b) and datastore memory per million pairs (d = 103 /
 * 1024, f32 / bf16). IVF nlist defaults to 4 sqrt(n) rounded to a power of two (4096 at 2M).
 *
 * Event loop: for every setting, LOOP_BATCHES batches of LOOP_ROWS queries are searched one after
 * another (as rapm serve's micro-batcher does, one batch at a time) through the synchronous
 * search (faiss on the JS thread) and through the asynchronous one (AnnIndex.searchAsync: faiss
 * on a libuv worker thread), each with perf_hooks.monitorEventLoopDelay (1 ms resolution)
 * running: the event-loop delay p99 / max of each and the async / sync wall-time ratio (what
 * the worker-thread hop costs), same index, same queries, same run.
 *
 * IVF nprobe and HNSW efSearch are set with AnnIndex.setSearchParams (faiss ParameterSpace, exposed
 * by scripts/faiss-node/rapm-faiss-node.patch; O(1), no index copy).
 * HNSW is not in the default list: at 2M its build takes minutes on 2 cores.
 */
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { ensureDir, writeFileAtomicSync } from '../src/io/atomic.js';
import { generateDataset } from '../src/data/generate.js';
import { ENGLISH_WINNERS, SPANISH_WINNERS } from '../src/data/indices.js';
import { setConcurrency } from '../src/native/simd.js';
import { AnnIndex, annSearchWithValues, annSearchWithValuesSync, recallAtK } from '../src/retrieval/ann.js';
import { Datastore, type SearchResult } from '../src/retrieval/datastore.js';

const { values: args } = parseArgs({
  options: {
    n: { type: 'string', default: '2000000' },
    b: { type: 'string', default: '256' },
    d: { type: 'string', default: '103' },
    dv: { type: 'string', default: '101' },
    k: { type: 'string', default: '90' },
    tau: { type: 'string', default: '0.04' },
    data: { type: 'string', default: 'rapm' },
    clusters: { type: 'string', default: '2000' },
    indexes: { type: 'string', default: 'ivf,ivfsq8' },
    nlist: { type: 'string' },
    nprobes: { type: 'string', default: '1,8,32,64' },
    efs: { type: 'string', default: '16,128,256' },
    train: { type: 'string', default: '100000' },
    threads: { type: 'string', default: '2' },
    scaling: { type: 'string', default: '50000,200000,1000000,2000000' },
    runs: { type: 'string', default: '5' },
    seed: { type: 'string', default: '1' },
    out: { type: 'string', default: 'results/bench-ann.json' },
  },
});
const num = (s: string | undefined): number => {
  const v = Number(s);
  if (!Number.isFinite(v)) throw new Error(`not a number: ${s}`);
  return v;
};
const N = num(args.n), B = num(args.b), D = num(args.d), DV = num(args.dv), K = num(args.k), TAU = num(args.tau);
const CLUSTERS = num(args.clusters), THREADS = num(args.threads), RUNS = num(args.runs), SEED = num(args.seed);
const TRAIN = num(args.train);
const NLIST = args.nlist ? num(args.nlist) : 2 ** Math.round(Math.log2(4 * Math.sqrt(N)));
const DATA = args.data!;
if (DATA !== 'rapm' && DATA !== 'clusters') throw new Error(`--data must be rapm or clusters, not ${DATA}`);
if (DATA === 'rapm' && (D !== 103 && D !== 1024 || DV !== 101)) throw new Error('--data rapm has d = 103 (Config B) or 1024 (Config A) and dv = 101');
const LATENT = 12;
const SINGLES = 32; // single-query searches timed (median) per setting
// faiss (OpenMP) and OpenBLAS read their thread counts when first loaded (the first AnnIndex.create).
let gc = (): void => undefined;
if (isMainThread) {
  process.env.OMP_NUM_THREADS = String(THREADS);
  process.env.OPENBLAS_NUM_THREADS = String(THREADS);
  setConcurrency(THREADS);
  setFlagsFromString('--expose_gc');
  gc = runInNewContext('gc') as () => void;
}

// ------------------------------------------------------------------ data

class Rng {
  #a: number;
  #spare = NaN;
  constructor(seed: number) {
    this.#a = seed >>> 0;
  }
  uniform(): number {
    this.#a = (this.#a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(this.#a ^ (this.#a >>> 15), this.#a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  normal(): number {
    if (!Number.isNaN(this.#spare)) {
      const s = this.#spare;
      this.#spare = NaN;
      return s;
    }
    const u = Math.max(this.uniform(), 1e-12), v = this.uniform();
    const m = Math.sqrt(-2 * Math.log(u));
    this.#spare = m * Math.sin(2 * Math.PI * v);
    return m * Math.cos(2 * Math.PI * v);
  }
  fill(n: number, scale: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = scale * this.normal();
    return out;
  }
}

interface World {
  mu: Float32Array; nu: Float32Array; C: Float32Array; Cv: Float32Array; A: Float32Array; Bm: Float32Array; cum: Float64Array;
}
function makeWorld(): World {
  const r = new Rng(12345);
  const w = Array.from({ length: CLUSTERS }, () => Math.exp(0.5 * r.normal()));
  const cum = new Float64Array(CLUSTERS);
  let s = 0;
  w.forEach((x, i) => (cum[i] = s += x));
  for (let i = 0; i < CLUSTERS; i++) cum[i] = cum[i]! / s;
  return {
    mu: r.fill(D, 0.8), nu: r.fill(DV, 1.0), C: r.fill(CLUSTERS * D, 1.0), Cv: r.fill(CLUSTERS * DV, 0.8),
    A: r.fill(LATENT * D, 0.7 / Math.sqrt(LATENT)), Bm: r.fill(LATENT * DV, 0.8 / Math.sqrt(LATENT)), cum,
  };
}
function generate(world: World, n: number, seed: number): { keys: Float32Array; values: Float32Array } {
  const r = new Rng(seed);
  const keys = new Float32Array(n * D), values = new Float32Array(n * DV);
  const z = new Float64Array(LATENT);
  for (let i = 0; i < n; i++) {
    const u = r.uniform();
    let lo = 0, hi = CLUSTERS - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (world.cum[mid]! < u) lo = mid + 1; else hi = mid;
    }
    for (let t = 0; t < LATENT; t++) z[t] = r.normal();
    const ko = i * D, co = lo * D;
    for (let j = 0; j < D; j++) {
      let x = world.mu[j]! + world.C[co + j]! + 0.3 * r.normal();
      for (let t = 0; t < LATENT; t++) x += z[t]! * world.A[t * D + j]!;
      keys[ko + j] = x;
    }
    const vo = i * DV, cvo = lo * DV;
    for (let j = 0; j < DV; j++) {
      let x = world.nu[j]! + world.Cv[cvo + j]! + 0.5 * r.normal();
      for (let t = 0; t < LATENT; t++) x += z[t]! * world.Bm[t * DV + j]!;
      values[vo + j] = x;
    }
  }
  return { keys, values };
}

function clusterData(): { keys: Float32Array; values: Float32Array; queries: Float32Array; targets: Float32Array } {
  const world = makeWorld();
  const { keys, values } = generate(world, N, SEED);
  const { keys: queries, values: targets } = generate(world, B, SEED + 1_000_003);
  return { keys, values, queries, targets };
}

/**
 * rapm's calibrated DRAL-like generator (src/data/generate.ts), Config B columns: keys = the
 * 103 english_winners of EN, values = the 101 spanish_winners of ES. Generated in blocks of
 * RAPM_BLOCK pairs, each a dataset with its own seed and RAPM_BLOCK / 1000 speakers (so about
 * 1,000 utterances per speaker at any n), on worker threads. B random rows are held out as
 * queries (speakers seen in the datastore, as in the published internal split); their ES
 * vectors are the targets.
 */
const RAPM_BLOCK = 125_000;
// Workers don't inherit tsx's loader hooks: register them, then load this file.
const WORKER_BOOT = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((m) => { m.register(); return import(${JSON.stringify(import.meta.url)}); })`;
function rapmBlock(pairs: number, seed: number, d: number): { k: Float32Array; v: Float32Array } {
  const ds = generateDataset({ pairs, seed, speakers: Math.max(2, Math.round(pairs / 1000)) });
  const cols = d === 103 ? ENGLISH_WINNERS : Array.from({ length: d }, (_, i) => i);
  const dv = SPANISH_WINNERS.length;
  const k = new Float32Array(pairs * d), v = new Float32Array(pairs * dv);
  for (let r = 0; r < pairs; r++) {
    for (let j = 0; j < d; j++) k[r * d + j] = ds.en[r * 1024 + cols[j]!]!;
    for (let j = 0; j < dv; j++) v[r * dv + j] = ds.es[r * 1024 + SPANISH_WINNERS[j]!]!;
  }
  return { k, v };
}
async function rapmData(): Promise<{ keys: Float32Array; values: Float32Array; queries: Float32Array; targets: Float32Array }> {
  const total = N + B;
  const allK = new Float32Array(total * D), allV = new Float32Array(total * DV);
  const blocks: { r0: number; pairs: number; seed: number }[] = [];
  for (let r0 = 0, i = 0; r0 < total; r0 += RAPM_BLOCK, i++) blocks.push({ r0, pairs: Math.min(RAPM_BLOCK, total - r0), seed: SEED * 1000 + i });
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < blocks.length) {
      const blk = blocks[next++]!;
      const w = new Worker(WORKER_BOOT, { eval: true, workerData: { pairs: blk.pairs, seed: blk.seed, d: D } });
      const { k, v } = await new Promise<{ k: Float32Array; v: Float32Array }>((resolve, reject) => {
        w.once('message', resolve);
        w.once('error', reject);
      });
      await w.terminate();
      allK.set(k, blk.r0 * D);
      allV.set(v, blk.r0 * DV);
    }
  };
  await Promise.all(Array.from({ length: Math.min(THREADS, blocks.length) }, worker));
  // Hold out B random rows as queries.
  const r = new Rng(SEED + 7);
  const isQuery = new Uint8Array(total);
  for (let c = 0; c < B; ) {
    const i = Math.floor(r.uniform() * total);
    if (!isQuery[i]) {
      isQuery[i] = 1;
      c++;
    }
  }
  const keys = new Float32Array(N * D), values = new Float32Array(N * DV);
  const queries = new Float32Array(B * D), targets = new Float32Array(B * DV);
  for (let i = 0, a = 0, q = 0; i < total; i++) {
    if (isQuery[i]) {
      queries.set(allK.subarray(i * D, (i + 1) * D), q * D);
      targets.set(allV.subarray(i * DV, (i + 1) * DV), q * DV);
      q++;
    } else {
      keys.set(allK.subarray(i * D, (i + 1) * D), a * D);
      values.set(allV.subarray(i * DV, (i + 1) * DV), a * DV);
      a++;
    }
  }
  return { keys, values, queries, targets };
}

// ------------------------------------------------------------------ helpers

const now = (): number => performance.now();
// Best of the runs: the machine is shared, and the minimum is the least disturbed measurement.
const best = (xs: number[]): number => Math.min(...xs);
const median = (xs: number[]): number => [...xs].sort((a, c) => a - c)[Math.floor(xs.length / 2)]!;
function meanRowCosine(a: Float32Array, c: Float32Array, w: number): number {
  let tot = 0, rows = 0;
  for (let r = 0; r < a.length / w; r++) {
    let ab = 0, aa = 0, cc = 0;
    for (let j = 0; j < w; j++) {
      const x = a[r * w + j]!, y = c[r * w + j]!;
      ab += x * y; aa += x * x; cc += y * y;
    }
    tot += ab / Math.sqrt(aa * cc);
    rows++;
  }
  return tot / rows;
}
const fmt = (x: number, digits = 1): string => (x >= 100 ? x.toFixed(0) : x.toFixed(digits));
const mb = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
const log = (s: string): void => void process.stdout.write(`${s}\n`);

// ------------------------------------------------------------------ run

interface Row {
  index: string; factory: string; param: string;
  buildS: number; trainS: number; addS: number; memoryBytes: number; bytesPerRow: number;
  searchMs: number; speedup: number; b1Ms: number; b1Speedup: number; recall: number; missing: number;
  priorCos: number; targetCos: number; targetCosDelta: number;
  loopSync: LoopDelay; loopAsync: LoopDelay;
}

interface LoopDelay {
  /** Wall time of the LOOP_BATCHES batches. */
  ms: number;
  /** Event-loop delay percentiles over that time. */
  p99Ms: number;
  maxMs: number;
}
const LOOP_BATCHES = 24, LOOP_ROWS = 16;

/** Event-loop delay while LOOP_BATCHES batches of LOOP_ROWS queries are searched one after another. */
async function loopDelay(queries: Float32Array, search: (q: Float32Array) => unknown): Promise<LoopDelay> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  await nextTurn();
  h.enable();
  const t0 = now();
  for (let i = 0; i < LOOP_BATCHES; i++) {
    const r0 = (i * LOOP_ROWS) % Math.max(1, B - LOOP_ROWS + 1);
    await search(queries.subarray(r0 * D, Math.min(B, r0 + LOOP_ROWS) * D));
    await nextTurn();
  }
  const ms = now() - t0;
  h.disable();
  return { ms, p99Ms: h.percentile(99) / 1e6, maxMs: h.max / 1e6 };
}

async function main(): Promise<void> {
  log(`bench-ann: n=${N} b=${B} d=${D} dv=${DV} K=${K} tau=${TAU} clusters=${CLUSTERS} threads=${THREADS} nlist=${NLIST} train=${TRAIN}`);
  let t = now();
  const { keys, values, queries, targets } = DATA === 'rapm' ? await rapmData() : clusterData();
  log(`data (${DATA}): ${((now() - t) / 1000).toFixed(1)} s`);

  // ---- exact
  t = now();
  // The exact scan, the baseline every index is timed against (the default fastPath 'auto' would take the bf16 fast path).
  const ds = new Datastore({ keyDim: D, valueDim: DV, fastPath: 'off' });
  const CH = 100_000;
  for (let r = 0; r < N; r += CH) {
    const r1 = Math.min(N, r + CH);
    await ds.add(keys.subarray(r * D, r1 * D), values.subarray(r * DV, r1 * DV));
  }
  const exactBuildS = (now() - t) / 1000;
  const opts = { k: K, tau: TAU, aggregate: 'softmax' as const };
  await ds.search(queries, opts); // warm-up
  const exactTimes: number[] = [];
  let exact: SearchResult | null = null;
  for (let i = 0; i < RUNS; i++) {
    t = now();
    exact = await ds.search(queries, opts);
    exactTimes.push(now() - t);
  }
  const exactMs = best(exactTimes);
  const exactTargetCos = meanRowCosine(exact!.prior, targets, DV);
  log(`exact rapm f32: build ${exactBuildS.toFixed(1)} s, ${mb(ds.memoryBytes)}, search ${fmt(exactMs)} ms, cos(prior, target) ${exactTargetCos.toFixed(4)}`);

  // ---- exact search time vs N (row-range prefixes of the same datastore)
  const scaling: { n: number; b1Ms: number; bMs: number }[] = [];
  const sizes = [...new Set([...args.scaling!.split(',').map(Number).filter((x) => x < N && x >= K), N])].sort((a, c) => a - c);
  for (const n of sizes) {
    const range = [0, n] as const;
    const single: number[] = [];
    for (let i = 0; i < SINGLES + 1; i++) {
      const q = queries.subarray((i % B) * D, (i % B + 1) * D);
      const t0 = now();
      await ds.search(q, { ...opts, rowRange: range });
      single.push(now() - t0);
    }
    const batch: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const t0 = now();
      await ds.search(queries, { ...opts, rowRange: range });
      batch.push(now() - t0);
    }
    scaling.push({ n, b1Ms: median(single.slice(1)), bMs: best(batch) });
    log(`exact N=${n}: b=1 ${fmt(median(single.slice(1)), 2)} ms, b=${B} ${fmt(best(batch))} ms`);
  }

  const exactB1Ms = scaling[scaling.length - 1]!.b1Ms;

  // ---- datastore memory per million pairs
  const memPerMillion: { d: number; precision: string; bytesPerRow: number; mibPerMillion: number }[] = [];
  for (const d of [103, 1024]) {
    for (const precision of ['f32', 'bf16'] as const) {
      const m = 5000;
      const small = new Datastore({ keyDim: d, valueDim: DV, precision, fastPath: 'off' }); // memory without a fast-path shadow
      const r = new Rng(99);
      small.addSync(r.fill(m * d, 1), r.fill(m * DV, 1));
      const perRow = small.memoryBytes / m;
      memPerMillion.push({ d, precision, bytesPerRow: perRow, mibPerMillion: (perRow * 1e6) / 2 ** 20 });
    }
  }

  // ---- approximate
  const rows: Row[] = [];
  const wanted = new Set(args.indexes!.split(',').map((s) => s.trim()));
  const configs: { name: string; factory: string; params: { label: string; set?: { nprobe?: number; efSearch?: number } }[] }[] = [];
  if (wanted.has('flat')) configs.push({ name: 'faiss Flat (exact)', factory: 'Flat', params: [{ label: '-' }] });
  const nprobes = args.nprobes!.split(',').map(Number).filter((p) => p <= NLIST);
  const ivfParams = nprobes.map((p) => ({ label: `nprobe=${p}${p === 1 ? ' (faiss default)' : ''}`, set: { nprobe: p } }));
  if (wanted.has('ivf')) configs.push({ name: `IVF${NLIST},Flat`, factory: `IVF${NLIST},Flat`, params: ivfParams });
  if (wanted.has('ivfsq8')) configs.push({ name: `IVF${NLIST},SQ8`, factory: `IVF${NLIST},SQ8`, params: ivfParams });
  const efs = args.efs!.split(',').map(Number);
  const hnswParams = efs.map((e) => ({ label: `efSearch=${e}${e === 16 ? ' (faiss default)' : ''} (ef=${Math.max(e, K)})`, set: { efSearch: e } }));
  if (wanted.has('hnsw')) configs.push({ name: 'HNSW32,Flat', factory: 'HNSW32,Flat', params: hnswParams });
  if (wanted.has('hnswsq8')) configs.push({ name: 'HNSW32,SQ8', factory: 'HNSW32,SQ8', params: hnswParams });

  for (const cfg of configs) {
    gc();
    let ix = AnnIndex.create({ d: D, factory: cfg.factory, trainSize: TRAIN });
    let t0 = now();
    if (ix.needsTraining) ix.train(keys);
    const trainS = (now() - t0) / 1000;
    t0 = now();
    await ix.add(keys);
    const addS = (now() - t0) / 1000;
    const memoryBytes = ix.serializedBytes();
    log(`${cfg.name}: train ${trainS.toFixed(1)} s, add ${addS.toFixed(1)} s, ${mb(memoryBytes)}`);
    for (const p of cfg.params) {
      if (p.set) {
        const t1 = now();
        ix.setSearchParams(p.set);
        gc();
        log(`  ${p.label}: setSearchParams ${((now() - t1) / 1000).toFixed(1)} s`);
      }
      annSearchWithValuesSync(ix, values, queries, opts); // warm-up
      const times: number[] = [];
      let res = annSearchWithValuesSync(ix, values, queries, opts);
      for (let i = 0; i < RUNS; i++) {
        const t1 = now();
        res = annSearchWithValuesSync(ix, values, queries, opts);
        times.push(now() - t1);
      }
      const searchMs = best(times);
      const single: number[] = [];
      for (let i = 0; i < SINGLES + 1; i++) {
        const q = queries.subarray((i % B) * D, (i % B + 1) * D);
        const t1 = now();
        annSearchWithValuesSync(ix, values, q, opts);
        single.push(now() - t1);
      }
      const b1Ms = median(single.slice(1));
      const loopSync = await loopDelay(queries, (q) => annSearchWithValuesSync(ix, values, q, opts));
      const loopAsync = await loopDelay(queries, (q) => annSearchWithValues(ix, values, q, opts));
      const targetCos = meanRowCosine(res.prior, targets, DV);
      const row: Row = {
        index: cfg.name, factory: cfg.factory, param: p.label,
        buildS: trainS + addS, trainS, addS, memoryBytes, bytesPerRow: memoryBytes / N,
        searchMs, speedup: exactMs / searchMs, b1Ms, b1Speedup: exactB1Ms / b1Ms, recall: recallAtK(res.neighbors, exact!.neighbors, K), missing: res.missing,
        priorCos: meanRowCosine(res.prior, exact!.prior, DV), targetCos, targetCosDelta: targetCos - exactTargetCos,
        loopSync, loopAsync,
      };
      rows.push(row);
      log(`  ${p.label}: ${fmt(searchMs)} ms (x${fmt(row.speedup)}), b=1 ${fmt(b1Ms, 2)} ms (x${fmt(row.b1Speedup)}), recall@${K} ${row.recall.toFixed(4)}, cos(prior, exact prior) ${row.priorCos.toFixed(5)}, Δcos(target) ${row.targetCosDelta >= 0 ? '+' : ''}${row.targetCosDelta.toFixed(5)}${row.missing ? `, ${row.missing} missing` : ''}, ` +
        `event-loop delay p99 ${fmt(loopSync.p99Ms)} ms sync / ${fmt(loopAsync.p99Ms)} ms async (${LOOP_BATCHES} batches of ${LOOP_ROWS}, async/sync time ${(loopAsync.ms / loopSync.ms).toFixed(2)}x)`);
    }
    ix = null as unknown as AnnIndex;
    gc();
  }

  // ---- table
  log('');
  log(`n = ${N}, b = ${B}, d = ${D}, K = ${K}, ${THREADS} threads; exact rapm f32: build ${exactBuildS.toFixed(1)} s, ${mb(ds.memoryBytes)} (keys + values), ${fmt(exactMs)} ms per batch, cos(prior, target) ${exactTargetCos.toFixed(4)}`);
  log('');
  log(`| index | search setting | build s | index MiB | b=${B} ms | speed-up | b=1 ms | speed-up | recall@${K} | cos(prior, exact prior) | Δ cos(prior, target) |`);
  log('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  log(`| rapm exact f32 | - | ${exactBuildS.toFixed(1)} | ${(ds.memoryBytes / 2 ** 20).toFixed(0)} | ${fmt(exactMs)} | 1.0 | ${fmt(exactB1Ms, 2)} | 1.0 | 1.0000 | 1.00000 | 0 |`);
  for (const r of rows) {
    log(`| ${r.index} | ${r.param} | ${r.buildS.toFixed(1)} | ${(r.memoryBytes / 2 ** 20).toFixed(0)} | ${fmt(r.searchMs)} | ${fmt(r.speedup)} | ${fmt(r.b1Ms, 2)} | ${fmt(r.b1Speedup)} | ${r.recall.toFixed(4)} | ${r.priorCos.toFixed(5)} | ${r.targetCosDelta >= 0 ? '+' : ''}${r.targetCosDelta.toFixed(5)} |`);
  }
  log('');
  log(`event-loop delay while ${LOOP_BATCHES} batches of ${LOOP_ROWS} queries are searched one after another (one batch at a time, as rapm serve's batcher):`);
  log('| index | search setting | sync: loop p99 ms | sync: loop max ms | async: loop p99 ms | async: loop max ms | async / sync wall time |');
  log('|---|---|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    log(`| ${r.index} | ${r.param} | ${fmt(r.loopSync.p99Ms)} | ${fmt(r.loopSync.maxMs)} | ${fmt(r.loopAsync.p99Ms)} | ${fmt(r.loopAsync.maxMs)} | ${(r.loopAsync.ms / r.loopSync.ms).toFixed(2)}x |`);
  }
  // The pick: per index, the fastest single-query setting that reaches recall@K >= 0.95.
  log('');
  log(`fastest setting with recall@${K} >= 0.95, per index (same run, same queries):`);
  for (const name of [...new Set(rows.map((r) => r.index))]) {
    const ok = rows.filter((r) => r.index === name && r.recall >= 0.95).sort((a, c) => a.b1Ms - c.b1Ms)[0];
    log(ok ? `  ${name}: ${ok.param}, recall ${ok.recall.toFixed(4)}, b=1 x${fmt(ok.b1Speedup)} / b=${B} x${fmt(ok.speedup)} vs exact, build ${ok.buildS.toFixed(1)} s, ${(ok.memoryBytes / 2 ** 20).toFixed(0)} MiB` : `  ${name}: no setting reached 0.95`);
  }
  log('');
  log(`| N | exact b=1 ms | exact b=${B} ms |`);
  log('|---:|---:|---:|');
  for (const s of scaling) log(`| ${s.n} | ${fmt(s.b1Ms, 2)} | ${fmt(s.bMs)} |`);
  log('');
  log('| keys | precision | datastore bytes/pair (keys + 101-dim values) | MiB per million pairs |');
  log('|---:|---|---:|---:|');
  for (const m of memPerMillion) log(`| d=${m.d} | ${m.precision} | ${m.bytesPerRow.toFixed(0)} | ${m.mibPerMillion.toFixed(0)} |`);

  ensureDir(path.dirname(path.resolve(args.out!)));
  writeFileAtomicSync(
    args.out!,
    JSON.stringify(
      {
        when: new Date().toISOString(),
        config: { data: DATA, n: N, b: B, d: D, dv: DV, k: K, tau: TAU, clusters: CLUSTERS, latent: LATENT, nlist: NLIST, trainSize: TRAIN, threads: THREADS, runs: RUNS, seed: SEED },
        exact: { buildS: exactBuildS, memoryBytes: ds.memoryBytes, searchMs: exactMs, b1Ms: exactB1Ms, targetCos: exactTargetCos },
        ann: rows,
        exactScaling: scaling,
        datastoreMemoryPerMillion: memPerMillion,
      },
      null,
      2,
    ) + '\n',
  );
  log(`\nwrote ${args.out}`);
}

if (isMainThread) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
} else {
  const { pairs, seed, d } = workerData as { pairs: number; seed: number; d: number };
  const { k, v } = rapmBlock(pairs, seed, d);
  parentPort!.postMessage({ k, v }, [k.buffer as ArrayBuffer, v.buffer as ArrayBuffer]);
}
