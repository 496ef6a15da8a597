/**
 * npm run bench:fast-path-data [-- --pairs 60000 --k 70 --reps 5]
 *
 * Which fast path pays on which data. Both fast paths return the exact answer (native/core/search.cpp),
 * so what the data decides is their cost: how many candidates each first pass keeps within its
 * error margin (the int8 margin is wider: a row's int8 step follows its largest value), and how
 * many queries it cannot settle (a candidate set that outgrows its buffer is redone by the exact
 * scan). Per data set and fast path (fastPath bf16 / int8 on f32 keys, K = --k, every test query
 * once per rep): candidates per query, queries redone, and the best search time of --reps.
 * Data: DRAL-like generated pairs (src/data/generate.ts, --pairs pairs, training rows as the
 * datastore, the 578 test utterances as queries), Config A (1,024 key dims) and Config B (103),
 * and uniform data of the same shapes (the benchmarks' data). "max|x| / rms" describes the keys:
 * a row's largest |value| over its root-mean-square value, mean and max over the rows.
 */
import { parseArgs } from 'node:util';
import { generateDataset } from '../src/data/generate.js';
import { keyIndices, pickRows, selectColumns, valueIndices } from '../src/data/indices.js';
import { simdLevel } from '../src/native/simd.js';
import { Datastore } from '../src/retrieval/datastore.js';
import { uniformSigned } from '../src/rng.js';

const { values: args } = parseArgs({
  options: {
    pairs: { type: 'string', default: '60000' },
    k: { type: 'string', default: '70' },
    reps: { type: 'string', default: '5' },
  },
});
const pairs = Number(args.pairs), k = Number(args.k), reps = Number(args.reps);
for (const [name, v, min] of [['--pairs', pairs, 5000], ['--k', k, 1], ['--reps', reps, 1]] as const) {
  if (!Number.isInteger(v) || v < min) throw new Error(`${name} must be an integer >= ${min} (received ${String(v)})`);
}

const data = generateDataset({ pairs, testPairs: 578, seed: 1 });
const index = new Map(data.ids.map((id, i) => [id, i]));
const trainRows = data.official!.train.map((id) => index.get(id)!);
const testRows = data.official!.test.map((id) => index.get(id)!);
const values = selectColumns(pickRows(data.es, 1024, trainRows), 1024, valueIndices());
const dv = valueIndices().length;

function spread(keys: Float32Array, d: number): string {
  const n = keys.length / d;
  let worst = 0, sum = 0;
  for (let r = 0; r < n; r++) {
    let m = 0, s = 0;
    for (let p = 0; p < d; p++) {
      const x = keys[r * d + p]!;
      m = Math.max(m, Math.abs(x));
      s += x * x;
    }
    const ratio = m / Math.sqrt(s / d);
    worst = Math.max(worst, ratio);
    sum += ratio;
  }
  return `${(sum / n).toFixed(2)} / ${worst.toFixed(2)}`;
}

console.log(`rapm bench:fast-path-data — ${simdLevel()} kernels, K = ${k}, ${reps} reps, ${pairs} DRAL-like pairs`);
console.log('| data | n | d | max\\|x\\| / rms (mean / max) | fast path | candidates / query | redone | best ms |');
console.log('|---|---|---|---|---|---|---|---|');
function run(name: string, keys: Float32Array, queries: Float32Array, d: number): void {
  const n = keys.length / d;
  const keySpread = spread(keys, d);
  for (const fastPath of ['bf16', 'int8'] as const) {
    const ds = new Datastore({ keyDim: d, valueDim: dv, fastPath });
    ds.addSync(keys, values.subarray(0, n * dv));
    const s0 = { ...ds.fastPathStats };
    let best = Infinity;
    for (let i = 0; i < reps; i++) {
      const t = performance.now();
      ds.searchSync(queries, { k });
      best = Math.min(best, performance.now() - t);
    }
    const s1 = ds.fastPathStats, q = s1.queries - s0.queries;
    const cand = q > s1.redone - s0.redone ? (s1.candidates - s0.candidates) / (q - (s1.redone - s0.redone)) : 0;
    console.log(`| ${name} | ${n} | ${d} | ${keySpread} | ${fastPath} | ${q > 0 ? cand.toFixed(1) : 'not engaged'} | ${s1.redone - s0.redone} / ${q} | ${best.toFixed(1)} |`);
  }
}
for (const config of ['A', 'B'] as const) {
  const idx = keyIndices(config), d = idx.length;
  const keys = selectColumns(pickRows(data.en, 1024, trainRows), 1024, idx);
  const queries = selectColumns(pickRows(data.en, 1024, testRows), 1024, idx);
  run(`DRAL-like Config ${config}`, keys, queries, d);
  const n = keys.length / d;
  run(`uniform d=${d}`, uniformSigned(n * d, 5 + d), uniformSigned(queries.length, 6 + d), d);
}
