import { describe, expect, it } from 'vitest';
import { splitFitValByIds, subsetMlp } from '../../src/experiments/evaluate.js';
import { trainFusionSeeds } from '../../src/experiments/train-seeds.js';
import { fusionSpec, paramLayout } from '../../src/fusion/layout.js';
import { nativeMlpBackend } from '../../src/fusion/native-mlp.js';
import { checkMlpData, scoreRows, trainMlp, type MlpBackend, type MlpData } from '../../src/fusion/train.js';
import { rowCosines } from '../../src/eval/cosine.js';
import { randn } from '../helpers/random.js';

// The training seeds of a point read their fit / validation rows in place from one shared matrix
// (SeedJob fitRows / valRows, trainMlp trainRows / valRows) instead of copies of them: the nets and
// every score must be the same, bit for bit, as on the copies (subsetMlp).

const DV = 101;
const n = 260;
const data: MlpData = { en: randn(n * 1024, 1), prior: randn(n * DV, 2), target: randn(n * DV, 3) };
const ids = Array.from({ length: n }, (_, i) => `s${i % 7}_c${i % 3}_${i}`);
const spec = fusionSpec({ dropout: 0.1 });
const opts = { epochs: 3, patience: 3, batchSize: 32, lr: 1e-3, weightDecay: 1e-4 };
const bits = (a: Float32Array | Float64Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const splits = [0, 1, 2].map((s) => splitFitValByIds(ids, 0.2, 5 + s));

describe('training seeds on row lists of one shared matrix', () => {
  it('trainFusionSeeds on fitRows / valRows equals training on copies of those rows, bit for bit', async () => {
    const copies = await trainFusionSeeds(nativeMlpBackend, spec, splits.map((sp, s) => ({ seed: 11 + s, fit: subsetMlp(data, sp.fit, 1024, DV), val: subsetMlp(data, sp.val, 1024, DV) })), opts);
    const shared = await trainFusionSeeds(nativeMlpBackend, spec, splits.map((sp, s) => ({ seed: 11 + s, fit: data, val: data, fitRows: sp.fit, valRows: sp.val })), opts);
    shared.results.forEach((r, s) => {
      const want = copies.results[s]!;
      expect(bits(r.params).equals(bits(want.params))).toBe(true);
      expect(r.initialValCosine).toBe(want.initialValCosine);
      expect(r.history.map((e) => [e.trainLoss, e.valCosine, e.best])).toEqual(want.history.map((e) => [e.trainLoss, e.valCosine, e.best]));
      expect(r.history.length).toBe(3);
    });
    expect(shared.samplesPerSecond).toBeGreaterThan(0);
  }, 60_000);

  it('the per-minibatch trainer (a backend without trainEpoch) and scoreRows take the same row lists', async () => {
    const perStep: MlpBackend = { trainStep: nativeMlpBackend.trainStep, forward: nativeMlpBackend.forward };
    const sp = splits[1]!;
    const a = await trainMlp(perStep, spec, data, data, { ...opts, seed: 4, trainRows: sp.fit, valRows: sp.val });
    const b = await trainMlp(perStep, spec, subsetMlp(data, sp.fit, 1024, DV), subsetMlp(data, sp.val, 1024, DV), { ...opts, seed: 4 });
    expect(bits(a.params).equals(bits(b.params))).toBe(true);
    // Rows in any order (here reversed, with a repeat): the scores of exactly those rows, in that order.
    const rows = Int32Array.from([...sp.fit].reverse().concat([sp.fit[0]!]));
    const got = scoreRows(nativeMlpBackend, a.layout, a.params, data, rows);
    const want = scoreRows(nativeMlpBackend, a.layout, a.params, subsetMlp(data, rows, 1024, DV));
    expect(bits(got).equals(bits(want))).toBe(true);
    const plain = rowCosines(subsetMlp(data, rows, 1024, DV).prior!, subsetMlp(data, rows, 1024, DV).target, DV);
    expect(bits(rowCosines(subsetMlp(data, rows, 1024, DV).prior!, data.target, DV, rows)).equals(bits(plain))).toBe(true);
  }, 60_000);

  it('bad input is still refused with a coded error naming the matrix, the row list or the row', async () => {
    const bad: MlpData = { ...data, en: data.en.slice() };
    bad.en[37 * 1024 + 5] = Number.NaN;
    const job = (d: MlpData, fitRows: Int32Array | null = splits[0]!.fit) => [{ seed: 1, fit: d, val: d, fitRows, valRows: splits[0]!.val }];
    // Validated once, before any net trains, even when the bad row is not one this seed fits on.
    await expect(trainFusionSeeds(nativeMlpBackend, spec, job(bad), opts)).rejects.toMatchObject({ code: 'RAPM_NON_FINITE', message: expect.stringMatching(/train\.en but row 37, column 5/) });
    await expect(trainFusionSeeds(nativeMlpBackend, spec, job(data, Int32Array.from([0, n])), opts)).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG', message: expect.stringMatching(/trainRows\[1\]/) });
    await expect(trainMlp(nativeMlpBackend, spec, data, data, { ...opts, valRows: new Int32Array(0) })).rejects.toMatchObject({ code: 'RAPM_SHAPE_MISMATCH' });
    await expect(trainMlp(nativeMlpBackend, spec, data, data, { ...opts, trainRows: [1, 2] as unknown as Int32Array })).rejects.toMatchObject({ code: 'RAPM_TYPE' });
    await expect(trainMlp(nativeMlpBackend, spec, bad, data, { ...opts, trainRows: Int32Array.from([0, 1]) })).rejects.toMatchObject({ code: 'RAPM_NON_FINITE' });
    expect(() => rowCosines(new Float32Array(2 * DV), data.target, DV, [0, n])).toThrow(/targetRows\[1\]/);
  });

  it('a training set that only grows is validated once: checkMlpData reads rows from checkedRows on (priors in full), naming absolute rows', () => {
    const layout = paramLayout(spec);
    const bad: MlpData = { en: data.en.slice(), prior: data.prior!.slice(), target: data.target.slice() };
    bad.en[3 * 1024] = Number.NaN; // an old row: validated at an earlier step, not read again
    expect(checkMlpData('train', bad, layout, 5)).toBe(n);
    expect(() => checkMlpData('train', bad, layout, 0)).toThrow(/train\.en but row 3, column 0/);
    bad.target[7 * DV + 2] = Number.POSITIVE_INFINITY; // a new row
    expect(() => checkMlpData('train', bad, layout, 5)).toThrow(/train\.target but row 7, column 2 is Infinity/);
    const prior = data.prior!.slice();
    prior[1 * DV] = Number.NaN;
    const badPrior: MlpData = { ...data, prior }; // priors change every step: always read
    expect(() => checkMlpData('train', badPrior, layout, n)).toThrow(/train\.prior but row 1, column 0/); // priors change every step: always read
  }, 60_000);
});
