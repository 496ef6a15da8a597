/**
 * The settings schema pins the native layer's limits: at each boundary the schema and the
 * addon agree (accepted inside, refused outside), for dropout, learning rate, k and tau.
 */
import { describe, expect, it } from 'vitest';
import { encodeMlpSpec } from '../src/fusion/native-mlp.js';
import { fusionSpec, paramLayout } from '../src/fusion/layout.js';
import { loadBinding } from '../src/native/binding.js';
import { SEARCH_DEFAULTS } from '../src/retrieval/search-options.js';
import { TRAIN_DEFAULTS } from '../src/fusion/train.js';
import { PROGRESSIVE_DEFAULTS } from '../src/experiments/progressive.js';
import { DROPOUT_MAX, K_MAX, LR_MAX, SETTINGS, SettingError, TAU_MAX, TAU_MIN, checkSetting } from '../src/settings.js';

const accepts = (key: keyof typeof SETTINGS, v: unknown) => expect(() => SETTINGS[key].check(v)).not.toThrow();
const refuses = (key: keyof typeof SETTINGS, v: unknown) => expect(() => SETTINGS[key].check(v)).toThrow(SettingError);

describe('native limits = schema limits', () => {
  const b = loadBinding();
  const layout = paramLayout(fusionSpec({ enDim: 6, outDim: 3, hidden: [5] }));
  const spec = encodeMlpSpec(layout);
  const rows = 4;
  const step = (lr: number, dropout: number) => () =>
    b.mlpTrainStep(spec, new Float32Array(layout.size).fill(0.01), new Float32Array(layout.size), new Float32Array(layout.size), 1, lr, 0, new Float32Array(rows * layout.inputDim).fill(0.5), new Float32Array(rows * 3).fill(0.2), new Float32Array(rows * 3).fill(0.3), dropout, 0);
  const nativeRefuses = (f: () => unknown) => expect(f).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG' }));

  it('dropout: [0, DROPOUT_MAX]', () => {
    for (const p of [0, DROPOUT_MAX]) {
      accepts('dropout', p);
      expect(Number.isFinite(step(1e-3, p)())).toBe(true);
    }
    for (const p of [-1e-9, DROPOUT_MAX + 1e-9]) {
      refuses('dropout', p);
      nativeRefuses(step(1e-3, p));
    }
  });

  it('learning rate: (0, LR_MAX]', () => {
    for (const lr of [Number.MIN_VALUE, LR_MAX]) {
      accepts('lr', lr);
      expect(Number.isFinite(step(lr, 0)())).toBe(true);
    }
    for (const lr of [0, LR_MAX + 1e-9]) {
      refuses('lr', lr);
      nativeRefuses(step(lr, 0));
    }
  });

  // A 3-row datastore: d 4, dv 2.
  const ds = new b.Datastore(4, 2, false);
  ds.addSync(Float32Array.from([1, 0, 0, 0, 0.9, 0.1, 0, 0, 0, 1, 0, 0]), Float32Array.from([1, 2, 3, 4, 5, 6]), Int32Array.from([0, 1, 2]), 3);
  const q = Float32Array.from([1, 0.05, 0, 0]);
  // Output arrays sized for at most 3 neighbours: the native side checks k (range, then k <= rows)
  // before the output lengths, so a huge k never needs a huge allocation here.
  const search = (k: number, tau: number) => {
    const m = Math.min(Math.max(k, 1), 3);
    const out = { prior: new Float32Array(2), neighbors: new Int32Array(m), weights: new Float32Array(m), sims: new Float32Array(m) };
    ds.searchSync(q, 1, k, tau, 0, null, out.prior, out.neighbors, out.weights, out.sims);
    return out;
  };

  it('k: [1, K_MAX] (and k <= rows at run time)', () => {
    accepts('k', 1);
    accepts('k', K_MAX);
    refuses('k', 0);
    refuses('k', K_MAX + 1);
    refuses('k', 1.5);
    expect(search(1, 0.04).neighbors[0]).toBe(0);
    nativeRefuses(() => search(0, 0.04));
    nativeRefuses(() => search(K_MAX + 1, 0.04));
    // Inside the range but above the rows: refused as too large, not as out of range.
    expect(() => search(K_MAX, 0.04)).toThrow(expect.objectContaining({ code: 'RAPM_K_TOO_LARGE' }));
  });

  it('tau: [TAU_MIN, TAU_MAX]; the weights stay finite at both ends', () => {
    for (const tau of [TAU_MIN, TAU_MAX]) {
      accepts('tau', tau);
      const r = search(3, tau);
      for (const w of r.weights) expect(Number.isFinite(w)).toBe(true);
      expect(r.weights.reduce((a, c) => a + c, 0)).toBeCloseTo(1, 5);
      for (const v of r.prior) expect(Number.isFinite(v)).toBe(true);
    }
    // TAU_MIN: all weight on the best row; TAU_MAX: uniform.
    expect(search(3, TAU_MIN).weights[0]).toBe(1);
    expect(Array.from(search(3, TAU_MAX).weights)).toEqual([1 / 3, 1 / 3, 1 / 3].map(Math.fround));
    // 1e-46 rounds to 0 in float32, 1e-39 is subnormal (0 under flush-to-zero): both refused.
    expect(Math.fround(1e-46)).toBe(0);
    for (const tau of [1e-46, 1e-39, TAU_MIN * 0.99, 0, -1, TAU_MAX * 1.01, Infinity, NaN]) {
      refuses('tau', tau);
      nativeRefuses(() => search(3, tau));
    }
  });
});

describe('one default per setting', () => {
  it('library defaults come from the schema', () => {
    expect(SEARCH_DEFAULTS).toEqual({ k: SETTINGS.k.default, tau: SETTINGS.tau.default, aggregate: SETTINGS.aggregate.default });
    expect(TRAIN_DEFAULTS).toMatchObject({ epochs: 100, patience: 5, seed: 1, batchSize: 32, lr: 1e-3, weightDecay: 1e-4 });
    expect(PROGRESSIVE_DEFAULTS).toMatchObject({ k: 90, patience: 5, seed: 1, hidden: [256, 128], dropout: 0.1, resamples: 2000 });
  });

  it('library errors name the key, CLI errors the flag', () => {
    expect(() => checkSetting('batchSize', 0)).toThrow(/^batchSize must be an integer in \[1, 65536\], got 0$/);
    expect(() => SETTINGS.batchSize.check('0', 'cli')).toThrow(/^--batch-size must be an integer in \[1, 65536\], got '0'$/);
    expect(checkSetting('k', undefined)).toBe(90);
    expect(SETTINGS.hidden.check('512, 256', 'cli')).toEqual([512, 256]);
    expect(() => SETTINGS.hidden.check('512,0', 'cli')).toThrow(/--hidden/);
  });
});

describe('checkSetting with a key that is not a setting (untyped callers)', () => {
  it('throws RAPM_INVALID_ARG naming the key and the closest setting, not a bare TypeError', async () => {
    const { checkSetting } = await import('../src/settings.js');
    expect(() => checkSetting('tua' as never, 1)).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG', message: expect.stringMatching(/Unknown setting 'tua' \(did you mean 'tau'\?\)/) }));
    expect(() => checkSetting('__proto__' as never, 1)).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG' }));
  });
});
