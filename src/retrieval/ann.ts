/**
 * Approximate nearest-neighbour search for datastores of millions of pairs, on top of the
 * optional faiss-node addon (built offline against the system faiss by
 * scripts/build-faiss-node.sh).
 *
 * Cosine similarity throughout: keys and queries are L2-normalised here and the faiss index
 * uses the inner-product metric. Rows get the implicit faiss labels 0, 1, 2, ... in add()
 * order, which are the row numbers of the `values` matrix given to annSearchWithValues().
 *
 * faiss-node 0.5.1 exposes no setter for IVF's `nprobe` nor HNSW's `efSearch`. This module sets
 * them by patching the index's serialised form (faiss 1.7.x write_index layout) and reading it
 * back; every field around the patched one is checked first, so a layout that differs from what
 * is expected raises RAPM_FORMAT instead of writing garbage. Setting them in create() patches
 * the empty index (cheap); setSearchParams() on a filled index round-trips the whole index
 * (transient memory ~3x the index, a few seconds per GB).
 *
 * faiss-node is synchronous: search() and the add() blocks run on the JS thread. faiss's
 * OpenMP pool reads OMP_NUM_THREADS when the addon is first loaded (the first create()).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { RapmError, RapmRangeError, RapmTypeError, describe, invalidParam } from '../errors.js';
import { checkInteger, checkMatrix, is } from '../validate.js';
import { aggregateWeights } from './aggregate.js';
import type { SearchResult } from './datastore.js';
import { resolveSearchOptions, type SearchOptions } from './search-options.js';

// ------------------------------------------------------------------ faiss-node binding

interface FaissSearchResult {
  distances: number[];
  labels: number[];
}
interface FaissIndex {
  ntotal(): number;
  getDimension(): number;
  isTrained(): boolean;
  add(x: number[]): void;
  train(x: number[]): void;
  search(x: number[], k: number): FaissSearchResult;
  toBuffer(): Buffer;
  write(fname: string): void;
}
interface FaissModule {
  Index: {
    fromFactory(d: number, descriptor: string, metric: number): FaissIndex;
    fromBuffer(buf: Buffer): FaissIndex;
    read(fname: string): FaissIndex;
  };
  MetricType: { METRIC_INNER_PRODUCT: number };
}

let faissModule: FaissModule | null = null;

/** The faiss-node module, loaded on first use; RAPM_NATIVE_LOAD when it is not installed or built. */
export function loadFaiss(): FaissModule {
  if (faissModule) return faissModule;
  try {
    const mod = createRequire(import.meta.url)('faiss-node') as FaissModule;
    if (typeof mod?.Index?.fromFactory !== 'function' || typeof mod.Index.fromBuffer !== 'function') {
      throw new Error('faiss-node does not export Index.fromFactory / Index.fromBuffer');
    }
    faissModule = mod;
    return mod;
  } catch (e) {
    throw new RapmError(
      'RAPM_NATIVE_LOAD',
      `faiss-node is not available: run scripts/build-faiss-node.sh (builds the optional faiss-node addon against libfaiss-dev) (${(e as Error).message.split('\n')[0]})`,
      { cause: e },
    );
  }
}

/** True when faiss-node can be loaded (for optional code paths and test skips). */
export function faissAvailable(): boolean {
  try {
    loadFaiss();
    return true;
  } catch {
    return false;
  }
}

function faissError(what: string, e: unknown): RapmError {
  const msg = e instanceof Error ? e.message : String(e);
  return new RapmError('RAPM_NATIVE', `faiss ${what} failed: ${msg}`, { cause: e });
}

// ------------------------------------------------------------------ serialised-index layout
//
// faiss 1.7.x write_index: fourcc (4 bytes), then write_index_header:
//   d int32 @4, ntotal int64 @8, dummy int64 (1 << 20) @16, dummy int64 (1 << 20) @24,
//   is_trained uint8 @32, metric_type int32 @33 (+ metric_arg float32 only when metric > 1).
// IVF indexes (fourcc 'Iw..' / legacy 'Iv..') continue with write_ivf_header:
//   nlist uint64 @37, nprobe uint64 @45, then the quantizer index (its own fourcc @53).
// HNSW indexes (fourcc 'IHN.') continue with write_HNSW:
//   vector<double> assign_probas, vector<int32> cum_nneighbor_per_level, vector<int32> levels,
//   vector<uint64> offsets, vector<int32> neighbors (each: uint64 length + payload), then
//   int32 entry_point, max_level, efConstruction, efSearch, upper_beam; then the storage index.

const HEADER_END = 37;
const IVF_NLIST_AT = 37;
const IVF_NPROBE_AT = 45;
const DUMMY = 1n << 20n;

export type AnnKind = 'flat' | 'ivf' | 'hnsw' | 'other';

export interface IndexHeader {
  fourcc: string;
  d: number;
  ntotal: number;
  isTrained: boolean;
  metric: number;
}

function formatError(msg: string): RapmError {
  return new RapmError('RAPM_FORMAT', `Unexpected faiss serialisation (expected the faiss 1.7.x write_index layout): ${msg}`);
}

/** Random access to a serialised index: a Buffer, or a file read with pread (no full copy). */
export interface IndexBytes {
  readonly length: number;
  /** `len` bytes at `at` (fewer at the end). */
  slice(at: number, len: number): Buffer;
}

function bufferBytes(buf: Buffer): IndexBytes {
  return { length: buf.length, slice: (at, len) => buf.subarray(at, Math.min(buf.length, at + len)) };
}

function fileBytes(fd: number): IndexBytes {
  const length = fs.fstatSync(fd).size;
  return {
    length,
    slice: (at, len) => {
      const out = Buffer.alloc(Math.max(0, Math.min(len, length - at)));
      if (out.length > 0) fs.readSync(fd, out, 0, out.length, at);
      return out;
    },
  };
}

function asBytes(src: Buffer | IndexBytes): IndexBytes {
  if (Buffer.isBuffer(src)) return bufferBytes(src);
  if (src === null || typeof src !== 'object' || typeof (src as IndexBytes).slice !== 'function') throw invalidParam('buf', 'Buffer', src);
  return src;
}

function u64(buf: IndexBytes, at: number, what: string): number {
  if (at + 8 > buf.length) throw formatError(`${what} at byte ${at} lies beyond the end (${buf.length} bytes)`);
  const v = buf.slice(at, 8).readBigUInt64LE(0);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw formatError(`${what} at byte ${at} is ${v}, not a plausible size`);
  return Number(v);
}

function i32(buf: IndexBytes, at: number, what: string): number {
  if (at + 4 > buf.length) throw formatError(`${what} at byte ${at} lies beyond the end (${buf.length} bytes)`);
  return buf.slice(at, 4).readInt32LE(0);
}

function fourccAt(buf: IndexBytes, at: number): string {
  return at + 4 <= buf.length ? buf.slice(at, 4).toString('latin1') : '';
}

/** Parse and check the common index header; `expect` fields must match when given. */
export function readIndexHeader(src: Buffer | IndexBytes, expect: { d?: number; ntotal?: number } = {}): IndexHeader {
  const bytes = asBytes(src);
  if (bytes.length < HEADER_END) throw formatError(`only ${bytes.length} bytes, shorter than the ${HEADER_END}-byte index header`);
  const buf = bytes.slice(0, HEADER_END);
  const fourcc = buf.toString('latin1', 0, 4);
  if (!/^I[\x21-\x7e]{3}$/.test(fourcc)) throw formatError(`fourcc ${JSON.stringify(fourcc)} does not look like a faiss index marker`);
  const d = buf.readInt32LE(4);
  const ntotal = Number(buf.readBigInt64LE(8));
  if (buf.readBigInt64LE(16) !== DUMMY || buf.readBigInt64LE(24) !== DUMMY) throw formatError('the two 1 << 20 filler fields at bytes 16 and 24 are missing');
  const trained = buf[32]!;
  if (trained > 1) throw formatError(`is_trained byte at 32 is ${trained}`);
  const metric = buf.readInt32LE(33);
  if (d < 1 || (expect.d !== undefined && d !== expect.d)) throw formatError(`d at byte 4 is ${d}, expected ${expect.d ?? '>= 1'}`);
  if (ntotal < 0 || (expect.ntotal !== undefined && ntotal !== expect.ntotal)) throw formatError(`ntotal at byte 8 is ${ntotal}, expected ${expect.ntotal ?? '>= 0'}`);
  if (metric !== 0) throw formatError(`metric_type at byte 33 is ${metric}, expected 0 (inner product)`);
  return { fourcc, d, ntotal, isTrained: trained === 1, metric };
}

export interface IvfLayout extends IndexHeader {
  nlist: number;
  nprobe: number;
  quantizerFourcc: string;
}

/** Locate and check IVF's nlist / nprobe fields; `expect.nprobe` guards against a shifted layout. */
export function readIvfLayout(src: Buffer | IndexBytes, expect: { d?: number; ntotal?: number; nlist?: number; nprobe?: number } = {}): IvfLayout {
  const buf = asBytes(src);
  const h = readIndexHeader(buf, expect);
  if (!/^I[wv]/.test(h.fourcc)) throw formatError(`fourcc ${JSON.stringify(h.fourcc)} is not an IVF index ('Iw..')`);
  const nlist = u64(buf, IVF_NLIST_AT, 'nlist');
  const nprobe = u64(buf, IVF_NPROBE_AT, 'nprobe');
  const quantizerFourcc = fourccAt(buf, IVF_NPROBE_AT + 8);
  if (nlist < 1 || nlist > 2 ** 31 || (expect.nlist !== undefined && nlist !== expect.nlist)) throw formatError(`nlist at byte ${IVF_NLIST_AT} is ${nlist}, expected ${expect.nlist ?? 'a list count'}`);
  if (nprobe < 1 || (expect.nprobe !== undefined && nprobe !== expect.nprobe)) throw formatError(`nprobe at byte ${IVF_NPROBE_AT} is ${nprobe}, expected ${expect.nprobe ?? '>= 1'}`);
  if (!/^I[\x21-\x7e]{3}$/.test(quantizerFourcc)) throw formatError(`no quantizer index marker after nprobe (found ${JSON.stringify(quantizerFourcc)})`);
  if (i32(buf, IVF_NPROBE_AT + 12, 'quantizer d') !== h.d) throw formatError(`the quantizer's d does not match the index's d (${h.d})`);
  return { ...h, nlist, nprobe, quantizerFourcc };
}

/** Return a copy of a serialised IVF index with nprobe set (after checking the layout). */
export function patchIvfNprobe(buf: Buffer, nprobe: number, expect: { d?: number; ntotal?: number; nlist?: number; nprobe?: number } = {}): Buffer {
  if (!Buffer.isBuffer(buf)) throw invalidParam('buf', 'Buffer', buf);
  const lay = readIvfLayout(buf, expect);
  checkInteger('nprobe', nprobe, 1, lay.nlist);
  const out = Buffer.from(buf);
  out.writeBigUInt64LE(BigInt(nprobe), IVF_NPROBE_AT);
  return out;
}

export interface HnswLayout extends IndexHeader {
  /** Byte offset of efSearch. */
  efSearchAt: number;
  efSearch: number;
  efConstruction: number;
  maxLevel: number;
  entryPoint: number;
  upperBeam: number;
  storageFourcc: string;
}

/** Walk the HNSW graph section to efSearch, checking every length against ntotal. */
export function readHnswLayout(src: Buffer | IndexBytes, expect: { d?: number; ntotal?: number; efSearch?: number } = {}): HnswLayout {
  const buf = asBytes(src);
  const h = readIndexHeader(buf, expect);
  if (!h.fourcc.startsWith('IHN')) throw formatError(`fourcc ${JSON.stringify(h.fourcc)} is not an HNSW index ('IHN.')`);
  let at = HEADER_END;
  const vector = (what: string, elt: number): { n: number; start: number } => {
    const n = u64(buf, at, `${what} length`);
    const start = at + 8;
    if (start + n * elt > buf.length) throw formatError(`${what} (${n} x ${elt} bytes at byte ${start}) overruns the buffer (${buf.length} bytes)`);
    at = start + n * elt;
    return { n, start };
  };
  const probas = vector('assign_probas', 8);
  const cum = vector('cum_nneighbor_per_level', 4);
  const levels = vector('levels', 4);
  const offsets = vector('offsets', 8);
  const neighbors = vector('neighbors', 4);
  if (probas.n < 1 || probas.n > 64) throw formatError(`assign_probas holds ${probas.n} levels`);
  if (cum.n !== probas.n + 1) throw formatError(`cum_nneighbor_per_level holds ${cum.n} entries, expected ${probas.n + 1}`);
  if (levels.n !== h.ntotal) throw formatError(`levels holds ${levels.n} entries, expected ntotal = ${h.ntotal}`);
  if (offsets.n !== h.ntotal + 1) throw formatError(`offsets holds ${offsets.n} entries, expected ntotal + 1 = ${h.ntotal + 1}`);
  const lastOffset = u64(buf, offsets.start + (offsets.n - 1) * 8, 'offsets[ntotal]');
  if (neighbors.n !== lastOffset) throw formatError(`neighbors holds ${neighbors.n} entries, expected offsets[ntotal] = ${lastOffset}`);
  const entryPoint = i32(buf, at, 'entry_point');
  const maxLevel = i32(buf, at + 4, 'max_level');
  const efConstruction = i32(buf, at + 8, 'efConstruction');
  const efSearch = i32(buf, at + 12, 'efSearch');
  const upperBeam = i32(buf, at + 16, 'upper_beam');
  const storageFourcc = fourccAt(buf, at + 20);
  if (entryPoint < -1 || entryPoint >= Math.max(h.ntotal, 1)) throw formatError(`entry_point ${entryPoint} outside [-1, ntotal)`);
  if (maxLevel < -1 || maxLevel >= probas.n) throw formatError(`max_level ${maxLevel} outside [-1, ${probas.n})`);
  if (efConstruction < 1 || efConstruction > 1 << 20) throw formatError(`efConstruction ${efConstruction} is not plausible`);
  if (efSearch < 1 || (expect.efSearch !== undefined && efSearch !== expect.efSearch)) throw formatError(`efSearch ${efSearch} at byte ${at + 12}, expected ${expect.efSearch ?? '>= 1'}`);
  if (upperBeam !== 1) throw formatError(`upper_beam ${upperBeam}, expected 1`);
  if (!/^I[\x21-\x7e]{3}$/.test(storageFourcc)) throw formatError(`no storage index marker after the HNSW graph (found ${JSON.stringify(storageFourcc)})`);
  return { ...h, efSearchAt: at + 12, efSearch, efConstruction, maxLevel, entryPoint, upperBeam, storageFourcc };
}

/** Return a copy of a serialised HNSW index with efSearch set (after checking the layout). */
export function patchHnswEfSearch(buf: Buffer, efSearch: number, expect: { d?: number; ntotal?: number; efSearch?: number } = {}): Buffer {
  if (!Buffer.isBuffer(buf)) throw invalidParam('buf', 'Buffer', buf);
  const lay = readHnswLayout(buf, expect);
  checkInteger('efSearch', efSearch, 1, 1 << 20);
  const out = Buffer.from(buf);
  out.writeInt32LE(efSearch, lay.efSearchAt);
  return out;
}

// ------------------------------------------------------------------ conversion helpers

/**
 * Rows [r0, r1) of a [*, d] matrix, L2-normalised, as the plain number array faiss-node needs.
 * Throws RAPM_NON_FINITE / RAPM_ZERO_NORM naming the row (offset by `rowBase`).
 */
function plainNormalized(name: string, m: Float32Array, d: number, r0: number, r1: number, rowBase = 0): number[] {
  const out = new Array<number>((r1 - r0) * d);
  let o = 0;
  for (let r = r0; r < r1; r++) {
    const base = r * d;
    let s = 0;
    for (let j = 0; j < d; j++) {
      const x = m[base + j]!;
      s += x * x;
    }
    if (!Number.isFinite(s)) {
      for (let j = 0; j < d; j++) {
        const x = m[base + j]!;
        if (!Number.isFinite(x)) throw new RapmRangeError('RAPM_NON_FINITE', `Expected finite values in ${name} but row ${rowBase + r}, column ${j} is ${String(x)}`);
      }
      throw new RapmRangeError('RAPM_NON_FINITE', `Expected finite values in ${name} but the norm of row ${rowBase + r} overflows`);
    }
    if (s === 0) throw new RapmRangeError('RAPM_ZERO_NORM', `Expected non-zero rows in ${name} but row ${rowBase + r} is all zeros (cannot be L2-normalised)`);
    const inv = 1 / Math.sqrt(s);
    for (let j = 0; j < d; j++) out[o++] = Math.fround(m[base + j]! * inv);
  }
  return out;
}

/** Deterministic sample of `take` distinct row numbers out of m (sorted). */
function sampleRows(m: number, take: number, seed: number): Int32Array {
  const perm = Int32Array.from({ length: m }, (_, i) => i);
  let a = seed >>> 0;
  const rand = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  for (let i = 0; i < take; i++) {
    const j = i + Math.floor(rand() * (m - i));
    const t = perm[i]!;
    perm[i] = perm[j]!;
    perm[j] = t;
  }
  return perm.subarray(0, take).sort();
}

// ------------------------------------------------------------------ AnnIndex

export interface AnnIndexOptions {
  /** Key width (after any column selection). */
  d: number;
  /** faiss index_factory string: 'Flat', 'IVF4096,Flat', 'IVF1024,SQ8', 'HNSW32,Flat', ... */
  factory: string;
  /** IVF only: inverted lists visited per query (1 <= nprobe <= nlist). faiss default 1. */
  nprobe?: number;
  /** HNSW only: search beam width. faiss default 16; faiss searches with max(efSearch, k). */
  efSearch?: number;
  /** Rows train() uses at most (a seeded random subsample of larger inputs). Default 100,000. */
  trainSize?: number;
  /** Seed of that subsample. Default 1. */
  seed?: number;
}

export interface AnnSearchParams {
  nprobe?: number;
  efSearch?: number;
}

export interface AnnSearchResult {
  b: number;
  k: number;
  /** Row numbers of the neighbours, best first, [b, k]; -1 where the index found fewer than k. */
  neighbors: Int32Array;
  /** Cosine similarities as computed by the index (approximate for SQ/PQ codes), [b, k]; -Infinity where missing. */
  similarities: Float32Array;
  /** Neighbours found per query (k unless the index returned -1 labels), [b]. */
  found: Int32Array;
  /** Total -1 slots over the batch (0 when every query got k neighbours). */
  missing: number;
}

export const ANN_DEFAULT_TRAIN_SIZE = 100_000;

function tempIndexPath(): string {
  return path.join(os.tmpdir(), `rapm-ann-${process.pid}-${randomBytes(6).toString('hex')}.faissindex`);
}

function describeLayout(bytes: IndexBytes, head: IndexHeader): { kind: AnnKind; nlist: number; nprobe: number; efSearch: number } {
  if (head.fourcc === 'IxFI') return { kind: 'flat', nlist: 0, nprobe: 0, efSearch: 0 };
  if (/^I[wv]/.test(head.fourcc)) {
    const lay = readIvfLayout(bytes);
    return { kind: 'ivf', nlist: lay.nlist, nprobe: lay.nprobe, efSearch: 0 };
  }
  if (head.fourcc.startsWith('IHN')) return { kind: 'hnsw', nlist: 0, nprobe: 0, efSearch: readHnswLayout(bytes).efSearch };
  return { kind: 'other', nlist: 0, nprobe: 0, efSearch: 0 };
}
/** Rows converted to a plain array per faiss call (bounds the transient JS memory to ~8 * rows * d bytes). */
const ADD_BLOCK_VALUES = 1 << 22;
const SEARCH_BLOCK_VALUES = 1 << 21;

/**
 * An approximate cosine index over L2-normalised keys (faiss, inner-product metric).
 * Create, train (for IVF / SQ / PQ factories), add rows, search.
 */
export class AnnIndex {
  readonly d: number;
  readonly factory: string;
  readonly kind: AnnKind;
  /** Number of IVF lists (0 for other kinds). */
  readonly nlist: number;
  readonly trainSize: number;
  readonly seed: number;
  /** Whether the factory's index needs train() before add() (IVF, SQ, PQ). */
  readonly needsTraining: boolean;
  #index: FaissIndex;
  #nprobe: number;
  #efSearch: number;

  private constructor(index: FaissIndex, d: number, factory: string, kind: AnnKind, nlist: number, nprobe: number, efSearch: number, trainSize: number, seed: number) {
    this.#index = index;
    this.d = d;
    this.factory = factory;
    this.kind = kind;
    this.nlist = nlist;
    this.#nprobe = nprobe;
    this.#efSearch = efSearch;
    this.trainSize = trainSize;
    this.seed = seed;
    this.needsTraining = kind === 'ivf' || !index.isTrained();
  }

  /** Build an empty index from a faiss factory string (inner-product metric). */
  static create(options: AnnIndexOptions): AnnIndex {
    if (!is.object(options as unknown)) throw invalidParam('options', 'object', options);
    const d = checkInteger('d', options.d, 1, 1 << 16);
    const factory = options.factory;
    if (typeof factory !== 'string' || factory.trim() === '') throw invalidParam('factory', "non-empty faiss factory string such as 'IVF4096,Flat'", factory);
    const trainSize = options.trainSize === undefined ? ANN_DEFAULT_TRAIN_SIZE : checkInteger('trainSize', options.trainSize, 1);
    const seed = options.seed === undefined ? 1 : checkInteger('seed', options.seed, 0, 2 ** 32 - 1);
    if (options.nprobe !== undefined) checkInteger('nprobe', options.nprobe, 1);
    if (options.efSearch !== undefined) checkInteger('efSearch', options.efSearch, 1, 1 << 20);
    const faiss = loadFaiss();
    let index: FaissIndex;
    try {
      index = faiss.Index.fromFactory(d, factory, faiss.MetricType.METRIC_INNER_PRODUCT);
    } catch (e) {
      const why = (e instanceof Error ? e.message : String(e)).replace(/^Error in .*? at \S+: (Error: )?/, '');
      throw new RapmRangeError('RAPM_INVALID_ARG', `Expected a faiss index factory string for factory but faiss rejected ${describe(factory)}: ${why}`);
    }
    const buf = index.toBuffer();
    const head = readIndexHeader(buf, { d, ntotal: 0 });
    let kind: AnnKind = 'other';
    let nlist = 0;
    let nprobe = 0;
    let efSearch = 0;
    if (head.fourcc === 'IxFI') kind = 'flat';
    else if (/^I[wv]/.test(head.fourcc)) {
      const m = /(?:^|,)IVF(\d+)/.exec(factory);
      const lay = readIvfLayout(buf, { d, ntotal: 0, nlist: m ? Number(m[1]) : undefined, nprobe: 1 });
      kind = 'ivf';
      nlist = lay.nlist;
      nprobe = lay.nprobe;
    } else if (head.fourcc.startsWith('IHN')) {
      const lay = readHnswLayout(buf, { d, ntotal: 0, efSearch: 16 });
      kind = 'hnsw';
      efSearch = lay.efSearch;
    }
    const ann = new AnnIndex(index, d, factory, kind, nlist, nprobe, efSearch, trainSize, seed);
    if (options.nprobe !== undefined || options.efSearch !== undefined) ann.setSearchParams({ nprobe: options.nprobe, efSearch: options.efSearch });
    return ann;
  }

  /** Restore an index written by toBuffer(). */
  static fromBuffer(buf: Buffer, options: { factory?: string; trainSize?: number; seed?: number } = {}): AnnIndex {
    const head = readIndexHeader(buf);
    const faiss = loadFaiss();
    let index: FaissIndex;
    try {
      index = faiss.Index.fromBuffer(buf);
    } catch (e) {
      throw faissError('read_index', e);
    }
    const { kind, nlist, nprobe, efSearch } = describeLayout(bufferBytes(buf), head);
    return new AnnIndex(index, head.d, options.factory ?? `(${head.fourcc})`, kind, nlist, nprobe, efSearch, options.trainSize ?? ANN_DEFAULT_TRAIN_SIZE, options.seed ?? 1);
  }

  /** Rows indexed. */
  get ntotal(): number {
    return this.#index.ntotal();
  }
  /** Whether the index can take rows (false for IVF / SQ / PQ until train()). */
  get isTrained(): boolean {
    return this.#index.isTrained();
  }
  /** IVF lists visited per query (0 for other kinds). */
  get nprobe(): number {
    return this.#nprobe;
  }
  /** HNSW search beam (0 for other kinds); the effective beam is max(efSearch, k). */
  get efSearch(): number {
    return this.#efSearch;
  }

  /**
   * The serialised index (faiss write_index format). Note: faiss-node 0.5.1 leaks a native copy
   * of the index on every toBuffer() (and fromBuffer()); for large indexes use save() / load().
   */
  toBuffer(): Buffer {
    return this.#index.toBuffer();
  }

  #write(file: string): void {
    try {
      this.#index.write(file);
    } catch (e) {
      throw new RapmError('RAPM_IO', `Cannot write the faiss index to ${file}: ${(e as Error).message}`, { cause: e });
    }
  }

  /** Write the index to `file` (faiss write_index format; written beside it, then renamed). */
  save(file: string): void {
    const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      this.#write(tmp);
      fs.renameSync(tmp, file);
    } catch (e) {
      fs.rmSync(tmp, { force: true });
      throw e instanceof RapmError ? e : new RapmError('RAPM_IO', `Cannot write ${file}: ${(e as Error).message}`, { cause: e });
    }
  }

  /** Serialised size in bytes (close to the index's memory), measured through a temporary file. */
  serializedBytes(): number {
    const tmp = tempIndexPath();
    try {
      this.#write(tmp);
      return fs.statSync(tmp).size;
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  }

  /** Read an index written by save() (or faiss write_index with the inner-product metric). */
  static load(file: string, options: { factory?: string; trainSize?: number; seed?: number } = {}): AnnIndex {
    let head: IndexHeader;
    let extra: { kind: AnnKind; nlist: number; nprobe: number; efSearch: number };
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch (e) {
      throw new RapmError('RAPM_IO', `Cannot read ${file}: ${(e as Error).message}`, { cause: e });
    }
    try {
      const bytes = fileBytes(fd);
      head = readIndexHeader(bytes);
      extra = describeLayout(bytes, head);
    } finally {
      fs.closeSync(fd);
    }
    let index: FaissIndex;
    try {
      index = loadFaiss().Index.read(file);
    } catch (e) {
      throw faissError(`read_index(${file})`, e);
    }
    return new AnnIndex(index, head.d, options.factory ?? `(${head.fourcc})`, extra.kind, extra.nlist, extra.nprobe, extra.efSearch, options.trainSize ?? ANN_DEFAULT_TRAIN_SIZE, options.seed ?? 1);
  }

  /**
   * Set nprobe (IVF) and/or efSearch (HNSW) by patching the serialised index and reading it
   * back. Cheap on an empty index; on a filled one it copies the whole index (~3x its memory,
   * transiently). Throws RAPM_FORMAT if the serialisation is not the expected faiss layout.
   */
  setSearchParams(params: AnnSearchParams): void {
    if (!is.object(params as unknown)) throw invalidParam('params', 'object', params);
    const { nprobe, efSearch } = params;
    if (nprobe !== undefined && this.kind !== 'ivf') {
      throw new RapmRangeError('RAPM_INVALID_ARG', `nprobe applies to IVF indexes only, but factory '${this.factory}' built a ${this.kind} index`);
    }
    if (efSearch !== undefined && this.kind !== 'hnsw') {
      throw new RapmRangeError('RAPM_INVALID_ARG', `efSearch applies to HNSW indexes only, but factory '${this.factory}' built a ${this.kind} index`);
    }
    if (nprobe !== undefined) checkInteger('nprobe', nprobe, 1, this.nlist);
    if (efSearch !== undefined) checkInteger('efSearch', efSearch, 1, 1 << 20);
    if ((nprobe === undefined || nprobe === this.#nprobe) && (efSearch === undefined || efSearch === this.#efSearch)) return;
    const ntotal = this.ntotal;
    const trained = this.isTrained;
    // Through a temporary file, patched in place: faiss-node 0.5.1's toBuffer()/fromBuffer()
    // never free their faiss VectorIOWriter/Reader (a leaked copy of the whole index per call).
    const tmp = tempIndexPath();
    let next: FaissIndex;
    try {
      this.#write(tmp);
      const fd = fs.openSync(tmp, 'r+');
      try {
        const bytes = fileBytes(fd);
        const put = (at: number, b: Buffer): void => void fs.writeSync(fd, b, 0, b.length, at);
        if (nprobe !== undefined) {
          readIvfLayout(bytes, { d: this.d, ntotal, nlist: this.nlist, nprobe: this.#nprobe });
          const b = Buffer.alloc(8);
          b.writeBigUInt64LE(BigInt(nprobe));
          put(IVF_NPROBE_AT, b);
          if (readIvfLayout(bytes, { d: this.d, ntotal, nlist: this.nlist }).nprobe !== nprobe) throw formatError('nprobe did not read back');
        }
        if (efSearch !== undefined) {
          const lay = readHnswLayout(bytes, { d: this.d, ntotal, efSearch: this.#efSearch });
          const b = Buffer.alloc(4);
          b.writeInt32LE(efSearch);
          put(lay.efSearchAt, b);
          if (readHnswLayout(bytes, { d: this.d, ntotal }).efSearch !== efSearch) throw formatError('efSearch did not read back');
        }
      } finally {
        fs.closeSync(fd);
      }
      try {
        next = loadFaiss().Index.read(tmp);
      } catch (e) {
        throw faissError('read_index (after setting search parameters)', e);
      }
    } finally {
      fs.rmSync(tmp, { force: true });
    }
    if (next.ntotal() !== ntotal || next.getDimension() !== this.d || next.isTrained() !== trained) {
      throw formatError('the patched index read back with a different ntotal, d or training state');
    }
    this.#index = next;
    if (nprobe !== undefined) this.#nprobe = nprobe;
    if (efSearch !== undefined) this.#efSearch = efSearch;
  }

  /**
   * Train on keys [m, d] (rows are L2-normalised first; more than trainSize rows are
   * subsampled). A no-op for indexes that need no training (Flat, HNSW-Flat).
   */
  train(keys: Float32Array): void {
    const m = checkMatrix('keys', keys, this.d);
    if (this.#index.isTrained()) {
      if (this.needsTraining) throw new RapmError('RAPM_STATE', `The index '${this.factory}' is already trained`);
      return;
    }
    if (this.kind === 'ivf' && m < this.nlist) {
      throw new RapmRangeError('RAPM_INVALID_ARG', `Expected at least nlist = ${this.nlist} training rows for '${this.factory}' but received ${m}`);
    }
    let x: number[];
    if (m > this.trainSize) {
      const rows = sampleRows(m, this.trainSize, this.seed);
      x = new Array<number>(rows.length * this.d);
      let o = 0;
      for (const r of rows) {
        const row = plainNormalized('keys', keys, this.d, r, r + 1);
        for (let j = 0; j < this.d; j++) x[o++] = row[j]!;
      }
    } else {
      x = plainNormalized('keys', keys, this.d, 0, m);
    }
    try {
      this.#index.train(x);
    } catch (e) {
      throw faissError('train', e);
    }
  }

  #checkAdd(keys: Float32Array): number {
    const m = checkMatrix('keys', keys, this.d);
    if (!this.#index.isTrained()) throw new RapmError('RAPM_STATE', `The index '${this.factory}' must be trained before add(): call train(keys) first`);
    return m;
  }

  #addBlock(keys: Float32Array, r0: number, r1: number, base: number): void {
    const x = plainNormalized('keys', keys, this.d, r0, r1, base);
    try {
      this.#index.add(x);
    } catch (e) {
      throw faissError('add', e);
    }
  }

  /**
   * Append rows [m, d] (L2-normalised here); they get the row numbers ntotal.. ntotal + m - 1.
   * Converts and adds block-wise, yielding to the event loop between blocks. A bad row
   * (NaN, zero) stops the add there: rows of earlier blocks stay added (see ntotal).
   */
  async add(keys: Float32Array): Promise<void> {
    const m = this.#checkAdd(keys);
    const block = Math.max(1, Math.floor(ADD_BLOCK_VALUES / this.d));
    const base = this.ntotal;
    for (let r = 0; r < m; r += block) {
      if (r > 0) await yieldToLoop();
      this.#addBlock(keys, r, Math.min(m, r + block), base);
    }
  }

  /** add(), without yielding. */
  addSync(keys: Float32Array): void {
    const m = this.#checkAdd(keys);
    const block = Math.max(1, Math.floor(ADD_BLOCK_VALUES / this.d));
    const base = this.ntotal;
    for (let r = 0; r < m; r += block) this.#addBlock(keys, r, Math.min(m, r + block), base);
  }

  /**
   * Approximate top-k by cosine for queries [b, d] (normalised here). Missing results
   * (an IVF probe that holds fewer than k rows) come back as -1 / -Infinity and are counted.
   */
  search(queries: Float32Array, k: number): AnnSearchResult {
    const b = checkMatrix('queries', queries, this.d);
    checkInteger('k', k, 1);
    if (!this.#index.isTrained()) throw new RapmError('RAPM_STATE', `The index '${this.factory}' is not trained: call train(keys) and add(keys) first`);
    const n = this.ntotal;
    if (n === 0) throw new RapmError('RAPM_STATE', `The index '${this.factory}' is empty: add() rows before searching`);
    if (k > n) throw new RapmRangeError('RAPM_K_TOO_LARGE', `Expected k <= ${n} (rows in the index) but received k = ${k}`);
    const neighbors = new Int32Array(b * k);
    const similarities = new Float32Array(b * k);
    const found = new Int32Array(b);
    let missing = 0;
    const block = Math.max(1, Math.floor(SEARCH_BLOCK_VALUES / Math.max(this.d, k)));
    for (let q0 = 0; q0 < b; q0 += block) {
      const q1 = Math.min(b, q0 + block);
      const x = plainNormalized('queries', queries, this.d, q0, q1);
      let res: FaissSearchResult;
      try {
        res = this.#index.search(x, k);
      } catch (e) {
        throw faissError('search', e);
      }
      const off = q0 * k;
      for (let i = 0; i < (q1 - q0) * k; i++) {
        const label = res.labels[i]!;
        if (label < 0) {
          neighbors[off + i] = -1;
          similarities[off + i] = -Infinity;
          missing++;
        } else {
          neighbors[off + i] = label;
          similarities[off + i] = res.distances[i]!;
          found[q0 + Math.floor(i / k)]!++;
        }
      }
    }
    return { b, k, neighbors, similarities, found, missing };
  }
}

// ------------------------------------------------------------------ drop-in for Datastore.search

export interface AnnValuesSearchResult extends SearchResult {
  /** Neighbours found per query (k unless the index returned -1 labels), [b]. */
  found: Int32Array;
  /** Total -1 slots over the batch. */
  missing: number;
}

/**
 * Datastore.search() on an AnnIndex: approximate top-k, weights by `aggregate` (softmax(sim /
 * tau) by default) over the neighbours found, prior = sum of weight x value. `values` [ntotal,
 * dv] holds the value rows in add() order. Returns Datastore.search()'s shape plus `found` and
 * `missing`: a query with fewer than k neighbours is aggregated over those it has (weight 0 and
 * row -1 in the empty slots); one with none gets a NaN prior row. Synchronous underneath
 * (faiss-node has no async search); the Promise is for drop-in use.
 */
export function annSearchWithValuesSync(index: AnnIndex, values: Float32Array, queries: Float32Array, options?: Pick<SearchOptions, 'k' | 'tau' | 'aggregate'>): AnnValuesSearchResult {
  if (!(index instanceof AnnIndex)) throw invalidParam('index', 'AnnIndex', index);
  if (!(values instanceof Float32Array)) throw new RapmTypeError('RAPM_TYPE', `Expected Float32Array for values but received ${describe(values)}`);
  if (options !== undefined && is.object(options) && ('excludeRows' in options || 'excludeIds' in options || 'rowRange' in options)) {
    throw new RapmRangeError('RAPM_INVALID_ARG', 'annSearchWithValues does not support excludeRows, excludeIds or rowRange');
  }
  const opts = resolveSearchOptions(options);
  const n = index.ntotal;
  if (n === 0) throw new RapmError('RAPM_STATE', 'The index is empty: add() rows before searching');
  if (values.length === 0 || values.length % n !== 0) {
    throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `Expected values to hold ${n} rows (one per indexed key) but received length ${values.length}`);
  }
  const res = index.search(queries, opts.k);
  const agg = priorFromNeighbors(res.neighbors, res.similarities, values, values.length / n, opts);
  return { b: res.b, k: res.k, prior: agg.prior, neighbors: res.neighbors, weights: agg.weights, similarities: res.similarities, found: agg.found, missing: agg.missing };
}

/**
 * rapm's aggregation on neighbours found by any engine (an AnnIndex, Milvus, Qdrant, ...):
 * neighbors [b, k] row numbers of `values` [rows, dv] best first (-1 = none, only after the
 * found ones), similarities [b, k] cosines. Weights by `aggregate` over the found neighbours;
 * a query with none gets a NaN prior row. Then apply fusion to the prior as usual.
 */
export function priorFromNeighbors(
  neighbors: Int32Array,
  similarities: Float32Array,
  values: Float32Array,
  dv: number,
  options?: Pick<SearchOptions, 'k' | 'tau' | 'aggregate'>,
): { prior: Float32Array; weights: Float32Array; found: Int32Array; missing: number } {
  if (!(neighbors instanceof Int32Array)) throw invalidParam('neighbors', 'Int32Array', neighbors);
  if (!(similarities instanceof Float32Array)) throw invalidParam('similarities', 'Float32Array', similarities);
  checkInteger('dv', dv, 1);
  const rows = checkMatrix('values', values, dv);
  const opts = resolveSearchOptions(options);
  const k = opts.k;
  if (neighbors.length === 0 || neighbors.length % k !== 0 || similarities.length !== neighbors.length) {
    throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `Expected neighbors and similarities of equal length b x k (k = ${k}) but received ${neighbors.length} and ${similarities.length}`);
  }
  const b = neighbors.length / k;
  const prior = new Float32Array(b * dv);
  const weights = new Float32Array(b * k);
  const found = new Int32Array(b);
  let missing = 0;
  for (let q = 0; q < b; q++) {
    let f = 0;
    while (f < k && neighbors[q * k + f]! >= 0) f++;
    for (let i = f; i < k; i++) {
      if (neighbors[q * k + i]! >= 0) throw new RapmRangeError('RAPM_INVALID_ARG', `Expected the -1 (missing) neighbours of query ${q} after the found ones, but slot ${i} holds row ${neighbors[q * k + i]}`);
    }
    found[q] = f;
    missing += k - f;
    const p = prior.subarray(q * dv, (q + 1) * dv);
    if (f === 0) {
      p.fill(NaN);
      continue;
    }
    const w = weights.subarray(q * k, q * k + f);
    const sims = similarities.subarray(q * k, q * k + f);
    for (let i = 0; i < f; i++) {
      if (Number.isNaN(sims[i]!)) throw new RapmRangeError('RAPM_NON_FINITE', `Expected finite similarities but query ${q}, slot ${i} is NaN`);
      const r = neighbors[q * k + i]!;
      if (r >= rows) throw new RapmRangeError('RAPM_INVALID_ARG', `Expected neighbour rows below ${rows} (rows of values) but query ${q}, slot ${i} is ${r}`);
    }
    aggregateWeights(sims, opts.tau, opts.aggregate, w);
    for (let i = 0; i < f; i++) {
      const wi = w[i]!;
      if (wi === 0) continue;
      const v = neighbors[q * k + i]! * dv;
      for (let j = 0; j < dv; j++) p[j] = p[j]! + wi * values[v + j]!;
    }
  }
  return { prior, weights, found, missing };
}

/** annSearchWithValuesSync(), returning a Promise like Datastore.search(). */
export async function annSearchWithValues(index: AnnIndex, values: Float32Array, queries: Float32Array, options?: Pick<SearchOptions, 'k' | 'tau' | 'aggregate'>): Promise<AnnValuesSearchResult> {
  return annSearchWithValuesSync(index, values, queries, options);
}

/** Mean over queries of |ANN top-k ∩ exact top-k| / k (rows of [b, k] neighbour matrices). In [0, 1]. */
export function recallAtK(approx: Int32Array, exact: Int32Array, k: number): number {
  if (approx.length !== exact.length || approx.length % k !== 0 || approx.length === 0) {
    throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `Expected two [b, ${k}] neighbour matrices of equal length but received ${approx.length} and ${exact.length}`);
  }
  const b = approx.length / k;
  let hit = 0;
  const set = new Set<number>();
  for (let q = 0; q < b; q++) {
    set.clear();
    for (let i = 0; i < k; i++) set.add(exact[q * k + i]!);
    for (let i = 0; i < k; i++) {
      const r = approx[q * k + i]!;
      if (r >= 0 && set.has(r)) hit++;
    }
  }
  return hit / (b * k);
}
