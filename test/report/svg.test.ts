import { describe, expect, it } from 'vitest';
import {
  escapeXml,
  formatTick,
  lineChart,
  linearScale,
  linearTicks,
  logScale,
  logTicks,
  niceDomain,
  niceStep,
  type LineChartOptions,
} from '../../src/report/svg.js';

/**
 * A small well-formedness check (no DOMParser in Node): the document is exactly a sequence of
 * tags with double-quoted attributes and text without '<', '>' or bare '&'; tags nest properly;
 * one root <svg> with the SVG namespace.
 */
function checkWellFormed(svg: string): { tags: string[] } {
  const tagRe = /<(\/?)([A-Za-z][\w:.-]*)((?:\s+[A-Za-z_:][\w:.-]*="[^"<]*")*)\s*(\/?)>/y;
  const stack: string[] = [];
  const tags: string[] = [];
  let i = 0;
  let roots = 0;
  while (i < svg.length) {
    if (svg[i] === '<') {
      tagRe.lastIndex = i;
      const m = tagRe.exec(svg);
      if (!m) throw new Error(`malformed tag at ${i}: ${svg.slice(i, i + 60)}`);
      const [, close, name, attrs, selfClose] = m;
      if (close) {
        const open = stack.pop();
        if (open !== name) throw new Error(`</${name}> closes <${open}> at ${i}`);
      } else {
        if (stack.length === 0) roots++;
        tags.push(name!);
        for (const a of attrs!.matchAll(/="([^"]*)"/g)) checkText(a[1]!, i);
        if (!selfClose) stack.push(name!);
      }
      i += m[0].length;
    } else {
      const j = svg.indexOf('<', i);
      const text = svg.slice(i, j < 0 ? svg.length : j);
      if (stack.length === 0 && text.trim()) throw new Error(`text outside the root: ${text}`);
      checkText(text, i);
      i = j < 0 ? svg.length : j;
    }
  }
  if (stack.length) throw new Error(`unclosed <${stack.join('>, <')}>`);
  if (roots !== 1 || tags[0] !== 'svg') throw new Error('expected a single <svg> root');
  if (!/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/.test(svg)) throw new Error('missing xmlns');
  return { tags };
}

function checkText(t: string, at: number): void {
  if (/[<>]/.test(t)) throw new Error(`unescaped < or > at ${at}: ${t}`);
  if (/&(?!(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/.test(t)) throw new Error(`bare & at ${at}: ${t}`);
}

const count = (s: string, sub: string): number => s.split(sub).length - 1;

const sizes = [2316, 5000, 10000, 20000, 50000, 100000, 200000];
function gainChart(extra: Partial<LineChartOptions> = {}): LineChartOptions {
  return {
    title: 'Fusion gain vs datastore size',
    xLabel: 'Datastore size (pairs)',
    yLabel: 'Δ mean cosine',
    xLog: true,
    yZeroLine: true,
    hLines: [{ y: 0.001, label: '+0.001 threshold' }],
    series: [
      { name: 'Config A', points: sizes.map((x, i) => ({ x, y: 0.0003 * i - 0.0004, lo: 0.0003 * i - 0.0012, hi: 0.0003 * i + 0.0004 })) },
      { name: 'Config B', dashed: true, points: sizes.map((x, i) => ({ x, y: 0.0002 * i })) },
    ],
    ...extra,
  };
}

describe('ticks', () => {
  it('picks 1-2-5 steps', () => {
    expect(niceStep(1, 5)).toBe(0.2);
    expect(niceStep(10, 5)).toBe(2);
    expect(niceStep(0.001, 5)).toBeCloseTo(0.0002, 18);
    expect(niceStep(0.0046, 5)).toBe(0.001);
    expect(niceStep(700, 5)).toBe(100);
    expect(niceStep(0, 5)).toBe(1);
  });

  it('gives exact linear ticks, also for small values', () => {
    expect(linearTicks(0, 1, 5)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(linearTicks(0, 0.001, 5)).toEqual([0, 0.0002, 0.0004, 0.0006, 0.0008, 0.001]);
    expect(linearTicks(-0.0016, 0.003, 5)).toEqual([-0.001, 0, 0.001, 0.002, 0.003]);
    expect(linearTicks(0.825, 0.855, 6)).toEqual([0.825, 0.83, 0.835, 0.84, 0.845, 0.85, 0.855]);
    expect(linearTicks(0, 200000, 5)).toEqual([0, 50000, 100000, 150000, 200000]);
    expect(linearTicks(3, 1, 2)).toEqual([1, 2, 3]);
    expect(linearTicks(2, 2)).toEqual([2]);
    expect(linearTicks(0, Number.NaN)).toEqual([]);
  });

  it('nices domains outwards to tick multiples', () => {
    expect(niceDomain(0.00013, 0.00287, 5)).toEqual([0, 0.003]);
    expect(niceDomain(-0.0016, 0.003, 5)).toEqual([-0.002, 0.003]);
    expect(niceDomain(0.8291, 0.8519, 6)).toEqual([0.825, 0.855]);
    const [a, b] = niceDomain(0.8, 0.8);
    expect(a).toBeLessThan(0.8);
    expect(b).toBeGreaterThan(0.8);
    expect(niceDomain(0, 0)).toEqual([-1, 1]);
  });

  it('gives 1-2-5 log ticks per decade, thinning when there are many decades', () => {
    expect(logTicks(1e3, 1e5)).toEqual([1000, 2000, 5000, 10000, 20000, 50000, 100000]);
    expect(logTicks(2316, 200000)).toEqual([5000, 10000, 20000, 50000, 100000, 200000]);
    expect(logTicks(0.001, 0.01)).toEqual([0.001, 0.002, 0.005, 0.01]);
    expect(logTicks(1, 1e6)).toEqual([1, 10, 100, 1000, 10000, 100000, 1000000]);
    const many = logTicks(1e-3, 1e20);
    expect(many.length).toBeLessThanOrEqual(10);
    expect(many.every((v, i) => i === 0 || v > many[i - 1]!)).toBe(true);
    // Less than a 1-2-5 step apart: falls back to linear ticks.
    expect(logTicks(3, 4)).toEqual([3, 3.2, 3.4, 3.6, 3.8, 4]);
    expect(logTicks(0, 10)).toEqual([]);
  });

  it('formats ticks with precision from the step', () => {
    expect(formatTick(0.0002, 0.0002)).toBe('0.0002');
    expect(formatTick(0.0006000000000000001, 0.0002)).toBe('0.0006');
    expect(formatTick(0.8, 0.05)).toBe('0.80');
    expect(formatTick(0.85, 0.05)).toBe('0.85');
    expect(formatTick(-0.001, 0.001)).toBe('\u22120.001');
    expect(formatTick(0, 0.001)).toBe('0');
    expect(formatTick(2000)).toBe('2K');
    expect(formatTick(200000)).toBe('200K');
    expect(formatTick(1500, 500)).toBe('1.5K');
    expect(formatTick(2500000, 500000)).toBe('2.5M');
    expect(formatTick(0.005)).toBe('0.005');
    expect(formatTick(25, 5)).toBe('25');
    expect(formatTick(2e-10, 1e-10)).toBe('2.0e\u221210');
  });

  it('log scale maps 1e3..1e5 monotonically with decades equally spaced', () => {
    const s = logScale([1e3, 1e5], [0, 400]);
    expect(s(1e3)).toBeCloseTo(0, 9);
    expect(s(1e4)).toBeCloseTo(200, 9);
    expect(s(1e5)).toBeCloseTo(400, 9);
    let prev = -Infinity;
    for (let x = 1e3; x <= 1e5; x *= 1.07) {
      expect(s(x)).toBeGreaterThan(prev);
      prev = s(x);
    }
    const y = linearScale([0, 1], [300, 20]); // SVG y grows downwards
    expect(y(0)).toBe(300);
    expect(y(1)).toBe(20);
  });
});

describe('lineChart', () => {
  it('is a well-formed standalone SVG with axes, ticks, labels, legend and reference lines', () => {
    const svg = lineChart(gainChart());
    const { tags } = checkWellFormed(svg);
    expect(tags).toContain('title');
    expect(svg).toContain('viewBox="0 0 640 400"');
    for (const t of ['5K', '10K', '20K', '50K', '100K', '200K']) expect(svg).toContain(`>${t}</text>`);
    expect(svg).toContain('>0.001</text>');
    expect(svg).toContain('>\u22120.001</text>');
    expect(svg).toContain('>Datastore size (pairs)</text>');
    expect(svg).toContain('rotate(-90)');
    expect(svg).toContain('>Config A</text>');
    expect(svg).toContain('>Config B</text>');
    expect(count(svg, 'class="ref-line"')).toBe(1);
    expect(svg).toContain('>+0.001 threshold</text>');
    expect(count(svg, 'class="zero-line"')).toBe(1);
    expect(count(svg, 'class="line"')).toBe(2);
    expect(svg).toContain('stroke-dasharray="7 4"');
    expect(svg).not.toMatch(/NaN|Infinity|undefined/);
  });

  it('draws bands only where lo/hi exist, error bars when band is false', () => {
    const svg = lineChart(gainChart());
    expect(count(svg, 'class="band"')).toBe(1); // Config A only
    expect(svg).not.toContain('class="error-bars"');

    const bars = lineChart(gainChart({ series: [{ ...gainChart().series[0]!, band: false }] }));
    expect(bars).not.toContain('class="band"');
    expect(bars).toContain('class="error-bars"');
    checkWellFormed(bars);

    const none = lineChart(gainChart({ series: [gainChart().series[1]!] }));
    expect(none).not.toContain('class="band"');
    expect(none).not.toContain('class="error-bars"');

    // An interval missing in the middle splits the band; an isolated interval gets an error bar.
    const pts = sizes.map((x, i) => ({ x, y: i, lo: i - 0.5, hi: i + 0.5 }));
    const gappy = pts.map((p, i) => (i === 2 || i === 4 ? { x: p.x, y: p.y } : p));
    const split = lineChart({ title: 't', xLabel: 'x', yLabel: 'y', xLog: true, series: [{ name: 's', points: gappy }] });
    expect(count(split, 'class="band"')).toBe(2); // runs [0,1] and [5,6]; point 3 alone
    expect(count(split, 'class="error-bars"')).toBe(1);
  });

  it('skips NaN points by breaking the line instead of drawing through them', () => {
    const pts = [1, 2, 3, 4, 5, 6].map((x) => ({ x, y: x * x }));
    pts[2] = { x: 3, y: Number.NaN };
    const svg = lineChart({ title: 't', xLabel: 'x', yLabel: 'y', series: [{ name: 's', points: pts }] });
    checkWellFormed(svg);
    const d = /class="line" d="([^"]+)"/.exec(svg)![1]!;
    expect(count(d, 'M')).toBe(2);
    expect(count(d, 'L')).toBe(3); // 1-2, then 4-5-6
    expect(svg).not.toContain('NaN');
    expect(count(svg, '<circle')).toBe(5 + 1); // markers for the valid points only, plus the legend's
    // On a log axis x <= 0 is skipped the same way.
    const log = lineChart({ title: 't', xLabel: 'x', yLabel: 'y', xLog: true, series: [{ name: 's', points: [{ x: 0, y: 1 }, { x: 10, y: 2 }, { x: 100, y: 3 }] }] });
    expect(count(/class="line" d="([^"]+)"/.exec(log)![1]!, 'L')).toBe(1);
    expect(log).not.toMatch(/NaN|Infinity/);
  });

  it('shows a lone point of a marker-less series as a dot', () => {
    const svg = lineChart({
      title: 't', xLabel: 'x', yLabel: 'y',
      series: [{ name: 's', marker: 'none', points: [{ x: 1, y: 1 }, { x: 2, y: Number.NaN }, { x: 3, y: 2 }, { x: 4, y: 3 }] }],
    });
    expect(svg).toContain('class="lone-points"');
    expect(count(svg, '<circle')).toBe(1);
  });

  it('escapes text everywhere', () => {
    const nasty = `<script>&"'\u0001`;
    const svg = lineChart({
      title: `T ${nasty}`, xLabel: nasty, yLabel: nasty, hLines: [{ y: 1, label: nasty }],
      series: [{ name: nasty, points: [{ x: 1, y: 1 }, { x: 2, y: 2 }] }],
    });
    checkWellFormed(svg);
    expect(svg).not.toContain('<script>');
    expect(svg).toContain('&lt;script&gt;&amp;&quot;&apos;');
    expect(svg).not.toContain('\u0001');
    expect(escapeXml(`a<b>&"'`)).toBe('a&lt;b&gt;&amp;&quot;&apos;');
  });

  it('handles small values, custom domains and ticks, empty series, and sizes', () => {
    const small = lineChart({
      title: 't', xLabel: 'x', yLabel: 'y', width: 800, height: 500,
      series: [{ name: 's', points: [{ x: 0, y: 0.00013 }, { x: 1, y: 0.00087 }] }],
    });
    checkWellFormed(small);
    expect(small).toContain('width="800" height="500"');
    expect(small).toContain('>0.0002</text>');
    expect(small).toContain('>0.0008</text>');

    const custom = lineChart(gainChart({ xTicks: [2316, 23160, 231600], xFormat: (v) => `${v} pairs`, yDomain: [-0.01, 0.01] }));
    expect(custom).toContain('>2316 pairs</text>');
    expect(custom).toContain('>\u22120.010</text>');
    expect(custom).not.toContain('>200K</text>');

    const empty = lineChart({ title: 'empty', xLabel: 'x', yLabel: 'y', series: [] });
    checkWellFormed(empty);
    expect(empty).not.toContain('class="line"');
  });

  it('rejects bad options with coded errors', () => {
    const code = (o: unknown): string | undefined => {
      try {
        lineChart(o as LineChartOptions);
      } catch (e) {
        return (e as { code?: string }).code;
      }
      return undefined;
    };
    expect(code(null)).toBe('RAPM_TYPE');
    expect(code({ title: 1, xLabel: 'x', yLabel: 'y', series: [] })).toBe('RAPM_TYPE');
    expect(code({ title: 't', xLabel: 'x', yLabel: 'y', series: {} })).toBe('RAPM_TYPE');
    expect(code({ title: 't', xLabel: 'x', yLabel: 'y', series: [{ name: 's' }] })).toBe('RAPM_TYPE');
    expect(code({ title: 't', xLabel: 'x', yLabel: 'y', series: [], width: 10 })).toBe('RAPM_INVALID_ARG');
    expect(code({ title: 't', xLabel: 'x', yLabel: 'y', series: [], yDomain: [1, 0] })).toBe('RAPM_INVALID_ARG');
    expect(code({ title: 't', xLabel: 'x', yLabel: 'y', series: [], xLog: true, xDomain: [0, 10] })).toBe('RAPM_INVALID_ARG');
  });
});

describe('log axes label their left end; stop markers; nothing outside the frame', () => {
  const frame = (svg: string) => {
    const m = /<path d="M([\d.]+),([\d.]+)V([\d.]+)H([\d.]+)"\/>/.exec(svg)!;
    return { left: Number(m[1]), top: Number(m[2]), bottom: Number(m[3]), right: Number(m[4]) };
  };
  const xTicks = (svg: string) => [...svg.matchAll(/<text class="x-tick" x="([\d.]+)"[^>]*>([^<]*)<\/text>/g)].map((m) => ({ x: Number(m[1]), label: m[2]! }));

  it('the leftmost data value of a log axis is a labelled tick, even when no 1-2-5 tick falls near it', () => {
    const svg = lineChart(gainChart());
    const ticks = xTicks(svg);
    // 2316 lies left of the first 1-2-5 tick (5000): without the fix the left end had no label.
    expect(ticks[0]!.label).toBe('2.316K');
    expect(ticks.map((t) => t.label)).toContain('200K');
    // Labels never overlap: neighbours at least a label width apart.
    for (let i = 1; i < ticks.length; i++) expect(ticks[i]!.x - ticks[i - 1]!.x).toBeGreaterThan(((ticks[i]!.label.length + ticks[i - 1]!.label.length) / 2) * 11 * 0.6);
    // A one-point run (the default run before this change) still gets its size labelled.
    const one = lineChart({ title: 't', xLabel: 'x', yLabel: 'y', xLog: true, series: [{ name: 's', points: [{ x: 2316, y: 0.0077, lo: 0.005, hi: 0.01 }] }] });
    expect(xTicks(one).map((t) => t.label)).toContain('2.316K');
  });

  it('every marker, band and error bar lies inside the frame', () => {
    const svg = lineChart(gainChart({ vLines: [{ x: 20000, label: 'stopped: fusion useful' }] }));
    const f = frame(svg);
    const coords = [...svg.matchAll(/<(?:circle|rect) (?:class="[^"]*" )?(?:cx|x)="([\d.-]+)" (?:cy|y)="([\d.-]+)"/g)].filter((m) => !m[0].includes('width="640"'));
    const legendBottom = f.top; // legend and title sit above the frame
    const inPlot = coords.filter((m) => Number(m[2]) > legendBottom);
    expect(inPlot.length).toBeGreaterThan(5);
    for (const m of inPlot) {
      expect(Number(m[1])).toBeGreaterThanOrEqual(f.left);
      expect(Number(m[1])).toBeLessThanOrEqual(f.right);
      expect(Number(m[2])).toBeLessThanOrEqual(f.bottom);
    }
    for (const m of svg.matchAll(/<polygon class="band" points="([^"]+)"/g)) {
      for (const pt of m[1]!.split(' ')) {
        const [x, y] = pt.split(',').map(Number);
        expect(x!).toBeGreaterThanOrEqual(f.left);
        expect(x!).toBeLessThanOrEqual(f.right);
        expect(y!).toBeGreaterThanOrEqual(f.top);
        expect(y!).toBeLessThanOrEqual(f.bottom);
      }
    }
  });

  it('a vertical marker is drawn at its x with its label inside the frame, and widens the x range when needed', () => {
    const svg = lineChart(gainChart({ vLines: [{ x: 400000, label: 'stopped: --max-steps' }] }));
    const f = frame(svg);
    const line = /<line class="v-line" x1="([\d.]+)"/.exec(svg);
    expect(line).not.toBeNull();
    expect(Number(line![1])).toBeLessThanOrEqual(f.right);
    expect(Number(line![1])).toBeGreaterThan(f.left);
    const label = /<text class="v-label" x="([\d.]+)"[^>]*text-anchor="(start|end)"[^>]*>stopped: --max-steps<\/text>/.exec(svg);
    expect(label).not.toBeNull();
    // Near the right edge the label is written leftwards, so it stays inside.
    expect(label![2]).toBe('end');
  });
});
