import { describe, expect, it } from 'vitest';
import { readAhead } from '../../src/experiments/progressive-sources.js';

/** A source that records when each item's read starts and can fail at one item. */
function source(n: number, log: string[], failAt = -1): AsyncGenerator<number> {
  return (async function* () {
    try {
      for (let i = 0; i < n; i++) {
        log.push(`read ${i}`);
        await new Promise((r) => setTimeout(r, 5));
        if (i === failAt) throw new Error(`bad chunk ${i}`);
        yield i;
      }
    } finally {
      log.push('closed');
    }
  })();
}

describe('readAhead (the progressive loop reads the next chunk while a step runs)', () => {
  it('yields the same items in order, and starts reading item i+1 before item i is processed', async () => {
    const log: string[] = [];
    for await (const x of readAhead(source(4, log))) {
      log.push(`step ${x}`);
      await new Promise((r) => setTimeout(r, 20)); // the step's work: the next read runs meanwhile
      log.push(`step ${x} done`);
    }
    expect(log.filter((l) => /^step \d$/.test(l))).toEqual(['step 0', 'step 1', 'step 2', 'step 3']);
    // Without read-ahead, read i+1 would start only after step i is done.
    for (let i = 0; i < 3; i++) expect(log.indexOf(`read ${i + 1}`)).toBeLessThan(log.indexOf(`step ${i} done`));
    expect(log).toContain('closed');
  });

  it('an error of a chunk read ahead surfaces when the loop asks for that chunk, not before', async () => {
    const log: string[] = [];
    const seen: number[] = [];
    await expect(async () => {
      for await (const x of readAhead(source(5, log, 2))) seen.push(x);
    }).rejects.toThrow('bad chunk 2');
    expect(seen).toEqual([0, 1]);
  });

  it('a loop that stops early closes the source and leaves no unhandled rejection', async () => {
    const log: string[] = [];
    for await (const x of readAhead(source(5, log, 1))) {
      if (x === 0) break; // item 1 (read ahead) fails, but the loop never asks for it
    }
    expect(log.at(-1)).toBe('closed');
  });
});
