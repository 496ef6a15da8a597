import { RapmError, RapmRangeError, RapmTypeError, describe } from '../errors.js';
import { writeFileAtomicSync } from '../io/atomic.js';

/**
 * Optional PNG rendering of the SVG charts through @resvg/resvg-js (prebuilt per-platform
 * binaries shipped as optional npm packages; no download at install time). When the package
 * is not installed, or has no binary for this platform, the functions here return null /
 * false instead of throwing, and reports keep their SVG figures only.
 */

export interface PngOptions {
  /** Pixel density factor relative to the SVG's own size (2 -> 1280 px wide for a 640 px chart). Default 2. */
  scale?: number;
  /** Background colour (CSS). Default white. */
  background?: string;
}

/** The parts of @resvg/resvg-js used here. */
interface ResvgModule {
  Resvg: new (svg: string, options?: Record<string, unknown>) => { render(): { asPng(): Uint8Array } };
}

const RESVG = '@resvg/resvg-js';
let loading: Promise<ResvgModule | null> | undefined;

/** Load @resvg/resvg-js once; null when it cannot be loaded. */
function loadResvg(): Promise<ResvgModule | null> {
  loading ??= import(RESVG as string).then(
    (m: unknown) => {
      const mod = (m as { default?: unknown; Resvg?: unknown }) ?? {};
      const Resvg = mod.Resvg ?? (mod.default as { Resvg?: unknown } | undefined)?.Resvg;
      return typeof Resvg === 'function' ? ({ Resvg } as ResvgModule) : null;
    },
    () => null,
  );
  return loading;
}

/** True when PNG rendering is available on this install. */
export async function pngAvailable(): Promise<boolean> {
  return (await loadResvg()) !== null;
}

/**
 * Render an SVG document to PNG bytes, or null when @resvg/resvg-js is unavailable.
 * System fonts are used; the charts ask for Helvetica/Arial and fall back to DejaVu Sans or
 * Liberation Sans (the usual Linux fonts). Malformed SVG throws RAPM_FORMAT.
 */
export async function svgToPng(svg: string, options: PngOptions = {}): Promise<Uint8Array | null> {
  if (typeof svg !== 'string') throw new RapmTypeError('RAPM_TYPE', `Expected SVG string for svg but received ${describe(svg)}`);
  const scale = options.scale ?? 2;
  if (typeof scale !== 'number' || !(scale > 0 && scale <= 16)) {
    throw new RapmRangeError('RAPM_INVALID_ARG', `Expected number in (0, 16] for options.scale but received ${describe(scale)}`);
  }
  const mod = await loadResvg();
  if (!mod) return null;
  let png: Uint8Array;
  try {
    const r = new mod.Resvg(svg, {
      fitTo: { mode: 'zoom', value: scale },
      background: options.background ?? '#ffffff',
      font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans', sansSerifFamily: 'DejaVu Sans' },
      logLevel: 'off',
    });
    png = r.render().asPng();
  } catch (e) {
    throw new RapmError('RAPM_FORMAT', `Cannot render SVG to PNG (${e instanceof Error ? e.message : String(e)})`, { cause: e });
  }
  return new Uint8Array(png.buffer, png.byteOffset, png.byteLength);
}

/** Render `svg` and write it atomically to `file`. Returns false (writing nothing) when PNG rendering is unavailable. */
export async function writePng(file: string, svg: string, options: PngOptions = {}): Promise<boolean> {
  const png = await svgToPng(svg, options);
  if (!png) return false;
  writeFileAtomicSync(file, png);
  return true;
}
