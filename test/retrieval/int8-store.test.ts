// precision 'int8' (native/core/int8_store.cpp): the search equals a plain reference over the
// dequantised keys on every SIMD level, the VNNI first pass gives the exact int8 answer, the
// save/load round trip is bit-exact, bad input is refused by row, and memory is as stated.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generate, generateDataset } from '../../src/data/generate.js';
import { readBundle } from '../../src/serve/bundle.js';
import { Predictor } from '../../src/serve/predictor.js';
import { run } from '../helpers/cli.js';
import { setSimdLevel, simdLevel, simdLevels } from '../../src/native/simd.js';
import { Datastore, type FastPath, type SearchResult } from '../../src/retrieval/datastore.js';
import { datastoreKeys } from '../../src/retrieval/neighbor-source.js';
import { l2normalizeRows } from '../../src/retrieval/reference.js';
import { SETTINGS } from '../../src/settings.js';
import { randn } from '../helpers/random.js';

const initial = simdLevel();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-int8-'));
afterAll(() => {
  setSimdLevel(initial);
  fs.rmSync(tmp, { recursive: true, force: true });
});

function int8Store(keys: Float32Array, values: Float32Array, d: number, dv: number, fastPath: FastPath = 'off', ids?: string[]): Datastore {
  const ds = new Datastore({ keyDim: d, valueDim: dv, precision: 'int8', fastPath });
  // Two appends of unaligned sizes: the int8 rows must survive a segment merge.
  const n = values.length / dv;
  const h = Math.floor(n / 3) + 1;
  ds.addSync(keys.subarray(0, h * d), values.subarray(0, h * dv), ids?.slice(0, h));
  ds.addSync(keys.subarray(h * d), values.subarray(h * dv), ids?.slice(h));
  return ds;
}

function storedForm(ds: Datastore): { codes: Int8Array; scales: Float32Array } {
  const codes = new Int8Array(ds.size * ds.d);
  const scales = new Float32Array(ds.size);
  ds._exportRows(0, ds.size, codes, null, null, scales);
  return { codes, scales };
}

const bitsEqual = (a: Float32Array, b: Float32Array): boolean => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

function sameResult(a: SearchResult, b: SearchResult): boolean {
  return Buffer.from(a.neighbors.buffer).equals(Buffer.from(b.neighbors.buffer)) && bitsEqual(a.similarities, b.similarities) && bitsEqual(a.prior, b.prior);
}

describe("precision 'int8'", () => {
  it('is a choice of the one precision setting (CLI, library and native share it)', () => {
    expect(SETTINGS.precision.choices).toEqual(['f32', 'bf16', 'int8']);
    expect(new Datastore({ keyDim: 3, valueDim: 1, precision: 'int8' }).precision).toBe('int8');
  });

  it('stores codes in [-127, 127] with the row maximum at +-127 and a scale giving a unit-norm key', () => {
    const d = 37, dv = 2, n = 70;
    const ds = int8Store(randn(n * d, 1), randn(n * dv, 2), d, dv);
    const { codes, scales } = storedForm(ds);
    for (let r = 0; r < n; r++) {
      let amax = 0, n2 = 0;
      for (let p = 0; p < d; p++) {
        const c = codes[r * d + p]!;
        expect(c).toBeGreaterThanOrEqual(-127);
        amax = Math.max(amax, Math.abs(c));
        n2 += (scales[r]! * c) ** 2;
      }
      expect(amax).toBe(127);
      expect(Math.abs(Math.sqrt(n2) - 1)).toBeLessThan(2 ** -22);
    }
  });

  // The reference: every query normalised, dotted in double with the dequantised stored keys
  // (scale * codes, as datastoreKeys gives them); the kernels sum in float32, so similarities
  // agree within (d + 8) float32 epsilons and ids wherever the reference's ranking has gaps.
  for (const d of [1, 7, 33, 103, 1024]) {
    it(`d=${d}: every level's search equals the reference over the dequantised keys`, () => {
      const n = 300, dv = 5, b = 17, k = 9, tau = 0.05;
      const keys = randn(n * d, 10 + d), values = randn(n * dv, 11), queries = randn(b * d, 12 + d);
      // Exact ties: identical keys give identical codes, so the lower row must come first.
      keys.copyWithin(250 * d, 3 * d, 4 * d);
      queries.set(keys.subarray(3 * d, 4 * d), 0);
      const ds = int8Store(keys, values, d, dv);
      const deq = datastoreKeys(ds);
      const qn = l2normalizeRows(queries, d);
      const tol = (d + 8) * 2 ** -23;
      for (const level of simdLevels()) {
        setSimdLevel(level);
        const got = ds.searchSync(queries, { k, tau });
        for (let q = 0; q < b; q++) {
          const exact = new Float64Array(n);
          for (let r = 0; r < n; r++) {
            let s = 0;
            for (let p = 0; p < d; p++) s += qn[q * d + p]! * deq[r * d + p]!;
            exact[r] = s;
          }
          const order = Array.from({ length: n }, (_, r) => r).sort((x, y) => exact[y]! - exact[x]! || x - y);
          for (let i = 0; i < k; i++) {
            const row = got.neighbors[q * k + i]!;
            const sim = got.similarities[q * k + i]!;
            expect(Math.abs(sim - exact[row]!), `${level} q${q} #${i}`).toBeLessThanOrEqual(tol);
            expect(Math.abs(sim - exact[order[i]!]!), `${level} q${q} i-th best`).toBeLessThanOrEqual(tol);
          }
          let clear = true;
          for (let i = 0; i < k; i++) clear &&= exact[order[i]!]! - exact[order[i + 1]!]! > 2 * tol;
          if (clear) expect(Array.from(got.neighbors.subarray(q * k, q * k + k)), `${level} q${q}`).toEqual(order.slice(0, k));
        }
        // Query 0 is row 3 itself, and row 250 is its twin: both at the top, the lower row first
        // (at d = 1 every key is +-1: half the rows tie at the top).
        if (d > 1) expect([got.neighbors[0], got.neighbors[1]]).toEqual([3, 250]);
        expect(got.similarities[0]).toBe(got.similarities[1]);
      }
      setSimdLevel(initial);
    });
  }

  it('fastPath int8 (VNNI first pass over the stored keys, exact re-rank) is the exact int8 answer on every level', { timeout: 180_000 }, () => {
    // 8 (k + 32) panels of 32 rows: the fast path engages from 13,312 rows at k = 20.
    const d = 103, dv = 11, n = 14000, b = 64, k = 20;
    const keys = randn(n * d, 21), values = randn(n * dv, 22), queries = randn(b * d, 23);
    const exact = int8Store(keys, values, d, dv, 'off');
    const fast = int8Store(keys, values, d, dv, 'int8');
    const { codes, scales } = storedForm(exact);
    const f = storedForm(fast);
    expect(Buffer.from(f.codes.buffer).equals(Buffer.from(codes.buffer))).toBe(true);
    expect(bitsEqual(f.scales, scales)).toBe(true);
    expect(fast.memoryBytes).toBe(exact.memoryBytes); // no shadow: the stored keys are the first pass's
    let ran = 0;
    for (const level of simdLevels()) {
      setSimdLevel(level);
      const before = fast.fastPathStats;
      for (const opts of [{ k }, { k, excludeRows: Array.from({ length: b }, (_, i) => i * 7) }]) {
        expect(sameResult(fast.searchSync(queries, opts), exact.searchSync(queries, opts)), level).toBe(true);
      }
      const after = fast.fastPathStats;
      if (level === 'avx512vnni' || level === 'avx512bf16') {
        expect(after.queries - before.queries).toBe(2 * b);
        expect(after.redone - before.redone).toBeLessThan(2 * b); // the proof settled queries itself
        ran++;
      } else {
        expect(after).toEqual(before); // no VPDPBUSD: the exact int8-key scan ran
      }
    }
    setSimdLevel(initial);
    // On this machine's CPU (AVX-512 VNNI) the first pass did run; elsewhere this line says so.
    expect(ran).toBe(simdLevels().filter((l) => l === 'avx512vnni' || l === 'avx512bf16').length);
  });

  it('save/load round trip is bit-exact (codes, scales, searches), and a flipped scale byte is refused', async () => {
    const d = 45, dv = 4, n = 333, b = 9, k = 6;
    const keys = randn(n * d, 31), values = randn(n * dv, 32), queries = randn(b * d, 33);
    const ids = Array.from({ length: n }, (_, i) => `utt${Math.floor(i / 2)}`);
    const ds = int8Store(keys, values, d, dv, 'int8', ids);
    const file = path.join(tmp, 'i8.rapm');
    const saved = await ds.save(file);
    expect(saved.bytes).toBe(fs.statSync(file).size);
    const back = await Datastore.load(file);
    expect(back.precision).toBe('int8');
    const a = storedForm(ds), c = storedForm(back);
    expect(Buffer.from(c.codes.buffer).equals(Buffer.from(a.codes.buffer))).toBe(true);
    expect(bitsEqual(c.scales, a.scales)).toBe(true);
    const opts = { k, excludeIds: ids.slice(0, b) };
    expect(sameResult(back.searchSync(queries, opts), ds.searchSync(queries, opts))).toBe(true);
    // A second save of the loaded store writes the same rows (header timestamps aside).
    const again = path.join(tmp, 'i8-again.rapm');
    expect((await back.save(again)).bytes).toBe(saved.bytes);
    // The scales follow the codes in the keys section: flip a byte of the first scale.
    const bytes = fs.readFileSync(file);
    const header = JSON.parse(bytes.subarray(16, 16 + bytes.readUInt32LE(12)).toString('utf8'));
    expect(header.precision).toBe('int8');
    expect(header.sections.keys.bytes).toBe(n * d + n * 4);
    const bad = path.join(tmp, 'i8-bad.rapm');
    bytes[header.sections.keys.offset + n * d + 1] ^= 0x40;
    fs.writeFileSync(bad, bytes);
    await expect(Datastore.load(bad)).rejects.toMatchObject({ code: 'RAPM_FORMAT', message: expect.stringMatching(/checksum mismatch in the keys section/) });
  });

  it('refuses NaN and Infinity rows at add naming the row; quantises huge finite rows', () => {
    const d = 8, dv = 1;
    const ds = new Datastore({ keyDim: d, valueDim: dv, precision: 'int8' });
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY]) {
      const keys = randn(5 * d, 41);
      keys[3 * d + 2] = bad;
      let err: unknown;
      try {
        ds.addSync(keys, new Float32Array(5 * dv));
      } catch (e) {
        err = e;
      }
      expect(err).toMatchObject({ code: 'RAPM_NON_FINITE', row: 3 });
      expect(ds.size).toBe(0);
    }
    // 3e38 is finite: normalised in double first, it quantises like any row of that direction.
    const huge = Float32Array.from({ length: d }, (_, p) => (p % 2 ? -3e38 : 1e38));
    ds.addSync(Float32Array.from([...huge, ...Array.from({ length: d }, (_, p) => (p % 2 ? -3 : 1))]), new Float32Array(2));
    const { codes } = storedForm(ds);
    expect(Array.from(codes.subarray(0, d))).toEqual(Array.from(codes.subarray(d, 2 * d)));
    expect(Array.from(codes.subarray(0, 2))).toEqual([42, -127]);
  });

  it('refuses settings the int8 kernels cannot take, and bad stored rows at import naming the row', () => {
    expect(() => new Datastore({ keyDim: 65537, valueDim: 1, precision: 'int8' })).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG', message: expect.stringMatching(/65536 for precision 'int8'/) }));
    expect(() => new Datastore({ keyDim: 4, valueDim: 1, precision: 'int8', fastPath: 'bf16' })).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG', message: expect.stringMatching(/fastPath 'bf16' needs f32 or bf16 keys/) }));
    expect(() => new Datastore({ keyDim: 4, valueDim: 1, precision: 'fp8' as never })).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG' }));
    const d = 4;
    const ds = new Datastore({ keyDim: d, valueDim: 1, precision: 'int8' });
    const codes = Int8Array.from([127, 0, 0, 0, 0, 127, 0, 0, 0, 0, -128, 0]);
    const scales = Float32Array.from([1 / 127, 1 / 127, 1 / 128]);
    expect(() => ds._importRows(codes, new Float32Array(3), undefined, 3, scales)).toThrow(expect.objectContaining({ row: 2, message: expect.stringMatching(/-128/) }));
    codes[10] = -127;
    scales[1] = Number.NaN;
    expect(() => ds._importRows(codes, new Float32Array(3), undefined, 3, scales)).toThrow(expect.objectContaining({ row: 1, message: expect.stringMatching(/scale/) }));
    scales[1] = 0.5 / 127; // a key of norm 0.5 is not a stored (unit-norm) key
    expect(() => ds._importRows(codes, new Float32Array(3), undefined, 3, scales)).toThrow(expect.objectContaining({ row: 1, message: expect.stringMatching(/unit-norm/) }));
    expect(() => ds._importRows(new Float32Array(12), new Float32Array(3), undefined, 3, scales)).toThrow(expect.objectContaining({ code: 'RAPM_TYPE' }));
    expect(ds.size).toBe(0);
    scales[1] = 1 / 127;
    ds._importRows(codes, new Float32Array(3), undefined, 3, scales);
    expect(ds.size).toBe(3);
  });

  it('memory: 4 ceil(d/4) + 8 bytes of keys per row (Config A: 1,032 against 4,096 for f32)', () => {
    for (const d of [1024, 103, 3]) {
      const dv = 101, n = 64; // whole 32-row panels: memoryBytes = n x bytesPerRow exactly
      const keys = randn(n * d, 51), values = randn(n * dv, 52);
      const sizes: Record<string, number> = {};
      for (const precision of ['f32', 'bf16', 'int8'] as const) {
        // fastPath 'off': the stored keys alone (the default 'auto' adds a bf16 shadow to f32 keys on AVX512_BF16 CPUs).
        const ds = new Datastore({ keyDim: d, valueDim: dv, precision, fastPath: 'off' });
        ds.addSync(keys, values);
        expect(ds.memoryBytes).toBe(n * ds.bytesPerRow);
        sizes[precision] = ds.bytesPerRow - 4 * dv - 4;
      }
      expect(sizes).toEqual({ f32: 4 * d, bf16: 2 * d, int8: 4 * Math.ceil(d / 4) + 8 });
    }
    // An f32 store with an int8 shadow pays the same int8 bytes on top of its f32 keys.
    const ds = new Datastore({ keyDim: 1024, valueDim: 101, fastPath: 'int8' });
    ds.addSync(randn(64 * 1024, 53), randn(64 * 101, 54));
    expect(ds.memoryBytes).toBe(64 * ds.bytesPerRow);
    expect(ds.bytesPerRow).toBe(4096 + 1032 + 408);
  });

  it('changes answers on DRAL-like data, but little: recall@20 of the f32 top-20 and prior cosine', () => {
    // The fact users need (scripts/int8-accuracy.ts prints it at full size): int8 keys are not f32 keys.
    const data = generateDataset({ pairs: 3000, testPairs: 578, seed: 3 });
    const d = 1024, k = 20, b = 200;
    const queries = data.en.subarray(0, b * d);
    const exclude = data.ids.slice(0, b);
    const f32 = new Datastore({ keyDim: d, valueDim: d });
    f32.addSync(data.en, data.es, data.ids);
    const i8 = int8Store(data.en, data.es, d, d, 'off', data.ids);
    const want = f32.searchSync(queries, { k, excludeIds: exclude });
    const got = i8.searchSync(queries, { k, excludeIds: exclude });
    let found = 0, cosSum = 0;
    for (let q = 0; q < b; q++) {
      const set = new Set(want.neighbors.subarray(q * k, q * k + k));
      for (const r of got.neighbors.subarray(q * k, q * k + k)) found += set.has(r) ? 1 : 0;
      let dot = 0, na = 0, nb = 0;
      for (let j = 0; j < d; j++) {
        const x = got.prior[q * d + j]!, y = want.prior[q * d + j]!;
        dot += x * y;
        na += x * x;
        nb += y * y;
      }
      cosSum += dot / Math.sqrt(na * nb);
    }
    const recall = found / (b * k);
    // Not identical (the rounding is real) and not far off (a broken quantiser would be).
    expect(recall).toBeLessThan(1);
    expect(recall).toBeGreaterThan(0.8);
    expect(cosSum / b).toBeGreaterThan(0.999);
  });

  it('rapm index --precision int8 writes a bundle whose datastore is int8 and whose Predictor serves its priors', async () => {
    const data = path.join(tmp, 'data');
    await generate({ out: data, pairs: 400, seed: 5 });
    const out = path.join(tmp, 'bundle-int8');
    const r = await run(['index', '--data', data, '--out', out, '--config', 'A', '--k', '5', '--precision', 'int8', '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    const ds = await Datastore.load(readBundle(out).datastoreFile);
    expect(ds.precision).toBe('int8');
    const p = await Predictor.fromBundle(out);
    expect(p.info).toMatchObject({ precision: 'int8', k: 5 });
    const queries = randn(3 * 1024, 61);
    const got = await p.predict(queries);
    const want = await ds.search(queries, { k: 5, tau: SETTINGS.tau.default });
    expect(bitsEqual(got.prior, want.prior)).toBe(true);
    const bad = await run(['index', '--data', data, '--out', path.join(tmp, 'bundle-x'), '--precision', 'int4', '--quiet']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/precision.*f32, bf16, int8/);
  }, 120_000);
});
