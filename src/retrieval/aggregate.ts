/**
 * The aggregation used in production (priors, ANN search) and by the test oracle
 * (reference.ts): softmax(sim / tau) | uniform | one-hot weights over the K neighbours.
 * The maximum is subtracted before exp, so every exponent is <= 0 and the weights are finite
 * for every tau the settings schema accepts (src/settings.ts TAU_MIN..TAU_MAX).
 */
export type Aggregate = 'softmax' | 'mean' | 'top1';

/** Weights over K similarities sorted best first, into `out` (length K). */
export function aggregateWeights(sims: ArrayLike<number>, tau: number, aggregate: Aggregate, out: Float32Array): void {
  const k = sims.length;
  if (aggregate === 'mean') {
    out.fill(1 / k);
    return;
  }
  if (aggregate === 'top1') {
    out.fill(0);
    out[0] = 1;
    return;
  }
  // The largest, not sims[0]: callers of priorFromNeighbors pass other engines' lists, which
  // need not be sorted, and exp((s - sims[0]) / tau) overflowed to Infinity / Infinity = NaN.
  let m = sims[0]!;
  for (let i = 1; i < k; i++) if (sims[i]! > m) m = sims[i]!;
  let z = 0;
  for (let i = 0; i < k; i++) {
    const e = Math.exp((sims[i]! - m) / tau);
    out[i] = e;
    z += e;
  }
  for (let i = 0; i < k; i++) out[i] = out[i]! / z;
}
