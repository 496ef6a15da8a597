import { describe, expect, it } from 'vitest';
import { fmtInterval, fmtNum, mdTable, reportDoc } from '../../src/report/markdown.js';

describe('mdTable', () => {
  it('pads columns and right-aligns numeric ones by default', () => {
    const t = mdTable(
      ['Datastore', 'n', 'Gain (95% CI)'],
      [
        ['2K', 578, fmtInterval(-0.0004, -0.0016, 0.0008)],
        ['200K', 578, fmtInterval(0.0021, 0.0008, 0.0034)],
      ],
    );
    expect(t).toBe(
      [
        '| Datastore |   n |              Gain (95% CI) |',
        '| --------- | --: | -------------------------: |',
        '| 2K        | 578 | -0.0004 [-0.0016, +0.0008] |',
        '| 200K      | 578 | +0.0021 [+0.0008, +0.0034] |',
        '',
      ].join('\n'),
    );
  });

  it('honours explicit alignment, escapes pipes and line breaks, fills short rows', () => {
    const t = mdTable(['a', 'b', 'c'], [['x|y', 'l1\nl2'], [null, undefined, 1.5]], ['center', 'left', 'right']);
    expect(t).toBe(
      [
        '|  a   | b        |   c |',
        '| :--: | -------- | --: |',
        '| x\\|y | l1<br>l2 |     |',
        '|      |          | 1.5 |',
        '',
      ].join('\n'),
    );
  });

  it('rejects malformed input', () => {
    expect(() => mdTable([], [])).toThrow(expect.objectContaining({ code: 'RAPM_TYPE' }));
    expect(() => mdTable(['a'], [['1', '2']])).toThrow(expect.objectContaining({ code: 'RAPM_SHAPE_MISMATCH' }));
    expect(() => mdTable(['a', 'b'], [], ['left'])).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG' }));
    expect(() => mdTable(['a'], [], ['middle' as 'left'])).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG' }));
  });
});

describe('number formatting', () => {
  it('fmtNum: fixed digits, no negative zero, dashes for missing values', () => {
    expect(fmtNum(0.83124, 4)).toBe('0.8312');
    expect(fmtNum(0.83125, 2)).toBe('0.83');
    expect(fmtNum(1234.5, 0)).toBe('1235');
    expect(fmtNum(-0.00001, 4)).toBe('0.0000');
    expect(fmtNum(-0, 2)).toBe('0.00');
    expect(fmtNum(0.0021, 4, { sign: true })).toBe('+0.0021');
    expect(fmtNum(0.00001, 4, { sign: true })).toBe('0.0000');
    expect(fmtNum(-0.0021, 4, { sign: true })).toBe('-0.0021');
    expect(fmtNum(Number.NaN)).toBe('\u2014');
    expect(fmtNum(null)).toBe('\u2014');
    expect(fmtNum(undefined)).toBe('\u2014');
    expect(fmtNum(Infinity)).toBe('\u221e');
    expect(fmtNum(-Infinity)).toBe('-\u221e');
    expect(fmtNum(0.5)).toBe('0.5000');
    expect(() => fmtNum(1, -1)).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG' }));
    expect(() => fmtNum(1, 2.5)).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG' }));
    expect(() => fmtNum('1' as unknown as number)).toThrow(expect.objectContaining({ code: 'RAPM_TYPE' }));
  });

  it('fmtInterval: a signed gain and its signed interval', () => {
    expect(fmtInterval(0.0021, 0.0008, 0.0034, 4)).toBe('+0.0021 [+0.0008, +0.0034]');
    expect(fmtInterval(-0.0004, -0.0016, 0.0008)).toBe('-0.0004 [-0.0016, +0.0008]');
    expect(fmtInterval(0.012345, 0.01, 0.015, 3)).toBe('+0.012 [+0.010, +0.015]');
  });
});

describe('reportDoc', () => {
  it('assembles a title, intro and sections with one blank line between blocks', () => {
    const doc = reportDoc({
      title: 'Progressive run\n(seed 7)',
      intro: 'Data hash `abc`.  \nCode 0.1.0.\n\n',
      sections: [
        { heading: 'Gains', body: '\n' + mdTable(['n', 'gain'], [[578, '+0.0021']]) + '\n\n' },
        { heading: 'Figure', body: '![gain](gain.svg)   ' },
        { heading: 'Empty', body: '  ' },
      ],
    });
    expect(doc).toBe(
      [
        '# Progressive run (seed 7)',
        '',
        'Data hash `abc`.  ',
        'Code 0.1.0.',
        '',
        '## Gains',
        '',
        '|   n |    gain |',
        '| --: | ------: |',
        '| 578 | +0.0021 |',
        '',
        '## Figure',
        '',
        '![gain](gain.svg)',
        '',
        '## Empty',
        '',
      ].join('\n'),
    );
  });

  it('rejects malformed documents', () => {
    expect(() => reportDoc({ title: 1 as unknown as string, sections: [] })).toThrow(expect.objectContaining({ code: 'RAPM_TYPE' }));
    expect(() => reportDoc({ title: 't', sections: [{ heading: 'h' } as never] })).toThrow(/sections\[0\]/);
    expect(reportDoc({ title: 't', sections: [] })).toBe('# t\n');
  });
});
