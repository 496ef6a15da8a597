import { RapmRangeError, describe } from '../errors.js';

/** Feature dimension of the EN and ES vectors (mean-pooled HuBERT-large layer 24). */
export const FEATURE_DIM = 1024;

/**
 * The 103 English "winner" dimensions (R-APM system description, `winners.json`):
 * the keys of Config B. Order as published (it is the column order of Config B keys).
 */
export const ENGLISH_WINNERS: readonly number[] = Object.freeze([
  0, 2, 41, 54, 63, 67, 102, 155, 159, 172, 173, 193, 197, 248, 261, 280,
  286, 350, 358, 431, 459, 482, 488, 528, 603, 616, 618, 707, 708, 715, 717, 731,
  792, 799, 804, 809, 824, 828, 870, 878, 880, 900, 903, 959, 45, 113, 120, 121,
  204, 206, 246, 269, 411, 453, 510, 559, 602, 656, 666, 929, 972, 973, 1013, 1016,
  13, 17, 105, 134, 136, 185, 188, 474, 578, 622, 651, 882, 925, 162, 410, 577,
  628, 750, 758, 866, 869, 952, 963, 965, 50, 168, 436, 470, 513, 527, 557, 660,
  732, 514, 661, 694, 698, 935, 937,
]);

/**
 * The 101 Spanish "winner" dimensions: the prediction target. Order as published
 * (it is the column order of every 101-dim prior, prediction and target).
 */
export const SPANISH_WINNERS: readonly number[] = Object.freeze([
  41, 48, 67, 85, 151, 226, 227, 261, 346, 347, 354, 357, 411, 415, 440, 448,
  463, 468, 474, 510, 518, 528, 530, 585, 603, 609, 614, 618, 665, 703, 705, 732,
  736, 792, 793, 814, 830, 835, 852, 858, 864, 895, 900, 906, 912, 915, 937, 971,
  977, 1020, 1023, 174, 177, 206, 245, 249, 266, 397, 490, 494, 666, 689, 815, 861,
  81, 208, 280, 398, 407, 409, 525, 533, 926, 927, 117, 287, 384, 655, 656, 809,
  887, 897, 31, 36, 112, 231, 232, 472, 807, 881, 932, 944, 1004, 62, 63, 115,
  155, 551, 682, 946, 1007,
]);

/** Config A: keys are all 1024 EN dims. Config B: keys are the 103 ENGLISH_WINNERS. */
export type KeyConfig = 'A' | 'B';

const ALL_DIMS: readonly number[] = Object.freeze(Array.from({ length: FEATURE_DIM }, (_, i) => i));

/** The EN key indices of a retrieval config: 'A' -> 0..1023, 'B' -> ENGLISH_WINNERS. */
export function keyIndices(config: KeyConfig): readonly number[] {
  if (config === 'A') return ALL_DIMS;
  if (config === 'B') return ENGLISH_WINNERS;
  throw new RapmRangeError('RAPM_INVALID_ARG', `Expected 'A' or 'B' for config but received ${describe(config)}`);
}

/** The ES value indices (always SPANISH_WINNERS). */
export function valueIndices(): readonly number[] {
  return SPANISH_WINNERS;
}

/** `d` a positive integer that divides the length of `m`: the row width of a row-major matrix. */
function checkWidth(what: string, m: Float32Array, d: number): number {
  if (!Number.isInteger(d) || d < 1) throw new RapmRangeError('RAPM_INVALID_ARG', `Expected a positive integer for d (the row width of ${what}) but received ${describe(d)}`);
  if (m.length % d !== 0) throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `Expected ${what} to hold whole rows of ${d} values but it holds ${m.length}`);
  return m.length / d;
}

/** Every `idx[j]` an integer in [0, limit): RAPM_INVALID_ARG naming the first bad entry and its position. */
function checkIndexList(name: string, idx: ArrayLike<number>, limit: number, of: string): void {
  for (let j = 0; j < idx.length; j++) {
    const v = idx[j];
    if (!Number.isInteger(v) || v! < 0 || v! >= limit) {
      throw new RapmRangeError('RAPM_INVALID_ARG', `Expected ${name}[${j}] to be an integer between 0 and ${limit - 1} (${of}) but received ${describe(v)}`);
    }
  }
}

/** Gather columns `idx` of a row-major [n, d] matrix into a new [n, idx.length] matrix. Every index must be an integer in [0, d). */
export function selectColumns(m: Float32Array /* [n, d] */, d: number, idx: ArrayLike<number>): Float32Array /* [n, idx.length] */ {
  const n = checkWidth('the matrix', m, d);
  checkIndexList('idx', idx, d, `a column of the ${d}-wide matrix`);
  const w = idx.length;
  const out = new Float32Array(n * w);
  for (let r = 0; r < n; r++) {
    const src = r * d;
    const dst = r * w;
    for (let j = 0; j < w; j++) out[dst + j] = m[src + idx[j]!]!;
  }
  return out;
}

/** Gather rows `rows` of a row-major [n, d] matrix into a new [rows.length, d] matrix. Every row must be an integer in [0, n). */
export function pickRows(m: Float32Array /* [n, d] */, d: number, rows: ArrayLike<number>): Float32Array /* [rows.length, d] */ {
  const n = checkWidth('the matrix', m, d);
  checkIndexList('rows', rows, n, `a row of the ${n}-row matrix`);
  const out = new Float32Array(rows.length * d);
  for (let i = 0; i < rows.length; i++) out.set(m.subarray(rows[i]! * d, (rows[i]! + 1) * d), i * d);
  return out;
}
