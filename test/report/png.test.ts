import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { pngAvailable, svgToPng, writePng } from '../../src/report/png.js';
import { lineChart } from '../../src/report/svg.js';

const chart = lineChart({
  title: 'Fusion gain',
  xLabel: 'Datastore size (pairs)',
  yLabel: 'Δ mean cosine',
  xLog: true,
  yZeroLine: true,
  series: [{ name: 'A', points: [2316, 20000, 200000].map((x, i) => ({ x, y: 0.001 * i, lo: 0.001 * i - 0.0005, hi: 0.001 * i + 0.0005 })) }],
});

/** Width and height from the IHDR chunk. */
function pngSize(png: Uint8Array): [number, number] {
  const v = new DataView(png.buffer, png.byteOffset, png.byteLength);
  return [v.getUint32(16), v.getUint32(20)];
}

describe('svgToPng (optional @resvg/resvg-js)', async () => {
  const available = await pngAvailable();

  it.runIf(available)('renders a chart to PNG at the requested scale and writes it atomically', async () => {
    const png = (await svgToPng(chart))!;
    expect(Array.from(png.subarray(0, 8))).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    expect(pngSize(png)).toEqual([1280, 800]);
    expect(pngSize((await svgToPng(chart, { scale: 1 }))!)).toEqual([640, 400]);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-png-'));
    try {
      const file = path.join(dir, 'gain.png');
      expect(await writePng(file, chart)).toBe(true);
      expect(fs.readFileSync(file).subarray(1, 4).toString()).toBe('PNG');
      expect(fs.readdirSync(dir)).toEqual(['gain.png']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    await expect(svgToPng('<svg')).rejects.toMatchObject({ code: 'RAPM_FORMAT' });
  });

  it.runIf(!available)('returns null instead of throwing when the renderer is not installed', async () => {
    expect(await svgToPng(chart)).toBeNull();
    expect(await writePng(path.join(os.tmpdir(), `rapm-never-${process.pid}.png`), chart)).toBe(false);
  });

  it('validates its arguments either way', async () => {
    await expect(svgToPng(1 as unknown as string)).rejects.toMatchObject({ code: 'RAPM_TYPE' });
    await expect(svgToPng(chart, { scale: 0 })).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG' });
  });
});
