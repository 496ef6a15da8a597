// IncrementalPriors.update() calls that overlap, and the k check of a search bounded by rowRange
// with leave-one-out exclusions (the hostile-use sweep of the library API, round 13).
import { describe, expect, it } from 'vitest';
import { Datastore } from '../../src/retrieval/datastore.js';
import { IncrementalPriors } from '../../src/retrieval/priors.js';
import { randn } from '../helpers/random.js';

const d = 8, dv = 3;

async function store(n: number, seed: number, ids?: string[]): Promise<{ ds: Datastore; keys: Float32Array; values: Float32Array; ids: string[] }> {
  const keys = randn(n * d, seed), values = randn(n * dv, seed + 1);
  const rowIds = ids ?? Array.from({ length: n }, (_, i) => `u${i}`);
  const ds = new Datastore({ keyDim: d, valueDim: dv });
  await ds.add(keys, values, rowIds);
  return { ds, keys, values, ids: rowIds };
}

describe('IncrementalPriors: overlapping update() calls', () => {
  it('run one after another: the lists equal one full leave-one-out search (no duplicated neighbours)', async () => {
    const { ds, keys, values, ids } = await store(20, 1);
    const ip = new IncrementalPriors(ds, { k: 4, tau: 0.1, aggregate: 'softmax' });
    await ip.update({ en: keys, ids });
    const more = randn(8 * d, 9), moreValues = randn(8 * dv, 10), moreIds = Array.from({ length: 8 }, (_, i) => `v${i}`);
    await ds.add(more, moreValues, moreIds);
    await Promise.all([ip.update(), ip.update()]);
    const got = ip.priors(new Float32Array([...values, ...moreValues]));
    const want = await ds.search(keys, { k: 4, tau: 0.1, excludeIds: ids });
    expect(Array.from(got.neighbors)).toEqual(Array.from(want.neighbors));
    for (let q = 0; q < 20; q++) expect(new Set(got.neighbors.subarray(q * 4, q * 4 + 4)).size).toBe(4);
  });

  it('two updates that each add queries: both land, in call order, as the same calls awaited one by one', async () => {
    const a = await store(30, 3);
    const b = await store(30, 3);
    const split = (s: { keys: Float32Array; ids: string[] }, r0: number, r1: number) => ({ en: s.keys.slice(r0 * d, r1 * d), ids: s.ids.slice(r0, r1) });
    const ipA = new IncrementalPriors(a.ds, { k: 3, tau: 0.1, aggregate: 'softmax' });
    await Promise.all([ipA.update(split(a, 0, 12)), ipA.update(split(a, 12, 30))]);
    const ipB = new IncrementalPriors(b.ds, { k: 3, tau: 0.1, aggregate: 'softmax' });
    await ipB.update(split(b, 0, 12));
    await ipB.update(split(b, 12, 30));
    expect(ipA.size).toBe(30);
    const pa = ipA.priors(a.values), pb = ipB.priors(b.values);
    expect(Array.from(pa.neighbors)).toEqual(Array.from(pb.neighbors));
    expect(Array.from(pa.prior)).toEqual(Array.from(pb.prior));
  });

  it('priors() while an update is pending is refused (RAPM_STATE), not read half merged', async () => {
    const { ds, keys, values, ids } = await store(20, 5);
    const ip = new IncrementalPriors(ds, { k: 2, tau: 0.1, aggregate: 'softmax' });
    const p = ip.update({ en: keys, ids });
    expect(() => ip.priors(values)).toThrow(expect.objectContaining({ code: 'RAPM_STATE' }));
    await p;
    expect(ip.priors(values).neighbors.length).toBe(40);
  });

  it('appending k rows or fewer to a leave-one-out set is searched, not refused', async () => {
    const { ds, keys, values, ids } = await store(12, 7);
    const ip = new IncrementalPriors(ds, { k: 4, tau: 0.1, aggregate: 'softmax' });
    await ip.update({ en: keys, ids });
    const more = randn(3 * d, 8), moreValues = randn(3 * dv, 9);
    await ds.add(more, moreValues, ['w0', 'w1', 'w2']);
    await ip.update();
    const got = ip.priors(new Float32Array([...values, ...moreValues]));
    const want = await ds.search(keys, { k: 4, tau: 0.1, excludeIds: ids });
    expect(Array.from(got.neighbors)).toEqual(Array.from(want.neighbors));
  });
});

describe('IncrementalPriors: the query arrays it keeps', () => {
  it('a newQueries.en transferred after its update() is reported at the next update (RAPM_STATE), not read as 0 rows', async () => {
    const { ds, keys, ids } = await store(20, 21);
    const ip = new IncrementalPriors(ds, { k: 3, tau: 0.1, aggregate: 'softmax' });
    const en = keys.slice();
    await ip.update({ en, ids });
    structuredClone(en.buffer, { transfer: [en.buffer] });
    expect(en.length).toBe(0); // detached
    await ds.add(randn(4 * d, 22), randn(4 * dv, 23), ['x0', 'x1', 'x2', 'x3']);
    await expect(ip.update()).rejects.toMatchObject({ code: 'RAPM_STATE', message: expect.stringMatching(/update\(\) call 1 .*20 rows.*transferred or resized/) });
  });
});

describe('search: rowRange with exclusions', () => {
  it('counts only the excluded rows inside the range when checking k', async () => {
    // Utterance 'u' has rows 0-3; rows 4-9 are other utterances. A search of [4, 10) excluding 'u'
    // sees all 6 rows, so k = 6 is valid (it was refused as "k <= 2").
    const ids = ['u', 'u', 'u', 'u', 'a', 'b', 'c', 'd', 'e', 'f'];
    const { ds, keys } = await store(10, 11, ids);
    const q = keys.slice(0, d);
    const r = await ds.search(q, { k: 6, tau: 0.1, rowRange: [4, 10], excludeIds: ['u'] });
    expect(Array.from(r.neighbors).sort((x, y) => x - y)).toEqual([4, 5, 6, 7, 8, 9]);
    // Rows of 'u' inside the range do count: [2, 10) holds 8 rows, 2 of them 'u'.
    await expect(ds.search(q, { k: 7, tau: 0.1, rowRange: [2, 10], excludeIds: ['u'] })).rejects.toThrow(/Expected k <= 6 but received k = 7: rowRange holds 8 rows and query 0 excludes 2 of them/);
    expect((await ds.search(q, { k: 6, tau: 0.1, rowRange: [2, 10], excludeIds: ['u'] })).neighbors.every((v) => v >= 4)).toBe(true);
  });

  it('refuses an excludeIds entry that is not an id, null or undefined, naming it', async () => {
    const { ds, keys } = await store(10, 13);
    await expect(ds.search(keys.slice(0, 2 * d), { k: 2, tau: 0.1, excludeIds: ['u1', 5 as never] })).rejects.toThrow(/excludeIds\[1\]/);
    expect(() => ds.searchSync(keys.slice(0, d), { k: 2, tau: 0.1, excludeIds: [{} as never] })).toThrow(/excludeIds\[0\]/);
  });
});
