/**
 * npm run bench:int8-accuracy [-- --pairs 20000 --rows 200000 --queries 256 --out results/int8-accuracy.json]
 *
 * What precision 'int8' costs in answers (a fact, not a target): the int8 store's search is
 * exact over its stored keys (scale * codes, native/core/int8_store.cpp), and those keys are
 * not the f32 keys, so some neighbours change. Per workload, against the f32 store's search of
 * the same rows and queries (and bf16's, for scale):
 *   recall@K        share of the f32 top-K rows that the int8 top-K also returns
 *   same top-K      share of queries whose top-K set is the f32 one
 *   prior cos       cosine between the int8 (bf16) prior and the f32 prior, mean and minimum
 *   target cos      DRAL-like data only: mean cosine of the prior with the true 101-dim target,
 *                   f32 and int8, and the difference (the number the R-APM metric sees)
 * Workloads: the benchmark's uniform data (scripts/bench-retrieval.ts shapes W1 and a W2-like
 * one with --rows keys and --queries queries), and DRAL-like generated data (src/data/generate.ts,
 * --pairs pairs, its own train/test split: test utterances query the training rows), Config A
 * (1,024 key dims) and Config B (103). K and tau are the settings' defaults (90, 0.04) except
 * W1 (k = 70, as the benchmark). Deterministic: no timing, so the numbers do not depend on the machine.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { generateDataset } from '../src/data/generate.js';
import { keyIndices, pickRows, selectColumns, valueIndices } from '../src/data/indices.js';
import { ensureDir, writeFileAtomicSync } from '../src/io/atomic.js';
import { simdLevel } from '../src/native/simd.js';
import { Datastore, type KeyPrecision, type SearchResult } from '../src/retrieval/datastore.js';
import { uniformSigned } from '../src/rng.js';
import { SETTINGS } from '../src/settings.js';

const { values: args } = parseArgs({
  options: {
    pairs: { type: 'string', default: '20000' },
    rows: { type: 'string', default: '200000' },
    queries: { type: 'string', default: '256' },
    out: { type: 'string', default: 'results/int8-accuracy.json' },
  },
});
const pairs = Number(args.pairs), rows = Number(args.rows), nq = Number(args.queries);
for (const [name, v] of [['--pairs', pairs], ['--rows', rows], ['--queries', nq]] as const) {
  if (!Number.isInteger(v) || v < 100) throw new Error(`${name} must be an integer >= 100 (received ${String(v)})`);
}
const K = SETTINGS.k.default, TAU = SETTINGS.tau.default;

function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return dot / Math.sqrt(na * nb);
}

interface Agreement {
  recall: number;
  sameTopK: number;
  priorCosMean: number;
  priorCosMin: number;
}

function agreement(got: SearchResult, want: SearchResult, dv: number): Agreement {
  const { b, k } = want;
  let found = 0, same = 0, cosSum = 0, cosMin = 1;
  for (let q = 0; q < b; q++) {
    const set = new Set(want.neighbors.subarray(q * k, q * k + k));
    let f = 0;
    for (const r of got.neighbors.subarray(q * k, q * k + k)) f += set.has(r) ? 1 : 0;
    found += f;
    same += f === k ? 1 : 0;
    const c = cosine(got.prior.subarray(q * dv, q * dv + dv), want.prior.subarray(q * dv, q * dv + dv));
    cosSum += c;
    cosMin = Math.min(cosMin, c);
  }
  return { recall: found / (b * k), sameTopK: same / b, priorCosMean: cosSum / b, priorCosMin: cosMin };
}

interface Row {
  workload: string;
  n: number;
  b: number;
  d: number;
  k: number;
  int8: Agreement;
  bf16: Agreement;
  /** DRAL-like only: mean cosine of the prior with the true target, per precision. */
  targetCos?: Record<KeyPrecision, number>;
  keyBytesPerRow: Record<KeyPrecision, number>;
}

async function compare(workload: string, keys: Float32Array, values: Float32Array, queries: Float32Array, d: number, dv: number, k: number, targets?: Float32Array): Promise<Row> {
  const n = values.length / dv, b = queries.length / d;
  const results = {} as Record<KeyPrecision, SearchResult>;
  const keyBytesPerRow = {} as Record<KeyPrecision, number>;
  for (const precision of ['f32', 'bf16', 'int8'] as const) {
    const ds = new Datastore({ keyDim: d, valueDim: dv, precision });
    await ds.add(keys, values);
    results[precision] = await ds.search(queries, { k, tau: TAU });
    keyBytesPerRow[precision] = ds.bytesPerRow - 4 * dv - 4;
  }
  const row: Row = { workload, n, b, d, k, int8: agreement(results.int8, results.f32, dv), bf16: agreement(results.bf16, results.f32, dv), keyBytesPerRow };
  if (targets) {
    const t = {} as Record<KeyPrecision, number>;
    for (const p of ['f32', 'bf16', 'int8'] as const) {
      let s = 0;
      for (let q = 0; q < b; q++) s += cosine(results[p].prior.subarray(q * dv, q * dv + dv), targets.subarray(q * dv, q * dv + dv));
      t[p] = s / b;
    }
    row.targetCos = t;
  }
  return row;
}

const out: Row[] = [];
const log = (r: Row): void => {
  out.push(r);
  console.log(`${r.workload}: recall@${r.k} int8 ${r.int8.recall.toFixed(4)} (bf16 ${r.bf16.recall.toFixed(4)})`);
};

// Benchmark-like (uniform) data: the W1 shapes, and a W2-like one.
for (const d of [1024, 103]) log(await compare(`W1 uniform d=${d}`, uniformSigned(2316 * d, 1 + d), uniformSigned(2316 * 101, 2), uniformSigned(578 * d, 3 + d), d, 101, 70));
for (const d of [103, 1024]) log(await compare(`W2-like uniform d=${d}`, uniformSigned(rows * d, 11 + d), uniformSigned(rows * 101, 12), uniformSigned(nq * d, 13 + d), d, 101, K));

// DRAL-like data: training rows as the datastore, test utterances as queries.
const data = generateDataset({ pairs, testPairs: Math.min(578, Math.floor(pairs / 5)), seed: 1 });
const index = new Map(data.ids.map((id, i) => [id, i]));
const trainRows = data.official!.train.map((id) => index.get(id)!);
const testRows = data.official!.test.map((id) => index.get(id)!);
const values = selectColumns(pickRows(data.es, 1024, trainRows), 1024, valueIndices());
const targets = selectColumns(pickRows(data.es, 1024, testRows), 1024, valueIndices());
for (const config of ['A', 'B'] as const) {
  const idx = keyIndices(config);
  const keys = selectColumns(pickRows(data.en, 1024, trainRows), 1024, idx);
  const queries = selectColumns(pickRows(data.en, 1024, testRows), 1024, idx);
  log(await compare(`DRAL-like Config ${config}`, keys, values, queries, idx.length, valueIndices().length, K, targets));
}

const f = (x: number): string => x.toFixed(4);
console.log(`\nprecision 'int8' (and bf16) against f32 keys, same rows and queries; simd ${simdLevel()}, tau ${TAU}`);
console.log('| workload | n | queries | d | K | key bytes/row f32 / bf16 / int8 | recall@K int8 (bf16) | same top-K int8 (bf16) | prior cos int8 mean / min (bf16 min) | target cos f32 / int8 (diff) |');
console.log('|---|---|---|---|---|---|---|---|---|---|');
for (const r of out) {
  const t = r.targetCos ? `${f(r.targetCos.f32)} / ${f(r.targetCos.int8)} (${(r.targetCos.int8 - r.targetCos.f32).toExponential(1)})` : '-';
  console.log(
    `| ${r.workload} | ${r.n} | ${r.b} | ${r.d} | ${r.k} | ${r.keyBytesPerRow.f32} / ${r.keyBytesPerRow.bf16} / ${r.keyBytesPerRow.int8} | ${f(r.int8.recall)} (${f(r.bf16.recall)}) | ${f(r.int8.sameTopK)} (${f(r.bf16.sameTopK)}) | ${f(r.int8.priorCosMean)} / ${f(r.int8.priorCosMin)} (${f(r.bf16.priorCosMin)}) | ${t} |`,
  );
}
ensureDir(path.dirname(args.out!));
writeFileAtomicSync(args.out!, JSON.stringify({ simd: simdLevel(), tau: TAU, pairs, rows, queries: nq, results: out }, null, 2) + '\n');
console.log(`wrote ${args.out}`);
