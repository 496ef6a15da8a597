import { describe, expect, it } from 'vitest';
import { cellText, csvField, toCsv } from '../../src/report/csv.js';

/** A minimal RFC 4180 reader, to check that what toCsv writes reads back field for field. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let i = 0;
  let quoted = false;
  while (i < text.length) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') (field += '"'), (i += 2);
      else if (c === '"') (quoted = false), i++;
      else (field += c), i++;
    } else if (c === '"' && field === '') (quoted = true), i++;
    else if (c === ',') row.push(field), (field = ''), i++;
    else if (c === '\r' && text[i + 1] === '\n') row.push(field), rows.push(row), (row = []), (field = ''), (i += 2);
    else (field += c), i++;
  }
  if (field !== '' || row.length) throw new Error('missing final CRLF');
  return rows;
}

describe('toCsv', () => {
  it('writes a header and CRLF-terminated records with RFC 4180 quoting', () => {
    const csv = toCsv([
      { name: 'plain', note: 'a,b' },
      { name: 'quote "x"', note: 'line1\nline2' },
      { name: 'cr\r', note: '' },
    ]);
    expect(csv).toBe('name,note\r\nplain,"a,b"\r\n"quote ""x""","line1\nline2"\r\n"cr\r",\r\n');
    expect(parseCsv(csv)).toEqual([
      ['name', 'note'],
      ['plain', 'a,b'],
      ['quote "x"', 'line1\nline2'],
      ['cr\r', ''],
    ]);
  });

  it('keeps numbers at full precision and reads them back exactly', () => {
    const values = [0.1 + 0.2, 1e-7, 123456789012345680000, -0.0021, 0.8312345678901234, 5e-324, 2 ** 53 + 2, Math.PI];
    const csv = toCsv(values.map((v) => ({ v })));
    const back = parseCsv(csv).slice(1).map((r) => Number(r[0]));
    expect(back).toEqual(values);
    expect(csv).toContain('0.30000000000000004');
    expect(toCsv([{ a: Number.NaN, b: Infinity, c: -Infinity, d: -0 }])).toBe('a,b,c,d\r\nNaN,Infinity,-Infinity,0\r\n');
  });

  it('selects and orders columns; by default takes every key in order of first appearance', () => {
    const rows = [{ k: 70, tau: 0.05 }, { k: 10, seed: 3 }];
    expect(toCsv(rows)).toBe('k,tau,seed\r\n70,0.05,\r\n10,,3\r\n');
    expect(toCsv(rows, ['seed', 'k', 'missing'])).toBe('seed,k,missing\r\n,70,\r\n3,10,\r\n');
    expect(toCsv([], ['a', 'b'])).toBe('a,b\r\n');
    expect(toCsv([])).toBe('\r\n');
    expect(toCsv([{ 'a,b': 1 }])).toBe('"a,b"\r\n1\r\n');
    expect(toCsv(rows, undefined, { eol: '\n' })).toBe('k,tau,seed\n70,0.05,\n10,,3\n');
  });

  it('writes other value kinds predictably', () => {
    expect(cellText(null)).toBe('');
    expect(cellText(undefined)).toBe('');
    expect(cellText(true)).toBe('true');
    expect(cellText(12345678901234567890n)).toBe('12345678901234567890');
    expect(cellText(new Date(Date.UTC(2024, 0, 2, 3, 4, 5)))).toBe('2024-01-02T03:04:05.000Z');
    expect(cellText(new Float32Array([0.5, 1]))).toBe('[0.5,1]');
    expect(cellText([1, 'a'])).toBe('[1,"a"]');
    expect(cellText({ k: 70, big: 1n })).toBe('{"k":70,"big":"1"}');
    const row = { cfg: { name: 'A "full"', dims: [1024] } };
    const csv = toCsv([row]);
    expect(parseCsv(csv)[1]![0]).toBe('{"name":"A \\"full\\"","dims":[1024]}');
    expect(csvField('x')).toBe('x');
    expect(csvField(' x ')).toBe(' x '); // spaces are part of the field (RFC 4180)
  });

  it('ignores inherited keys and rejects non-row input', () => {
    const proto = { inherited: 1 };
    const row = Object.assign(Object.create(proto) as Record<string, unknown>, { own: 2 });
    expect(toCsv([row], ['own', 'inherited'])).toBe('own,inherited\r\n2,\r\n');
    expect(() => toCsv('x' as unknown as [])).toThrow(expect.objectContaining({ code: 'RAPM_TYPE' }));
    expect(() => toCsv([1] as unknown as [])).toThrow(/rows\[0\]/);
    expect(() => toCsv([{}], [1] as unknown as string[])).toThrow(expect.objectContaining({ code: 'RAPM_TYPE' }));
  });
});
