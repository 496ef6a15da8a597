import { describe, expect, it } from 'vitest';
import { ENGLISH_WINNERS, SPANISH_WINNERS, keyIndices, pickRows, selectColumns, valueIndices } from '../../src/data/indices.js';

const m = Float32Array.from({ length: 2 * 1024 }, (_, i) => i);

describe('selectColumns', () => {
  it('gathers the given columns of every row', () => {
    expect(Array.from(selectColumns(m, 1024, [3, 0, 1023]))).toEqual([3, 0, 1023, 1027, 1024, 2047]);
    expect(selectColumns(m, 1024, ENGLISH_WINNERS)).toHaveLength(2 * 103);
  });

  it('refuses an index outside [0, width) or not an integer, naming the entry and its position', () => {
    for (const [idx, pos, shown] of [
      [[1030], 0, '1030'],
      [[5, -1], 1, '-1'],
      [[5, 6, 1.5], 2, '1.5'],
      [[NaN], 0, 'NaN'],
      [[1024], 0, '1024'],
    ] as const) {
      expect(() => selectColumns(m, 1024, idx)).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG', message: expect.stringContaining(`idx[${pos}] to be an integer between 0 and 1023`) }));
      expect(() => selectColumns(m, 1024, idx)).toThrow(new RegExp(`but received number ${shown.replace('.', '\\.')}`));
    }
    expect(() => selectColumns(m, 1024, [1030, -1, 1.5])).toThrow(/idx\[0\]/);
  });

  it('refuses a width that is not a positive integer dividing the matrix length', () => {
    expect(() => selectColumns(m, 0, [0])).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG' }));
    expect(() => selectColumns(m, 1000, [0])).toThrow(expect.objectContaining({ code: 'RAPM_SHAPE_MISMATCH' }));
  });
});

describe('pickRows', () => {
  it('gathers rows, and refuses a row outside [0, n) or not an integer', () => {
    expect(Array.from(pickRows(m, 1024, [1, 0])).slice(0, 2)).toEqual([1024, 1025]);
    expect(() => pickRows(m, 1024, [0, 2])).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG', message: expect.stringContaining('rows[1] to be an integer between 0 and 1') }));
    expect(() => pickRows(m, 1024, [0.5])).toThrow(/rows\[0\]/);
    expect(() => pickRows(m, 1024, [-1])).toThrow(/rows\[0\]/);
  });
});

describe('keyIndices / valueIndices', () => {
  it('are the published dims and refuse an unknown config', () => {
    expect(keyIndices('A')).toHaveLength(1024);
    expect(keyIndices('B')).toBe(ENGLISH_WINNERS);
    expect(valueIndices()).toBe(SPANISH_WINNERS);
    expect(() => keyIndices('C' as 'A')).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG' }));
  });
});
