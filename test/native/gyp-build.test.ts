// The node-gyp build (binding.gyp -> build-gyp/Release/rapm.node, made by
// scripts/build-native-gyp.sh) must behave exactly like the cmake-js build
// (build/Release/rapm.node): same SIMD levels, same neighbours, same priors.
// Both copies load into this process through createRequire on their own paths;
// each gets its own instance data (kernel level, thread pool).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { NativeBinding, NativeDatastore } from '../../src/native/binding.js';
import { randn } from '../helpers/random.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const cmakePath = path.join(root, 'build', 'Release', 'rapm.node');
const gypPath = path.join(root, 'build-gyp', 'Release', 'rapm.node');
const require = createRequire(import.meta.url);

function load(p: string, howToBuild: string): NativeBinding {
  if (!existsSync(p)) throw new Error(`${p} is missing: run ${howToBuild} first (CI runs it before the tests)`);
  return require(p) as NativeBinding;
}
const loadCmake = (): NativeBinding => load(cmakePath, '`npm run build:native`');
const loadGyp = (): NativeBinding => load(gypPath, '`bash scripts/build-native-gyp.sh`');

const N = 500;
const D = 33;
const DV = 11;
const B = 24;
const K = 7;
const TAU = 0.07;

const keys = randn(N * D, 11);
const values = randn(N * DV, 12);
const groups = Int32Array.from({ length: N }, (_, i) => i % 37);
const queries = randn(B * D, 13);
const exclude = Int32Array.from({ length: B }, (_, i) => (i * 5) % 37);

interface Out {
  prior: Float32Array;
  neighbors: Int32Array;
  weights: Float32Array;
  similarities: Float32Array;
}

function build(binding: NativeBinding, bf16: boolean): NativeDatastore {
  const ds = new binding.Datastore(D, DV, bf16);
  ds.addSync(keys.subarray(0, 300 * D), values.subarray(0, 300 * DV), groups.subarray(0, 300), 300);
  ds.addSync(keys.subarray(300 * D), values.subarray(300 * DV), groups.subarray(300), N - 300);
  return ds;
}

function search(ds: NativeDatastore, aggregate: number, excludeGroups: Int32Array | null): Out {
  const out: Out = {
    prior: new Float32Array(B * DV),
    neighbors: new Int32Array(B * K),
    weights: new Float32Array(B * K),
    similarities: new Float32Array(B * K),
  };
  ds.searchSync(queries, B, K, TAU, aggregate, excludeGroups, out.prior, out.neighbors, out.weights, out.similarities);
  return out;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe('node-gyp build matches the cmake-js build', () => {
  it('both builds exist and load', () => {
    expect(Object.keys(loadCmake()).sort()).toEqual(Object.keys(loadGyp()).sort());
  });

  it('reports the same SIMD levels', () => {
    const cmake = loadCmake();
    const gyp = loadGyp();
    expect(gyp.simdLevels()).toEqual(cmake.simdLevels());
    expect(gyp.simdLevel()).toBe(cmake.simdLevel());
  });

  it('two copies of the addon in one process keep separate state', () => {
    const cmake = loadCmake();
    const gyp = loadGyp();
    expect(cmake).not.toBe(gyp);
    const levels = cmake.simdLevels();
    const before = gyp.simdLevel();
    cmake.setSimdLevel(levels[levels.length - 1]!);
    try {
      expect(gyp.simdLevel()).toBe(before);
    } finally {
      cmake.setSimdLevel(before);
    }
  });

  for (const bf16 of [false, true]) {
    for (const [aggregate, exclude_] of [
      [0, null],
      [0, exclude],
    ] as const) {
      it(`same neighbours and priors at every SIMD level (bf16=${bf16}, aggregate=${aggregate}, exclude=${exclude_ !== null})`, () => {
        const cmake = loadCmake();
        const gyp = loadGyp();
        const a = build(cmake, bf16);
        const b = build(gyp, bf16);
        expect(b.size).toBe(N);
        expect(b.memoryBytes).toBe(a.memoryBytes);
        expect(b._segmentCount).toBe(a._segmentCount);
        const restoreCmake = cmake.simdLevel();
        const restoreGyp = gyp.simdLevel();
        try {
          for (const level of cmake.simdLevels()) {
            expect(cmake.setSimdLevel(level)).toBe(level);
            expect(gyp.setSimdLevel(level)).toBe(level);
            const x = search(a, aggregate, exclude_);
            const y = search(b, aggregate, exclude_);
            expect(Array.from(y.neighbors), `neighbours at ${level}`).toEqual(Array.from(x.neighbors));
            expect(maxAbsDiff(y.prior, x.prior), `prior at ${level}`).toBeLessThanOrEqual(1e-6);
            expect(maxAbsDiff(y.weights, x.weights), `weights at ${level}`).toBeLessThanOrEqual(1e-6);
            expect(maxAbsDiff(y.similarities, x.similarities), `similarities at ${level}`).toBeLessThanOrEqual(1e-6);
            // Not vacuous: real neighbours, finite non-zero priors.
            expect(x.neighbors.every((n) => n >= 0 && n < N)).toBe(true);
            expect(x.prior.some((v) => v !== 0) && x.prior.every(Number.isFinite)).toBe(true);
          }
        } finally {
          cmake.setSimdLevel(restoreCmake);
          gyp.setSimdLevel(restoreGyp);
        }
      });
    }
  }
});
