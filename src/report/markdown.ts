import { RapmRangeError, RapmTypeError, describe } from '../errors.js';

/**
 * Markdown pieces for report.md: GitHub-flavoured tables, fixed-precision numbers, signed
 * gains with their interval, and a whole document from titled sections.
 */

export type Align = 'left' | 'right' | 'center';
export type Cell = string | number | boolean | null | undefined;

/**
 * A GitHub-flavoured Markdown table, columns padded so the source reads as a table too.
 * `align` per column; by default columns whose cells are all numbers (or numeric text such as
 * "0.8312" or "+0.0021 [+0.0008, +0.0034]") are right-aligned, the rest left-aligned.
 * Pipes in cells are escaped and line breaks become `<br>`.
 */
export function mdTable(headers: string[], rows: Cell[][], align?: Align[]): string {
  if (!Array.isArray(headers) || headers.length === 0) {
    throw new RapmTypeError('RAPM_TYPE', `Expected non-empty array of column headers but received ${describe(headers)}`);
  }
  if (!Array.isArray(rows)) throw new RapmTypeError('RAPM_TYPE', `Expected array of rows but received ${describe(rows)}`);
  const w = headers.length;
  rows.forEach((r, i) => {
    if (!Array.isArray(r) || r.length > w) {
      throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `Expected rows[${i}] to be an array of at most ${w} cells but received ${describe(r)}`);
    }
  });
  if (align !== undefined && (!Array.isArray(align) || align.length !== w || align.some((a) => a !== 'left' && a !== 'right' && a !== 'center'))) {
    throw new RapmRangeError('RAPM_INVALID_ARG', `Expected ${w} alignments of 'left' | 'right' | 'center' for align but received ${JSON.stringify(align)}`);
  }
  const head = headers.map((h) => mdCell(h));
  const body = rows.map((r) => Array.from({ length: w }, (_, j) => mdCell(r[j])));
  const al: Align[] =
    align ??
    headers.map((_, j) => {
      const cells = rows.map((r) => r[j]).filter((c) => c !== null && c !== undefined && c !== '');
      return cells.length > 0 && cells.every((c) => typeof c === 'number' || (typeof c === 'string' && NUMERIC.test(c))) ? 'right' : 'left';
    });
  const width = headers.map((_, j) => Math.max(3, visualLength(head[j]!), ...body.map((r) => visualLength(r[j]!))));
  const pad = (s: string, j: number): string => {
    const space = ' '.repeat(width[j]! - visualLength(s));
    const a = al[j]!;
    if (a === 'right') return space + s;
    if (a === 'center') {
      const l = Math.floor(space.length / 2);
      return space.slice(0, l) + s + space.slice(l);
    }
    return s + space;
  };
  const rule = width.map((n, j) => {
    const a = al[j]!;
    return a === 'right' ? '-'.repeat(n - 1) + ':' : a === 'center' ? ':' + '-'.repeat(n - 2) + ':' : '-'.repeat(n);
  });
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`;
  return [line(head.map(pad)), line(rule), ...body.map((r) => line(r.map(pad)))].join('\n') + '\n';
}

/** Numeric-looking text: a signed decimal, optionally followed by an interval or unit-free extras. */
const NUMERIC = /^[+\-\u2212]?(\d[\d,]*(\.\d+)?|\.\d+)([eE][+-]?\d+)?%?( \[.*\])?$|^\u2014$/;

function mdCell(v: Cell): string {
  if (v === null || v === undefined) return '';
  return String(v).replace(/\|/g, '\\|').replace(/\r?\n/g, '<br>');
}

/** Code points, so "Δ" or "±" count as one column. */
function visualLength(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

export interface FmtOptions {
  /** Prefix positive values with "+" (zero stays unsigned). */
  sign?: boolean;
}

/**
 * Fixed-point number: `fmtNum(0.83124, 4)` -> "0.8312". Rounding to zero never shows a sign
 * ("-0.0000" becomes "0.0000"); NaN, null and undefined -> "—"; ±Infinity -> "∞" / "-∞".
 */
export function fmtNum(x: number | null | undefined, digits = 4, options: FmtOptions = {}): string {
  if (!Number.isInteger(digits) || digits < 0 || digits > 20) {
    throw new RapmRangeError('RAPM_INVALID_ARG', `Expected integer between 0 and 20 for digits but received ${describe(digits)}`);
  }
  if (x === null || x === undefined || Number.isNaN(x)) return '\u2014';
  if (typeof x !== 'number') throw new RapmTypeError('RAPM_TYPE', `Expected number for x but received ${describe(x)}`);
  if (x === Infinity) return options.sign ? '+\u221e' : '\u221e';
  if (x === -Infinity) return '-\u221e';
  let s = x.toFixed(digits);
  if (/^-0(\.0*)?$/.test(s)) s = s.slice(1);
  if (options.sign && x > 0 && !/^0(\.0*)?$/.test(s)) s = '+' + s;
  return s;
}

/** A gain with its interval, all signed: `fmtInterval(0.0021, 0.0008, 0.0034)` -> "+0.0021 [+0.0008, +0.0034]". */
export function fmtInterval(diff: number, lo: number, hi: number, digits = 4): string {
  const f = (v: number): string => fmtNum(v, digits, { sign: true });
  return `${f(diff)} [${f(lo)}, ${f(hi)}]`;
}

export interface ReportSection {
  heading: string;
  /** Markdown body (tables from mdTable, images as `![alt](fig.svg)`, paragraphs). */
  body: string;
}

export interface ReportDocOptions {
  title: string;
  /** Paragraph(s) under the title, before the first section. */
  intro?: string;
  sections: ReportSection[];
}

/** A Markdown document: `# title`, optional intro, then `## heading` + body per section; ends in one newline. */
export function reportDoc(doc: ReportDocOptions): string {
  if (typeof doc !== 'object' || doc === null) throw new RapmTypeError('RAPM_TYPE', `Expected report object but received ${describe(doc)}`);
  if (typeof doc.title !== 'string') throw new RapmTypeError('RAPM_TYPE', `Expected string for title but received ${describe(doc.title)}`);
  if (!Array.isArray(doc.sections)) throw new RapmTypeError('RAPM_TYPE', `Expected array for sections but received ${describe(doc.sections)}`);
  const oneLine = (s: string): string => s.replace(/\s*\r?\n\s*/g, ' ').trim();
  const parts = [`# ${oneLine(doc.title)}`];
  if (doc.intro && doc.intro.trim()) parts.push(tidy(doc.intro));
  doc.sections.forEach((s, i) => {
    if (typeof s !== 'object' || s === null || typeof s.heading !== 'string' || typeof s.body !== 'string') {
      throw new RapmTypeError('RAPM_TYPE', `Expected { heading: string, body: string } for sections[${i}] but received ${describe(s)}`);
    }
    parts.push(`## ${oneLine(s.heading)}`);
    if (s.body.trim()) parts.push(tidy(s.body));
  });
  return parts.join('\n\n') + '\n';
}

/** Trim trailing spaces per line (keeping Markdown hard breaks of exactly two), CRLF -> LF, and outer blank lines. */
function tidy(body: string): string {
  return body
    .replace(/\r\n?/g, '\n')
    .split('\n')
    .map((l) => (/[^ ] {2}$/.test(l) ? l : l.replace(/[ \t]+$/, '')))
    .join('\n')
    .replace(/^\n+|\n+$/g, '');
}
