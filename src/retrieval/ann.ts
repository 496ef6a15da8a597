/**
 * Approximate nearest-neighbour search for datastores of millions of pairs, on top of the
 * optional faiss-node addon (built offline against the system faiss by
 * scripts/build-faiss-node.sh, which applies scripts/faiss-node/rapm-faiss-node.patch).
 *
 * Cosine similarity throughout: keys and queries are L2-normalised here and the faiss index
 * uses the inner-product metric. Rows get the implicit faiss labels 0, 1, 2, ... in add()
 * order, which are the row numbers of the `values` matrix given to annSearchWithValues().
 *
 * Search parameters (IVF's `nprobe`, HNSW's `efSearch`) are set through faiss's own
 * faiss::ParameterSpace::set_index_parameter, which the patch exposes as
 * Index.setSearchParam(name, value) (and reads back with getSearchParam). The patch also fixes
 * faiss-node 0.5.1's toBuffer()/fromBuffer(), which leaked a full native copy of the index per
 * call, and adds Float32Array add/train/search (no per-element JS arrays).
 *
 * Searching off the event loop: the patch adds Index.searchAsync, which runs faiss's search on
 * a libuv worker thread (a Napi::AsyncWorker resolving a Promise) with the same results as the
 * synchronous searchFloat32, bit for bit. The worker copies the queries and holds the faiss
 * index through a shared_ptr, so a search in flight outlives its JS wrapper. faiss's search on
 * a const index is thread-safe, so searches may run concurrently; add / train / parameter
 * changes are not, so the native side refuses them while a searchAsync is in flight (error
 * code FAISS_INDEX_BUSY), and AnnIndex serialises: add() waits for the searches in flight and
 * searchAsync() waits for an add() in progress; addSync(), train() and setSearchParams() refuse
 * (RAPM_STATE) instead of blocking. search() (synchronous, on the JS thread) stays for scripts.
 * faiss's OpenMP pool reads OMP_NUM_THREADS when the addon is first loaded (the first create()).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { RapmError, RapmRangeError, RapmTypeError, describe, invalidParam } from '../errors.js';
import { checkInteger, checkKnownKeys, checkMatrix, is } from '../validate.js';
import { aggregateWeights } from './aggregate.js';
import type { SearchResult } from './datastore.js';
import { resolveSearchOptions, type SearchOptions } from './search-options.js';
import { assertRegularFile } from '../io/files.js';
import { ioError, removeStaleTempsSync, tempPathFor, writeTarget } from '../io/atomic.js';
import { mulberry32 } from '../rng.js';
import { EF_SEARCH_MAX_FAISS, NPROBE_MAX_FAISS } from '../settings.js';

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
  // rapm patch (scripts/faiss-node/rapm-faiss-node.patch)
  setSearchParam(name: string, value: number): void;
  getSearchParam(name: 'nprobe' | 'nlist' | 'efSearch'): number;
  addFloat32(x: Float32Array): void;
  trainFloat32(x: Float32Array): void;
  searchFloat32(x: Float32Array, k: number): { distances: Float32Array; labels: Int32Array };
  searchAsync(x: Float32Array, k: number): Promise<{ distances: Float32Array; labels: Int32Array }>;
  searchesInFlight(): number;
}
interface FaissModule {
  Index: {
    fromFactory(d: number, descriptor: string, metric: number): FaissIndex;
    fromBuffer(buf: Buffer): FaissIndex;
    read(fname: string): FaissIndex;
    prototype: Partial<FaissIndex>;
  };
  MetricType: { METRIC_INNER_PRODUCT: number };
}

let faissModule: FaissModule | null = null;

/** The faiss-node module, loaded on first use; RAPM_NATIVE_LOAD when it is not installed, built or patched. */
export function loadFaiss(): FaissModule {
  if (faissModule) return faissModule;
  try {
    // RAPM_FAISS_NODE: another build of the patched addon (a .node file), e.g. the sanitizer
    // build of `bash scripts/build-faiss-node.sh --asan` that scripts/test-asan.sh runs against.
    const override = process.env.RAPM_FAISS_NODE;
    const mod = (override
      ? { ...(createRequire(import.meta.url)(path.resolve(override)) as object), MetricType: { METRIC_INNER_PRODUCT: 0 } }
      : createRequire(import.meta.url)('faiss-node')) as FaissModule;
    if (typeof mod?.Index?.fromFactory !== 'function' || typeof mod.Index.fromBuffer !== 'function') {
      throw new Error('faiss-node does not export Index.fromFactory / Index.fromBuffer');
    }
    const proto = mod.Index.prototype;
    if (typeof proto?.setSearchParam !== 'function' || typeof proto.searchFloat32 !== 'function' || typeof proto.searchAsync !== 'function') {
      throw new Error('faiss-node was built without the current rapm patch (no Index.setSearchParam / searchFloat32 / searchAsync); rebuild with: bash scripts/build-faiss-node.sh --force');
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
  if ((e as { code?: unknown } | null)?.code === 'FAISS_INDEX_BUSY') return new RapmError('RAPM_STATE', `faiss ${what} refused: ${msg}`, { cause: e });
  return new RapmError('RAPM_NATIVE', `faiss ${what} failed: ${msg}`, { cause: e });
}

// ------------------------------------------------------------------ serialised-index header
//
// faiss write_index starts every index with: fourcc (4 bytes), d int32 @4, ntotal int64 @8,
// two int64 (1 << 20) fillers @16 and @24, is_trained uint8 @32, metric_type int32 @33.
// faiss-node exposes no metric getter, so load() / fromBuffer() read this header (read-only)
// to refuse an L2 index before handing the bytes to faiss.

const HEADER_END = 37;
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
  return new RapmError('RAPM_FORMAT', `Not a faiss inner-product index: ${msg}`);
}

/** Parse and check the common index header (the first 37 bytes); `expect` fields must match when given. */
export function readIndexHeader(buf: Buffer, expect: { d?: number; ntotal?: number } = {}): IndexHeader {
  if (!Buffer.isBuffer(buf)) throw invalidParam('buf', 'Buffer', buf);
  if (buf.length < HEADER_END) throw formatError(`only ${buf.length} bytes, shorter than the ${HEADER_END}-byte index header`);
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

function readHeaderOfFile(file: string): IndexHeader {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    throw new RapmError('RAPM_IO', `Cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
  try {
    const buf = Buffer.alloc(HEADER_END);
    const n = fs.readSync(fd, buf, 0, HEADER_END, 0);
    return readIndexHeader(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
}

// ------------------------------------------------------------------ conversion helpers

/**
 * Rows [r0, r1) of a [*, d] matrix, L2-normalised, into a new Float32Array.
 * Throws RAPM_NON_FINITE / RAPM_ZERO_NORM naming the row (offset by `rowBase`).
 */
function normalizedRows(name: string, m: Float32Array, d: number, r0: number, r1: number, rowBase = 0): Float32Array {
  const out = new Float32Array((r1 - r0) * d);
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
    for (let j = 0; j < d; j++) out[o++] = m[base + j]! * inv;
  }
  return out;
}

/** Deterministic sample of `take` distinct row numbers out of m (sorted). */
function sampleRows(m: number, take: number, seed: number): Int32Array {
  const perm = Int32Array.from({ length: m }, (_, i) => i);
  const rand = mulberry32(seed);
  for (let i = 0; i < take; i++) {
    const j = i + Math.floor(rand() * (m - i));
    const t = perm[i]!;
    perm[i] = perm[j]!;
    perm[j] = t;
  }
  return perm.subarray(0, take).sort();
}

// ------------------------------------------------------------------ AnnIndex

/** Every key AnnIndexOptions has: any other key is refused, not ignored. */
export const ANN_INDEX_OPTION_KEYS = ['d', 'factory', 'nprobe', 'efSearch', 'trainSize', 'seed'] as const satisfies readonly (keyof AnnIndexOptions)[];

export interface AnnIndexOptions {
  /** Key width (after any column selection). */
  d: number;
  /**
   * faiss index_factory string: 'Flat', 'IVF4096,Flat', 'IVF1024,SQ8', 'HNSW32,Flat', ... Accepted forms
   * (checked with their numbers before faiss sees them, see checkAnnFactory): 'Flat', 'SQ4|6|8|fp16',
   * 'PQ<m>[x<nbits>][fs|fsr|np]' (m divides d, 1 <= nbits <= 16), 'IVF<nlist>[_HNSW<M>],<code>'
   * (1 <= nlist <= 2^20), 'HNSW<M>[,<code>]' (2 <= M <= 256).
   */
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

/** Kind and search parameters, asked of the index itself (getSearchParam returns -1 when absent). */
const KIND_NAMES: Record<AnnKind, string> = { ivf: 'an IVF index', hnsw: 'an HNSW index', flat: 'a flat index (an exact scan, no search knob)', other: 'an index with no nprobe or efSearch' };

export type SearchKnob = 'nprobe' | 'efSearch';

/** How a knob refusal spells things. */
export interface KnobWording {
  /** A knob in the message (e.g. with its CLI flag). Default: its key. */
  knob?: (knob: SearchKnob) => string;
  /** What the index searched is, after `what` (default: 'is an HNSW index', ...). */
  is?: (kind: AnnKind) => string;
  /** The kind of index each knob is for (default IVF, HNSW; pgvector: IVFFlat, HNSW). */
  family?: { ivf: string; hnsw: string };
}

/**
 * Null when the search knob `knob` applies to an index of `kind` (nprobe: IVF, efSearch: HNSW),
 * else why not, naming the knob, `what` (e.g. "--ann 'HNSW32,Flat'") and its kind, and the knob
 * that does apply. The one wording of this refusal, for faiss (AnnIndex, rapm serve --ann) and
 * pgvector (PgVectorSource index mode, where nprobe is ivfflat.probes).
 */
export function searchKnobMismatch(kind: AnnKind, knob: SearchKnob, what: string, wording: KnobWording = {}): string | null {
  const wants: AnnKind = knob === 'nprobe' ? 'ivf' : 'hnsw';
  if (kind === wants) return null;
  const name = wording.knob ?? ((k: SearchKnob) => k);
  const family = wording.family ?? { ivf: 'IVF', hnsw: 'HNSW' };
  const other = knob === 'nprobe' ? 'efSearch' : 'nprobe';
  const fix = kind === 'ivf' || kind === 'hnsw' ? `set ${name(other)} instead, or drop ${name(knob)}` : `drop ${name(knob)}`;
  return `${name(knob)} applies to ${family[wants]} indexes only, but ${what} ${wording.is?.(kind) ?? `is ${KIND_NAMES[kind]}`}: ${fix}`;
}

/** Throws RAPM_INVALID_ARG (searchKnobMismatch's message) for the first knob given in `knobs` that an index of `kind` ignores. */
export function refuseSearchKnobs(kind: AnnKind, knobs: { nprobe?: unknown; efSearch?: unknown }, what: string, wording?: KnobWording): void {
  for (const knob of ['nprobe', 'efSearch'] as const) {
    const why = knobs[knob] === undefined ? null : searchKnobMismatch(kind, knob, what, wording);
    if (why !== null) throw new RapmRangeError('RAPM_INVALID_ARG', why);
  }
}

function describeIndex(index: FaissIndex, fourcc: string): { kind: AnnKind; nlist: number; nprobe: number; efSearch: number } {
  const nprobe = index.getSearchParam('nprobe');
  if (nprobe >= 0) return { kind: 'ivf', nlist: index.getSearchParam('nlist'), nprobe, efSearch: 0 };
  const efSearch = index.getSearchParam('efSearch');
  if (efSearch >= 0) return { kind: 'hnsw', nlist: 0, nprobe: 0, efSearch };
  return { kind: fourcc === 'IxFI' ? 'flat' : 'other', nlist: 0, nprobe: 0, efSearch: 0 };
}

/** Upper bounds of the factory's numbers (sane, not faiss's: each is far above any useful setting). */
export const ANN_FACTORY_LIMITS = { nlist: 1 << 20, hnswM: 256, pqNbits: 16 } as const;

const FACTORY_FORMS =
  "'Flat', 'SQ4' | 'SQ6' | 'SQ8' | 'SQfp16', 'PQ<m>[x<nbits>][fs|fsr|np]', 'IVF<nlist>[_HNSW<M>],<code>', " +
  "'HNSW<M>[,Flat | ,SQ... | ,PQ<m>]' (code: one of the first three)";

/**
 * Checks a faiss factory string against the grammar AnnIndex accepts, and every number in it,
 * before faiss sees it: faiss-node takes some out-of-range numbers without a word and then
 * crashes the process or hangs (HNSW0 segfaults in add, HNSW1 never returns from add, IVF0
 * aborts in add, PQ0 divides by zero, IVF1000000000 allocates for minutes). Forms outside the
 * grammar (pre-transforms, refinement, IDMap, NSG, RQ, ...) are refused rather than passed on,
 * because their numbers are not checked here. RAPM_INVALID_ARG names the factory and the number;
 * `name` is the setting the factory came from ('factory' in AnnIndex.create, 'ann (--ann)' for serve).
 */
export function checkAnnFactory(factory: string, d: number, name = 'factory'): void {
  const bad = (why: string): RapmRangeError =>
    new RapmRangeError('RAPM_INVALID_ARG', `Expected a supported faiss factory for ${name} but received ${describe(factory)}: ${why}`);
  const num = (name: string, text: string, lo: number, hi: number, unit: string): number => {
    const v = Number(text);
    if (!(v >= lo && v <= hi)) throw bad(`${name} must be in [${lo}, ${hi}] but ${unit} gives ${text}`);
    return v;
  };
  // A code: how vectors are stored (flat, scalar- or product-quantised).
  const code = (part: string, where: string, hnsw: boolean): void => {
    if (part === 'Flat' || /^SQ(4|6|8|fp16)$/.test(part)) return;
    const pq = hnsw ? /^PQ(\d+)$/.exec(part) : /^PQ(\d+)(?:x(\d+))?(fs|fsr|np)?$/.exec(part);
    if (!pq) throw bad(`${describe(part)} is not a supported ${where} (${FACTORY_FORMS})`);
    const m = num('the PQ sub-quantizer count m', pq[1]!, 1, d, `'${part}'`);
    if (d % m !== 0) throw bad(`the PQ sub-quantizer count m must divide d = ${d} but '${part}' gives ${m}`);
    if (pq[2] !== undefined) {
      const nbits = num('the PQ bits per code nbits', pq[2], 1, ANN_FACTORY_LIMITS.pqNbits, `'${part}'`);
      if (pq[3]?.startsWith('fs') && nbits !== 4) throw bad(`fast-scan PQ ('${part}') needs nbits = 4 but received ${nbits}`);
    } else if (pq[3]?.startsWith('fs')) {
      throw bad(`fast-scan PQ needs an explicit x4 ('PQ${m}x4${pq[3]}') but received '${part}'`);
    }
  };
  const parts = factory.split(',');
  const head = parts[0]!;
  const ivf = /^IVF(\d+)(?:_HNSW(\d+))?$/.exec(head);
  const hnsw = /^HNSW(\d+)$/.exec(head);
  if (ivf) {
    num('the IVF list count nlist', ivf[1]!, 1, ANN_FACTORY_LIMITS.nlist, `'${head}'`);
    if (ivf[2] !== undefined) num('the HNSW quantizer degree M', ivf[2], 2, ANN_FACTORY_LIMITS.hnswM, `'${head}'`);
    if (parts.length !== 2) throw bad(`an IVF factory is 'IVF<nlist>,<code>' such as 'IVF4096,Flat' (${FACTORY_FORMS})`);
    code(parts[1]!, 'IVF code', false);
  } else if (hnsw) {
    num('the HNSW degree M', hnsw[1]!, 2, ANN_FACTORY_LIMITS.hnswM, `'${head}'`);
    if (parts.length > 2) throw bad(`an HNSW factory is 'HNSW<M>' or 'HNSW<M>,<code>' such as 'HNSW32,Flat' (${FACTORY_FORMS})`);
    if (parts.length === 2) code(parts[1]!, 'HNSW code', true);
  } else {
    if (parts.length !== 1) throw bad(`${describe(head)} is not a supported first component (${FACTORY_FORMS})`);
    code(head, 'factory', false);
  }
}

/** Rows normalised per faiss call (bounds the transient copy to ~4 * rows * d bytes). */
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
  readonly #index: FaissIndex;
  /** searchAsync() calls whose native searches have not settled. */
  readonly #searches = new Set<Promise<unknown>>();
  /** The add() in progress (searchAsync() and other add() calls wait for it). */
  #adding: Promise<void> | null = null;

  private constructor(index: FaissIndex, d: number, factory: string, kind: AnnKind, nlist: number, trainSize: number, seed: number) {
    this.#index = index;
    this.d = d;
    this.factory = factory;
    this.kind = kind;
    this.nlist = nlist;
    this.trainSize = trainSize;
    this.seed = seed;
    this.needsTraining = kind === 'ivf' || !index.isTrained();
  }

  static #wrap(index: FaissIndex, fourcc: string, factory: string, options: { trainSize?: number; seed?: number }): AnnIndex {
    const { kind, nlist } = describeIndex(index, fourcc);
    return new AnnIndex(index, index.getDimension(), factory, kind, nlist, options.trainSize ?? ANN_DEFAULT_TRAIN_SIZE, options.seed ?? 1);
  }

  /** Build an empty index from a faiss factory string (inner-product metric). */
  static create(options: AnnIndexOptions): AnnIndex {
    if (!is.object(options as unknown)) throw invalidParam('options', 'object', options);
    checkKnownKeys('AnnIndex.create', options, ANN_INDEX_OPTION_KEYS);
    const d = checkInteger('d', options.d, 1, 1 << 16);
    const factory = options.factory;
    if (typeof factory !== 'string' || factory.trim() === '') throw invalidParam('factory', "non-empty faiss factory string such as 'IVF4096,Flat'", factory);
    const trainSize = options.trainSize === undefined ? ANN_DEFAULT_TRAIN_SIZE : checkInteger('trainSize', options.trainSize, 1);
    const seed = options.seed === undefined ? 1 : checkInteger('seed', options.seed, 0, 2 ** 32 - 1);
    if (options.nprobe !== undefined) checkInteger('nprobe', options.nprobe, 1, NPROBE_MAX_FAISS);
    if (options.efSearch !== undefined) checkInteger('efSearch', options.efSearch, 1, EF_SEARCH_MAX_FAISS);
    checkAnnFactory(factory, d);
    const faiss = loadFaiss();
    let index: FaissIndex;
    try {
      index = faiss.Index.fromFactory(d, factory, faiss.MetricType.METRIC_INNER_PRODUCT);
    } catch (e) {
      const why = (e instanceof Error ? e.message : String(e)).replace(/^Error in .*? at \S+: (Error: )?/, '');
      throw new RapmRangeError('RAPM_INVALID_ARG', `Expected a faiss index factory string for factory but faiss rejected ${describe(factory)}: ${why}`);
    }
    const ann = AnnIndex.#wrap(index, /^Flat$/i.test(factory.trim()) ? 'IxFI' : '', factory, { trainSize, seed });
    if (options.nprobe !== undefined || options.efSearch !== undefined) ann.setSearchParams({ nprobe: options.nprobe, efSearch: options.efSearch });
    return ann;
  }

  /** Restore an index written by toBuffer(). */
  static fromBuffer(buf: Buffer, options: { factory?: string; trainSize?: number; seed?: number } = {}): AnnIndex {
    const head = readIndexHeader(buf);
    let index: FaissIndex;
    try {
      index = loadFaiss().Index.fromBuffer(buf);
    } catch (e) {
      throw faissError('read_index', e);
    }
    return AnnIndex.#wrap(index, head.fourcc, options.factory ?? `(${head.fourcc})`, options);
  }

  /** Rows indexed. */
  get ntotal(): number {
    return this.#index.ntotal();
  }
  /** Whether the index can take rows (false for IVF / SQ / PQ until train()). */
  get isTrained(): boolean {
    return this.#index.isTrained();
  }
  /** IVF lists visited per query (0 for other kinds), as the index reports it. */
  get nprobe(): number {
    return this.kind === 'ivf' ? this.#index.getSearchParam('nprobe') : 0;
  }
  /** HNSW search beam (0 for other kinds); the effective beam is max(efSearch, k). */
  get efSearch(): number {
    return this.kind === 'hnsw' ? this.#index.getSearchParam('efSearch') : 0;
  }

  /** The serialised index (faiss write_index format). */
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
    const dest = writeTarget(file); // refuses a device, FIFO or folder at `file`; writes through a link
    // atomicWriteSync's naming and clean-up (faiss writes to a path, not a descriptor): the
    // temporaries of a killed save are removed, as for every other file rapm writes.
    removeStaleTempsSync(dest);
    const tmp = tempPathFor(dest);
    try {
      this.#write(tmp);
      fs.renameSync(tmp, dest);
    } catch (e) {
      fs.rmSync(tmp, { force: true });
      throw ioError('write', file, e);
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
    if (typeof file === 'string') assertRegularFile(file, 'ANN index');
    const head = readHeaderOfFile(file);
    let index: FaissIndex;
    try {
      index = loadFaiss().Index.read(file);
    } catch (e) {
      throw faissError(`read_index(${file})`, e);
    }
    return AnnIndex.#wrap(index, head.fourcc, options.factory ?? `(${head.fourcc})`, options);
  }

  /**
   * Set nprobe (IVF, 1..nlist) and/or efSearch (HNSW, 1..2^20) through
   * faiss::ParameterSpace::set_index_parameter. Takes effect for the next search; O(1).
   */
  setSearchParams(params: AnnSearchParams): void {
    if (!is.object(params as unknown)) throw invalidParam('params', 'object', params);
    this.#refuseWhileBusy('setSearchParams');
    const { nprobe, efSearch } = params;
    refuseSearchKnobs(this.kind, params, `factory '${this.factory}'`);
    if (nprobe !== undefined) checkInteger('nprobe', nprobe, 1, this.nlist);
    if (efSearch !== undefined) checkInteger('efSearch', efSearch, 1, EF_SEARCH_MAX_FAISS);
    try {
      if (nprobe !== undefined) this.#index.setSearchParam('nprobe', nprobe);
      if (efSearch !== undefined) this.#index.setSearchParam('efSearch', efSearch);
    } catch (e) {
      throw faissError('ParameterSpace.set_index_parameter', e);
    }
  }

  /**
   * Train on keys [m, d] (rows are L2-normalised first; more than trainSize rows are
   * subsampled). A no-op for indexes that need no training (Flat, HNSW-Flat).
   */
  train(keys: Float32Array): void {
    const m = checkMatrix('keys', keys, this.d);
    this.#refuseWhileBusy('train');
    if (this.#index.isTrained()) {
      if (this.needsTraining) throw new RapmError('RAPM_STATE', `The index '${this.factory}' is already trained`);
      return;
    }
    if (this.kind === 'ivf' && m < this.nlist) {
      throw new RapmRangeError('RAPM_INVALID_ARG', `Expected at least nlist = ${this.nlist} training rows for '${this.factory}' but received ${m}`);
    }
    let x: Float32Array;
    if (m > this.trainSize) {
      const rows = sampleRows(m, this.trainSize, this.seed);
      x = new Float32Array(rows.length * this.d);
      let o = 0;
      for (const r of rows) {
        x.set(normalizedRows('keys', keys, this.d, r, r + 1), o);
        o += this.d;
      }
    } else {
      x = normalizedRows('keys', keys, this.d, 0, m);
    }
    try {
      this.#index.trainFloat32(x);
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
    const x = normalizedRows('keys', keys, this.d, r0, r1, base);
    try {
      this.#index.addFloat32(x);
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
    this.#checkAdd(keys);
    // One add at a time, after the searches in flight (faiss's add must not race a search).
    while (this.#adding) await this.#adding.catch(() => {});
    const run = (async () => {
      while (this.#searches.size > 0) await Promise.allSettled([...this.#searches]);
      const m = this.#checkAdd(keys);
      const block = Math.max(1, Math.floor(ADD_BLOCK_VALUES / this.d));
      const base = this.ntotal;
      for (let r = 0; r < m; r += block) {
        if (r > 0) await yieldToLoop();
        this.#addBlock(keys, r, Math.min(m, r + block), base);
      }
    })();
    this.#adding = run;
    try {
      await run;
    } finally {
      if (this.#adding === run) this.#adding = null;
    }
  }

  /** Refuses (RAPM_STATE) a mutation while searchAsync() searches or an add() runs. */
  #refuseWhileBusy(what: string): void {
    const searching = this.#index.searchesInFlight();
    if (searching > 0 || this.#adding) {
      throw new RapmError('RAPM_STATE', `${what} refused: the index '${this.factory}' is busy (${searching > 0 ? `${searching} searchAsync call(s) in flight` : 'an add() is in progress'}); await them first, or use add(), which waits`);
    }
  }

  /** add(), without yielding; refused (RAPM_STATE) while a searchAsync() or add() is in progress. */
  addSync(keys: Float32Array): void {
    this.#refuseWhileBusy('addSync');
    const m = this.#checkAdd(keys);
    const block = Math.max(1, Math.floor(ADD_BLOCK_VALUES / this.d));
    const base = this.ntotal;
    for (let r = 0; r < m; r += block) this.#addBlock(keys, r, Math.min(m, r + block), base);
  }

  /** Checks a search's arguments and state; returns b. */
  #checkSearch(queries: Float32Array, k: number): number {
    const b = checkMatrix('queries', queries, this.d);
    checkInteger('k', k, 1);
    if (!this.#index.isTrained()) throw new RapmError('RAPM_STATE', `The index '${this.factory}' is not trained: call train(keys) and add(keys) first`);
    const n = rowsToSearch(this);
    if (k > n) throw new RapmRangeError('RAPM_K_TOO_LARGE', `Expected k <= ${n} (rows in the index) but received k = ${k}`);
    return b;
  }

  /** Query blocks [q0, q1) searched per faiss call (bounds the normalised copy and the results). */
  #blocks(b: number, k: number): [number, number][] {
    const block = Math.max(1, Math.floor(SEARCH_BLOCK_VALUES / Math.max(this.d, k)));
    const out: [number, number][] = [];
    for (let q0 = 0; q0 < b; q0 += block) out.push([q0, Math.min(b, q0 + block)]);
    return out;
  }

  /**
   * Approximate top-k by cosine for queries [b, d] (normalised here). Missing results
   * (an IVF probe that holds fewer than k rows) come back as -1 / -Infinity and are counted.
   * Synchronous: faiss runs on the JS thread. Servers use searchAsync().
   */
  search(queries: Float32Array, k: number): AnnSearchResult {
    const b = this.#checkSearch(queries, k);
    const out = emptyResult(b, k);
    for (const [q0, q1] of this.#blocks(b, k)) {
      const x = normalizedRows('queries', queries, this.d, q0, q1);
      let res: { distances: Float32Array; labels: Int32Array };
      try {
        res = this.#index.searchFloat32(x, k);
      } catch (e) {
        throw faissError('search', e);
      }
      collectBlock(out, q0, q1, res);
    }
    return out;
  }

  /**
   * search() on a libuv worker thread: the same neighbours and similarities, bit for bit, while
   * the event loop keeps turning. Waits for an add() in progress; concurrent searchAsync() /
   * search() calls are fine (faiss search on a const index is thread-safe). The queries are
   * normalised into a copy before the Promise is returned, so the caller may reuse them at once.
   */
  async searchAsync(queries: Float32Array, k: number): Promise<AnnSearchResult> {
    while (this.#adding) await this.#adding.catch(() => {});
    const b = this.#checkSearch(queries, k);
    const out = emptyResult(b, k);
    const blocks = this.#blocks(b, k).map(([q0, q1]) => ({ q0, q1, x: normalizedRows('queries', queries, this.d, q0, q1) }));
    for (const { q0, q1, x } of blocks) {
      let pending: Promise<{ distances: Float32Array; labels: Int32Array }>;
      try {
        pending = this.#index.searchAsync(x, k);
      } catch (e) {
        throw faissError('search', e);
      }
      this.#searches.add(pending);
      let res: { distances: Float32Array; labels: Int32Array };
      try {
        res = await pending;
      } catch (e) {
        throw faissError('search', e);
      } finally {
        this.#searches.delete(pending);
      }
      collectBlock(out, q0, q1, res);
    }
    return out;
  }
}

/** The rows of `index`; RAPM_STATE when it has none (the one wording of this refusal: search and annSearchWithValues). */
function rowsToSearch(index: AnnIndex): number {
  const n = index.ntotal;
  if (n === 0) throw new RapmError('RAPM_STATE', `The index '${index.factory}' is empty: add() rows before searching`);
  return n;
}

function emptyResult(b: number, k: number): AnnSearchResult {
  return { b, k, neighbors: new Int32Array(b * k), similarities: new Float32Array(b * k), found: new Int32Array(b), missing: 0 };
}

/** Copies one faiss result block (queries [q0, q1)) into `out`: -1 labels become row -1 / -Infinity and are counted. */
function collectBlock(out: AnnSearchResult, q0: number, q1: number, res: { distances: Float32Array; labels: Int32Array }): void {
  const { k, neighbors, similarities, found } = out;
  const off = q0 * k;
  neighbors.set(res.labels, off);
  similarities.set(res.distances, off);
  for (let i = 0; i < (q1 - q0) * k; i++) {
    if (res.labels[i]! < 0) {
      neighbors[off + i] = -1;
      similarities[off + i] = -Infinity;
      out.missing++;
    } else {
      found[q0 + Math.floor(i / k)]!++;
    }
  }
}

// ------------------------------------------------------------------ drop-in for Datastore.search

export interface AnnValuesSearchResult extends SearchResult {
  /** Neighbours found per query (k unless the index returned -1 labels), [b]. */
  found: Int32Array;
  /** Total -1 slots over the batch. */
  missing: number;
}

/** Checks annSearchWithValues' arguments; returns the resolved options and dv. */
function checkValuesSearch(index: AnnIndex, values: Float32Array, options: Pick<SearchOptions, 'k' | 'tau' | 'aggregate'> | undefined) {
  if (!(index instanceof AnnIndex)) throw invalidParam('index', 'AnnIndex', index);
  if (!(values instanceof Float32Array)) throw new RapmTypeError('RAPM_TYPE', `Expected Float32Array for values but received ${describe(values)}`);
  if (options !== undefined && is.object(options) && ('excludeRows' in options || 'excludeIds' in options || 'rowRange' in options)) {
    throw new RapmRangeError('RAPM_INVALID_ARG', 'annSearchWithValues does not support excludeRows, excludeIds or rowRange');
  }
  const opts = resolveSearchOptions(options);
  const n = rowsToSearch(index);
  if (values.length === 0 || values.length % n !== 0) {
    throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `Expected values to hold ${n} rows (one per indexed key) but received length ${values.length}`);
  }
  return { opts, dv: values.length / n };
}

function withValues(res: AnnSearchResult, values: Float32Array, dv: number, opts: ReturnType<typeof resolveSearchOptions>): AnnValuesSearchResult {
  const agg = priorFromNeighbors(res.neighbors, res.similarities, values, dv, opts);
  return { b: res.b, k: res.k, prior: agg.prior, neighbors: res.neighbors, weights: agg.weights, similarities: res.similarities, found: agg.found, missing: agg.missing };
}

/**
 * Datastore.search() on an AnnIndex: approximate top-k, weights by `aggregate` (softmax(sim /
 * tau) by default) over the neighbours found, prior = sum of weight x value. `values` [ntotal,
 * dv] holds the value rows in add() order. Returns Datastore.search()'s shape plus `found` and
 * `missing`: a query with fewer than k neighbours is aggregated over those it has (weight 0 and
 * row -1 in the empty slots); one with none is refused (RAPM_K_TOO_LARGE). The search runs on the JS
 * thread; annSearchWithValues() runs it on a libuv worker thread.
 */
export function annSearchWithValuesSync(index: AnnIndex, values: Float32Array, queries: Float32Array, options?: Pick<SearchOptions, 'k' | 'tau' | 'aggregate'>): AnnValuesSearchResult {
  const { opts, dv } = checkValuesSearch(index, values, options);
  return withValues(index.search(queries, opts.k), values, dv, opts);
}

/**
 * rapm's aggregation on neighbours found by any engine (an AnnIndex, Milvus, Qdrant, ...):
 * neighbors [b, k] row numbers of `values` [rows, dv] best first (-1 = none, only after the
 * found ones), similarities [b, k] cosines. Weights by `aggregate` over the found neighbours;
 * a query with none is refused (RAPM_K_TOO_LARGE naming it and `searcher`). Then apply fusion to
 * the prior as usual.
 */
export function priorFromNeighbors(
  neighbors: Int32Array,
  similarities: Float32Array,
  values: Float32Array,
  dv: number,
  options?: Pick<SearchOptions, 'k' | 'tau' | 'aggregate'>,
  searcher = 'The neighbour search',
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
      // Only -1 means "none": any other negative row is a caller's bug, not a missing neighbour.
      if (neighbors[q * k + i]! < -1) throw new RapmRangeError('RAPM_INVALID_ARG', `Expected neighbors rows >= 0, or -1 for a missing neighbour, but neighbors[${q * k + i}] (query ${q}, slot ${i}) is ${neighbors[q * k + i]}`);
      if (neighbors[q * k + i]! >= 0) throw new RapmRangeError('RAPM_INVALID_ARG', `Expected the -1 (missing) neighbours of query ${q} after the found ones, but slot ${i} holds row ${neighbors[q * k + i]}`);
    }
    found[q] = f;
    missing += k - f;
    const p = prior.subarray(q * dv, (q + 1) * dv);
    // No neighbour at all: no prior can be formed (a NaN row before; no output is NaN).
    if (f === 0) throw new RapmRangeError('RAPM_K_TOO_LARGE', `${searcher} found no neighbours for query row ${q} (every slot of it is -1): no prior can be formed from none`);
    const w = weights.subarray(q * k, q * k + f);
    const sims = similarities.subarray(q * k, q * k + f);
    for (let i = 0; i < f; i++) {
      // ±Infinity too: softmax over them is Infinity - Infinity = NaN weights and prior.
      if (!Number.isFinite(sims[i]!)) throw new RapmRangeError('RAPM_NON_FINITE', `Expected finite similarities but similarities[${q * k + i}] (query ${q}, slot ${i}) is ${sims[i]}`);
      const r = neighbors[q * k + i]!;
      if (r >= rows) throw new RapmRangeError('RAPM_INVALID_ARG', `Expected neighbour rows below ${rows} (rows of values) but query ${q}, slot ${i} is ${r}`);
      // The value rows used (not all of values: it may hold millions of rows) must be finite,
      // or the prior is NaN / Infinity.
      for (let j = 0, o = r * dv; j < dv; j++) {
        if (!Number.isFinite(values[o + j]!)) throw new RapmRangeError('RAPM_NON_FINITE', `Expected finite values but values[${o + j}] (row ${r}, column ${j}; neighbour of query ${q}, slot ${i}) is ${values[o + j]}`);
      }
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

/** annSearchWithValuesSync() with the search on a libuv worker thread (AnnIndex.searchAsync), like Datastore.search(). */
export async function annSearchWithValues(index: AnnIndex, values: Float32Array, queries: Float32Array, options?: Pick<SearchOptions, 'k' | 'tau' | 'aggregate'>): Promise<AnnValuesSearchResult> {
  const { opts, dv } = checkValuesSearch(index, values, options);
  return withValues(await index.searchAsync(queries, opts.k), values, dv, opts);
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
