import { describe, expect, it, vi, afterEach } from 'vitest';
import { progress, progressBars } from '../../src/cli/progress.js';
import { clampSizes } from '../../src/experiments/sweeps.js';

function sink(): { stream: NodeJS.WriteStream; text: () => string } {
  const parts: string[] = [];
  const stream = { isTTY: false, write: (s: string) => (parts.push(s), true) } as unknown as NodeJS.WriteStream;
  return { stream, text: () => parts.join('') };
}

describe('progress', () => {
  afterEach(() => vi.useRealTimers());

  it('elapsed runs from the task start; the ETA from the rate seen since the first report', () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const s = sink();
    const p = progress('job', { stream: s.stream, start: 1_000_000 - 10_000 }); // the task began 10 s ago
    p.update(50, 100); // first report: half done already, no rate yet
    vi.setSystemTime(1_000_000 + 5_000);
    p.update(60, 100); // 10 units in 5 s -> 40 left = 20 s
    const lines = s.text().trim().split('\n');
    expect(lines[0]).toBe('job:  50% 50/100 10.0s elapsed');
    expect(lines[1]).toBe('job:  60% 60/100 15.0s elapsed, ETA 20.0s');
  });

  it('bars close once, a closing report after the last step is not a second bar, labels are not doubled', () => {
    const s = sink();
    const bar = progressBars(false, s.stream);
    bar('train: fusion training (<= 2 epochs)', 10, 20);
    bar('train: fusion training (<= 2 epochs)', 20, 20);
    bar('train: fusion training (<= 2 epochs)', 20, 20);
    const out = s.text();
    expect(out.match(/done in/g)).toHaveLength(1);
    expect(out).not.toMatch(/(\w+): \1/);
  });

  it('--quiet writes nothing', () => {
    const write = vi.spyOn(process.stderr, 'write');
    try {
      const bar = progressBars(true);
      bar('x', 1, 2);
      bar('x', 2, 2);
      expect(write).not.toHaveBeenCalled();
    } finally {
      write.mockRestore();
    }
  });
});

describe('sizes larger than the pool', () => {
  it('are capped with a warning naming them, never silently', () => {
    const warn = vi.fn();
    expect(clampSizes([50, 5000, 200], 100, warn)).toEqual([50, 100]);
    expect(warn).toHaveBeenCalledWith(expect.stringMatching(/sizes 5000, 200 exceed the 100 training pairs/));
    const quiet = vi.fn();
    clampSizes([50], 100, quiet);
    expect(quiet).not.toHaveBeenCalled();
  });
});
