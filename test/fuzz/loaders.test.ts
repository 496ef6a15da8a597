/**
 * Bounded fuzzing of everything that reads untrusted bytes or shapes: random and mutated
 * bytes into the .npy reader and the datastore loader, random shapes and values into
 * Datastore.add/search. The only acceptable outcomes are success or a coded rapm error
 * (`code` starting with RAPM_): never another exception, a crash or a hang. Each target
 * runs for a fixed time (BUDGET_MS) from a fixed seed, and the number of cases is printed.
 *
 * File targets (FILE_TARGETS): readNpy, loadDatastore (with checksum resealing) and the ONNX
 * loader FusionSession.create (our exporter's model and another toolchain's, mutated; a model
 * that loads must also run). Adding a loader is one more entry there; its counts are printed
 * like the others.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parseNpyHeader, readNpy, writeNpySync } from '../../src/data/npy.js';
import { Datastore } from '../../src/retrieval/datastore.js';
import type { SearchOptions } from '../../src/retrieval/search-options.js';
import { loadDatastore, saveDatastore } from '../../src/retrieval/persist.js';
import { rng } from '../helpers/random.js';
import { fusionSpec, initParams, paramLayout } from '../../src/fusion/layout.js';
import { exportOnnx } from '../../src/fusion/onnx-export.js';
import { FusionSession } from '../../src/fusion/onnx-session.js';

const BUDGET_MS = 1200; // per target; 4 targets (3 file loaders + add/search), ~5 s in all
const SEED = 20240611;
const here = path.dirname(fileURLToPath(import.meta.url));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-fuzz-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

type Rand = () => number;
const int = (r: Rand, n: number) => Math.floor(r() * n);

/** A file-reading target: seeds (valid files), how to load one, optional resealing of checksums. */
interface FileTarget {
  name: string;
  seeds: () => Promise<Uint8Array[]> | Uint8Array[];
  load: (file: string, bytes: Uint8Array) => Promise<unknown>;
  /** Make a mutated file pass its checksums, so the fuzzer also reaches the checks behind them. */
  reseal?: (bytes: Uint8Array) => Uint8Array;
}

function fileTarget(name: string, seeds: FileTarget['seeds'], load: FileTarget['load'], reseal?: FileTarget['reseal']): FileTarget {
  return { name, seeds, load, reseal };
}

/** One mutation of `seed` (or of random bytes), chosen at random. */
function mutate(r: Rand, seed: Uint8Array, other: Uint8Array): Uint8Array {
  const b = Uint8Array.from(seed);
  switch (int(r, 8)) {
    case 0: // flip a few bits
      for (let i = int(r, 8) + 1; i > 0 && b.length; i--) b[int(r, b.length)]! ^= 1 << int(r, 8);
      return b;
    case 1: // boundary bytes
      for (let i = int(r, 4) + 1; i > 0 && b.length; i--) b[int(r, b.length)] = [0, 0xff, 0x7f, 0x80, 0x20, 0x39][int(r, 6)]!;
      return b;
    case 2: // truncate
      return b.subarray(0, int(r, b.length + 1));
    case 3: // extend with garbage
      return Uint8Array.from([...b, ...Array.from({ length: int(r, 64) + 1 }, () => int(r, 256))]);
    case 4: // splice a piece of another seed in
      if (b.length && other.length) {
        const at = int(r, b.length), from = int(r, other.length), len = Math.min(int(r, 256), b.length - at, other.length - from);
        b.set(other.subarray(from, from + len), at);
      }
      return b;
    case 5: // digits in the text header region (shapes, lengths)
      for (let i = int(r, 3) + 1; i > 0 && b.length; i--) b[int(r, Math.min(b.length, 512))] = 0x30 + int(r, 10);
      return b;
    case 6: // pure random bytes
      return Uint8Array.from({ length: int(r, 300) }, () => int(r, 256));
    default: // seed prefix + random tail
      return Uint8Array.from([...b.subarray(0, int(r, Math.min(b.length, 200) + 1)), ...Array.from({ length: int(r, 200) }, () => int(r, 256))]);
  }
}

function isCoded(e: unknown): boolean {
  return e instanceof Error && typeof (e as { code?: unknown }).code === 'string' && (e as unknown as { code: string }).code.startsWith('RAPM_');
}

/** Recompute the four SHA-256 digests of a datastore file from its own prefix (when that is readable). */
function resealDatastore(bytes: Uint8Array): Uint8Array {
  const b = Buffer.from(bytes);
  if (b.length < 16 + 136) return b;
  const payload = 16 + b.readUInt32LE(12);
  const trailer = b.length - 136;
  if (payload > trailer) return b;
  let h: { sections?: Record<string, { offset: number; bytes: number }> } = {};
  try {
    h = JSON.parse(b.subarray(16, payload).toString('utf8'));
  } catch {
    /* reseal the header digest only */
  }
  createHash('sha256').update(b.subarray(0, payload)).digest().copy(b, trailer);
  ['keys', 'values', 'groups'].forEach((k, i) => {
    const s = h.sections?.[k];
    if (s && Number.isInteger(s.offset) && Number.isInteger(s.bytes) && s.offset >= payload && s.offset + s.bytes <= trailer) {
      createHash('sha256').update(b.subarray(s.offset, s.offset + s.bytes)).digest().copy(b, trailer + 32 * (i + 1));
    }
  });
  return b;
}

async function datastoreSeeds(): Promise<Uint8Array[]> {
  const r = rng(7);
  const out: Uint8Array[] = [];
  for (const [precision, ids, n] of [['f32', true, 40], ['bf16', false, 33], ['f32', false, 0]] as const) {
    const ds = new Datastore({ keyDim: 12, valueDim: 5, keyIndices: [0, 2, 4, 6, 8], valueIndices: [1, 3], precision });
    if (n > 0) ds.addSync(Float32Array.from({ length: n * 12 }, () => r() - 0.5), Float32Array.from({ length: n * 5 }, r), ids ? Array.from({ length: n }, (_, i) => `u${i % 9}`) : undefined);
    const f = path.join(tmp, `seed-${precision}-${n}.rds`);
    await saveDatastore(ds, f, { speakers: ids ? Array.from({ length: n }, () => 's') : undefined });
    out.push(fs.readFileSync(f));
  }
  return out;
}

function npySeeds(): Uint8Array[] {
  const dir = path.join(here, '..', 'fixtures', 'npy');
  const out = fs.readdirSync(dir).filter((f) => f.endsWith('.npy')).map((f) => fs.readFileSync(path.join(dir, f)));
  const f = path.join(tmp, 'seed.npy');
  writeNpySync(f, Float32Array.from({ length: 24 }, (_, i) => i / 7), [4, 6]);
  out.push(fs.readFileSync(f));
  return out;
}

const FILE_TARGETS: FileTarget[] = [
  fileTarget('readNpy', npySeeds, async (file, bytes) => {
    try {
      parseNpyHeader(bytes, file);
    } catch (e) {
      if (!isCoded(e)) throw e;
    }
    await readNpy(file);
  }),
  fileTarget('loadDatastore', datastoreSeeds, async (file) => (await loadDatastore(file)).searchSync, resealDatastore),
  // ONNX models: the exporter's and another toolchain's; a model that loads must also run.
  fileTarget('FusionSession', onnxSeeds, async (file) => {
    const s = await FusionSession.create(file, { device: 'cpu' });
    try {
      await s.run(new Float32Array(2 * 1024).fill(0.01), new Float32Array(2 * 101).fill(0.1));
    } finally {
      await s.release();
    }
  }),
];

async function onnxSeeds(): Promise<Uint8Array[]> {
  const spec = fusionSpec({ hidden: [8] });
  const layout = paramLayout(spec);
  const file = path.join(tmp, 'seed-fusion.onnx');
  await exportOnnx(layout, initParams(layout, 1), file);
  return [fs.readFileSync(file), fs.readFileSync(path.join(here, '../fixtures/onnx/tiny-fusion.onnx'))];
}

describe('fuzz: loaders refuse bad bytes with coded errors', () => {
  for (const target of FILE_TARGETS) {
    it(`${target.name}: random and mutated files`, async () => {
      const r = rng(SEED);
      const seeds = await target.seeds();
      const file = path.join(tmp, `case-${target.name}`);
      const stats = { cases: 0, ok: 0, coded: 0, resealed: 0 };
      const codes = new Map<string, number>();
      const t0 = Date.now();
      while (Date.now() - t0 < BUDGET_MS) {
        let bytes = mutate(r, seeds[int(r, seeds.length)]!, seeds[int(r, seeds.length)]!);
        if (target.reseal && r() < 0.5) {
          bytes = target.reseal(bytes);
          stats.resealed++;
        }
        fs.writeFileSync(file, bytes);
        stats.cases++;
        try {
          await target.load(file, bytes);
          stats.ok++;
        } catch (e) {
          if (!isCoded(e)) {
            fs.writeFileSync(path.join(here, `crash-${target.name}.bin`), bytes);
            throw new Error(`${target.name}: uncoded ${String(e)} (case ${stats.cases}, bytes saved beside this test)`, { cause: e });
          }
          stats.coded++;
          const c = (e as { code: string }).code;
          codes.set(c, (codes.get(c) ?? 0) + 1);
        }
      }
      console.log(`fuzz ${target.name}: ${stats.cases} cases (${stats.ok} loaded, ${stats.coded} refused, ${stats.resealed} resealed) codes ${JSON.stringify(Object.fromEntries(codes))}`);
      expect(stats.cases).toBeGreaterThan(50);
      let seedsLoaded = 0;
      for (const s of seeds) {
        fs.writeFileSync(file, s);
        seedsLoaded += await target.load(file, s).then(() => 1, (e: unknown) => (isCoded(e) ? 0 : Promise.reject(e)));
      }
      expect(seedsLoaded).toBeGreaterThan(0); // some fixtures are unsupported on purpose (big-endian, complex)
    });
  }
});

describe('fuzz: Datastore.add/search with random shapes and values', () => {
  /** A Float32Array of roughly `n` values: sometimes the wrong length, sometimes NaN, Inf, huge, tiny or zero. */
  function values(r: Rand, n: number): Float32Array {
    const len = r() < 0.85 ? n : Math.max(0, n + int(r, 7) - 3);
    const a = Float32Array.from({ length: len }, () => r() * 2 - 1);
    const special = [NaN, Infinity, -Infinity, 3e38, -3e38, 1e-45, 0];
    if (r() < 0.15 && len) a[int(r, len)] = special[int(r, special.length)]!;
    if (r() < 0.05) a.fill(0);
    return a;
  }
  const pick = <T>(r: Rand, xs: readonly T[]): T => xs[int(r, xs.length)]!;

  it('only coded errors, sync and async', async () => {
    const r = rng(SEED + 1);
    const stats = { cases: 0, ok: 0, coded: 0 };
    const t0 = Date.now();
    const attempt = async (f: () => unknown) => {
      stats.cases++;
      try {
        await f();
        stats.ok++;
      } catch (e) {
        if (!isCoded(e)) throw e;
        stats.coded++;
      }
    };
    while (Date.now() - t0 < BUDGET_MS) {
      const keyDim = 1 + int(r, 40), valueDim = 1 + int(r, 12);
      let ds: Datastore;
      try {
        ds = new Datastore({
          keyDim: pick(r, [keyDim, keyDim, keyDim, 0, -1, 1.5]),
          valueDim,
          keyIndices: r() < 0.3 ? Array.from({ length: 1 + int(r, keyDim) }, () => int(r, keyDim + 1)) : undefined,
          precision: pick(r, ['f32', 'bf16', 'f32', 'f16' as never]),
        });
      } catch (e) {
        if (!isCoded(e)) throw e;
        stats.cases++;
        stats.coded++;
        continue;
      }
      for (let step = 0; step < 6; step++) {
        const m = int(r, 60);
        const ids = r() < 0.5 ? Array.from({ length: r() < 0.9 ? m : m + 1 }, () => pick(r, ['a', 'b', 'c', `x${int(r, 1000)}`, '' as string])) : undefined;
        if (r() < 0.5) await attempt(() => ds.addSync(values(r, m * keyDim), values(r, m * valueDim), ids));
        else await attempt(() => ds.add(values(r, m * keyDim), values(r, m * valueDim), ids));
        const b = int(r, 5);
        const n = ds.size;
        const opts = {
          k: pick(r, [1, 2, 5, n, n + 1, 0, -3, 2.5, 1e9]),
          tau: pick(r, [0.04, 1, 0, -1, NaN, Infinity, 1e-30]),
          aggregate: pick(r, ['softmax', 'mean', 'top1', 'max' as never]),
          ...(r() < 0.3 ? { excludeRows: Array.from({ length: r() < 0.9 ? b : b + 1 }, () => int(r, n + 3) - 2) } : {}),
          ...(r() < 0.2 ? { excludeIds: Array.from({ length: b }, () => pick(r, ['a', 'b', null, 'zz'])) } : {}),
          ...(r() < 0.2 ? { rowRange: [int(r, n + 2) - 1, int(r, n + 2)] as [number, number] } : {}),
        } as SearchOptions;
        if (r() < 0.5) await attempt(() => ds.searchSync(values(r, b * keyDim), opts));
        else await attempt(() => ds.search(values(r, b * keyDim), opts));
      }
    }
    console.log(`fuzz Datastore.add/search: ${stats.cases} cases (${stats.ok} ok, ${stats.coded} refused with codes)`);
    expect(stats.ok).toBeGreaterThan(10);
    expect(stats.coded).toBeGreaterThan(10);
  });
});
