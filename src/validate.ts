import { RapmRangeError, RapmTypeError, describe, invalidParam } from './errors.js';

/** Small type guards in the style of sharp's lib/is.js. */
export const is = {
  defined: <T>(v: T | undefined | null): v is T => v !== undefined && v !== null,
  object: (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v),
  number: (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v),
  integer: (v: unknown): v is number => Number.isInteger(v),
  inRange: (v: number, lo: number, hi: number): boolean => v >= lo && v <= hi,
  string: (v: unknown): v is string => typeof v === 'string' && v.length > 0,
  bool: (v: unknown): v is boolean => typeof v === 'boolean',
  float32: (v: unknown): v is Float32Array => v instanceof Float32Array,
  int32: (v: unknown): v is Int32Array => v instanceof Int32Array,
  inArray: <T>(v: unknown, list: readonly T[]): v is T => list.includes(v as T),
};

/** An integer in [lo, hi]; throws TypeError / RangeError naming `name`. */
export function checkInteger(name: string, v: unknown, lo: number, hi = Number.MAX_SAFE_INTEGER): number {
  if (!is.integer(v) || !is.inRange(v as number, lo, hi)) {
    const range = hi === Number.MAX_SAFE_INTEGER ? `>= ${lo}` : `between ${lo} and ${hi}`;
    throw invalidParam(name, `integer ${range}`, v);
  }
  return v as number;
}

/** A finite number, strictly above `lo` when `exclusive`. */
export function checkPositive(name: string, v: unknown): number {
  if (typeof v !== 'number') throw invalidParam(name, 'finite number > 0', v);
  if (!Number.isFinite(v) || v <= 0) throw new RapmRangeError('RAPM_INVALID_ARG', `Expected finite number > 0 for ${name} but received ${describe(v)}`);
  return v;
}

/**
 * A Float32Array holding a row-major matrix with `cols` columns. Returns its row count.
 * `rows` (if given) must match.
 */
export function checkMatrix(name: string, v: unknown, cols: number, rows?: number): number {
  if (!(v instanceof Float32Array)) {
    throw new RapmTypeError('RAPM_TYPE', `Expected Float32Array for ${name} but received ${describe(v)}`);
  }
  if (rows !== undefined) {
    if (v.length !== rows * cols) {
      throw new RapmRangeError(
        'RAPM_SHAPE_MISMATCH',
        `Expected ${name} of length ${rows * cols} ([${rows}, ${cols}]) but received length ${v.length}`,
      );
    }
    return rows;
  }
  if (v.length === 0 || v.length % cols !== 0) {
    throw new RapmRangeError(
      'RAPM_SHAPE_MISMATCH',
      `Expected ${name} to hold whole rows of ${cols} values but received length ${v.length}` +
        (v.length === 0 ? ' (empty)' : ` (${(v.length / cols).toFixed(2)} rows)`),
    );
  }
  return v.length / cols;
}

/** Throw naming the first non-finite value of a [rows, cols] matrix by row and column (rows before `firstRow` are not read). */
export function checkFinite(name: string, m: Float32Array, cols: number, firstRow = 0): void {
  for (let i = firstRow * cols; i < m.length; i++) {
    const x = m[i]!;
    if (x - x !== 0) {
      const row = Math.floor(i / cols);
      throw new RapmRangeError(
        'RAPM_NON_FINITE',
        `Expected finite values in ${name} but row ${row}, column ${i % cols} is ${String(x)}`,
      );
    }
  }
}

/** A list of distinct integer indices, each in [0, limit). */
export function checkIndexList(name: string, v: unknown, limit: number): Int32Array {
  if (!(Array.isArray(v) || v instanceof Int32Array || v instanceof Uint32Array)) {
    throw invalidParam(name, 'array of integer indices', v);
  }
  const arr = Array.from(v as ArrayLike<number>);
  if (arr.length === 0) throw new RapmRangeError('RAPM_INVALID_ARG', `Expected a non-empty index list for ${name}`);
  const seen = new Set<number>();
  arr.forEach((x, i) => {
    if (!Number.isInteger(x) || x < 0 || x >= limit) {
      throw new RapmRangeError(
        'RAPM_INVALID_ARG',
        `Expected ${name}[${i}] to be an integer between 0 and ${limit - 1} but received ${describe(x)}`,
      );
    }
    if (seen.has(x)) throw new RapmRangeError('RAPM_INVALID_ARG', `Expected distinct indices in ${name} but ${x} repeats (at position ${i})`);
    seen.add(x);
  });
  return Int32Array.from(arr);
}

/** Edit distance (Levenshtein), for "did you mean". */
export function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j]!;
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length]!;
}

/** The closest flag of `flags` to `unknown` (within a third of its length, at least 2 edits), or null. */
/** The name of `names` closest to `unknown` (a likely misspelling), or null when none is close. */
export function closestName(unknown: string, flags: readonly string[]): string | null {
  let best: string | null = null;
  let bestD = Infinity;
  for (const f of flags) {
    const d = editDistance(unknown, f);
    if (d < bestD) {
      bestD = d;
      best = f;
    }
  }
  return best !== null && bestD <= Math.max(2, Math.floor(unknown.length / 3)) ? best : null;
}

/**
 * Refuse keys of an options object that nothing reads (a misspelt `{ K: 5 }` or `precison`
 * would otherwise be ignored and the default used), naming the key, the closest known one
 * and `where`. Keys whose value is undefined are let through (spread objects carry them).
 */
export function checkKnownKeys(where: string, o: object, known: readonly string[]): void {
  for (const key of Object.keys(o)) {
    if (known.includes(key) || (o as Record<string, unknown>)[key] === undefined) continue;
    const near = closestName(key, known);
    throw new RapmRangeError(
      'RAPM_INVALID_ARG',
      `Unknown option '${key}' for ${where}${near ? ` (did you mean '${near}'?)` : ''}; expected ${known.map((k) => `'${k}'`).join(', ')}`,
    );
  }
}
