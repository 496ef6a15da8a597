import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RapmError } from '../errors.js';

/** The native Datastore class as the addon exports it (positional arguments only). */
export interface NativeDatastore {
  add(keys: Float32Array, values: Float32Array, groups: Int32Array, m: number): Promise<void>;
  addSync(keys: Float32Array, values: Float32Array, groups: Int32Array, m: number): void;
  search(
    queries: Float32Array, // [b, d]
    b: number,
    k: number,
    tau: number,
    aggregate: number,
    excludeGroups: Int32Array | null, // [b]
    prior: Float32Array, // [b, dv]
    neighbors: Int32Array, // [b, k]
    weights: Float32Array, // [b, k]
    similarities: Float32Array, // [b, k]
    rowBegin?: number, // search only rows [rowBegin, rowEnd)
    rowEnd?: number,
  ): Promise<void>;
  searchSync(
    queries: Float32Array,
    b: number,
    k: number,
    tau: number,
    aggregate: number,
    excludeGroups: Int32Array | null,
    prior: Float32Array,
    neighbors: Int32Array,
    weights: Float32Array,
    similarities: Float32Array,
    rowBegin?: number,
    rowEnd?: number,
  ): void;
  readonly size: number;
  readonly memoryBytes: number;
  readonly dim: number;
  readonly valueDim: number;
  readonly bf16: boolean;
  readonly _segmentCount: number;
}

export interface NativeBinding {
  Datastore: new (d: number, dv: number, bf16: boolean) => NativeDatastore;
  simdLevel(): string;
  simdLevels(): string[];
  setSimdLevel(level: string): string;
  concurrency(): number;
  setConcurrency(threads: number): number;
  _fmaPeak(seconds: number): number;
  _readBandwidth(floatsPerThread: number, reps: number): number;
}

const here = path.dirname(fileURLToPath(import.meta.url));
/** The package root: two levels above src/native or dist/native. */
export const packageRoot = path.resolve(here, '..', '..');

let cached: NativeBinding | undefined;

/**
 * Finds and loads rapm.node: `RAPM_NATIVE` (a path to the .node file), then
 * build/Release (cmake-js and node-gyp both put it there), then build/Debug.
 * On failure, one error lists every place tried and the fixes.
 */
export function loadBinding(): NativeBinding {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  const candidates = [
    process.env.RAPM_NATIVE,
    path.join(packageRoot, 'build', 'Release', 'rapm.node'),
    path.join(packageRoot, 'build', 'Debug', 'rapm.node'),
  ].filter((p): p is string => typeof p === 'string' && p.length > 0);
  const failures: string[] = [];
  for (const p of candidates) {
    if (!existsSync(p)) {
      failures.push(`${p}: not found`);
      continue;
    }
    try {
      cached = require(p) as NativeBinding;
      return cached;
    } catch (e) {
      failures.push(`${p}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  throw new RapmError(
    'RAPM_NATIVE_LOAD',
    [
      'Could not load the rapm native addon. Tried:',
      ...failures.map((f) => `  - ${f}`),
      'Possible fixes:',
      '  - build it: npm run build:native   (cmake-js; needs cmake >= 3.15 and a C++17 compiler)',
      '  - or with node-gyp: npm run build:native:gyp',
      '  - or point RAPM_NATIVE at a rapm.node built for this platform',
    ].join('\n'),
  );
}
