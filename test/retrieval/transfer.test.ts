// A caller's buffer transferred to another thread (postMessage / structuredClone transfer lists)
// while an async native call that was given it is still running: the call must go on reading
// memory of its own. Before, Datastore.add/search and trainMlp handed the caller's memory to the
// native worker, and a buffer transferred to a worker that then exits is freed under it: the
// whole process died with SIGSEGV. Each case runs in a child process, so a crash fails the test
// instead of killing the runner, and the child checks that the transfer really happened while
// the call was pending (the promise unsettled, the caller's array detached).
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

// Shared by the child scripts: a worker that takes a transferred buffer and exits (its isolate,
// and with it the buffer's memory, goes away), and a pending-promise probe.
const prelude = `
import { Worker } from 'node:worker_threads';
const sink = new Worker("import('node:worker_threads').then(({ parentPort }) => parentPort.once('message', () => process.exit(0)))", { eval: true });
await new Promise((r) => sink.once('online', r));
const gone = new Promise((r) => sink.once('exit', r));
async function transferWhilePending(p, buffer) {
  let settled = false;
  p.then(() => { settled = true; }, () => { settled = true; });
  await Promise.resolve();
  const pendingAtTransfer = !settled;
  sink.postMessage(buffer, [buffer]);
  await gone;
  return { pendingAtTransfer, detached: buffer.byteLength === 0 };
}
const fill = (n, seed) => { // mulberry32 in [-0.5, 0.5)
  const a = new Float32Array(n); let s = seed >>> 0;
  for (let i = 0; i < n; i++) { s = (s + 0x6d2b79f5) >>> 0; let t = Math.imul(s ^ (s >>> 15), s | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); a[i] = ((t ^ (t >>> 14)) >>> 0) / 2 ** 32 - 0.5; }
  return a;
};
`;

function runChild(body: string): { status: number | null; signal: string | null; out: Record<string, unknown> | null; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', prelude + body], { cwd: root, encoding: 'utf8', timeout: 120_000 });
  const last = r.stdout.trim().split('\n').pop() ?? '';
  let out: Record<string, unknown> | null = null;
  try {
    out = JSON.parse(last) as Record<string, unknown>;
  } catch {
    out = null;
  }
  return { status: r.status, signal: r.signal, out, stderr: r.stderr };
}

describe('async native calls survive the caller transferring its buffers away', { timeout: 180_000 }, () => {
  it('Datastore.add: keys transferred mid-add; the rows added are the keys as they were at the call', () => {
    const r = runChild(`
const { Datastore } = await import('./src/index.ts');
const d = 1024, dv = 4, m = 40000;
const keys = fill(m * d, 1), values = fill(m * dv, 2), ref = keys.slice();
const ds = new Datastore({ keyDim: d, valueDim: dv });
const p = ds.add(keys, values);
const t = await transferWhilePending(p, keys.buffer);
await p;
const probe = [0, 1, 12345, m - 1];
const q = new Float32Array(probe.length * d);
probe.forEach((row, i) => q.set(ref.subarray(row * d, row * d + d), i * d));
const got = ds.searchSync(q, { k: 1, tau: 0.05 });
console.log(JSON.stringify({ ...t, size: ds.size, self: Array.from(got.neighbors), probe }));
`);
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    expect(r.out).toMatchObject({ pendingAtTransfer: true, detached: true, size: 40000 });
    expect(r.out!.self).toEqual(r.out!.probe);
  });

  it('Datastore.search: queries transferred mid-search; the answer equals searchSync on a copy', () => {
    const r = runChild(`
const { Datastore } = await import('./src/index.ts');
const d = 1024, dv = 4, n = 100, b = 20000;
const ds = new Datastore({ keyDim: d, valueDim: dv });
ds.addSync(fill(n * d, 3), fill(n * dv, 4));
const queries = fill(b * d, 5), ref = queries.slice();
const p = ds.search(queries, { k: 5, tau: 0.05 });
const t = await transferWhilePending(p, queries.buffer);
const got = await p;
const want = ds.searchSync(ref, { k: 5, tau: 0.05 });
const same = got.neighbors.every((v, i) => v === want.neighbors[i]) && got.prior.every((v, i) => Object.is(v, want.prior[i]));
console.log(JSON.stringify({ ...t, same }));
`);
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    expect(r.out).toEqual({ pendingAtTransfer: true, detached: true, same: true });
  });

  it('trainMlp (native backend): train.en transferred mid-training; the weights equal a run on untouched arrays', () => {
    const r = runChild(`
const R = await import('./src/index.ts');
const enDim = 256, outDim = 8, n = 8000;
const spec = R.fusionSpec({ enDim, outDim, hidden: [64] });
const en = fill(n * enDim, 6), prior = fill(n * outDim, 7), target = prior.map((x) => x * 0.5);
const ref = { en: en.slice(), prior: prior.slice(), target: target.slice() };
const opts = { epochs: 2, patience: 2, seed: 3 };
const p = R.trainMlp(R.nativeMlpBackend, spec, { en, prior, target }, { en, prior, target }, opts);
const t = await transferWhilePending(p, en.buffer);
const got = await p;
const want = await R.trainMlp(R.nativeMlpBackend, spec, ref, ref, opts);
const same = got.params.length === want.params.length && got.params.every((v, i) => Object.is(v, want.params[i]));
console.log(JSON.stringify({ ...t, same }));
`);
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    expect(r.out).toEqual({ pendingAtTransfer: true, detached: true, same: true });
  });
});
