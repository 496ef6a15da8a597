import { describe, expect, it } from 'vitest';
import { Datastore } from '../../src/retrieval/datastore.js';
import { IncrementalPriors } from '../../src/retrieval/priors.js';
import { maxRelErr } from '../helpers/compare.js';
import { randn } from '../helpers/random.js';

describe('IncrementalPriors', () => {
  const d = 12, dv = 4, k = 9;
  it('chunk-by-chunk updates equal a full leave-one-out search at every step', async () => {
    const n = 700;
    const keys = randn(n * d, 1), values = randn(n * dv, 2);
    // Duplicated utterances: ids repeat, so leave-one-out must drop every copy.
    const ids = Array.from({ length: n }, (_, i) => `u${i % 600}`);
    const ds = new Datastore({ keyDim: d, valueDim: dv });
    const inc = new IncrementalPriors(ds, { k, tau: 0.05, aggregate: 'softmax' });
    const cuts = [0, 100, 130, 400, 700];
    for (let c = 0; c + 1 < cuts.length; c++) {
      const [s, e] = [cuts[c]!, cuts[c + 1]!];
      await ds.add(keys.subarray(s * d, e * d), values.subarray(s * dv, e * dv), ids.slice(s, e));
      await inc.update({ en: keys.subarray(s * d, e * d), ids: ids.slice(s, e) });
      const got = inc.priors(values);
      const want = ds.searchSync(keys.subarray(0, e * d), { k, tau: 0.05, excludeIds: ids.slice(0, e) });
      expect(Array.from(got.neighbors)).toEqual(Array.from(want.neighbors));
      expect(maxRelErr(got.prior, want.prior)).toBeLessThan(1e-5);
      for (let q = 0; q < e; q++) {
        for (const r of got.neighbors.subarray(q * k, q * k + k)) expect(ids[r]).not.toBe(ids[q]);
      }
    }
  });

  it('equal answers whatever the search block size (several blocks per update: merges overlap the next search)', async () => {
    const n = 700;
    const keys = randn(n * d, 21), values = randn(n * dv, 22);
    const ids = Array.from({ length: n }, (_, i) => `u${i % 650}`);
    const ds = new Datastore({ keyDim: d, valueDim: dv });
    const runs = [1000, 64, 37].map((blockRows) => new IncrementalPriors(ds, { k, tau: 0.05, aggregate: 'softmax', blockRows }));
    const cuts = [0, 150, 300, 420, 700];
    for (let c = 0; c + 1 < cuts.length; c++) {
      const [s, e] = [cuts[c]!, cuts[c + 1]!];
      await ds.add(keys.subarray(s * d, e * d), values.subarray(s * dv, e * dv), ids.slice(s, e));
      const got = [];
      for (const inc of runs) {
        await inc.update({ en: keys.subarray(s * d, e * d), ids: ids.slice(s, e) });
        got.push(inc.priors(values));
      }
      const want = ds.searchSync(keys.subarray(0, e * d), { k, tau: 0.05, excludeIds: ids.slice(0, e) });
      for (const g of got) {
        expect(Array.from(g.neighbors)).toEqual(Array.from(want.neighbors));
        expect(Array.from(g.prior)).toEqual(Array.from(got[0]!.prior));
      }
    }
    expect(() => new IncrementalPriors(ds, { k, tau: 0.05, aggregate: 'softmax', blockRows: 0 })).toThrow(/blockRows/);
    // Options are checked at construction, like a search's, and a key nothing reads is refused.
    expect(() => new IncrementalPriors(ds, { k, tau: 0.05, aggregate: 'softmax', leaveOnOut: false } as never)).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG', message: expect.stringMatching(/'leaveOnOut' for new IncrementalPriors \(did you mean 'leaveOneOut'\?\)/) }));
    expect(() => new IncrementalPriors(ds, { k: 0, tau: 0.05, aggregate: 'softmax' })).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG' }));
    expect(() => new IncrementalPriors(ds, { k, tau: 0.05, aggregate: 'softmax', leaveOneOut: 'no' as never })).toThrow(expect.objectContaining({ code: 'RAPM_TYPE' }));
  });

  it('leaky mode finds each query itself first', async () => {
    const n = 50, keys = randn(n * d, 3), values = randn(n * dv, 4);
    const ids = Array.from({ length: n }, (_, i) => `x${i}`);
    const ds = new Datastore({ keyDim: d, valueDim: dv });
    await ds.add(keys, values, ids);
    const inc = new IncrementalPriors(ds, { k: 3, tau: 0.05, aggregate: 'softmax', leaveOneOut: false });
    await inc.update({ en: keys, ids });
    const { neighbors } = inc.priors(values);
    for (let q = 0; q < n; q++) expect(neighbors[q * 3]).toBe(q);
  });
});
