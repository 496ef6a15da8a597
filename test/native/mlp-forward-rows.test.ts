import { describe, expect, it } from 'vitest';
import { baselineSpec, fusionSpec, initParams, paramLayout } from '../../src/fusion/layout.js';
import { nativeForward, nativeForwardRows, nativeMlpBackend } from '../../src/fusion/native-mlp.js';
import { gatherInput, scoreRows, scoreRowsAsync, type MlpData } from '../../src/fusion/train.js';
import { randn } from '../helpers/random.js';

// nativeForwardRows: inference off the JS thread on rows read in place (validation and fit-row
// scoring of the training seeds). It must give the bits of nativeForward on the rows copied out.
const bits = (a: Float32Array | Float64Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

function trainedLike(layout: ReturnType<typeof paramLayout>, seed: number): Float32Array {
  // initParams zero-initialises the last layer (fusion): perturb every weight so the net's output is not just the prior.
  const p = initParams(layout, seed);
  const noise = randn(p.length, seed + 100);
  for (let i = 0; i < p.length; i++) p[i] = p[i]! + 0.02 * noise[i]!;
  return p;
}

describe('nativeForwardRows (inference on rows read in place, off the JS thread)', () => {
  for (const kind of ['fusion', 'baseline'] as const) {
    it(`${kind}: equals nativeForward on the gathered rows, bit for bit, for any thread count, row order and repeat`, async () => {
      const layout = paramLayout(kind === 'fusion' ? fusionSpec() : baselineSpec());
      const n = 300;
      const d: MlpData = { en: randn(n * 1024, 3), prior: kind === 'fusion' ? randn(n * 101, 4) : null, target: randn(n * 101, 5) };
      const params = trainedLike(layout, 7);
      // 201 rows: several 64-row chunks and a short last one; descending with a repeat.
      const rows = Int32Array.from({ length: 201 }, (_, i) => (i === 200 ? 5 : n - 1 - i));
      const x = new Float32Array(rows.length * layout.inputDim);
      const res = kind === 'fusion' ? new Float32Array(rows.length * 101) : null;
      gatherInput(layout, d, rows, x, res, null);
      const want = nativeForward(layout, params, x, res);
      for (const threads of [0, 1, 2, 3]) {
        const got = await nativeForwardRows(layout, params, d, rows, { threads });
        expect(bits(got).equals(bits(want))).toBe(true);
      }
      // rows null: every row in order.
      const all = await nativeForwardRows(layout, params, d, null, { threads: 1 });
      const xa = new Float32Array(n * layout.inputDim);
      const ra = kind === 'fusion' ? new Float32Array(n * 101) : null;
      gatherInput(layout, d, Int32Array.from({ length: n }, (_, i) => i), xa, ra, null);
      expect(bits(all).equals(bits(nativeForward(layout, params, xa, ra)))).toBe(true);
      // scoreRowsAsync (the trainer's validation scoring) equals the synchronous scoreRows.
      expect(bits(await scoreRowsAsync(nativeMlpBackend, layout, params, d, rows, 1)).equals(bits(scoreRows(nativeMlpBackend, layout, params, d, rows)))).toBe(true);
    }, 60_000);
  }

  it('bad input is a coded error: NaN / Infinity named by matrix and source row, rows out of range, wrong kinds', async () => {
    const layout = paramLayout(fusionSpec());
    const params = trainedLike(layout, 1);
    const d: MlpData = { en: randn(80 * 1024, 8), prior: randn(80 * 101, 9), target: randn(80 * 101, 10) };
    const badEn = { ...d, en: d.en.slice() };
    badEn.en[61 * 1024 + 1000] = Number.NaN;
    await expect(nativeForwardRows(layout, params, badEn, Int32Array.from([3, 61, 70]), { threads: 1 })).rejects.toMatchObject({ code: 'RAPM_NON_FINITE', row: 61, message: expect.stringMatching(/en/) });
    const badPrior = { ...d, prior: d.prior!.slice() };
    badPrior.prior[44 * 101 + 100] = Number.NEGATIVE_INFINITY;
    // Two bad rows in different chunks: the first in row order is reported.
    badPrior.prior[79 * 101] = Number.POSITIVE_INFINITY;
    await expect(nativeForwardRows(layout, params, badPrior, null, { threads: 2 })).rejects.toMatchObject({ code: 'RAPM_NON_FINITE', row: 44, message: expect.stringMatching(/prior/) });
    // Not among the rows read: no error.
    await expect(nativeForwardRows(layout, params, badPrior, Int32Array.from([0, 1]), {})).resolves.toHaveLength(2 * 101);
    await expect(nativeForwardRows(layout, params, d, Int32Array.from([0, 80]), {})).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG' });
    await expect(nativeForwardRows(layout, params, d, Int32Array.from([-1]), {})).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG' });
    await expect(nativeForwardRows(layout, params, { en: d.en, prior: null }, null, {})).rejects.toMatchObject({ code: 'RAPM_TYPE' });
    await expect(nativeForwardRows(layout, params, d, [1, 2] as unknown as Int32Array, {})).rejects.toMatchObject({ code: 'RAPM_TYPE' });
    await expect(nativeForwardRows(layout, params, d, null, { threads: -1 })).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG' });
    await expect(nativeForwardRows(layout, params, d, null, { out: new Float32Array(3) })).rejects.toMatchObject({ code: 'RAPM_SHAPE_MISMATCH' });
  });
});
