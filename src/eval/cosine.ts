import { RapmRangeError } from '../errors.js';

/** Cosine similarity of each row pair of two [n, d] matrices; 0 where a row has zero norm. */
export function rowCosines(pred: Float32Array, target: Float32Array, d: number): Float64Array {
  if (pred.length !== target.length || pred.length % d !== 0) {
    throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `Expected two [n, ${d}] matrices of equal length but received ${pred.length} and ${target.length}`);
  }
  const n = pred.length / d;
  const out = new Float64Array(n);
  for (let r = 0; r < n; r++) {
    let dot = 0, pp = 0, tt = 0;
    const o = r * d;
    for (let j = 0; j < d; j++) {
      const p = pred[o + j]!, t = target[o + j]!;
      dot += p * t;
      pp += p * p;
      tt += t * t;
    }
    out[r] = pp > 0 && tt > 0 ? dot / Math.sqrt(pp * tt) : 0;
  }
  return out;
}

export function mean(xs: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i]!;
  return xs.length ? s / xs.length : Number.NaN;
}

/** Mean row cosine: the R-APM metric. */
export function meanCosine(pred: Float32Array, target: Float32Array, d: number): number {
  return mean(rowCosines(pred, target, d));
}
