/**
 * Data-layer benchmark: generate N pairs in memory, write them as packed chunks, load them
 * back, and the streaming generate() to disk end to end. Not a test; run with
 *   npm run bench:data [-- pairs dir]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { loadChunks, writeChunks } from '../src/data/chunks.js';
import { generate, generateDataset } from '../src/data/generate.js';
import { hashDataset } from '../src/data/hash.js';

export interface BenchDataResult {
  pairs: number;
  bytes: number;
  generateSeconds: number;
  writeSeconds: number;
  loadSeconds: number;
  generateToDiskSeconds: number;
  peakRssMiB: number;
  sameData: boolean;
}

export async function benchDataLayer(options: { pairs?: number; dir?: string; chunkSize?: number; log?: (line: string) => void } = {}): Promise<BenchDataResult> {
  const pairs = options.pairs ?? 200_000;
  const log = options.log ?? ((l: string) => console.log(l));
  const dir = options.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-bench-'));
  const chunkSize = options.chunkSize ?? 50_000;
  let peak = 0;
  const sample = (): void => {
    peak = Math.max(peak, process.memoryUsage().rss);
  };
  const timer = setInterval(sample, 50);
  try {
    let t = performance.now();
    const ds = generateDataset({ pairs, seed: 1 });
    const generateSeconds = (performance.now() - t) / 1000;
    const bytes = ds.en.byteLength + ds.es.byteLength;
    log(`generate ${pairs} pairs in memory: ${generateSeconds.toFixed(2)} s (${(pairs / generateSeconds).toFixed(0)} pairs/s)`);
    const chunksDir = path.join(dir, 'chunks');
    t = performance.now();
    await writeChunks(ds, chunksDir, { chunkSize });
    const writeSeconds = (performance.now() - t) / 1000;
    log(`write as chunks (${(bytes / 2 ** 30).toFixed(2)} GiB): ${writeSeconds.toFixed(2)} s (${(bytes / 2 ** 20 / writeSeconds).toFixed(0)} MiB/s)`);
    const expected = hashDataset(ds);
    (ds as { en: Float32Array | null }).en = null;
    (ds as { es: Float32Array | null }).es = null;
    t = performance.now();
    const back = await loadChunks(chunksDir);
    const loadSeconds = (performance.now() - t) / 1000;
    log(`load chunks: ${loadSeconds.toFixed(2)} s (${(bytes / 2 ** 20 / loadSeconds).toFixed(0)} MiB/s, page cache warm)`);
    const sameData = hashDataset(back) === expected;
    (back as { en: Float32Array | null }).en = null;
    (back as { es: Float32Array | null }).es = null;
    t = performance.now();
    const res = await generate({ out: path.join(dir, 'streamed'), pairs, seed: 1, format: 'chunks', chunkSize });
    const generateToDiskSeconds = (performance.now() - t) / 1000;
    log(`generate() streaming to chunks: ${generateToDiskSeconds.toFixed(2)} s (same data: ${res.hash === expected})`);
    sample();
    return { pairs, bytes, generateSeconds, writeSeconds, loadSeconds, generateToDiskSeconds, peakRssMiB: peak / 2 ** 20, sameData: sameData && res.hash === expected };
  } finally {
    clearInterval(timer);
    if (!options.dir) fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const pairs = process.argv[2] ? Number(process.argv[2]) : 200_000;
  const r = await benchDataLayer({ pairs, dir: process.argv[3] });
  console.log(JSON.stringify(r, null, 2));
}
