import { RapmRangeError, RapmTypeError, describe } from '../errors.js';

/**
 * Dependency-free SVG line charts in the style of a paper figure: white background, black
 * axes with outward ticks, light grid, a colour-blind-safe palette (Okabe & Ito) with one
 * marker shape per series (so the figure survives greyscale printing), shaded interval
 * bands, labelled horizontal reference lines, and a legend above the plot.
 *
 * The output is a standalone SVG 1.1 document (xmlns set, no external resources, no CSS),
 * rendered the same by browsers, resvg and librsvg.
 */

export interface ChartPoint {
  x: number;
  y: number;
  /** Lower end of an interval around y (for example the bootstrap 95% CI). */
  lo?: number;
  /** Upper end of an interval around y. */
  hi?: number;
}

export type MarkerShape = 'circle' | 'square' | 'triangle' | 'diamond' | 'triangle-down' | 'cross';

export interface ChartSeries {
  name: string;
  /**
   * Points in drawing order (normally ascending x). A point with a non-finite x or y (or
   * x <= 0 on a log axis) is skipped and breaks the line there; lo/hi are optional per point.
   */
  points: ChartPoint[];
  /** Intervals (lo/hi) as a shaded band (default true) or, when false, as error bars. */
  band?: boolean;
  /** Dashed line. */
  dashed?: boolean;
  /** Stroke/fill colour; default: the next palette colour. */
  color?: string;
  /** Marker shape, or 'none'; default: the next shape, or none when the series has > 40 points. */
  marker?: MarkerShape | 'none';
}

export interface ReferenceLine {
  /** y value of the horizontal line. */
  y: number;
  /** Text shown above the right end of the line, e.g. "+0.001 (noise threshold)". */
  label?: string;
  /** Dashed (default true). */
  dashed?: boolean;
  /** Default: grey. */
  color?: string;
}

export interface VerticalLine {
  x: number;
  /** Text shown beside the top of the line, e.g. "stopped (rule held)". */
  label?: string;
  /** Default: grey. */
  color?: string;
}

export interface LineChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  /** Logarithmic x axis with 1-2-5 ticks per decade (x <= 0 points are skipped). */
  xLog?: boolean;
  series: ChartSeries[];
  /** Draw (and include in the y range) a solid line at y = 0. */
  yZeroLine?: boolean;
  /** Horizontal reference lines, included in the y range. */
  hLines?: ReferenceLine[];
  /** Vertical marker lines (for example "stopped here"), included in the x range. */
  vLines?: VerticalLine[];
  /** Pixel width of the figure, default 640. */
  width?: number;
  /** Pixel height of the figure, default 400. */
  height?: number;
  /** Fixed x range instead of the data range. */
  xDomain?: [number, number];
  /** Fixed y range instead of the (niced) data range. */
  yDomain?: [number, number];
  /** Explicit x tick positions (for example the datastore sizes of a sweep). */
  xTicks?: number[];
  /** Tick label formatters; default {@link formatTick}. */
  xFormat?: (v: number) => string;
  yFormat?: (v: number) => string;
}

/** Okabe & Ito colour-blind-safe palette (yellow left out: too light on white). */
export const PALETTE: readonly string[] = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000'];
const MARKERS: readonly MarkerShape[] = ['circle', 'square', 'triangle', 'diamond', 'triangle-down', 'cross'];

const FONT = "Helvetica, Arial, 'DejaVu Sans', 'Liberation Sans', sans-serif";
const TICK_FONT = 11;
const LABEL_FONT = 12.5;
const TITLE_FONT = 14;
const CHAR_W = 0.6; // average glyph advance in em, for layout estimates
const MINUS = '\u2212';

/** Escape text for XML content and attribute values; drops characters XML 1.0 forbids. */
export function escapeXml(s: string): string {
  return String(s)
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

// ---------------------------------------------------------------- ticks

/** A "nice" tick step (1, 2 or 5 x 10^k) giving about `count` intervals over `span`. */
export function niceStep(span: number, count: number): number {
  if (!(span > 0) || !Number.isFinite(span)) return 1;
  const raw = span / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const err = raw / mag;
  const f = err >= Math.SQRT2 * 5 ? 10 : err >= Math.sqrt(10) ? 5 : err >= Math.SQRT2 ? 2 : 1;
  return f * mag;
}

/** `i * step` without binary noise (0.1 * 3 -> 0.3, not 0.30000000000000004). */
function tickValue(i: number, step: number): number {
  if (i === 0) return 0; // never -0
  const e = Math.floor(Math.log10(step));
  if (e >= 0) return i * step;
  const scale = 10 ** -e;
  return (i * Math.round(step * scale)) / scale;
}

/** Nice linear ticks inside [min, max] (inclusive), about `count` intervals. */
export function linearTicks(min: number, max: number, count = 5): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [];
  if (min > max) [min, max] = [max, min];
  if (min === max) return [min];
  const step = niceStep(max - min, count);
  const i0 = Math.ceil(min / step - 1e-9);
  const i1 = Math.floor(max / step + 1e-9);
  const out: number[] = [];
  for (let i = i0; i <= i1; i++) out.push(tickValue(i, step));
  return out;
}

/** Extend [min, max] outwards to multiples of the nice step for `count` intervals. */
export function niceDomain(min: number, max: number, count = 5): [number, number] {
  if (min > max) [min, max] = [max, min];
  if (min === max) {
    const pad = min === 0 ? 1 : Math.abs(min) * 0.1;
    min -= pad;
    max += pad;
  }
  for (let k = 0; k < 2; k++) {
    const step = niceStep(max - min, count);
    min = tickValue(Math.floor(min / step + 1e-9), step);
    max = tickValue(Math.ceil(max / step - 1e-9), step);
  }
  return [min, max];
}

/**
 * Log-axis ticks in [min, max]: 1, 2, 5 x 10^k while that gives <= `maxTicks`, else powers of
 * ten only (every second or third when there are very many decades). Falls back to linear
 * ticks when the range holds fewer than two such values.
 */
export function logTicks(min: number, max: number, maxTicks = 10): number[] {
  if (!(min > 0) || !(max > 0) || !Number.isFinite(min) || !Number.isFinite(max)) return [];
  if (min > max) [min, max] = [max, min];
  const lo = min * (1 - 1e-9);
  const hi = max * (1 + 1e-9);
  const e0 = Math.floor(Math.log10(min));
  const e1 = Math.ceil(Math.log10(max));
  const pick = (mantissas: number[], every: number): number[] => {
    const out: number[] = [];
    for (let e = e0; e <= e1; e++) {
      if (((e % every) + every) % every !== 0) continue;
      for (const m of mantissas) {
        const v = e >= 0 ? m * 10 ** e : m / 10 ** -e;
        if (v >= lo && v <= hi) out.push(v);
      }
    }
    return out;
  };
  let ticks = pick([1, 2, 5], 1);
  if (ticks.length > maxTicks) {
    ticks = pick([1], 1);
    for (let every = 2; ticks.length > maxTicks; every++) ticks = pick([1], every);
  }
  if (ticks.length < 2) return linearTicks(min, max, 4).filter((v) => v > 0);
  return ticks;
}

/**
 * Default tick label: "0", "0.0002", "0.85", "2K", "200K", "1.5M"; negatives with a true minus
 * sign. `step` (the tick spacing) sets the decimals; without it the value's own magnitude does.
 */
export function formatTick(v: number, step?: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (v === 0) return '0';
  const a = Math.abs(v);
  const sign = v < 0 ? MINUS : '';
  const unit = step ?? a;
  if (a >= 1000 && (step === undefined || step >= 100)) {
    const [div, suffix] = a >= 1e9 ? [1e9, 'G'] : a >= 1e6 ? [1e6, 'M'] : [1e3, 'K'];
    return sign + trimZeros((a / div).toFixed(Math.min(3, decimalsFor(unit / div)))) + suffix;
  }
  const d = decimalsFor(unit);
  if (d > 8) return sign + a.toExponential(1).replace('e-', `e${MINUS}`);
  return sign + trimZeros(a.toFixed(d), d > 0 && step !== undefined);
}

/** Decimals needed to show multiples of `unit` (0.0002 -> 4, 0.25 -> 2, 5 -> 0). */
function decimalsFor(unit: number): number {
  if (!(unit > 0)) return 0;
  for (let d = 0; d <= 12; d++) {
    const s = unit * 10 ** d;
    if (s >= 1 - 1e-9 && Math.abs(s - Math.round(s)) < 1e-6 * s) return d;
  }
  return 12;
}

function trimZeros(s: string, keep = false): string {
  if (keep || !s.includes('.')) return s;
  return s.replace(/\.?0+$/, '');
}

// ---------------------------------------------------------------- scales

export interface Scale {
  (v: number): number;
  domain: [number, number];
  range: [number, number];
}

/** Linear map of [d0, d1] onto [r0, r1]. */
export function linearScale(domain: [number, number], range: [number, number]): Scale {
  const [d0, d1] = domain;
  const [r0, r1] = range;
  const k = d1 === d0 ? 0 : (r1 - r0) / (d1 - d0);
  const f = ((v: number) => r0 + (v - d0) * k) as Scale;
  f.domain = domain;
  f.range = range;
  return f;
}

/** log10 map of [d0, d1] (both > 0) onto [r0, r1]. */
export function logScale(domain: [number, number], range: [number, number]): Scale {
  const l0 = Math.log10(domain[0]);
  const l1 = Math.log10(domain[1]);
  const [r0, r1] = range;
  const k = l1 === l0 ? 0 : (r1 - r0) / (l1 - l0);
  const f = ((v: number) => r0 + (Math.log10(v) - l0) * k) as Scale;
  f.domain = domain;
  f.range = range;
  return f;
}

// ---------------------------------------------------------------- chart

/** Render a line chart as a standalone SVG document (see {@link LineChartOptions}). */
export function lineChart(options: LineChartOptions): string {
  checkOptions(options);
  const width = options.width ?? 640;
  const height = options.height ?? 400;
  const xLog = options.xLog === true;
  const series = options.series;
  const hLines = options.hLines ?? [];
  const okX = (x: number): boolean => Number.isFinite(x) && (!xLog || x > 0);

  // Data ranges.
  let xMin = Infinity;
  let xMax = -Infinity;
  let yMin = Infinity;
  let yMax = -Infinity;
  for (const s of series) {
    for (const p of s.points) {
      if (!okX(p.x)) continue;
      if (Number.isFinite(p.y)) {
        xMin = Math.min(xMin, p.x);
        xMax = Math.max(xMax, p.x);
        yMin = Math.min(yMin, p.y);
        yMax = Math.max(yMax, p.y);
      }
      if (hasInterval(p)) {
        xMin = Math.min(xMin, p.x);
        xMax = Math.max(xMax, p.x);
        yMin = Math.min(yMin, p.lo!, p.hi!);
        yMax = Math.max(yMax, p.lo!, p.hi!);
      }
    }
  }
  for (const h of hLines) {
    yMin = Math.min(yMin, h.y);
    yMax = Math.max(yMax, h.y);
  }
  const vLines = (options.vLines ?? []).filter((v) => okX(v.x));
  for (const v of vLines) {
    xMin = Math.min(xMin, v.x);
    xMax = Math.max(xMax, v.x);
  }
  if (options.yZeroLine) {
    yMin = Math.min(yMin, 0);
    yMax = Math.max(yMax, 0);
  }
  if (!Number.isFinite(xMin)) [xMin, xMax] = xLog ? [1, 10] : [0, 1];
  if (!Number.isFinite(yMin)) [yMin, yMax] = [0, 1];

  // Layout: title, legend rows, plot, tick labels, axis labels.
  const legend = layoutLegend(series, width);
  const plotTop = 12 + TITLE_FONT + 10 + (legend.rows > 0 ? legend.rows * 18 + 10 : 0);
  const plotBottom = height - (6 + TICK_FONT + 8 + LABEL_FONT + 10);
  const yTickTarget = Math.max(3, Math.round((plotBottom - plotTop) / 55));

  let yDomain: [number, number];
  if (options.yDomain) yDomain = [options.yDomain[0], options.yDomain[1]];
  else yDomain = niceDomain(yMin, yMax, yTickTarget);
  const yTicks = linearTicks(yDomain[0], yDomain[1], yTickTarget);
  const yStep = yTicks.length > 1 ? yTicks[1]! - yTicks[0]! : niceStep(yDomain[1] - yDomain[0], yTickTarget);
  const yFmt = options.yFormat ?? ((v: number) => formatTick(v, yStep));
  const yLabels = yTicks.map(yFmt);
  const yLabelW = Math.max(...yLabels.map((s) => textWidth(s, TICK_FONT)), 10);
  const plotLeft = Math.round(10 + LABEL_FONT + 10 + yLabelW + 8);
  const plotRight = width - 16;
  const plotW = plotRight - plotLeft;

  let xDomain: [number, number];
  if (options.xDomain) xDomain = [options.xDomain[0], options.xDomain[1]];
  else if (xLog) {
    const span = Math.max(Math.log10(xMax / xMin), 0.3);
    const pad = 10 ** (span * 0.04);
    xDomain = xMin === xMax ? [xMin / 2, xMax * 2] : [xMin / pad, xMax * pad];
  } else {
    xDomain = niceDomain(xMin, xMax, Math.max(3, Math.round(plotW / 90)));
  }
  let xTicks = (
    options.xTicks ??
    (xLog ? logTicks(xDomain[0], xDomain[1], Math.max(4, Math.floor(plotW / 45))) : linearTicks(xDomain[0], xDomain[1], Math.max(3, Math.round(plotW / 90))))
  ).filter((v) => okX(v) && v >= Math.min(...xDomain) - 1e-12 * Math.abs(xDomain[0]) && v <= Math.max(...xDomain) * (1 + 1e-12));
  const xStep = !xLog && xTicks.length > 1 ? xTicks[1]! - xTicks[0]! : undefined;
  const xFmt = options.xFormat ?? ((v: number) => formatTick(v, xStep));

  const sx = xLog ? logScale(xDomain, [plotLeft, plotRight]) : linearScale(xDomain, [plotLeft, plotRight]);
  if (xLog && !options.xTicks && Number.isFinite(xMin) && xMin >= xDomain[0]) {
    // A log axis always labels its leftmost data value (a datastore size, say): 1-2-5 ticks
    // alone can leave the left end of the axis unlabelled. Automatic ticks whose labels would
    // collide with it give way.
    const gap = (a: number, b: number) => Math.abs(sx(a) - sx(b)) < (textWidth(xFmt(a), TICK_FONT) + textWidth(xFmt(b), TICK_FONT)) / 2 + 6;
    xTicks = [xMin, ...xTicks.filter((t) => t !== xMin && !gap(t, xMin))];
  }
  const sy = linearScale(yDomain, [plotBottom, plotTop]);

  const o: string[] = [];
  o.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
      `font-family="${escapeXml(FONT)}" role="img" aria-label="${escapeXml(options.title)}">`,
  );
  o.push(`<title>${escapeXml(options.title)}</title>`);
  o.push(`<defs><clipPath id="plot-area"><rect x="${n(plotLeft - 3)}" y="${n(plotTop - 3)}" width="${n(plotW + 6)}" height="${n(plotBottom - plotTop + 6)}"/></clipPath></defs>`);
  o.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);

  // Grid.
  o.push('<g stroke="#e4e4e4" stroke-width="1">');
  for (const t of yTicks) o.push(`<line x1="${n(plotLeft)}" x2="${n(plotRight)}" y1="${n(sy(t))}" y2="${n(sy(t))}"/>`);
  for (const t of xTicks) o.push(`<line x1="${n(sx(t))}" x2="${n(sx(t))}" y1="${n(plotTop)}" y2="${n(plotBottom)}"/>`);
  o.push('</g>');

  // Reference lines.
  if (options.yZeroLine && 0 >= yDomain[0] && 0 <= yDomain[1]) {
    o.push(`<line class="zero-line" x1="${n(plotLeft)}" x2="${n(plotRight)}" y1="${n(sy(0))}" y2="${n(sy(0))}" stroke="#444444" stroke-width="1"/>`);
  }
  for (const h of hLines) {
    if (!(h.y >= yDomain[0] && h.y <= yDomain[1])) continue;
    const y = sy(h.y);
    const color = h.color ?? '#666666';
    const dash = h.dashed === false ? '' : ' stroke-dasharray="5 3"';
    o.push(`<line class="ref-line" x1="${n(plotLeft)}" x2="${n(plotRight)}" y1="${n(y)}" y2="${n(y)}" stroke="${escapeXml(color)}" stroke-width="1.2"${dash}/>`);
  }

  for (const v of vLines) {
    if (!(v.x >= Math.min(...xDomain) && v.x <= Math.max(...xDomain))) continue;
    o.push(`<line class="v-line" x1="${n(sx(v.x))}" x2="${n(sx(v.x))}" y1="${n(plotTop)}" y2="${n(plotBottom)}" stroke="${escapeXml(v.color ?? '#666666')}" stroke-width="1.2" stroke-dasharray="2 3"/>`);
  }

  // Series: bands first (under every line), then lines, error bars and markers.
  const styles = series.map((s, i) => ({
    color: s.color ?? PALETTE[i % PALETTE.length]!,
    marker: s.marker ?? (s.points.length > 40 ? 'none' : MARKERS[i % MARKERS.length]!),
  }));
  o.push('<g clip-path="url(#plot-area)">');
  series.forEach((s, i) => {
    if (s.band === false) return;
    for (const run of runs(s.points, (p) => okX(p.x) && hasInterval(p))) {
      if (run.length < 2) continue;
      const upper = run.map((p) => `${n(sx(p.x))},${n(sy(p.hi!))}`);
      const lower = run
        .slice()
        .reverse()
        .map((p) => `${n(sx(p.x))},${n(sy(p.lo!))}`);
      o.push(`<polygon class="band" points="${upper.concat(lower).join(' ')}" fill="${escapeXml(styles[i]!.color)}" fill-opacity="0.15" stroke="none"/>`);
    }
  });
  series.forEach((s, i) => {
    const d = linePath(s.points, (p) => okX(p.x) && Number.isFinite(p.y), sx, sy);
    if (d) {
      const dash = s.dashed ? ' stroke-dasharray="7 4"' : '';
      o.push(`<path class="line" d="${d}" fill="none" stroke="${escapeXml(styles[i]!.color)}" stroke-width="1.8" stroke-linejoin="round" stroke-linecap="round"${dash}/>`);
    }
  });
  o.push('</g>');
  series.forEach((s, i) => {
    const color = escapeXml(styles[i]!.color);
    // Error bars: for band === false, and for isolated interval points a band cannot show.
    const bars: ChartPoint[] = [];
    if (s.band === false) bars.push(...s.points.filter((p) => okX(p.x) && hasInterval(p)));
    else for (const run of runs(s.points, (p) => okX(p.x) && hasInterval(p))) if (run.length === 1) bars.push(run[0]!);
    if (bars.length) {
      o.push(`<g class="error-bars" stroke="${color}" stroke-width="1.2">`);
      for (const p of bars) {
        const x = sx(p.x);
        const y0 = sy(p.lo!);
        const y1 = sy(p.hi!);
        o.push(`<path d="M${n(x)},${n(y0)}V${n(y1)}M${n(x - 3.5)},${n(y0)}H${n(x + 3.5)}M${n(x - 3.5)},${n(y1)}H${n(x + 3.5)}"/>`);
      }
      o.push('</g>');
    }
    const shape = styles[i]!.marker;
    if (shape !== 'none') {
      const pts = s.points.filter((p) => okX(p.x) && Number.isFinite(p.y));
      if (pts.length) {
        o.push(`<g class="markers" fill="${color}" stroke="#ffffff" stroke-width="0.8">`);
        for (const p of pts) o.push(marker(shape, sx(p.x), sy(p.y), 3.6, styles[i]!.color));
        o.push('</g>');
      }
    } else {
      // Without markers a point between two gaps would vanish: show it as a small dot.
      const lone = runs(s.points, (p) => okX(p.x) && Number.isFinite(p.y)).filter((r) => r.length === 1);
      if (lone.length) {
        o.push(`<g class="lone-points" fill="${color}">`);
        for (const [p] of lone) o.push(`<circle cx="${n(sx(p!.x))}" cy="${n(sy(p!.y))}" r="2"/>`);
        o.push('</g>');
      }
    }
  });

  // Reference-line labels above the data, with a white halo to stay legible.
  for (const h of hLines) {
    if (!h.label || !(h.y >= yDomain[0] && h.y <= yDomain[1])) continue;
    o.push(
      `<text class="ref-label" x="${n(plotRight - 4)}" y="${n(sy(h.y) - 4)}" font-size="${TICK_FONT}" text-anchor="end" fill="${escapeXml(h.color ?? '#666666')}" ` +
        `stroke="#ffffff" stroke-width="3" stroke-linejoin="round" paint-order="stroke">${escapeXml(h.label)}</text>`,
    );
  }

  for (const v of vLines) {
    if (!v.label || !(v.x >= Math.min(...xDomain) && v.x <= Math.max(...xDomain))) continue;
    const x = sx(v.x);
    // Label on the side with more room, inside the frame.
    const right = x < (plotLeft + plotRight) / 2;
    o.push(
      `<text class="v-label" x="${n(right ? x + 4 : x - 4)}" y="${n(plotTop + TICK_FONT + 2)}" font-size="${TICK_FONT}" text-anchor="${right ? 'start' : 'end'}" fill="${escapeXml(v.color ?? '#666666')}" ` +
        `stroke="#ffffff" stroke-width="3" stroke-linejoin="round" paint-order="stroke">${escapeXml(v.label)}</text>`,
    );
  }

  // Axes, ticks and tick labels.
  o.push(`<g stroke="#000000" stroke-width="1" fill="none">`);
  o.push(`<path d="M${n(plotLeft)},${n(plotTop)}V${n(plotBottom)}H${n(plotRight)}"/>`);
  for (const t of yTicks) o.push(`<line x1="${n(plotLeft - 5)}" x2="${n(plotLeft)}" y1="${n(sy(t))}" y2="${n(sy(t))}"/>`);
  for (const t of xTicks) o.push(`<line x1="${n(sx(t))}" x2="${n(sx(t))}" y1="${n(plotBottom)}" y2="${n(plotBottom + 5)}"/>`);
  o.push('</g>');
  o.push(`<g font-size="${TICK_FONT}" fill="#000000">`);
  yTicks.forEach((t, i) => {
    o.push(`<text class="y-tick" x="${n(plotLeft - 8)}" y="${n(sy(t) + TICK_FONT * 0.35)}" text-anchor="end">${escapeXml(yLabels[i]!)}</text>`);
  });
  for (const t of xTicks) {
    o.push(`<text class="x-tick" x="${n(sx(t))}" y="${n(plotBottom + 6 + TICK_FONT)}" text-anchor="middle">${escapeXml(xFmt(t))}</text>`);
  }
  o.push('</g>');

  // Axis labels and title.
  const midX = (plotLeft + plotRight) / 2;
  const midY = (plotTop + plotBottom) / 2;
  o.push(`<text class="x-label" x="${n(midX)}" y="${n(height - 10)}" font-size="${LABEL_FONT}" text-anchor="middle">${escapeXml(options.xLabel)}</text>`);
  o.push(
    `<text class="y-label" transform="translate(${n(10 + LABEL_FONT * 0.8)},${n(midY)}) rotate(-90)" font-size="${LABEL_FONT}" text-anchor="middle">${escapeXml(options.yLabel)}</text>`,
  );
  o.push(`<text class="title" x="${n(width / 2)}" y="${n(12 + TITLE_FONT)}" font-size="${TITLE_FONT}" font-weight="bold" text-anchor="middle">${escapeXml(options.title)}</text>`);

  // Legend: centred rows between the title and the plot.
  if (legend.rows > 0) {
    o.push(`<g class="legend" font-size="${TICK_FONT}">`);
    const rowY0 = 12 + TITLE_FONT + 10 + 9;
    for (const item of legend.items) {
      const rowW = legend.rowWidths[item.row]!;
      const x = (width - rowW) / 2 + item.x;
      const y = rowY0 + item.row * 18;
      const s = series[item.index]!;
      const { color, marker: shape } = styles[item.index]!;
      const c = escapeXml(color);
      if (s.band !== false && s.points.some((p) => hasInterval(p))) {
        o.push(`<rect x="${n(x)}" y="${n(y - 5)}" width="24" height="10" fill="${c}" fill-opacity="0.16"/>`);
      }
      const dash = s.dashed ? ' stroke-dasharray="7 4"' : '';
      o.push(`<line x1="${n(x)}" x2="${n(x + 24)}" y1="${n(y)}" y2="${n(y)}" stroke="${c}" stroke-width="1.8"${dash}/>`);
      if (shape !== 'none') o.push(`<g fill="${c}" stroke="#ffffff" stroke-width="0.8">${marker(shape, x + 12, y, 3.6, color)}</g>`);
      o.push(`<text x="${n(x + 30)}" y="${n(y + TICK_FONT * 0.35)}" fill="#000000">${escapeXml(s.name)}</text>`);
    }
    o.push('</g>');
  }
  o.push('</svg>');
  return o.join('\n') + '\n';
}

interface LegendLayout {
  rows: number;
  rowWidths: number[];
  items: { index: number; row: number; x: number }[];
}

function layoutLegend(series: ChartSeries[], width: number): LegendLayout {
  const maxW = width - 40;
  const items: LegendLayout['items'] = [];
  const rowWidths: number[] = [];
  let row = 0;
  let x = 0;
  series.forEach((s, index) => {
    if (!s.name) return;
    const w = 30 + textWidth(s.name, TICK_FONT);
    if (x > 0 && x + w > maxW) {
      rowWidths[row] = x - 18;
      row++;
      x = 0;
    }
    items.push({ index, row, x });
    x += w + 18;
  });
  if (items.length === 0) return { rows: 0, rowWidths: [], items };
  rowWidths[row] = x - 18;
  return { rows: row + 1, rowWidths, items };
}

function marker(shape: MarkerShape, x: number, y: number, r: number, color: string): string {
  switch (shape) {
    case 'circle':
      return `<circle cx="${n(x)}" cy="${n(y)}" r="${n(r)}"/>`;
    case 'square':
      return `<rect x="${n(x - r * 0.9)}" y="${n(y - r * 0.9)}" width="${n(r * 1.8)}" height="${n(r * 1.8)}"/>`;
    case 'triangle':
      return `<path d="M${n(x)},${n(y - r * 1.15)}L${n(x + r * 1.05)},${n(y + r * 0.75)}L${n(x - r * 1.05)},${n(y + r * 0.75)}Z"/>`;
    case 'triangle-down':
      return `<path d="M${n(x)},${n(y + r * 1.15)}L${n(x + r * 1.05)},${n(y - r * 0.75)}L${n(x - r * 1.05)},${n(y - r * 0.75)}Z"/>`;
    case 'diamond':
      return `<path d="M${n(x)},${n(y - r * 1.2)}L${n(x + r * 1.2)},${n(y)}L${n(x)},${n(y + r * 1.2)}L${n(x - r * 1.2)},${n(y)}Z"/>`;
    case 'cross':
      return `<path d="M${n(x - r)},${n(y - r)}L${n(x + r)},${n(y + r)}M${n(x - r)},${n(y + r)}L${n(x + r)},${n(y - r)}" stroke="${escapeXml(color)}" stroke-width="1.6"/>`;
  }
}

/** Maximal runs of consecutive points satisfying `ok`. */
function runs(points: ChartPoint[], ok: (p: ChartPoint) => boolean): ChartPoint[][] {
  const out: ChartPoint[][] = [];
  let cur: ChartPoint[] = [];
  for (const p of points) {
    if (ok(p)) cur.push(p);
    else if (cur.length) {
      out.push(cur);
      cur = [];
    }
  }
  if (cur.length) out.push(cur);
  return out;
}

/** SVG path data through the valid points; an invalid point ends the sub-path (next valid one starts with M). */
function linePath(points: ChartPoint[], ok: (p: ChartPoint) => boolean, sx: Scale, sy: Scale): string {
  const parts: string[] = [];
  for (const run of runs(points, ok)) {
    if (run.length < 2) continue; // a lone point is shown by its marker only
    parts.push(run.map((p, i) => `${i ? 'L' : 'M'}${n(sx(p.x))},${n(sy(p.y))}`).join(''));
  }
  return parts.join('');
}

function hasInterval(p: ChartPoint): boolean {
  return typeof p.lo === 'number' && typeof p.hi === 'number' && Number.isFinite(p.lo) && Number.isFinite(p.hi);
}

function textWidth(s: string, size: number): number {
  return s.length * size * CHAR_W;
}

/** Coordinate with at most 2 decimals, never "-0". */
function n(v: number): string {
  const r = Math.round(v * 100) / 100;
  return String(r === 0 ? 0 : r);
}

function checkOptions(o: LineChartOptions): void {
  if (typeof o !== 'object' || o === null) throw new RapmTypeError('RAPM_TYPE', `Expected chart options object but received ${describe(o)}`);
  for (const k of ['title', 'xLabel', 'yLabel'] as const) {
    if (typeof o[k] !== 'string') throw new RapmTypeError('RAPM_TYPE', `Expected string for ${k} but received ${describe(o[k])}`);
  }
  if (!Array.isArray(o.series)) throw new RapmTypeError('RAPM_TYPE', `Expected array for series but received ${describe(o.series)}`);
  o.series.forEach((s, i) => {
    if (typeof s !== 'object' || s === null || !Array.isArray(s.points)) {
      throw new RapmTypeError('RAPM_TYPE', `Expected { name, points: [...] } for series[${i}] but received ${describe(s)}`);
    }
  });
  for (const k of ['width', 'height'] as const) {
    const v = o[k];
    if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v >= 160)) {
      throw new RapmRangeError('RAPM_INVALID_ARG', `Expected number >= 160 for ${k} but received ${describe(v)}`);
    }
  }
  for (const k of ['xDomain', 'yDomain'] as const) {
    const v = o[k];
    if (v === undefined) continue;
    const ok = Array.isArray(v) && v.length === 2 && Number.isFinite(v[0]) && Number.isFinite(v[1]) && v[0] < v[1] && (k !== 'xDomain' || !o.xLog || v[0] > 0);
    if (!ok) throw new RapmRangeError('RAPM_INVALID_ARG', `Expected [min, max] with min < max${k === 'xDomain' && o.xLog ? ' and min > 0' : ''} for ${k} but received ${JSON.stringify(v)}`);
  }
}
