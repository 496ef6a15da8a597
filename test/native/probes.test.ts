// The lower-bound probes behind bench:retrieval's "x bound" (native/addon.cpp): a peak that is
// a positive finite number, and a clear error instead of a hang or a zero peak on bad input.
import { describe, expect, it } from 'vitest';
import { loadBinding } from '../../src/native/binding.js';

describe('_fmaPeak', () => {
  const b = loadBinding();

  it('reports a positive, finite FP32 FMA peak from a short probe', () => {
    const peak = b._fmaPeak(0.05);
    expect(Number.isFinite(peak)).toBe(true);
    expect(peak).toBeGreaterThan(1); // GFLOP/s: any CPU that runs this does far more than 1
  });

  it('refuses a duration that would hang (Infinity) or time nothing (NaN, 0, negative, over 60 s)', () => {
    // Infinity last: without the check the probe never returns, so the others fail first.
    for (const bad of [Number.NaN, 0, -1, 61, Infinity]) {
      expect(() => b._fmaPeak(bad), String(bad)).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG', message: expect.stringContaining('seconds') }));
    }
    expect(() => b._fmaPeak('1' as unknown as number)).toThrow(expect.objectContaining({ code: 'RAPM_TYPE' }));
  });
});
