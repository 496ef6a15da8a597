import { RapmTypeError, describe } from '../errors.js';

/**
 * RFC 4180 CSV: fields holding a comma, double quote, CR or LF are quoted, with inner quotes
 * doubled; records end in CRLF (including the last one); the first record is the header.
 *
 * Cell values: numbers at full precision (the shortest text that reads back to the same
 * double, so `0.1 + 0.2` -> `0.30000000000000004`), NaN -> `NaN`, ±Infinity -> `Infinity` /
 * `-Infinity` (pandas and R read all three); null/undefined -> empty; bigint and boolean as
 * text; Date as ISO 8601; arrays, typed arrays and plain objects as JSON.
 */

export interface CsvOptions {
  /** Record separator: '\r\n' (RFC 4180, default) or '\n'. */
  eol?: '\r\n' | '\n';
}

/**
 * Rows to CSV text. `columns` picks and orders the columns; by default every key that
 * appears in any row, in order of first appearance. A column a row lacks is an empty field.
 */
export function toCsv(rows: Record<string, unknown>[], columns?: string[], options: CsvOptions = {}): string {
  if (!Array.isArray(rows)) throw new RapmTypeError('RAPM_TYPE', `Expected array of row objects for rows but received ${describe(rows)}`);
  rows.forEach((r, i) => {
    if (typeof r !== 'object' || r === null || Array.isArray(r)) {
      throw new RapmTypeError('RAPM_TYPE', `Expected object for rows[${i}] but received ${describe(r)}`);
    }
  });
  if (columns !== undefined && (!Array.isArray(columns) || columns.some((c) => typeof c !== 'string'))) {
    throw new RapmTypeError('RAPM_TYPE', `Expected array of strings for columns but received ${describe(columns)}`);
  }
  const eol = options.eol ?? '\r\n';
  const cols = columns ?? inferColumns(rows);
  const lines = [cols.map(csvField).join(',')];
  for (const r of rows) lines.push(cols.map((c) => csvField(cellText(Object.hasOwn(r, c) ? r[c] : undefined))).join(','));
  return lines.join(eol) + eol;
}

/** Keys of all rows, in order of first appearance. */
export function inferColumns(rows: Record<string, unknown>[]): string[] {
  const seen = new Set<string>();
  for (const r of rows) for (const k of Object.keys(r)) seen.add(k);
  return [...seen];
}

/** Quote one field when RFC 4180 requires it. */
export function csvField(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The text of one cell value (before quoting). */
export function cellText(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return Object.is(v, -0) ? '0' : String(v);
  if (typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? '' : v.toISOString();
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
    return JSON.stringify(Array.from(v as unknown as ArrayLike<number | bigint>, (x) => (typeof x === 'bigint' ? x.toString() : x)));
  }
  try {
    return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x)) ?? '';
  } catch {
    return String(v);
  }
}
