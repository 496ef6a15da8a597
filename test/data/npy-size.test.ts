// A .npy file must be exactly data offset + shape x itemsize bytes, on every read path.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadChunks, writeChunks, chunkName } from '../../src/data/chunks.js';
import { buildNpyHeader, readNpy, readNpyHeader, readNpyInto, readNpyRows, readNpySync, writeNpySync } from '../../src/data/npy.js';
import { readNpyHeaderSync } from '../../src/data/npy.js';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-npy-size-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function write(name: string, ...parts: Uint8Array[]): string {
  const f = path.join(tmp, name);
  fs.writeFileSync(f, Buffer.concat(parts));
  return f;
}
const bytes = (a: ArrayBufferView): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** Every read path refuses `file` with RAPM_FORMAT naming it and both byte counts. */
async function expectOversize(file: string, expected: number, actual: number, shape: number[]): Promise<void> {
  const parts = [path.basename(file), 'larger than its header says', `needs exactly ${expected} bytes`, `the file has ${actual}`];
  const check = async (what: string, p: () => unknown): Promise<void> => {
    let err: unknown;
    try {
      await p();
    } catch (e) {
      err = e;
    }
    expect(err, `${what} should refuse ${file}`).toBeInstanceOf(Error);
    expect((err as { code?: string }).code, what).toBe('RAPM_FORMAT');
    for (const part of parts) expect((err as Error).message, what).toContain(part);
  };
  await check('readNpy', () => readNpy(file));
  await check('readNpySync', () => readNpySync(file));
  await check('readNpyHeader', () => readNpyHeader(file));
  await check('readNpyHeaderSync', () => readNpyHeaderSync(file));
  await check('readNpyRows', () => readNpyRows(file, 0, 1));
  const count = shape.reduce((a, b) => a * b, 1);
  await check('readNpyInto', () => readNpyInto(file, new Float32Array(count)));
}

describe('.npy files larger than their header says are refused', () => {
  it('a header-length field too small (the data would be read shifted)', async () => {
    const data = Float32Array.from({ length: 1024 }, (_, i) => i);
    const good = buildNpyHeader('<f4', [1024]);
    // Same dict, length field cut by 16 bytes: the dict still parses (trailing spaces), the data starts 16 bytes early.
    const h = Buffer.from(good);
    h.writeUInt16LE(h.readUInt16LE(8) - 16, 8);
    const f = write('short-hlen.npy', h, bytes(data));
    await expectOversize(f, good.length - 16 + 4096, good.length + 4096, [1024]);
  });

  it("a '<f4' header over float64 data", async () => {
    const data = Float64Array.from({ length: 1024 }, (_, i) => i * 0.5);
    const h = buildNpyHeader('<f4', [1024]);
    const f = write('f4-over-f8.npy', h, bytes(data));
    await expectOversize(f, h.length + 4096, h.length + 8192, [1024]);
  });

  it('shape (1024,) over 2048 values', async () => {
    const data = new Float32Array(2048).fill(1);
    const h = buildNpyHeader('<f4', [1024]);
    const f = write('half-shape.npy', h, bytes(data));
    await expectOversize(f, h.length + 4096, h.length + 8192, [1024]);
  });

  it('trailing garbage', async () => {
    const data = new Float32Array(1024).fill(1);
    const h = buildNpyHeader('<f4', [1024]);
    const f = write('garbage.npy', h, bytes(data), Buffer.from('garbage\n'));
    await expectOversize(f, h.length + 4096, h.length + 4096 + 8, [1024]);
  });

  it('a chunk whose en.npy has trailing bytes is a listed chunk problem', async () => {
    const dir = path.join(tmp, 'chunks');
    const n = 3;
    const en = new Float32Array(n * 1024).fill(0.5);
    await writeChunks({ ids: ['a_1', 'a_2', 'a_3'], speakers: null, en, es: en.slice(), n }, dir);
    const file = path.join(dir, chunkName(0), 'en.npy');
    fs.appendFileSync(file, Buffer.alloc(4));
    await expect(loadChunks(dir)).rejects.toMatchObject({ code: 'RAPM_DATA', message: expect.stringContaining('en.npy: .npy file larger than its header says') });
  });

  it('exact-size files still read, and short files keep their truncation errors', async () => {
    const f = path.join(tmp, 'exact.npy');
    writeNpySync(f, Float32Array.from([1, 2, 3]), [3]);
    expect(Array.from((await readNpy(f)).data as Float32Array)).toEqual([1, 2, 3]);
    const short = write('short.npy', fs.readFileSync(f).subarray(0, fs.statSync(f).size - 4));
    await expect(readNpy(short)).rejects.toMatchObject({ code: 'RAPM_FORMAT', message: expect.stringContaining('truncated .npy file') });
  });
});
