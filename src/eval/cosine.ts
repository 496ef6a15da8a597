import { RapmRangeError, invalidParam } from '../errors.js';
import { checkInteger } from '../validate.js';

/**
 * Cosine similarity of each row pair of two [n, d] matrices; 0 where a row has zero norm; a row
 * holding NaN or Infinity is refused (RAPM_NON_FINITE naming it: it scored 0 silently). With
 * `targetRows`, row r of pred is paired with row targetRows[r] of target (the same numbers as
 * copying those target rows out first). `d` is a positive integer dividing both lengths, and each
 * targetRows entry an integer row number of target: anything else is a coded error naming it
 * (a fractional d or row used to read misaligned rows, and d = -1 threw a bare RangeError).
 */
export function rowCosines(pred: Float32Array, target: Float32Array, d: number, targetRows: ArrayLike<number> | null = null): Float64Array { // pred [n, d], target [m, d]
  if (!(pred instanceof Float32Array)) throw invalidParam('pred', 'Float32Array', pred);
  if (!(target instanceof Float32Array)) throw invalidParam('target', 'Float32Array', target);
  checkInteger('d', d, 1);
  if (targetRows !== null && (typeof targetRows !== 'object' || typeof targetRows.length !== 'number')) throw invalidParam('targetRows', 'array of row numbers or null', targetRows);
  if (targetRows ? pred.length !== targetRows.length * d || target.length % d !== 0 : pred.length !== target.length || pred.length % d !== 0) {
    throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `Expected two [n, ${d}] matrices of equal length but received ${pred.length} and ${targetRows ? `${targetRows.length} rows of ${target.length}` : target.length}`);
  }
  const n = pred.length / d;
  const out = new Float64Array(n);
  for (let r = 0; r < n; r++) {
    let dot = 0, pp = 0, tt = 0;
    const o = r * d;
    const row = targetRows ? targetRows[r]! : r;
    const ot = row * d;
    if (!(Number.isInteger(row) && row >= 0 && ot + d <= target.length)) throw new RapmRangeError('RAPM_INVALID_ARG', `Expected targetRows[${r}] to be a row of target (${target.length / d} rows) but received ${targetRows![r]}`);
    for (let j = 0; j < d; j++) {
      const p = pred[o + j]!, t = target[ot + j]!;
      dot += p * t;
      pp += p * p;
      tt += t * t;
    }
    // A NaN or infinite value would score 0 (NaN > 0 is false) or NaN: refused, naming the row.
    if (!Number.isFinite(pp)) throw new RapmRangeError('RAPM_NON_FINITE', `Expected finite values but pred row ${r} holds a NaN or infinite value`);
    if (!Number.isFinite(tt)) throw new RapmRangeError('RAPM_NON_FINITE', `Expected finite values but target row ${row} holds a NaN or infinite value`);
    out[r] = pp > 0 && tt > 0 ? dot / (Math.sqrt(pp) * Math.sqrt(tt)) : 0;
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
