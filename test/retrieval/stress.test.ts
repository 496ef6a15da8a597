/**
 * Bounded stress test of row ownership (issue 10): random interleavings of add, addSync,
 * search, searchSync, exclusions, save and load, checked against a plain model of what the
 * datastore must hold. Fixed seeds, a bounded number of steps and a wall-time budget, so it
 * runs in CI in seconds.
 *
 * The model: every append the datastore accepted, in call order (add() calls are accepted
 * when called, unless their rows are bad, addSync() calls when they return). The committed
 * rows are always a prefix of that list, whole appends only, and the full list once nothing
 * is pending. Checked at every step:
 * - size is the row count of a whole-append prefix, never less than what has settled;
 * - every neighbour is a committed row at the time of the call, and idOf() gives the model's id;
 * - leave-one-out (excludeRows [r] or excludeIds [id of r]) never returns a row with r's id,
 *   while the query is row r's own key;
 * - countOf(id) is the model's count in the committed prefix;
 * - addSync is refused with RAPM_STATE exactly when an add is pending (or, in the microtask
 *   where the last one has committed but its promise reaction has not run yet, accepted with
 *   everything committed);
 * - a save writes the rows committed when it was called; loading it gives the same ids,
 *   groups and search results as the live datastore restricted to those rows.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Datastore } from '../../src/retrieval/datastore.js';
import { rng } from '../helpers/random.js';

const SEEDS = [101, 202, 303];
const MAX_STEPS = 250; // per seed
const BUDGET_MS = 2500; // per seed, wall time
const d = 8, dv = 2;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-stress-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

interface Append {
  ids: string[];
  keys: Float32Array; // [m, d]
}

function codeOf(e: unknown): string | undefined {
  return (e as { code?: string } | null)?.code;
}

async function runSeed(seed: number): Promise<Record<string, number>> {
  const r = rng(seed);
  const int = (n: number) => Math.floor(r() * n);
  const ds = new Datastore({ keyDim: d, valueDim: dv, precision: seed % 2 ? 'f32' : 'bf16' });
  const accepted: Append[] = []; // model: accepted appends in commit order
  let settledRows = 0; // rows of appends whose promise has settled (a lower bound for size)
  let pending = 0; // add() promises not settled yet (as this harness sees them)
  const inflight: Promise<unknown>[] = [];
  const failures: string[] = [];
  const stats: Record<string, number> = { steps: 0, add: 0, addBad: 0, addSync: 0, addSyncRefused: 0, search: 0, searchSync: 0, save: 0, load: 0, loo: 0 };
  const fail = (msg: string) => failures.push(`seed ${seed} step ${stats.steps}: ${msg}`);

  const modelRows = (n: number) => {
    const ids: string[] = [];
    const keys: Float32Array[] = [];
    for (const a of accepted) {
      if (ids.length >= n) break;
      a.ids.forEach((id, i) => {
        ids.push(id);
        keys.push(a.keys.subarray(i * d, (i + 1) * d));
      });
    }
    return { ids: ids.slice(0, n), keys: keys.slice(0, n) };
  };
  const prefixSizes = () => {
    const out = [0];
    for (const a of accepted) out.push(out[out.length - 1]! + a.ids.length);
    return out;
  };
  const checkSize = (where: string) => {
    const n = ds.size;
    if (!prefixSizes().includes(n)) fail(`${where}: size ${n} is not a whole-append prefix (${prefixSizes().join(',')})`);
    if (n < settledRows) fail(`${where}: size ${n} below the ${settledRows} rows already settled`);
    return n;
  };
  const newAppend = (): Append => {
    const m = 1 + int(12);
    const keys = Float32Array.from({ length: m * d }, () => r() * 2 - 1);
    const ids = Array.from({ length: m }, () => `u${int(30)}`);
    return { ids, keys };
  };

  /** One search with random options, checked against the model's committed prefix of size n. */
  const checkSearch = (res: { neighbors: Int32Array; k: number }, n: number, selfId: string | null, where: string) => {
    const { ids } = modelRows(n);
    for (const row of res.neighbors) {
      if (row < 0 || row >= n) return fail(`${where}: neighbour ${row} outside the ${n} committed rows`);
      if (ds.idOf(row) !== ids[row]) return fail(`${where}: idOf(${row}) = ${ds.idOf(row)}, model ${ids[row]}`);
      if (selfId !== null && ids[row] === selfId) return fail(`${where}: leave-one-out returned row ${row} with the excluded id ${selfId}`);
    }
  };

  const t0 = Date.now();
  for (; stats.steps < MAX_STEPS && Date.now() - t0 < BUDGET_MS; stats.steps++) {
    const op = int(100);
    const n = checkSize('before op');
    if (op < 22) {
      // add(): sometimes with a NaN key (refused natively, nothing committed)
      const a = newAppend();
      const bad = r() < 0.1;
      if (bad) a.keys[int(a.keys.length)] = NaN;
      const p = ds.add(a.keys, Float32Array.from({ length: a.ids.length * dv }, r), a.ids);
      pending++;
      if (bad) stats.addBad++;
      else {
        accepted.push(a);
        stats.add++;
      }
      const rows = a.ids.length;
      inflight.push(
        p.then(
          () => {
            pending--;
            if (bad) fail('an add with a NaN key succeeded');
            settledRows += rows;
          },
          (e: unknown) => {
            pending--;
            if (!bad) fail(`a good add failed: ${String(e)}`);
            else if (codeOf(e) !== 'RAPM_NON_FINITE' && !String(codeOf(e)).startsWith('RAPM_')) fail(`bad add: uncoded ${String(e)}`);
          },
        ),
      );
    } else if (op < 34) {
      const a = newAppend();
      const before = pending;
      try {
        ds.addSync(a.keys, Float32Array.from({ length: a.ids.length * dv }, r), a.ids);
        const total = prefixSizes().at(-1)!;
        if (before > 0 && ds.size !== total) fail(`addSync accepted while ${before} adds pending and rows uncommitted`);
        accepted.push(a);
        settledRows = total + a.ids.length;
        stats.addSync++;
      } catch (e) {
        if (codeOf(e) !== 'RAPM_STATE') fail(`addSync: unexpected ${String(e)}`);
        if (before === 0) fail('addSync refused while no add was pending');
        stats.addSyncRefused++;
      }
    } else if (op < 70 && n > 2) {
      // search or searchSync: plain, leave-one-out by row or by id
      const mode = int(3);
      const { ids, keys } = modelRows(n);
      const self = int(n);
      const selfId = ids[self]!;
      const excluded = mode === 0 ? 0 : ids.filter((id) => id === selfId).length;
      if (n - excluded < 1) continue;
      const k = 1 + int(Math.min(8, n - excluded));
      const q = Float32Array.from(keys[self]!);
      const opts = mode === 0 ? { k } : mode === 1 ? { k, excludeRows: [self] } : { k, excludeIds: [selfId] };
      if (mode > 0) stats.loo++;
      if (ds.countOf(selfId) !== excluded && mode > 0) fail(`countOf(${selfId}) = ${ds.countOf(selfId)}, model ${excluded}`);
      const where = `search mode ${mode} k ${k}`;
      if (r() < 0.5) {
        stats.searchSync++;
        const res = ds.searchSync(q, opts);
        checkSearch(res, n, mode === 0 ? null : selfId, where);
        if (mode === 0 && ids[res.neighbors[0]!] !== selfId && res.similarities[0]! < 0.999) fail(`${where}: own key not found first`);
      } else {
        stats.search++;
        inflight.push(ds.search(q, opts).then((res) => checkSearch(res, n, mode === 0 ? null : selfId, where)));
      }
    } else if (op < 80 && n > 0) {
      // save now (rows committed at the call), check it when it lands: reload equals state
      stats.save++;
      const file = path.join(tmp, `s${seed}-${stats.steps}.rds`);
      const { ids, keys } = modelRows(n);
      inflight.push(
        ds.save(file).then(async (res) => {
          if (res.n !== n) fail(`save wrote ${res.n} rows, ${n} were committed at the call`);
          const back = await Datastore.load(file);
          stats.load++;
          if (back.size !== n) fail(`reload has ${back.size} rows, expected ${n}`);
          for (let i = 0; i < n; i++) if (back.idOf(i) !== ids[i]) return fail(`reload: idOf(${i}) = ${back.idOf(i)}, model ${ids[i]}`);
          const self = int(n), selfId = ids[self]!;
          const k = Math.min(3, n - ids.filter((id) => id === selfId).length);
          if (k < 1) return;
          const q = Float32Array.from(keys[self]!);
          const a = back.searchSync(q, { k, excludeIds: [selfId] });
          const b = ds.searchSync(q, { k, excludeIds: [selfId], rowRange: [0, n] });
          if (Array.from(a.neighbors).join() !== Array.from(b.neighbors).join()) fail(`reload searches differ: ${a.neighbors} vs ${b.neighbors}`);
          checkSearch(a, n, selfId, 'reloaded search');
          fs.rmSync(file);
        }),
      );
    } else {
      // let queued work progress: a microtask, a macrotask, or wait for everything
      const w = int(3);
      if (w === 0) await Promise.resolve();
      else if (w === 1) await new Promise((res) => setImmediate(res));
      else await Promise.all(inflight.splice(0));
    }
    if (failures.length) break;
  }
  await Promise.all(inflight.splice(0));
  // Nothing pending: the committed state is the whole model.
  const total = prefixSizes().at(-1)!;
  if (pending !== 0) fail(`${pending} adds still pending`);
  if (ds.size !== total) fail(`final size ${ds.size}, model ${total}`);
  const { ids } = modelRows(total);
  for (let i = 0; i < total; i++) if (ds.idOf(i) !== ids[i]) { fail(`final idOf(${i})`); break; }
  const counts = new Map<string, number>();
  for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
  for (const [id, c] of counts) if (ds.countOf(id) !== c) fail(`final countOf(${id}) = ${ds.countOf(id)}, model ${c}`);
  const file = path.join(tmp, `final-${seed}.rds`);
  await ds.save(file);
  const back = await Datastore.load(file);
  if (back.size !== total || ids.some((id, i) => back.idOf(i) !== id)) fail('final reload differs from the model');
  expect(failures).toEqual([]);
  return stats;
}

describe('Datastore: stress, random interleavings against a model', () => {
  for (const seed of SEEDS) {
    it(`seed ${seed}`, async () => {
      const stats = await runSeed(seed);
      console.log(`stress seed ${seed}: ${JSON.stringify(stats)}`);
      // The interleavings really happened: refused addSyncs mean adds were pending while
      // other operations ran; leave-one-out searches, saves and reloads were checked.
      expect(stats.steps).toBeGreaterThan(50);
      expect(stats.addSyncRefused).toBeGreaterThan(0);
      expect(stats.addSync).toBeGreaterThan(0);
      expect(stats.loo).toBeGreaterThan(10);
      expect(stats.load).toBeGreaterThan(0);
      expect(stats.addBad).toBeGreaterThan(0);
    });
  }
});
