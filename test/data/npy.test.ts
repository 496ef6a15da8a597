import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  buildNpyHeader,
  parseNpyHeader,
  readNpy,
  readNpyHeader,
  readNpyInto,
  readNpyRows,
  readNpySync,
  writeNpy,
  writeNpySync,
} from '../../src/data/npy.js';

const FIX = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'npy');
const expected = JSON.parse(fs.readFileSync(path.join(FIX, 'expected.json'), 'utf8')) as Record<
  string,
  { shape: number[]; descr: string; values: (number | string)[] }
>;
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-npy-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());

const fix = (name: string): string => path.join(FIX, name);

/** Expect a rejected promise or a thrown call to carry `code` and a message matching all of `parts`. */
async function expectError(p: Promise<unknown> | (() => unknown), code: string, ...parts: (string | RegExp)[]): Promise<void> {
  let err: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    err = e;
  }
  expect(err, 'expected an error').toBeInstanceOf(Error);
  expect((err as { code?: string }).code).toBe(code);
  for (const part of parts) expect((err as Error).message).toMatch(part);
}

describe('readNpy against files written by numpy', () => {
  for (const [name, exp] of Object.entries(expected)) {
    it(`reads ${name} (${exp.descr}, shape (${exp.shape.join(', ')}))`, async () => {
      const arr = await readNpy(fix(name));
      expect(arr.shape).toEqual(exp.shape);
      expect(arr.header.descr).toBe(exp.descr);
      if (exp.descr === '<i8') {
        expect(arr.data).toBeInstanceOf(BigInt64Array);
        expect(Array.from(arr.data as BigInt64Array)).toEqual(exp.values.map((v) => BigInt(v)));
      } else if (exp.descr === '<i4') {
        expect(arr.data).toBeInstanceOf(Int32Array);
        expect(Array.from(arr.data as Int32Array)).toEqual(exp.values);
      } else {
        // float32 as stored, float64 converted to float32 (expected.json holds the float32 values).
        expect(arr.data).toBeInstanceOf(Float32Array);
        expect(Array.from(arr.data as Float32Array)).toEqual(exp.values);
      }
      const sync = readNpySync(fix(name));
      expect(sync.data).toEqual(arr.data);
    });
  }

  it('reports versions 1, 2 and 3', async () => {
    expect((await readNpyHeader(fix('f4_2x3.npy'))).version).toBe(1);
    expect((await readNpyHeader(fix('v2_f4_4x2.npy'))).version).toBe(2);
    expect((await readNpyHeader(fix('v3_f4_3.npy'))).version).toBe(3);
  });
});

describe('writeNpy matches numpy byte for byte', () => {
  const cases: [string, (v: (number | string)[]) => Float32Array | Float64Array | Int32Array | BigInt64Array][] = [
    ['f4_2x3.npy', (v) => Float32Array.from(v as number[])],
    ['f4_1024.npy', (v) => Float32Array.from(v as number[])],
    ['f4_rows_100x8.npy', (v) => Float32Array.from(v as number[])],
    ['i4_5.npy', (v) => Int32Array.from(v as number[])],
    ['i8_2x2.npy', (v) => BigInt64Array.from(v.map((x) => BigInt(x)))],
    ['empty_0x1024.npy', () => new Float32Array(0)],
  ];
  for (const [name, make] of cases) {
    it(name, async () => {
      const exp = expected[name]!;
      const out = path.join(tmp, `w-${name}`);
      await writeNpy(out, make(exp.values), exp.shape);
      expect(fs.readFileSync(out)).toEqual(fs.readFileSync(fix(name)));
      const outSync = path.join(tmp, `ws-${name}`);
      writeNpySync(outSync, make(exp.values), exp.shape);
      expect(fs.readFileSync(outSync)).toEqual(fs.readFileSync(fix(name)));
    });
  }

  it('float64 data round-trips through <f8 (read back as float32)', async () => {
    const data = Float64Array.from([0.1, -2.5, 1e-30, 3e38]);
    const out = path.join(tmp, 'f8.npy');
    await writeNpy(out, data, [2, 2]);
    const back = await readNpy(out);
    expect(back.header.descr).toBe('<f8');
    expect(Array.from(back.data as Float32Array)).toEqual(Array.from(data, Math.fround));
  });

  it('headers are 64-byte aligned and version 2/3 can be forced', async () => {
    for (const version of [1, 2, 3] as const) {
      const h = buildNpyHeader('<f4', [7, 1024], { version });
      expect(h.length % 64).toBe(0);
      expect(h[6]).toBe(version);
      const out = path.join(tmp, `v${version}.npy`);
      await writeNpy(out, new Float32Array(7 * 1024).fill(version), [7, 1024], { version });
      const back = await readNpy(out, { expectShape: [7, 1024] });
      expect(back.header.version).toBe(version);
      expect((back.data as Float32Array)[7 * 1024 - 1]).toBe(version);
    }
  });

  it('rejects data that does not fill the shape, and non-numeric arrays', async () => {
    await expectError(writeNpy(path.join(tmp, 'bad.npy'), new Float32Array(5), [2, 3]), 'RAPM_SHAPE_MISMATCH', 'bad.npy', '(2, 3)', '6', '5');
    await expectError(writeNpy(path.join(tmp, 'bad.npy'), [1, 2] as unknown as Float32Array, [2]), 'RAPM_TYPE', 'Array(2)');
    expect(fs.existsSync(path.join(tmp, 'bad.npy'))).toBe(false);
  });
});

describe('row ranges', () => {
  const full = Float32Array.from(expected['f4_rows_100x8.npy']!.values as number[]);

  it('reads rows [start, end) only', async () => {
    const r = await readNpyRows(fix('f4_rows_100x8.npy'), 10, 25);
    expect(r.shape).toEqual([15, 8]);
    expect(r.data).toEqual(full.subarray(80, 200));
    const none = await readNpyRows(fix('f4_rows_100x8.npy'), 100, 100);
    expect(none.shape).toEqual([0, 8]);
    const last = await readNpyRows(fix('f4_rows_100x8.npy'), 99, 100);
    expect(last.data).toEqual(full.subarray(792));
  });

  it('converts float64 rows', async () => {
    const r = await readNpyRows(fix('f8_3x4.npy'), 1, 3);
    expect(Array.from(r.data as Float32Array)).toEqual(expected['f8_3x4.npy']!.values.slice(4));
  });

  it('widens float16 exactly, on every read path, for every half bit pattern', async () => {
    const r = await readNpyRows(fix('f2_2x4.npy'), 1, 2);
    expect(Array.from(r.data as Float32Array)).toEqual(expected['f2_2x4.npy']!.values.slice(4)); // -0 stays -0
    // All 65,536 patterns: known values, and every path (sync, async, rows, into) agrees.
    const file = path.join(tmp, 'all-halves.npy');
    const bitsOf = new Uint16Array(65536).map((_, i) => i);
    fs.writeFileSync(file, Buffer.concat([Buffer.from(buildNpyHeader('<f2', [256, 256])), Buffer.from(bitsOf.buffer)]));
    const all = (await readNpy(file)).data as Float32Array;
    expect(all).toBeInstanceOf(Float32Array);
    expect([all[0x3c00], all[0xc000], all[0x7bff], all[0x0001], all[0x0400], all[0x3555], all[0x7c00], all[0xfc00]]).toEqual([
      1, -2, 65504, 2 ** -24, 2 ** -14, 0.333251953125, Infinity, -Infinity,
    ]);
    expect(Object.is(all[0x8000], -0)).toBe(true);
    expect(all.filter((v) => Number.isNaN(v)).length).toBe(2 * 1023); // exponent 31, mantissa != 0
    expect(readNpySync(file).data).toEqual(all);
    expect((await readNpyRows(file, 100, 101)).data).toEqual(all.subarray(100 * 256, 101 * 256));
    const into = new Float32Array(3 * 256);
    await readNpyInto(file, into, { start: 7, end: 10 });
    expect(into).toEqual(all.subarray(7 * 256, 10 * 256));
  });

  it('reads into a caller buffer (the chunk-streaming path)', async () => {
    const target = new Float32Array(5 * 8);
    await readNpyInto(fix('f4_rows_100x8.npy'), target, { start: 50, end: 55 });
    expect(target).toEqual(full.subarray(400, 440));
    await expectError(readNpyInto(fix('f4_rows_100x8.npy'), new Float32Array(7)), 'RAPM_SHAPE_MISMATCH', 'target holds 7');
    await expectError(readNpyInto(fix('i4_5.npy'), new Float32Array(5)), 'RAPM_FORMAT', 'i4_5.npy', "'<i4'");
  });

  it('rejects ranges outside the array', async () => {
    await expectError(readNpyRows(fix('f4_rows_100x8.npy'), 90, 101), 'RAPM_INVALID_ARG', 'end <= 100', '101');
    await expectError(readNpyRows(fix('f4_rows_100x8.npy'), 5, 4), 'RAPM_INVALID_ARG');
    await expectError(readNpyRows(fix('f4_rows_100x8.npy'), -1, 4), 'RAPM_INVALID_ARG');
  });

  it('reads rows beyond 2 GiB of a large (sparse) file without loading it', async () => {
    // 600M float32 = 2.4 GB of data, written as a header plus a sparse hole: no disk or memory used.
    const file = path.join(tmp, 'huge.npy');
    const rows = 600_000_000 / 8;
    const header = buildNpyHeader('<f4', [rows, 8]);
    fs.writeFileSync(file, header);
    fs.truncateSync(file, header.length + rows * 8 * 4);
    const tail = Float32Array.from({ length: 16 }, (_, i) => i + 0.5);
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, new Uint8Array(tail.buffer), 0, 64, header.length + (rows - 2) * 32);
    fs.closeSync(fd);
    const r = await readNpyRows(file, rows - 3, rows);
    expect(r.shape).toEqual([3, 8]);
    expect(Array.from((r.data as Float32Array).subarray(8))).toEqual(Array.from(tail));
    expect(Array.from((r.data as Float32Array).subarray(0, 8))).toEqual(new Array(8).fill(0));
    fs.rmSync(file);
  });
});

describe('bad files give clear errors', () => {
  const write = (name: string, bytes: Uint8Array | string): string => {
    const f = path.join(tmp, name);
    fs.writeFileSync(f, bytes);
    return f;
  };

  it('wrong magic string', async () => {
    const f = write('magic.npy', 'PK\x03\x04 this is a zip, not an npy file');
    await expectError(readNpy(f), 'RAPM_FORMAT', 'magic.npy', 'not a .npy file', 'PK');
    await expectError(() => readNpySync(f), 'RAPM_FORMAT', 'not a .npy file');
  });

  it('unsupported format version', async () => {
    const b = fs.readFileSync(fix('f4_2x3.npy'));
    b[6] = 4;
    await expectError(readNpy(write('v4.npy', b)), 'RAPM_FORMAT', 'v4.npy', 'version 4.0');
  });

  it('truncated data, header and prelude', async () => {
    const b = fs.readFileSync(fix('f4_rows_100x8.npy'));
    await expectError(readNpy(write('trunc-data.npy', b.subarray(0, b.length - 10))), 'RAPM_FORMAT', 'trunc-data.npy', 'truncated', '(100, 8)', '3200', '3190');
    await expectError(readNpy(write('trunc-header.npy', b.subarray(0, 40))), 'RAPM_FORMAT', 'trunc-header.npy', 'truncated');
    await expectError(readNpy(write('trunc-prelude.npy', b.subarray(0, 7))), 'RAPM_FORMAT', 'trunc-prelude.npy', 'truncated');
    await expectError(readNpy(write('empty.npy', new Uint8Array(0))), 'RAPM_FORMAT', 'truncated');
    // Row reads check the size too.
    await expectError(readNpyRows(path.join(tmp, 'trunc-data.npy'), 0, 1), 'RAPM_FORMAT', 'truncated');
  });

  it('a header that does not parse', async () => {
    const b = Buffer.from(fs.readFileSync(fix('f4_2x3.npy')));
    const text = b.toString('latin1');
    const broken = text.replace("'shape': (2, 3)", "'shape': (2, 3 ").replace("}", ' ');
    await expectError(readNpy(write('bad-header.npy', Buffer.from(broken, 'latin1'))), 'RAPM_FORMAT', 'bad-header.npy', 'cannot parse');
    const noShape = text.replace("'shape': (2, 3), ", "'shapes': (2, 3),");
    await expectError(readNpy(write('no-shape.npy', Buffer.from(noShape, 'latin1'))), 'RAPM_FORMAT', "missing key 'shape'");
    const negShape = text.replace("'shape': (2, 3), ", "'shape': (-2, 3),");
    await expectError(readNpy(write('neg-shape.npy', Buffer.from(negShape, 'latin1'))), 'RAPM_FORMAT', 'non-negative');
    expect(() => parseNpyHeader(Buffer.from(text.replace('{', '['), 'latin1'), 'x.npy')).toThrow(/x\.npy/);
  });

  it('unsupported dtypes', async () => {
    await expectError(readNpy(fix('u2_4.npy')), 'RAPM_FORMAT', 'u2_4.npy', "unsupported dtype '<u2'", "'<f4'");
    await expectError(readNpy(fix('be_f4_4.npy')), 'RAPM_FORMAT', "'>f4'", 'big-endian');
    await expectError(readNpy(fix('c8_2.npy')), 'RAPM_FORMAT', "'<c8'");
  });

  it('Fortran order', async () => {
    await expectError(readNpy(fix('f4_fortran_3x4.npy')), 'RAPM_FORMAT', 'f4_fortran_3x4.npy', 'Fortran', '(3, 4)', 'ascontiguousarray');
  });

  it('a 1-D Fortran-flagged array is the same bytes as C order and is accepted', async () => {
    const b = Buffer.from(fs.readFileSync(fix('v3_f4_3.npy')));
    const f = write('f1d.npy', Buffer.from(b.toString('latin1').replace("'fortran_order': False", "'fortran_order': True "), 'latin1'));
    expect((await readNpy(f)).shape).toEqual([3]);
  });

  it('a shape that does not match what the caller expects', async () => {
    await expectError(readNpy(fix('f4_1024.npy'), { expectShape: [1023] }), 'RAPM_SHAPE_MISMATCH', 'f4_1024.npy', 'expected shape (1023,)', '(1024,)');
    await expectError(readNpy(fix('f4_rows_100x8.npy'), { expectShape: [null, 1024] }), 'RAPM_SHAPE_MISMATCH', '(*, 1024)', '(100, 8)');
    await expectError(() => readNpySync(fix('f4_2x3.npy'), { expectShape: [6] }), 'RAPM_SHAPE_MISMATCH', '(6,)', '(2, 3)');
    expect((await readNpy(fix('f4_rows_100x8.npy'), { expectShape: [null, 8] })).shape).toEqual([100, 8]);
  });

  it('a dtype the caller does not accept', async () => {
    await expectError(readNpy(fix('i4_5.npy'), { accept: ['float32', 'float64'] }), 'RAPM_FORMAT', "'<i4'", 'float32 or float64');
  });

  it('a missing file is RAPM_IO naming it', async () => {
    await expectError(readNpy(path.join(tmp, 'nope.npy')), 'RAPM_IO', 'nope.npy', 'ENOENT');
    await expectError(() => readNpySync(path.join(tmp, 'nope.npy')), 'RAPM_IO', 'nope.npy');
  });
});

describe('atomic writes', () => {
  const listTmp = (dir: string): string[] => fs.readdirSync(dir).filter((f) => f.includes('.tmp-'));

  it('leave no temporary file behind', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'atomic-'));
    await writeNpy(path.join(dir, 'a.npy'), new Float32Array(10), [10]);
    writeNpySync(path.join(dir, 'b.npy'), new Float32Array(10), [10]);
    expect(fs.readdirSync(dir).sort()).toEqual(['a.npy', 'b.npy']);
  });

  it('keep the old file intact when a write fails midway (sync)', () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'atomic-'));
    const file = path.join(dir, 'x.npy');
    writeNpySync(file, Float32Array.from([1, 2, 3]), [3]);
    const before = fs.readFileSync(file);
    const real = fs.writeSync;
    let calls = 0;
    vi.spyOn(fs, 'writeSync').mockImplementation(((...args: Parameters<typeof fs.writeSync>) => {
      if (++calls === 2) throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
      return (real as (...a: unknown[]) => number)(...args);
    }) as typeof fs.writeSync);
    let err: unknown;
    try {
      writeNpySync(file, new Float32Array(4096).fill(9), [4096]);
    } catch (e) {
      err = e;
    }
    expect((err as { code: string }).code).toBe('RAPM_IO');
    expect((err as Error).message).toMatch(/x\.npy.*ENOSPC/);
    expect(fs.readFileSync(file)).toEqual(before);
    expect(listTmp(dir)).toEqual([]);
  });

  it('keep the old target intact when the rename fails (async)', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'atomic-'));
    const target = path.join(dir, 'is-a-dir.npy');
    fs.mkdirSync(target);
    fs.writeFileSync(path.join(target, 'keep.txt'), 'keep');
    await expectError(writeNpy(target, new Float32Array(3), [3]), 'RAPM_IO', 'is-a-dir.npy');
    expect(fs.readFileSync(path.join(target, 'keep.txt'), 'utf8')).toBe('keep');
    expect(listTmp(dir)).toEqual([]);
  });
});
