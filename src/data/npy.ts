/**
 * A small .npy reader and writer (NumPy format versions 1.0, 2.0 and 3.0).
 *
 * Supported: little-endian float32 ('<f4'), float64 ('<f8', rounded to float32 on read),
 * float16 ('<f2', widened to float32 on read: exact; features are often saved as half floats),
 * int32 ('<i4') and int64 ('<i8'), C order (or Fortran order when at most one axis is
 * longer than 1, where both layouts are the same bytes). Files are read with positioned
 * reads straight into the destination typed array, so there is no 2 GiB readFile limit and
 * no second copy, and any range of rows (first axis) can be read on its own.
 * Writes are atomic: a temporary file beside the target is renamed over it.
 */
import fs from 'node:fs';
import os from 'node:os';
import { RapmError, RapmRangeError, RapmTypeError, describe } from '../errors.js';
import { atomicWrite, atomicWriteSync, bytesOf, ioError, writeAllSync } from '../io/atomic.js';
import { openRegular, openRegularSync } from '../io/files.js';

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
/** Largest piece moved per read/write call (keeps every call far below the 2 GiB I/O limit). */
const IO_PIECE = 64 << 20;

if (os.endianness() !== 'LE') {
  // Every platform rapm supports (x86-64, arm64) is little-endian; refuse loudly elsewhere.
  throw new RapmError('RAPM_FORMAT', 'rapm .npy I/O requires a little-endian host');
}

/** Element types as read: float32, float64 and float16 files all read as Float32Array. */
export type NpyDtype = 'float32' | 'float64' | 'float16' | 'int32' | 'int64';
export type NpyData = Float32Array | Int32Array | BigInt64Array;

export interface NpyHeader {
  /** Format major version (1, 2 or 3). */
  version: 1 | 2 | 3;
  /** The `descr` string of the file, e.g. '<f4'. */
  descr: string;
  /** Element type stored in the file. */
  dtype: NpyDtype;
  /** Bytes per stored element. */
  itemSize: number;
  fortranOrder: boolean;
  shape: number[];
  /** Byte offset of the first element. */
  dataOffset: number;
  /** Bytes of element data the header promises. */
  dataBytes: number;
}

export interface NpyArray {
  header: NpyHeader;
  /** Shape of `data` (for row reads, the first axis is the number of rows read). */
  shape: number[];
  data: NpyData;
}

export interface ReadNpyOptions {
  /** Shape the caller expects; `null` entries match any length. A mismatch is RAPM_SHAPE_MISMATCH. */
  expectShape?: readonly (number | null)[];
  /** Element types accepted (default: all). float64 and float16 always arrive as Float32Array. */
  accept?: readonly NpyDtype[];
  /** Called after each piece with (bytes done, bytes total) of element data. */
  onProgress?: (done: number, total: number) => void;
}

const DTYPES: Record<string, { dtype: NpyDtype; size: number }> = {
  '<f4': { dtype: 'float32', size: 4 },
  '<f8': { dtype: 'float64', size: 8 },
  '<f2': { dtype: 'float16', size: 2 },
  '<i4': { dtype: 'int32', size: 4 },
  '<i8': { dtype: 'int64', size: 8 },
};

// ---------------------------------------------------------------- header parsing

type PyValue = string | number | boolean | null | PyValue[] | { [k: string]: PyValue };

/** A tiny parser for the Python literal dict in an .npy header. */
function parsePyLiteral(text: string): PyValue {
  let i = 0;
  const ws = (): void => {
    while (i < text.length && /\s/.test(text[i]!)) i++;
  };
  const fail = (what: string): never => {
    throw new Error(`${what} at character ${i}`);
  };
  const value = (): PyValue => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const obj: Record<string, PyValue> = {};
      for (;;) {
        ws();
        if (text[i] === '}') {
          i++;
          return obj;
        }
        const k = value();
        if (typeof k !== 'string') fail('expected a string key');
        ws();
        if (text[i] !== ':') fail("expected ':'");
        i++;
        obj[k as string] = value();
        ws();
        if (text[i] === ',') i++;
        else if (text[i] !== '}') fail("expected ',' or '}'");
      }
    }
    if (c === '(' || c === '[') {
      const close = c === '(' ? ')' : ']';
      i++;
      const arr: PyValue[] = [];
      for (;;) {
        ws();
        if (text[i] === close) {
          i++;
          return arr;
        }
        arr.push(value());
        ws();
        if (text[i] === ',') i++;
        else if (text[i] !== close) fail(`expected ',' or '${close}'`);
      }
    }
    if (c === "'" || c === '"') {
      const end = text.indexOf(c, i + 1);
      if (end < 0) fail('unterminated string');
      const s = text.slice(i + 1, end);
      i = end + 1;
      return s;
    }
    const m = /^(True|False|None|-?\d+L?)/.exec(text.slice(i));
    if (!m) fail('unexpected token');
    i += m![0].length;
    if (m![0] === 'True') return true;
    if (m![0] === 'False') return false;
    if (m![0] === 'None') return null;
    return Number(m![0].replace('L', ''));
  };
  const v = value();
  ws();
  if (i !== text.length) fail('trailing characters');
  return v;
}

function formatShape(shape: readonly (number | null)[]): string {
  const parts = shape.map((s) => (s === null ? '*' : String(s)));
  return `(${parts.join(', ')}${shape.length === 1 ? ',' : ''})`;
}

/** Bytes of the prelude needed before the header text: magic, version, header length. */
function preludeLength(bytes: Uint8Array, file: string): { version: 1 | 2 | 3; headerStart: number; headerLen: number } {
  for (let k = 0; k < Math.min(MAGIC.length, bytes.length); k++) {
    if (bytes[k] !== MAGIC[k]) {
      const seen = Array.from(bytes.subarray(0, 6), (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`)).join('');
      throw new RapmError('RAPM_FORMAT', `${file}: not a .npy file (starts with '${seen}', expected the magic string '\\x93NUMPY')`);
    }
  }
  if (bytes.length < 10) {
    throw new RapmError('RAPM_FORMAT', `${file}: truncated .npy file (${bytes.length} bytes; the prelude alone needs 10)`);
  }
  const major = bytes[6]!;
  const minor = bytes[7]!;
  if (major === 1) {
    return { version: 1, headerStart: 10, headerLen: bytes[8]! | (bytes[9]! << 8) };
  }
  if (major === 2 || major === 3) {
    if (bytes.length < 12) {
      throw new RapmError('RAPM_FORMAT', `${file}: truncated .npy file (${bytes.length} bytes; a version ${major} prelude needs 12)`);
    }
    const len = (bytes[8]! | (bytes[9]! << 8) | (bytes[10]! << 16)) + bytes[11]! * 0x1000000;
    return { version: major, headerStart: 12, headerLen: len };
  }
  throw new RapmError('RAPM_FORMAT', `${file}: unsupported .npy format version ${major}.${minor} (supported: 1.0, 2.0, 3.0)`);
}

/**
 * Parse the header of an .npy file from its first bytes (at least the prelude and header;
 * `headerBytesNeeded` tells how many). Throws RAPM_FORMAT naming `file` for a wrong magic
 * string, a truncated header, a header that does not parse, an unsupported dtype, or
 * Fortran order.
 */
export function parseNpyHeader(bytes: Uint8Array, file = '<buffer>'): NpyHeader {
  const { version, headerStart, headerLen } = preludeLength(bytes, file);
  const dataOffset = headerStart + headerLen;
  if (bytes.length < dataOffset) {
    throw new RapmError(
      'RAPM_FORMAT',
      `${file}: truncated .npy file (header says ${headerLen} header bytes, but only ${Math.max(0, bytes.length - headerStart)} are present)`,
    );
  }
  const raw = bytes.subarray(headerStart, dataOffset);
  const text = (version === 3 ? Buffer.from(raw).toString('utf8') : Buffer.from(raw).toString('latin1')).trim();
  let dict: PyValue;
  try {
    dict = parsePyLiteral(text);
  } catch (e) {
    throw new RapmError('RAPM_FORMAT', `${file}: cannot parse the .npy header ${JSON.stringify(text.slice(0, 120))} (${(e as Error).message})`);
  }
  const bad = (why: string): never => {
    throw new RapmError('RAPM_FORMAT', `${file}: invalid .npy header ${JSON.stringify(text.slice(0, 120))} (${why})`);
  };
  if (typeof dict !== 'object' || dict === null || Array.isArray(dict)) bad('not a dict');
  const d = dict as Record<string, PyValue>;
  for (const key of ['descr', 'fortran_order', 'shape']) if (!(key in d)) bad(`missing key '${key}'`);
  const shapeV = d['shape'];
  if (!Array.isArray(shapeV) || !shapeV.every((s) => typeof s === 'number' && Number.isSafeInteger(s) && s >= 0)) {
    bad(`'shape' must be a tuple of non-negative integers`);
  }
  if (typeof d['fortran_order'] !== 'boolean') bad(`'fortran_order' must be True or False`);
  const shape = shapeV as number[];
  const descr = d['descr'];
  const dt = typeof descr === 'string' ? DTYPES[descr.replace(/^=/, '<')] : undefined;
  if (!dt) {
    const shown = typeof descr === 'string' ? `'${descr}'` : JSON.stringify(descr);
    const hint = typeof descr === 'string' && descr.startsWith('>') ? ' (big-endian; re-save with arr.astype("<f4"))' : '';
    throw new RapmError('RAPM_FORMAT', `${file}: unsupported dtype ${shown}${hint}; supported: '<f4', '<f8', '<f2', '<i4', '<i8'`);
  }
  const fortranOrder = d['fortran_order'] as boolean;
  if (fortranOrder && shape.filter((s) => s > 1).length > 1) {
    throw new RapmError(
      'RAPM_FORMAT',
      `${file}: Fortran-order array of shape ${formatShape(shape)} is not supported (save it with np.save(path, np.ascontiguousarray(a)))`,
    );
  }
  const count = shape.reduce((a, b) => a * b, 1);
  return {
    version,
    descr: descr as string,
    dtype: dt.dtype,
    itemSize: dt.size,
    fortranOrder,
    shape,
    dataOffset,
    dataBytes: count * dt.size,
  };
}

function checkHeader(h: NpyHeader, file: string, fileSize: number, opts: ReadNpyOptions | undefined): void {
  if (opts?.accept && !opts.accept.includes(h.dtype)) {
    throw new RapmError('RAPM_FORMAT', `${file}: dtype '${h.descr}' (${h.dtype}) is not accepted here; expected ${opts.accept.join(' or ')}`);
  }
  const exp = opts?.expectShape;
  if (exp && (exp.length !== h.shape.length || exp.some((s, k) => s !== null && s !== h.shape[k]))) {
    throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `${file}: expected shape ${formatShape(exp)} but the file holds shape ${formatShape(h.shape)}`);
  }
  if (fileSize < h.dataOffset + h.dataBytes) {
    throw new RapmError(
      'RAPM_FORMAT',
      `${file}: truncated .npy file: shape ${formatShape(h.shape)} ${h.dtype} needs ${h.dataBytes} data bytes after offset ${h.dataOffset}, ` +
        `but the file has ${Math.max(0, fileSize - h.dataOffset)} (file size ${fileSize})`,
    );
  }
  // More bytes than the header promises: a header-length field too small (the data would be
  // read shifted), a dtype or shape that does not describe the data ('<f4' over float64 data,
  // half the values), or bytes appended. Reading on would give wrong numbers without a word.
  if (fileSize > h.dataOffset + h.dataBytes) {
    throw new RapmError(
      'RAPM_FORMAT',
      `${file}: .npy file larger than its header says: shape ${formatShape(h.shape)} ${h.dtype} after a ${h.dataOffset}-byte header needs exactly ` +
        `${h.dataOffset + h.dataBytes} bytes, but the file has ${fileSize} (${fileSize - h.dataOffset - h.dataBytes} more); its header length, dtype or shape does not match the data, or bytes were appended: re-save it with numpy.save`,
    );
  }
}

function allocate(dtype: NpyDtype, count: number): NpyData {
  if (dtype === 'int32') return new Int32Array(count);
  if (dtype === 'int64') return new BigInt64Array(count);
  return new Float32Array(count);
}

/** Elements per row (product of all axes after the first; 1 for 0-d and 1-d arrays). */
function rowElems(shape: readonly number[]): number {
  return shape.slice(1).reduce((a, b) => a * b, 1);
}

// ---------------------------------------------------------------- sync reads

function readHeaderSync(fd: number, file: string): NpyHeader {
  let buf = Buffer.alloc(4096);
  let got = fs.readSync(fd, buf, 0, buf.length, 0);
  const pre = preludeLength(buf.subarray(0, got), file);
  const need = pre.headerStart + pre.headerLen;
  if (need > got && got === buf.length) {
    buf = Buffer.alloc(need);
    got = fs.readSync(fd, buf, 0, need, 0);
  }
  return parseNpyHeader(buf.subarray(0, got), file);
}

function readFullySync(fd: number, dst: Uint8Array, position: number, file: string): void {
  let off = 0;
  while (off < dst.length) {
    const n = fs.readSync(fd, dst, off, Math.min(IO_PIECE, dst.length - off), position + off);
    if (n === 0) throw new RapmError('RAPM_FORMAT', `${file}: truncated .npy file (end of file at byte ${position + off})`);
    off += n;
  }
}

/** A piece buffer for a dtype read through a conversion (float64, float16), and how to widen it into float32. */
function converter(h: NpyHeader, len: number): { scratch: Float64Array | Uint16Array; put: (out: Float32Array, at: number, m: number) => void } {
  if (h.dtype === 'float64') {
    const scratch = new Float64Array(Math.min(len, IO_PIECE / 8));
    return { scratch, put: (out, at, m) => out.set(scratch.subarray(0, m), at) };
  }
  const scratch = new Uint16Array(Math.min(len, IO_PIECE / 2));
  const table = halfTable();
  return {
    scratch,
    put: (out, at, m) => {
      for (let i = 0; i < m; i++) out[at + i] = table[scratch[i]!]!;
    },
  };
}

let half: Float32Array | null = null;
/** float32 value of every float16 bit pattern (exact: every half is a float32). */
function halfTable(): Float32Array {
  if (half) return half;
  half = new Float32Array(65536);
  for (let b = 0; b < 65536; b++) {
    const e = (b >> 10) & 31, m = b & 1023;
    const v = e === 0 ? m * 2 ** -24 : e === 31 ? (m === 0 ? Infinity : NaN) : (1 + m / 1024) * 2 ** (e - 15);
    half[b] = b & 0x8000 ? -v : v;
  }
  return half;
}

/** Read elements [first, first + out.length) of the file's data into `out`, converting float64 and float16. */
function readElemsSync(fd: number, h: NpyHeader, first: number, out: NpyData, file: string): void {
  if (h.dtype !== 'float64' && h.dtype !== 'float16') {
    readFullySync(fd, bytesOf(out), h.dataOffset + first * h.itemSize, file);
    return;
  }
  const f32 = out as Float32Array;
  const { scratch, put } = converter(h, f32.length);
  for (let done = 0; done < f32.length; ) {
    const m = Math.min(scratch.length, f32.length - done);
    readFullySync(fd, bytesOf(scratch.subarray(0, m)), h.dataOffset + (first + done) * h.itemSize, file);
    put(f32, done, m);
    done += m;
  }
}

function withFdSync<T>(file: string, fn: (fd: number, size: number) => T): T {
  const fd = openRegularSync(file, '.npy file');
  try {
    return fn(fd, fs.fstatSync(fd).size);
  } catch (e) {
    throw ioError('read', file, e);
  } finally {
    fs.closeSync(fd);
  }
}

/** Read a whole .npy file synchronously (meant for small files, e.g. one DRAL feature vector). */
export function readNpySync(file: string, options?: ReadNpyOptions): NpyArray {
  return withFdSync(file, (fd, size) => {
    const h = readHeaderSync(fd, file);
    checkHeader(h, file, size, options);
    const count = h.dataBytes / h.itemSize;
    const data = allocate(h.dtype, count);
    readElemsSync(fd, h, 0, data, file);
    return { header: h, shape: h.shape.slice(), data };
  });
}

/** Read only the header of an .npy file (and check it against `options`). */
export function readNpyHeaderSync(file: string, options?: ReadNpyOptions): NpyHeader {
  return withFdSync(file, (fd, size) => {
    const h = readHeaderSync(fd, file);
    checkHeader(h, file, size, options);
    return h;
  });
}

// ---------------------------------------------------------------- async reads

async function readHeaderAsync(fh: fs.promises.FileHandle, file: string): Promise<NpyHeader> {
  let buf = Buffer.alloc(4096);
  let { bytesRead } = await fh.read(buf, 0, buf.length, 0);
  const pre = preludeLength(buf.subarray(0, bytesRead), file);
  const need = pre.headerStart + pre.headerLen;
  if (need > bytesRead && bytesRead === buf.length) {
    buf = Buffer.alloc(need);
    ({ bytesRead } = await fh.read(buf, 0, need, 0));
  }
  return parseNpyHeader(buf.subarray(0, bytesRead), file);
}

async function readFully(
  fh: fs.promises.FileHandle,
  dst: Uint8Array,
  position: number,
  file: string,
  progress?: (n: number) => void,
): Promise<void> {
  let off = 0;
  while (off < dst.length) {
    const { bytesRead } = await fh.read(dst, off, Math.min(IO_PIECE, dst.length - off), position + off);
    if (bytesRead === 0) throw new RapmError('RAPM_FORMAT', `${file}: truncated .npy file (end of file at byte ${position + off})`);
    off += bytesRead;
    progress?.(bytesRead);
  }
}

async function readElems(
  fh: fs.promises.FileHandle,
  h: NpyHeader,
  first: number,
  out: NpyData,
  file: string,
  onProgress?: (done: number, total: number) => void,
): Promise<void> {
  const total = out.length * h.itemSize;
  let done = 0;
  const progress = onProgress
    ? (n: number): void => {
        done += n;
        onProgress(done, total);
      }
    : undefined;
  if (h.dtype !== 'float64' && h.dtype !== 'float16') {
    await readFully(fh, bytesOf(out), h.dataOffset + first * h.itemSize, file, progress);
    return;
  }
  const f32 = out as Float32Array;
  const { scratch, put } = converter(h, f32.length);
  for (let k = 0; k < f32.length; ) {
    const m = Math.min(scratch.length, f32.length - k);
    await readFully(fh, bytesOf(scratch.subarray(0, m)), h.dataOffset + (first + k) * h.itemSize, file, progress);
    put(f32, k, m);
    k += m;
  }
}

async function withFd<T>(file: string, fn: (fh: fs.promises.FileHandle, size: number) => Promise<T>): Promise<T> {
  const fh = await openRegular(file, '.npy file');
  try {
    return await fn(fh, (await fh.stat()).size);
  } catch (e) {
    throw ioError('read', file, e);
  } finally {
    await fh.close();
  }
}

/** Read a whole .npy file. float32 and float64 arrive as Float32Array, int32 as Int32Array, int64 as BigInt64Array. */
export async function readNpy(file: string, options?: ReadNpyOptions): Promise<NpyArray> {
  return withFd(file, async (fh, size) => {
    const h = await readHeaderAsync(fh, file);
    checkHeader(h, file, size, options);
    const data = allocate(h.dtype, h.dataBytes / h.itemSize);
    await readElems(fh, h, 0, data, file, options?.onProgress);
    return { header: h, shape: h.shape.slice(), data };
  });
}

/** Read the header of an .npy file (checked against `options`). */
export async function readNpyHeader(file: string, options?: ReadNpyOptions): Promise<NpyHeader> {
  return withFd(file, async (fh, size) => {
    const h = await readHeaderAsync(fh, file);
    checkHeader(h, file, size, options);
    return h;
  });
}

function checkRowRange(file: string, h: NpyHeader, start: number, end: number): void {
  if (h.shape.length === 0) throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `${file}: cannot read rows of a 0-d array`);
  const rows = h.shape[0]!;
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end < start || end > rows) {
    throw new RapmRangeError(
      'RAPM_INVALID_ARG',
      `${file}: expected a row range 0 <= start <= end <= ${rows} but received start ${describe(start)}, end ${describe(end)}`,
    );
  }
}

/**
 * Read rows [start, end) (along the first axis) of an .npy file, touching only those bytes.
 * The returned shape is [end - start, ...rest].
 */
export async function readNpyRows(file: string, start: number, end: number, options?: ReadNpyOptions): Promise<NpyArray> {
  return withFd(file, async (fh, size) => {
    const h = await readHeaderAsync(fh, file);
    checkHeader(h, file, size, options);
    checkRowRange(file, h, start, end);
    const re = rowElems(h.shape);
    const data = allocate(h.dtype, (end - start) * re);
    await readElems(fh, h, start * re, data, file, options?.onProgress);
    return { header: h, shape: [end - start, ...h.shape.slice(1)], data };
  });
}

/**
 * Read a float .npy file (or rows [start, end) of it) into `target`, which must have exactly
 * the right length: the streaming path used to fill one big dataset buffer chunk by chunk.
 */
export async function readNpyInto(
  file: string,
  target: Float32Array,
  options?: ReadNpyOptions & { start?: number; end?: number },
): Promise<NpyHeader> {
  return withFd(file, async (fh, size) => {
    const h = await readHeaderAsync(fh, file);
    checkHeader(h, file, size, { ...options, accept: options?.accept ?? ['float32', 'float64', 'float16'] });
    if (h.dtype !== 'float32' && h.dtype !== 'float64' && h.dtype !== 'float16') {
      throw new RapmError('RAPM_FORMAT', `${file}: expected a float32, float64 or float16 array but the dtype is '${h.descr}'`);
    }
    const rows = h.shape.length === 0 ? 1 : h.shape[0]!;
    const start = options?.start ?? 0;
    const end = options?.end ?? rows;
    if (h.shape.length > 0) checkRowRange(file, h, start, end);
    const re = rowElems(h.shape);
    if (target.length !== (end - start) * re) {
      throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `${file}: target holds ${target.length} values but rows ${start}..${end} hold ${(end - start) * re}`);
    }
    await readElems(fh, h, start * re, target, file, options?.onProgress);
    return h;
  });
}

// ---------------------------------------------------------------- writes

export interface WriteNpyOptions {
  /** Format version; default 1, or 2 when the header would not fit version 1. */
  version?: 1 | 2 | 3;
}

type WritableData = Float32Array | Float64Array | Int32Array | BigInt64Array;

function descrOf(data: unknown): string {
  if (data instanceof Float32Array) return '<f4';
  if (data instanceof Float64Array) return '<f8';
  if (data instanceof Int32Array) return '<i4';
  if (data instanceof BigInt64Array) return '<i8';
  throw new RapmTypeError('RAPM_TYPE', `Expected Float32Array, Float64Array, Int32Array or BigInt64Array for data but received ${describe(data)}`);
}

/** Build the prelude + header bytes (padded so the data starts on a 64-byte boundary, as NumPy does). */
export function buildNpyHeader(descr: string, shape: readonly number[], options?: WriteNpyOptions): Uint8Array {
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${formatShape(shape)}, }`;
  let version = options?.version ?? 1;
  const total = (start: number): number => Math.ceil((start + dict.length + 1) / 64) * 64;
  if (version === 1 && total(10) - 10 > 0xffff) version = 2;
  const start = version === 1 ? 10 : 12;
  const len = total(start);
  const out = Buffer.alloc(len, 0x20);
  out.set(MAGIC, 0);
  out[6] = version;
  out[7] = 0;
  const hl = len - start;
  if (version === 1) out.writeUInt16LE(hl, 8);
  else out.writeUInt32LE(hl, 8);
  out.write(dict, start, version === 3 ? 'utf8' : 'latin1');
  out[len - 1] = 0x0a;
  return out;
}

function checkWrite(file: string, data: WritableData, shape: readonly number[]): string {
  const descr = descrOf(data);
  if (!Array.isArray(shape) || !shape.every((s) => Number.isSafeInteger(s) && s >= 0)) {
    throw new RapmTypeError('RAPM_TYPE', `Expected an array of non-negative integers for shape but received ${describe(shape)}`);
  }
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== data.length) {
    throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `${file}: shape ${formatShape(shape)} needs ${count} values but data holds ${data.length}`);
  }
  return descr;
}

/** Write `data` with `shape` (C order) to `file` atomically. */
export async function writeNpy(file: string, data: WritableData, shape: readonly number[], options?: WriteNpyOptions): Promise<void> {
  const descr = checkWrite(file, data, shape);
  const header = buildNpyHeader(descr, shape, options);
  await atomicWrite(file, async (fh) => {
    await writeAll(fh, header, 0);
    await writeAll(fh, bytesOf(data), header.length);
  });
}

/** Synchronous writeNpy. */
export function writeNpySync(file: string, data: WritableData, shape: readonly number[], options?: WriteNpyOptions): void {
  const descr = checkWrite(file, data, shape);
  const header = buildNpyHeader(descr, shape, options);
  atomicWriteSync(file, (fd) => {
    writeAllSync(fd, header, 0);
    writeAllSync(fd, bytesOf(data), header.length);
  });
}

async function writeAll(fh: fs.promises.FileHandle, buf: Uint8Array, position: number): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesWritten } = await fh.write(buf, off, Math.min(IO_PIECE, buf.length - off), position + off);
    if (bytesWritten <= 0) throw new Error('short write');
    off += bytesWritten;
  }
}
