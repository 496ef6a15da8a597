/**
 * Saving and loading a Datastore: one versioned binary file, streamed in row blocks (a
 * 200K x 1024 f32 datastore is 800 MB of keys: neither save nor load ever holds a second
 * full copy of it), written atomically, and verified by SHA-256 checksums at load.
 *
 * File layout, version 1 (all integers little-endian):
 *
 *   offset 0   magic      8 bytes  89 52 41 50 4D 44 53 0A   ("\x89RAPMDS\n")
 *          8   version    u32      1
 *         12   headerLen  u32      bytes of the header that follows (space-padded so the
 *                                  payload starts at a multiple of 64)
 *         16   header     UTF-8 JSON (DatastoreFileHeader): keyDim, valueDim, keyIndices,
 *                                  valueIndices, d, dv, precision, n, ids | null,
 *                                  speakers | null, meta, and the offset and length of every section
 *   payloadOffset
 *              keys       [n, d] row-major, exactly as stored: L2-normalised f32, or the
 *                                  bf16 bit patterns (u16) for a bf16 datastore, or for an
 *                                  int8 datastore the int8 codes [n, d] (i8) followed by the
 *                                  per-row scales [n] (f32): the key is scale * codes
 *              values     [n, dv] f32 (the selected value columns)
 *              groups     [n] i32 exclusion groups (re-derived from ids at load and compared)
 *   trailer    4 x 32 bytes SHA-256 of: magic+version+headerLen+header, keys, values, groups
 *              8 bytes    end marker "RAPMEND\n"
 *
 * Every byte of the file is covered by a checksum or is a fixed marker, so any flipped
 * byte, a cut tail or a wrong magic/version is refused with RAPM_FORMAT naming the file
 * and what is wrong. Keys are loaded without re-normalising (bit-exact round trip; bf16
 * keys are not rounded twice, int8 keys are not re-quantised).
 *
 * Precision 'int8' extended version 1 without changing it: f32 and bf16 files are written
 * byte for byte as before, and a reader that predates int8 refuses an int8 file with
 * RAPM_FORMAT naming the header's precision (it checks precision before the sections). `ids: null` means the rows were added without ids (row i
 * has id String(i)).
 */
import { createHash, type Hash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import { RapmError, RapmTypeError, describe, isRapmError } from '../errors.js';
import { PRECISIONS, checkSetting } from '../settings.js';
import { atomicWrite, ioError } from '../io/atomic.js';
import { Datastore, type FastPathSetting, type KeyPrecision } from './datastore.js';
import { openRegular } from '../io/files.js';
import { checkKnownKeys } from '../validate.js';

export const DATASTORE_MAGIC = Uint8Array.from([0x89, 0x52, 0x41, 0x50, 0x4d, 0x44, 0x53, 0x0a]);
export const DATASTORE_END = Uint8Array.from([0x52, 0x41, 0x50, 0x4d, 0x45, 0x4e, 0x44, 0x0a]); // RAPMEND\n
export const DATASTORE_FORMAT_VERSION = 1;
const PREFIX_BYTES = 16;
const TRAILER_BYTES = 4 * 32 + 8;
/** Bytes of rows moved per block (keys + values + groups). Test hook: tests shrink it to exercise many blocks. */
export const _persistTuning = { blockBytes: 16 << 20 };
const MAX_ROWS = 0x7fffffff;
const MAX_DIM = 1 << 20;

if (os.endianness() !== 'LE') throw new RapmError('RAPM_FORMAT', 'rapm datastore files require a little-endian host');

export interface SaveDatastoreOptions {
  /** Speaker of each row (length = rows saved), kept in the header for later splits and reports. */
  speakers?: readonly string[];
  /** Any JSON-serialisable description (data hash, seed, ...), kept in the header as is. */
  meta?: Record<string, unknown>;
}

export interface LoadDatastoreOptions {
  /**
   * The fast search path of the loaded datastore (DatastoreOptions.fastPath). Default: the
   * fastPath setting's, 'auto'. Files never hold the shadow (it costs less to rebuild from the
   * keys while they stream in than to read and checksum: see the README, Datastore.load).
   */
  fastPath?: FastPathSetting;
}

export interface SaveDatastoreResult {
  file: string;
  /** Rows written (the rows present when save started; rows appended meanwhile are not included). */
  n: number;
  bytes: number;
}

export interface FileSection {
  offset: number;
  bytes: number;
}

/** The JSON header of a datastore file. */
export interface DatastoreFileHeader {
  format: 'rapm-datastore';
  version: number;
  n: number;
  keyDim: number;
  valueDim: number;
  d: number;
  dv: number;
  precision: KeyPrecision;
  keyIndices: number[];
  valueIndices: number[];
  ids: string[] | null;
  speakers: string[] | null;
  meta: Record<string, unknown> | null;
  sections: { keys: FileSection; values: FileSection; groups: FileSection };
  createdAt: string;
}

const formatError = (file: string, what: string): RapmError => new RapmError('RAPM_FORMAT', `Cannot load datastore ${file}: ${what}`);

/** Bytes of one stored key element: f32 4, bf16 2, int8 1 (plus a 4-byte scale per row). */
const keyBytes = (precision: KeyPrecision): number => (precision === 'int8' ? 1 : precision === 'bf16' ? 2 : 4);

function layout(n: number, d: number, dv: number, precision: KeyPrecision, payloadOffset: number): { sections: DatastoreFileHeader['sections']; total: number } {
  const keys = { offset: payloadOffset, bytes: n * d * keyBytes(precision) + (precision === 'int8' ? n * 4 : 0) };
  const values = { offset: keys.offset + keys.bytes, bytes: n * dv * 4 };
  const groups = { offset: values.offset + values.bytes, bytes: n * 4 };
  return { sections: { keys, values, groups }, total: groups.offset + groups.bytes + TRAILER_BYTES };
}

/** Prefix + header bytes, with the header padded so the payload starts at a multiple of 64. */
function encodeHeader(h: Omit<DatastoreFileHeader, 'sections'>): { bytes: Buffer; header: DatastoreFileHeader } {
  // The sections depend on the header length, which depends on the sections' numbers: iterate.
  let payloadOffset = 0;
  for (;;) {
    const { sections } = layout(h.n, h.d, h.dv, h.precision, payloadOffset);
    const header: DatastoreFileHeader = { ...h, sections };
    const json = Buffer.from(JSON.stringify(header), 'utf8');
    const need = Math.ceil((PREFIX_BYTES + json.length) / 64) * 64;
    if (need === payloadOffset) {
      const bytes = Buffer.alloc(need, 0x20);
      bytes.set(DATASTORE_MAGIC, 0);
      bytes.writeUInt32LE(DATASTORE_FORMAT_VERSION, 8);
      bytes.writeUInt32LE(need - PREFIX_BYTES, 12);
      bytes.set(json, PREFIX_BYTES);
      return { bytes, header };
    }
    payloadOffset = need;
  }
}

async function writeAll(fh: fs.promises.FileHandle, buf: Uint8Array, position: number): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off, position + off);
    if (bytesWritten <= 0) throw new Error('short write');
    off += bytesWritten;
  }
}

async function readAll(fh: fs.promises.FileHandle, buf: Uint8Array, position: number): Promise<number> {
  let off = 0;
  while (off < buf.length) {
    const { bytesRead } = await fh.read(buf, off, buf.length - off, position + off);
    if (bytesRead === 0) break;
    off += bytesRead;
  }
  return off;
}

const u8 = (a: ArrayBufferView, bytes = a.byteLength): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, bytes);

const newKeys = (precision: KeyPrecision, len: number): Float32Array | Uint16Array | Int8Array =>
  precision === 'int8' ? new Int8Array(len) : precision === 'bf16' ? new Uint16Array(len) : new Float32Array(len);

function rowsPerBlock(d: number, dv: number, kb: number): number {
  return Math.max(1, Math.floor(_persistTuning.blockBytes / (d * kb + dv * 4 + 4)));
}

/**
 * Write `ds` to `file` atomically (temporary file beside it, fsync, rename): a crash or
 * SIGKILL during the save leaves the previous file intact. Rows are streamed in blocks of
 * ~16 MB. The rows saved are those present when the call starts; appends may continue.
 * An unwritable folder or a full disk (ENOSPC) is RAPM_IO naming the file; the temporary
 * file is removed and the previous file is left as it was. A temporary left by a save that
 * was killed (kill -9) is removed by the next save to the same file (src/io/atomic.ts:
 * only `<file>.tmp-<pid>-<hex>` names whose pid is dead; a concurrent save keeps its own).
 * Saving while add() calls run is safe: the rows written are those committed at the call.
 */
export async function saveDatastore(ds: Datastore, file: string, options: SaveDatastoreOptions = {}): Promise<SaveDatastoreResult> {
  if (!(ds instanceof Datastore)) throw new RapmError('RAPM_TYPE', `Expected a Datastore for ds but received ${describe(ds)}`);
  if (typeof file !== 'string' || file.length === 0) throw new RapmError('RAPM_TYPE', `Expected a file path for file but received ${describe(file)}`);
  if (options === null || typeof options !== 'object') throw new RapmTypeError('RAPM_TYPE', `Expected an options object but received ${describe(options)}`);
  checkKnownKeys('saveDatastore', options, ['speakers', 'meta'] satisfies (keyof SaveDatastoreOptions)[]);
  const ids = ds._ids();
  const n = ids.length;
  let speakers: string[] | null = null;
  if (options.speakers !== undefined) {
    const s = options.speakers;
    if (!Array.isArray(s) || s.length !== n || !s.every((x) => typeof x === 'string')) {
      throw new RapmError('RAPM_SHAPE_MISMATCH', `Expected speakers as an array of ${n} strings (one per row) but received ${describe(s)}`);
    }
    speakers = [...s];
  }
  if (options.meta !== undefined && options.meta !== null) {
    // The header is JSON: meta must survive JSON.stringify and come back as the same object.
    let ok = typeof options.meta === 'object' && !Array.isArray(options.meta);
    let why = 'not a plain object';
    if (ok) {
      try {
        JSON.stringify(options.meta);
      } catch (e) {
        ok = false;
        why = (e as Error).message;
      }
    }
    if (!ok) throw new RapmTypeError('RAPM_TYPE', `Expected meta as a JSON-serialisable object but received ${describe(options.meta)} (${why})`);
  }
  const plainIds = ids.every((id, i) => id === String(i));
  const { bytes: head, header } = encodeHeader({
    format: 'rapm-datastore',
    version: DATASTORE_FORMAT_VERSION,
    n,
    keyDim: ds.keyDim,
    valueDim: ds.valueDim,
    d: ds.d,
    dv: ds.dv,
    precision: ds.precision,
    keyIndices: Array.from(ds.keyIndices),
    valueIndices: Array.from(ds.valueIndices),
    ids: plainIds ? null : ids,
    speakers,
    meta: options.meta ?? null,
    createdAt: new Date().toISOString(),
  });
  const { d, dv } = ds;
  const kb = keyBytes(ds.precision);
  const { sections } = header;
  const total = sections.groups.offset + sections.groups.bytes + TRAILER_BYTES;
  const hashes = [createHash('sha256').update(head), createHash('sha256'), createHash('sha256'), createHash('sha256')];
  const rows = Math.min(rowsPerBlock(d, dv, kb), Math.max(n, 1));
  const keys = newKeys(ds.precision, rows * d);
  // int8: the scales of all rows (4 bytes each) follow the codes in the keys section.
  const scales = ds.precision === 'int8' ? new Float32Array(n) : null;
  const values = new Float32Array(rows * dv);
  const groups = new Int32Array(rows);
  await atomicWrite(file, async (fh) => {
    await writeAll(fh, head, 0);
    for (let r0 = 0; r0 < n; r0 += rows) {
      const m = Math.min(rows, n - r0);
      ds._exportRows(r0, r0 + m, keys.subarray(0, m * d), values.subarray(0, m * dv), groups.subarray(0, m), scales?.subarray(r0, r0 + m) ?? null);
      const parts: [Uint8Array, number][] = [
        [u8(keys, m * d * keys.BYTES_PER_ELEMENT), sections.keys.offset + r0 * d * keys.BYTES_PER_ELEMENT],
        [u8(values, m * dv * 4), sections.values.offset + r0 * dv * 4],
        [u8(groups, m * 4), sections.groups.offset + r0 * 4],
      ];
      for (let s = 0; s < 3; s++) {
        const [buf, pos] = parts[s]!;
        hashes[s + 1]!.update(buf);
        await writeAll(fh, buf, pos);
      }
    }
    if (scales) {
      hashes[1]!.update(u8(scales));
      await writeAll(fh, u8(scales), sections.keys.offset + n * d);
    }
    const trailer = Buffer.alloc(TRAILER_BYTES);
    hashes.forEach((h, i) => h.digest().copy(trailer, i * 32));
    trailer.set(DATASTORE_END, 4 * 32);
    await writeAll(fh, trailer, total - TRAILER_BYTES);
  });
  return { file, n, bytes: total };
}

// ---------------------------------------------------------------- reading

interface OpenedFile {
  fh: fs.promises.FileHandle;
  header: DatastoreFileHeader;
  digests: Buffer; // the trailer's 4 SHA-256 digests
  headHash: Hash; // running hash of magic+version+headerLen+header
}

const isInt = (v: unknown, lo: number, hi: number): v is number => Number.isInteger(v) && (v as number) >= lo && (v as number) <= hi;

function indexList(file: string, name: string, v: unknown, width: number, limit: number): number[] {
  if (!Array.isArray(v) || v.length !== width) throw formatError(file, `header field ${name} is not a list of ${width} indices`);
  const seen = new Set<number>();
  for (const x of v) {
    if (!isInt(x, 0, limit - 1) || seen.has(x)) throw formatError(file, `header field ${name} holds ${describe(x)}, not a distinct index below ${limit}`);
    seen.add(x);
  }
  return v as number[];
}

function stringList(file: string, name: string, v: unknown, n: number): string[] | null {
  if (v === null || v === undefined) return null;
  if (!Array.isArray(v) || v.length !== n || !v.every((s) => typeof s === 'string')) throw formatError(file, `header field ${name} is not a list of ${n} strings`);
  return v as string[];
}

/** Checks every header field and its agreement with the file's size. */
function checkHeader(file: string, raw: unknown, payloadOffset: number, fileBytes: number): DatastoreFileHeader {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw formatError(file, 'the header is not a JSON object');
  const h = raw as Record<string, unknown>;
  if (h.format !== 'rapm-datastore') throw formatError(file, `header field format is ${describe(h.format)}, expected 'rapm-datastore'`);
  if (h.version !== DATASTORE_FORMAT_VERSION) throw formatError(file, `header version ${describe(h.version)} disagrees with the file version ${DATASTORE_FORMAT_VERSION}`);
  for (const [name, lo, hi] of [['n', 0, MAX_ROWS], ['keyDim', 1, MAX_DIM], ['valueDim', 1, MAX_DIM], ['d', 1, MAX_DIM], ['dv', 1, MAX_DIM]] as const) {
    if (!isInt(h[name], lo, hi)) throw formatError(file, `header field ${name} is ${describe(h[name])}, expected an integer between ${lo} and ${hi}`);
  }
  const n = h.n as number, d = h.d as number, dv = h.dv as number;
  if (!PRECISIONS.includes(h.precision as KeyPrecision)) throw formatError(file, `header field precision is ${describe(h.precision)}, expected one of ${PRECISIONS.map((p) => `'${p}'`).join(', ')}`);
  const keyIndices = indexList(file, 'keyIndices', h.keyIndices, d, h.keyDim as number);
  const valueIndices = indexList(file, 'valueIndices', h.valueIndices, dv, h.valueDim as number);
  const ids = stringList(file, 'ids', h.ids, n);
  const speakers = stringList(file, 'speakers', h.speakers, n);
  if (ids && ids.some((s) => s.length === 0)) throw formatError(file, 'header field ids holds an empty id');
  const meta = h.meta === undefined || h.meta === null ? null : h.meta;
  if (meta !== null && (typeof meta !== 'object' || Array.isArray(meta))) throw formatError(file, 'header field meta is not an object');
  const expected = layout(n, d, dv, h.precision as KeyPrecision, payloadOffset);
  const s = h.sections as DatastoreFileHeader['sections'] | undefined;
  for (const k of ['keys', 'values', 'groups'] as const) {
    if (s?.[k]?.offset !== expected.sections[k].offset || s?.[k]?.bytes !== expected.sections[k].bytes) {
      throw formatError(file, `header section ${k} does not match n = ${n}, d = ${d}, dv = ${dv}, precision ${h.precision}`);
    }
  }
  if (fileBytes !== expected.total) {
    throw formatError(file, `the file is ${fileBytes} bytes but its header describes ${expected.total} bytes (${fileBytes < expected.total ? 'truncated' : 'trailing data'})`);
  }
  return {
    format: 'rapm-datastore',
    version: DATASTORE_FORMAT_VERSION,
    n,
    keyDim: h.keyDim as number,
    valueDim: h.valueDim as number,
    d,
    dv,
    precision: h.precision as KeyPrecision,
    keyIndices,
    valueIndices,
    ids,
    speakers,
    meta: meta as Record<string, unknown> | null,
    sections: expected.sections,
    createdAt: typeof h.createdAt === 'string' ? h.createdAt : '',
  };
}

/** Opens `file`, checks magic, version, end marker, header checksum and header; the caller closes fh. */
async function openDatastoreFile(file: string): Promise<OpenedFile> {
  if (typeof file !== 'string' || file.length === 0) throw new RapmError('RAPM_TYPE', `Expected a file path for file but received ${describe(file)}`);
  // A regular file only, opened without blocking (a FIFO with no writer would hang the open).
  const fh = await openRegular(file, 'datastore');
  try {
    let size: number;
    try {
      size = (await fh.stat()).size;
    } catch (e) {
      throw ioError('stat', file, e);
    }
    const prefix = Buffer.alloc(PREFIX_BYTES);
    const got = await readAll(fh, prefix, 0);
    const magicLen = Math.min(got, DATASTORE_MAGIC.length);
    if (got < DATASTORE_MAGIC.length || !prefix.subarray(0, magicLen).equals(Buffer.from(DATASTORE_MAGIC))) {
      throw formatError(file, `not a rapm datastore file (wrong magic bytes${got < 8 ? `; the file is only ${size} bytes` : ''})`);
    }
    if (got < PREFIX_BYTES) throw formatError(file, `the file is ${size} bytes, truncated inside its prefix`);
    const version = prefix.readUInt32LE(8);
    if (version !== DATASTORE_FORMAT_VERSION) {
      throw formatError(file, `format version ${version} is not supported (this rapm reads version ${DATASTORE_FORMAT_VERSION})`);
    }
    const headerLen = prefix.readUInt32LE(12);
    if (size < PREFIX_BYTES + TRAILER_BYTES) throw formatError(file, `the file is ${size} bytes: truncated (a datastore file is at least ${PREFIX_BYTES + TRAILER_BYTES})`);
    const trailer = Buffer.alloc(TRAILER_BYTES);
    await readAll(fh, trailer, size - TRAILER_BYTES);
    if (!trailer.subarray(4 * 32).equals(Buffer.from(DATASTORE_END))) {
      throw formatError(file, 'the end marker is missing: the file is truncated or was not completely written');
    }
    if ((PREFIX_BYTES + headerLen) % 64 !== 0 || PREFIX_BYTES + headerLen > size - TRAILER_BYTES) {
      throw formatError(file, `header length ${headerLen} is invalid for a file of ${size} bytes (corrupt prefix)`);
    }
    const headerBytes = Buffer.alloc(headerLen);
    await readAll(fh, headerBytes, PREFIX_BYTES);
    const headHash = createHash('sha256').update(prefix).update(headerBytes);
    if (!headHash.copy().digest().equals(trailer.subarray(0, 32))) throw formatError(file, 'header checksum mismatch: the file is corrupt');
    let raw: unknown;
    try {
      raw = JSON.parse(headerBytes.toString('utf8'));
    } catch (e) {
      throw formatError(file, `the header is not valid JSON (${(e as Error).message})`);
    }
    const header = checkHeader(file, raw, PREFIX_BYTES + headerLen, size);
    return { fh, header, digests: trailer.subarray(0, 4 * 32), headHash };
  } catch (e) {
    await fh.close().catch(() => undefined);
    throw isRapmError(e) ? e : ioError('read', file, e);
  }
}

/**
 * The header of a datastore file (dims, indices, precision, n, ids, speakers, meta),
 * checked against its checksum, without reading the rows.
 */
export async function readDatastoreHeader(file: string): Promise<DatastoreFileHeader> {
  const f = await openDatastoreFile(file);
  await f.fh.close().catch(() => undefined);
  return f.header;
}

/**
 * Read a datastore written by saveDatastore(). Rows are streamed in ~16 MB blocks and
 * imported as stored (no re-normalisation), with their ids, so exclusion groups and
 * leave-one-out behave as before the save and searches return identical results. Every
 * section is checked against its SHA-256; any problem is RAPM_FORMAT naming the file and
 * what is wrong (RAPM_IO when the file cannot be opened or read).
 */
export async function loadDatastore(file: string, options: LoadDatastoreOptions = {}): Promise<Datastore> {
  if (options === null || typeof options !== 'object') throw new RapmTypeError('RAPM_TYPE', `Expected an options object but received ${describe(options)}`);
  checkKnownKeys('loadDatastore', options, ['fastPath'] satisfies (keyof LoadDatastoreOptions)[]);
  const fastPath = checkSetting('fastPath', options.fastPath);
  const { fh, header: h, digests } = await openDatastoreFile(file);
  try {
    // The fast-path shadow is not in the file: it is rebuilt from the stored keys as each block is imported.
    const ds = new Datastore({ keyDim: h.keyDim, valueDim: h.valueDim, keyIndices: h.keyIndices, valueIndices: h.valueIndices, precision: h.precision, fastPath });
    const { n, d, dv, sections } = h;
    const kb = keyBytes(h.precision);
    const rows = Math.min(rowsPerBlock(d, dv, kb), Math.max(n, 1));
    const hashes = [createHash('sha256'), createHash('sha256'), createHash('sha256')];
    let rowError: Error | undefined;
    // int8: the per-row scales follow the codes in the keys section; read them first (4 bytes a row).
    const scales = h.precision === 'int8' ? new Float32Array(n) : null;
    if (scales) {
      let got: number;
      try {
        got = await readAll(fh, u8(scales), sections.keys.offset + n * d);
      } catch (e) {
        throw ioError('read', file, e);
      }
      if (got !== scales.byteLength) throw formatError(file, 'the file ended early (truncated while being read)');
    }
    for (let r0 = 0; r0 < n; r0 += rows) {
      const m = Math.min(rows, n - r0);
      // Fresh buffers per block: importRows copies them into native storage.
      const keys = newKeys(h.precision, m * d);
      const values = new Float32Array(m * dv);
      const groups = new Int32Array(m);
      const parts: [Uint8Array, number][] = [
        [u8(keys), sections.keys.offset + r0 * d * kb],
        [u8(values), sections.values.offset + r0 * dv * 4],
        [u8(groups), sections.groups.offset + r0 * 4],
      ];
      for (let s = 0; s < 3; s++) {
        const [buf, pos] = parts[s]!;
        let got: number;
        try {
          got = await readAll(fh, buf, pos);
        } catch (e) {
          throw ioError('read', file, e);
        }
        if (got !== buf.length) throw formatError(file, 'the file ended early (truncated while being read)');
        hashes[s]!.update(buf);
      }
      if (rowError) continue; // keep hashing: a checksum mismatch explains a bad row better
      try {
        const assigned = ds._importRows(keys, values, h.ids ? h.ids.slice(r0, r0 + m) : undefined, m, scales?.subarray(r0, r0 + m));
        for (let i = 0; i < m; i++) {
          if (assigned[i] !== groups[i]) throw new Error(`row ${r0 + i}: its exclusion group ${groups[i]} disagrees with its id (expected ${assigned[i]})`);
        }
      } catch (e) {
        const row = (e as { row?: number }).row;
        rowError = new Error(row !== undefined ? `${(e as Error).message.replace(/ row \d+/, ` row ${r0 + row}`)}` : (e as Error).message);
      }
    }
    if (scales) hashes[0]!.update(u8(scales)); // file order: the codes, then the scales
    const names = ['keys', 'values', 'groups'];
    for (let s = 0; s < 3; s++) {
      if (!hashes[s]!.digest().equals(digests.subarray((s + 1) * 32, (s + 2) * 32))) {
        throw formatError(file, `checksum mismatch in the ${names[s]} section: the file is corrupt`);
      }
    }
    if (rowError) throw formatError(file, `invalid rows despite matching checksums: ${rowError.message}`);
    return ds;
  } finally {
    await fh.close().catch(() => undefined);
  }
}
