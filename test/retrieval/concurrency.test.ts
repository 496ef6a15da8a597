/**
 * Row metadata under concurrency: the rows a search can see, their ids and their exclusion
 * groups are committed together (issue 10, items 1 and 3).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Datastore } from '../../src/retrieval/datastore.js';
import { randn } from '../helpers/random.js';

const d = 16, dv = 3;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-conc-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function thrown(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected a throw');
}

describe('Datastore: addSync while an add() is pending', () => {
  it('is refused with RAPM_STATE and leaves ids, groups, exclusion and save/load intact', async () => {
    const ds = new Datastore({ keyDim: d, valueDim: dv });
    const m = 2000;
    const k1 = randn(m * d, 1), v1 = randn(m * dv, 2), ids1 = Array.from({ length: m }, (_, i) => `a${i}`);
    const k2 = randn(10 * d, 3), v2 = randn(10 * dv, 4), ids2 = Array.from({ length: 10 }, (_, i) => `b${i}`);
    const pending = ds.add(k1, v1, ids1);
    await Promise.resolve();
    await Promise.resolve();
    const e = thrown(() => ds.addSync(k2, v2, ids2));
    expect(e.code).toBe('RAPM_STATE');
    expect(e.message).toMatch(/add\(\) is pending/);
    await pending;
    ds.addSync(k2, v2, ids2); // accepted once nothing is pending
    expect(ds.size).toBe(m + 10);
    for (let r = 0; r < m; r++) expect(ds.idOf(r)).toBe(ids1[r]);
    for (let r = 0; r < 10; r++) expect(ds.idOf(m + r)).toBe(ids2[r]);
    // Leave-one-out by id never returns the query's own row.
    const q = k1.subarray(0, 5 * d);
    const res = ds.searchSync(q, { k: 3, excludeIds: ids1.slice(0, 5) });
    for (let i = 0; i < 5; i++) expect(Array.from(res.neighbors.subarray(i * 3, i * 3 + 3))).not.toContain(i);
    // Excluding a second-batch id hides only that row.
    const q2 = k2.subarray(0, d);
    expect(ds.searchSync(q2, { k: 1 }).neighbors[0]).toBe(m);
    const ex = ds.searchSync(q2, { k: m + 9, excludeIds: ['b0'] });
    expect(ex.neighbors.length).toBe(m + 9);
    expect(Array.from(ex.neighbors)).not.toContain(m);
    // Save and reload: same ids, no group disagreement.
    const f = path.join(tmp, 'pending.rds');
    await ds.save(f);
    const back = await Datastore.load(f);
    expect(back.size).toBe(m + 10);
    expect(back.idOf(m + 3)).toBe('b3');
  });
});

describe('Datastore: a search during add() sees committed rows only', () => {
  it('size, neighbours, idOf and excludeRows ignore rows whose add has not committed', async () => {
    const ds = new Datastore({ keyDim: d, valueDim: dv });
    const n0 = 50, m = 20000;
    const k0 = randn(n0 * d, 5);
    ds.addSync(k0, randn(n0 * dv, 6), Array.from({ length: n0 }, (_, i) => `u${i}`));
    const bytes0 = ds.memoryBytes;
    const big = randn(m * d, 7);
    const pending = ds.add(big, randn(m * dv, 8), Array.from({ length: m }, (_, i) => `v${i}`));
    for (let i = 0; i < 3; i++) await Promise.resolve(); // the queued add reaches the native side
    // Block the JS thread until the native append has stored the rows (memoryBytes grows):
    // the add() promise cannot settle meanwhile, so this is the window between "rows stored"
    // and "metadata committed".
    const t0 = Date.now();
    while (ds.memoryBytes === bytes0 && Date.now() - t0 < 20_000) {
      /* spin */
    }
    expect(ds.memoryBytes).toBeGreaterThan(bytes0); // the window was reached
    expect(ds.size).toBe(n0);
    // A query equal to a pending row: its nearest committed neighbour, never the pending row.
    const q = big.subarray(0, d);
    const res = ds.searchSync(q, { k: n0 });
    for (const r of res.neighbors) {
      expect(r).toBeLessThan(n0);
      expect(ds.idOf(r)).toMatch(/^u/);
    }
    // excludeRows [size - 1] refers to the last committed row (and only its group).
    const last = ds.searchSync(k0.subarray((n0 - 1) * d, n0 * d), { k: n0 - 1, excludeRows: [ds.size - 1] });
    expect(Array.from(last.neighbors)).not.toContain(n0 - 1);
    expect(new Set(last.neighbors).size).toBe(n0 - 1);
    await pending;
    expect(ds.size).toBe(n0 + m);
    expect(ds.searchSync(q, { k: 1 }).neighbors[0]).toBe(n0);
    expect(ds.idOf(n0)).toBe('v0');
  });
});
