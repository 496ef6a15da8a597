/**
 * npx tsx scripts/load-test.ts [--pairs 200000 --config B --precision f32 --concurrency 8
 *                               --single 2000 --batched 150 --json 300 --time-cap 60 --out results/load-test.json]
 *
 * A bounded load run of `rapm serve` on 127.0.0.1 only. Builds a datastore of random pairs
 * (Config B: 103 key dims of 1024, or A: all 1024; values: the 101 spanish winners), saves
 * it, starts the service in a child process (the serve command's runServe, port 0), then
 * for each phase sends a fixed number of requests with N concurrent keep-alive clients,
 * stopping early at the time cap: b=1 binary, b=64 binary, b=1 JSON. Reports throughput
 * and p50/p99 latency, counts errors (must be 0), and checks every 10th response equals a
 * direct library call (Predictor.predict on the datastore before it was saved) bit for bit.
 * Ends with SIGTERM (graceful shutdown; the child must exit 0). Prints a table and writes
 * the results JSON atomically. Also reports ds.memoryBytes per million pairs for
 * Config A/B x f32/bf16 (measured on 10,000 rows and scaled).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ensureDir, writeFileAtomicSync } from '../src/io/atomic.js';
import { FEATURE_DIM, keyIndices, valueIndices, type KeyConfig } from '../src/data/indices.js';
import { simdLevel, concurrency } from '../src/native/simd.js';
import { Datastore, type KeyPrecision } from '../src/retrieval/datastore.js';
import { loadDatastore, saveDatastore } from '../src/retrieval/persist.js';
import { Predictor } from '../src/serve/predictor.js';

const self = fileURLToPath(import.meta.url);
const { values: args } = parseArgs({
  options: {
    role: { type: 'string', default: 'client' },
    datastore: { type: 'string' },
    pairs: { type: 'string', default: '200000' },
    config: { type: 'string', default: 'B' },
    precision: { type: 'string', default: 'f32' },
    k: { type: 'string', default: '70' },
    tau: { type: 'string', default: '0.04' },
    concurrency: { type: 'string', default: '8' },
    single: { type: 'string', default: '2000' },
    batched: { type: 'string', default: '150' },
    json: { type: 'string', default: '300' },
    'time-cap': { type: 'string', default: '60' },
    out: { type: 'string', default: 'results/load-test.json' },
  },
});
const K = Number(args.k), TAU = Number(args.tau);

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
  await runServe(
    { datastore: args.datastore!, port: 0, host: '127.0.0.1', k: K, tau: TAU, aggregate: 'softmax', maxBatch: 1024, graceMs: 10_000, device: 'cpu' },
    { onListening: (url) => process.stdout.write(`LISTENING ${url}\n`) },
  );
  process.exit(0);
}

// ---------------------------------------------------------------- client role

interface Phase {
  name: string;
  b: number;
  binary: boolean;
  requests: number;
}
interface PhaseResult {
  name: string;
  b: number;
  format: 'binary' | 'json';
  concurrency: number;
  planned: number;
  sent: number;
  seconds: number;
  requestsPerSecond: number;
  queriesPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  maxMs: number;
  errors: number;
  checked: number;
  mismatches: number;
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;
const bits = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

function request(agent: http.Agent, url: string, body: Buffer, binary: boolean): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${url}/predict`,
      { method: 'POST', agent, headers: { 'Content-Type': binary ? 'application/octet-stream' : 'application/json', 'Content-Length': body.length } },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function main(): Promise<void> {
  const pairs = Number(args.pairs);
  const config = args.config as KeyConfig;
  const precision = args.precision as KeyPrecision;
  const conc = Number(args.concurrency);
  const capMs = Number(args['time-cap']) * 1000;
  const fill = filler(12345);

  // Memory per million pairs, from memoryBytes on 10,000 rows.
  const memoryPerMillion: Record<string, number> = {};
  for (const c of ['A', 'B'] as const) {
    for (const p of ['f32', 'bf16'] as const) {
      const ds = new Datastore({ keyIndices: keyIndices(c), valueIndices: valueIndices(), precision: p });
      ds.addSync(fill(new Float32Array(10_000 * FEATURE_DIM)), fill(new Float32Array(10_000 * FEATURE_DIM)));
      memoryPerMillion[`config${c}-${p}`] = (ds.memoryBytes / 10_000) * 1e6;
    }
  }

  // The datastore.
  let t = performance.now();
  const ds = new Datastore({ keyIndices: keyIndices(config), valueIndices: valueIndices(), precision });
  const block = 10_000;
  const en = new Float32Array(block * FEATURE_DIM), es = new Float32Array(block * FEATURE_DIM);
  for (let r0 = 0; r0 < pairs; r0 += block) {
    const m = Math.min(block, pairs - r0);
    await ds.add(fill(en.subarray(0, m * FEATURE_DIM)), fill(es.subarray(0, m * FEATURE_DIM)), Array.from({ length: m }, (_, i) => `pair-${r0 + i}`));
  }
  const buildSeconds = (performance.now() - t) / 1000;
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-load-'));
  const file = path.join(tmpDir, `load-${config}-${precision}.rds`);
  t = performance.now();
  const saved = await saveDatastore(ds, file);
  const saveSeconds = (performance.now() - t) / 1000;
  t = performance.now();
  const reloadedBytes = (await loadDatastore(file)).memoryBytes; // the copy is dropped at once
  const loadSeconds = (performance.now() - t) / 1000;
  console.log(`datastore: ${pairs} pairs, Config ${config} (d ${ds.d}, dv ${ds.dv}), ${precision}, ${(ds.memoryBytes / 2 ** 20).toFixed(1)} MiB native; ` +
    `built ${buildSeconds.toFixed(1)} s, saved ${(saved.bytes / 2 ** 20).toFixed(1)} MiB in ${saveSeconds.toFixed(2)} s, loaded in ${loadSeconds.toFixed(2)} s`);

  // The service, in a child process.
  const child = spawn(process.execPath, ['--import', 'tsx', self, '--role', 'server', '--datastore', file, '--k', String(K), '--tau', String(TAU)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const childExit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    let text = '';
    child.stdout.on('data', (d: Buffer) => {
      text += d.toString();
      const m = /LISTENING (\S+)/.exec(text);
      if (m) resolve(m[1]!);
    });
    void childExit.then((c) => reject(new Error(`server exited early (${c})`)));
  });
  if (!/^http:\/\/127\.0\.0\.1:\d+$/.test(url)) throw new Error(`refusing to load-test a non-loopback address ${url}`);

  const predictor = new Predictor(ds, { k: K, tau: TAU });
  const queries = fill(new Float32Array(512 * FEATURE_DIM));
  const phases: Phase[] = [
    { name: 'b=1 binary', b: 1, binary: true, requests: Number(args.single) },
    { name: 'b=64 binary', b: 64, binary: true, requests: Number(args.batched) },
    { name: 'b=1 json', b: 1, binary: false, requests: Number(args.json) },
  ];
  const results: PhaseResult[] = [];
  for (const phase of phases.filter((p) => p.requests > 0)) {
    const agent = new http.Agent({ keepAlive: true, maxSockets: conc });
    const bodyOf = (i: number): { en: Float32Array; body: Buffer } => {
      const q0 = (i * phase.b) % (512 - phase.b + 1);
      const e = queries.slice(q0 * FEATURE_DIM, (q0 + phase.b) * FEATURE_DIM);
      return { en: e, body: phase.binary ? Buffer.from(e.buffer) : Buffer.from(JSON.stringify({ en: Array.from(e) })) };
    };
    // Warm-up (not timed): one request per client.
    await Promise.all(Array.from({ length: conc }, (_, i) => request(agent, url, bodyOf(i).body, phase.binary)));
    const latencies: number[] = [];
    const samples: { en: Float32Array; body: Buffer }[] = [];
    let next = 0, errors = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: conc }, async () => {
        while (next < phase.requests && performance.now() - t0 < capMs) {
          const i = next++;
          const { en: e, body } = bodyOf(i);
          const s = performance.now();
          try {
            const res = await request(agent, url, body, phase.binary);
            latencies.push(performance.now() - s);
            if (res.status !== 200) errors++;
            else if (i % 10 === 0) samples.push({ en: e, body: res.body });
          } catch {
            errors++;
          }
        }
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    agent.destroy();
    // Bit-for-bit check against direct library calls (after the timed part).
    let mismatches = 0;
    for (const s of samples) {
      const want = await predictor.predict(s.en);
      let pred: Float32Array, prior: Float32Array;
      if (phase.binary) {
        const all = new Float32Array(s.body.buffer.slice(s.body.byteOffset, s.body.byteOffset + s.body.length));
        pred = all.subarray(0, want.pred.length);
        prior = all.subarray(want.pred.length);
      } else {
        const j = JSON.parse(s.body.toString()) as { pred: number[]; prior: number[] };
        pred = Float32Array.from(j.pred);
        prior = Float32Array.from(j.prior);
      }
      if (!bits(pred).equals(bits(want.pred)) || !bits(prior).equals(bits(want.prior))) mismatches++;
    }
    const sorted = [...latencies].sort((a, b) => a - b);
    results.push({
      name: phase.name,
      b: phase.b,
      format: phase.binary ? 'binary' : 'json',
      concurrency: conc,
      planned: phase.requests,
      sent: Math.min(next, phase.requests),
      seconds,
      requestsPerSecond: latencies.length / seconds,
      queriesPerSecond: (latencies.length * phase.b) / seconds,
      p50Ms: pct(sorted, 50),
      p99Ms: pct(sorted, 99),
      meanMs: sorted.reduce((a, b) => a + b, 0) / Math.max(1, sorted.length),
      maxMs: sorted.at(-1) ?? NaN,
      errors,
      checked: samples.length,
      mismatches,
    });
  }

  child.kill('SIGTERM');
  const exitCode = await childExit;
  fs.rmSync(tmpDir, { recursive: true, force: true });

  const row = (cells: (string | number)[]) => cells.map((c, i) => String(c).padStart(i === 0 ? 12 : 10)).join(' ');
  console.log(row(['phase', 'requests', 'seconds', 'req/s', 'queries/s', 'p50 ms', 'p99 ms', 'errors', 'checked', 'mismatch']));
  for (const r of results) {
    console.log(row([r.name, r.sent, r.seconds.toFixed(2), r.requestsPerSecond.toFixed(1), r.queriesPerSecond.toFixed(0), r.p50Ms.toFixed(2), r.p99Ms.toFixed(2), r.errors, r.checked, r.mismatches]));
  }
  console.log('memory per million pairs (ds.memoryBytes):', Object.entries(memoryPerMillion).map(([k, v]) => `${k} ${(v / 2 ** 20).toFixed(0)} MiB`).join(', '));
  console.log(`server exit code after SIGTERM: ${exitCode}`);

  const out = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, totalMemoryBytes: os.totalmem(), simd: simdLevel(), threads: concurrency(), node: process.version },
    datastore: { pairs, config, d: ds.d, dv: ds.dv, precision, memoryBytes: ds.memoryBytes, reloadedMemoryBytes: reloadedBytes, fileBytes: saved.bytes, buildSeconds, saveSeconds, loadSeconds },
    settings: { k: K, tau: TAU, concurrency: conc, timeCapSeconds: capMs / 1000, host: '127.0.0.1', checkEvery: 10 },
    phases: results,
    memoryPerMillionPairs: memoryPerMillion,
    serverExitCode: exitCode,
  };
  ensureDir(path.dirname(path.resolve(args.out!)));
  writeFileAtomicSync(args.out!, JSON.stringify(out, null, 2) + '\n');
  console.log(`wrote ${args.out}`);
  const bad = results.some((r) => r.errors > 0 || r.mismatches > 0) || exitCode !== 0;
  process.exitCode = bad ? 1 : 0;
}

await main();
