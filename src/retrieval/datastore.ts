import { RapmError, RapmRangeError, describe, invalidParam } from '../errors.js';
import { loadBinding, type NativeDatastore, nativeError } from '../native/binding.js';
import { selectColumns } from '../data/indices.js';
import { checkIndexList, checkInteger, checkKnownKeys, checkMatrix, is } from '../validate.js';
import { AGGREGATE_CODE, resolveSearchOptions, type ResolvedSearchOptions, type SearchOptions } from './search-options.js';
import { loadDatastore, saveDatastore, type LoadDatastoreOptions, type SaveDatastoreOptions, type SaveDatastoreResult } from './persist.js';
import { FAST_PATH_PRECISION_RULE, PRECISIONS, checkSetting, crossSettingProblem } from '../settings.js';

/**
 * Key storage. 'f32' (default); 'bf16' (half the memory, ~3 significant digits); 'int8' (about a
 * quarter: d int8 codes + one f32 scale per row, chosen so the stored key s * codes has unit
 * norm; see native/core/int8_store.cpp). Search is exact over the keys as stored: with bf16 or
 * int8 keys some neighbours differ from an f32 store's.
 */
export type KeyPrecision = (typeof PRECISIONS)[number];
const PRECISION_CODE: Record<KeyPrecision, number> = { f32: 0, bf16: 1, int8: 2 };

/**
 * Fast search path: a first pass on narrower keys (bf16 with AVX-512 BF16, int8 with AVX-512
 * VNNI) keeping every row within twice a rigorous error bound of the K-th best, an exact
 * re-rank of those K' candidates by the exact kernel, and a per-query proof that the exact
 * top-K is among them (queries without it are redone by the exact scan). The answer is the
 * exact search's, bit for bit. It engages when the searched rows span at least 8 (k + 32)
 * 32-row panels (smaller stores are searched exactly: the re-rank would cost a full scan).
 * 'bf16' on an f32 store keeps a bf16 shadow of the keys (memory x1.5); on a bf16 store it
 * reads the stored keys. 'int8' keeps an int8 shadow with a per-row scale (+1 byte per value);
 * on an int8 store (precision 'int8') it reads the stored keys (no shadow), and the answer is
 * the exact scan of the int8 keys. An int8 store takes 'off' or 'int8' only.
 * On a CPU without the instructions the exact scan runs instead.
 */
export type FastPath = 'off' | 'bf16' | 'int8';
/** The fastPath option and setting (src/settings.ts): a FastPath, or 'auto' (see resolveFastPath). */
export type FastPathSetting = FastPath | 'auto';
const FAST_PATH_CODE: Record<FastPath, number> = { off: 0, bf16: 1, int8: 2 };

/**
 * The fast path a datastore keeps: 'auto' is 'bf16' when this CPU runs the bf16 first pass
 * (AVX512_BF16, whatever RAPM_SIMD or setSimdLevel select now) and the keys are f32 or bf16,
 * else 'off' (no shadow memory where it could not be used); other values are kept as given
 * (on a CPU without the instructions they cost the shadow's memory and search exactly).
 */
export function resolveFastPath(setting: FastPathSetting, precision: KeyPrecision): FastPath {
  if (setting !== 'auto') return setting;
  return (precision === 'f32' || precision === 'bf16') && loadBinding().simdLevels().includes('avx512bf16') ? 'bf16' : 'off';
}

export interface DatastoreOptions {
  /** Width of the key vectors passed to add() and search(). Default 1024 (HuBERT-large). */
  keyDim?: number;
  /** Width of the value vectors passed to add(). Default 1024. */
  valueDim?: number;
  /** Key columns to keep (Config B: ENGLISH_WINNERS). Default: all keyDim columns (Config A). */
  keyIndices?: ArrayLike<number>;
  /** Value columns to keep (SPANISH_WINNERS for the R-APM target). Default: all valueDim columns. */
  valueIndices?: ArrayLike<number>;
  /** Key storage: 'f32' (default), 'bf16' (half the memory and bandwidth, ~3 significant digits) or 'int8' (see KeyPrecision). */
  precision?: KeyPrecision;
  /**
   * Fast search path, same answers as the exact scan (see FastPath), or 'auto' (resolveFastPath).
   * Default: the fastPath setting's, 'auto' (src/settings.ts).
   */
  fastPath?: FastPathSetting;
}

const DATASTORE_OPTION_KEYS = ['keyDim', 'valueDim', 'keyIndices', 'valueIndices', 'precision', 'fastPath'] as const satisfies readonly (keyof DatastoreOptions)[];

export interface SearchResult {
  /** Number of queries. */
  b: number;
  k: number;
  /** Blended values, [b, dv]. */
  prior: Float32Array;
  /** Datastore rows of the neighbours, best first, [b, k]. */
  neighbors: Int32Array;
  /** Aggregation weights (sum to 1 per query), [b, k]. */
  weights: Float32Array;
  /** Cosine similarities of the neighbours, [b, k]. */
  similarities: Float32Array;
}

interface PreparedAdd {
  m: number;
  k: Float32Array; // [m, d]
  v: Float32Array; // [m, dv]
}

interface Prepared {
  queries: Float32Array; // [b, d]
  b: number;
  opts: ResolvedSearchOptions;
  exclude: Int32Array | null; // [b]
  range: [number, number];
  out: SearchResult;
}

/** A search's neighbour lists without the blended prior (Datastore._searchNeighbors). */
export type NeighborResult = Omit<SearchResult, 'prior'>;

/** Keys in stored form: f32, bf16 bit patterns, or int8 codes (with a separate Float32Array of per-row scales). */
export type StoredKeys = Float32Array | Uint16Array | Int8Array;

const allIndices = (n: number): Int32Array => Int32Array.from({ length: n }, (_, i) => i);

/**
 * A datastore of aligned (EN key, ES value) pairs with exact top-K search, run by the
 * native SIMD engine. Keys are L2-normalised once, at add(); rows can be appended at
 * any time, also while searches run (a search sees the rows committed when it started).
 *
 * Row ownership. This class is the one owner of "which rows exist": a row exists once it
 * is *committed*, i.e. once its id and exclusion group are recorded here (`#ids.length`
 * is the committed row count, returned by `size`). The native store is only storage: an
 * async add() appends its rows natively on a worker thread and they are committed when
 * its promise continuation runs on the JS thread. Until then they are invisible: every
 * native read (search, searchSync, exportRows) is bounded by the committed count, passed
 * as the row range, so no search can return a row without an id, `excludeRows` indexes
 * committed rows only, and a save writes exactly the committed rows. This needs the
 * native rows [0, size) to be exactly the committed rows in commit order, which holds
 * because every append goes through one ordered queue (`#pending`): add() chains onto it,
 * and the synchronous appends (addSync, and _importRows for load) refuse with RAPM_STATE
 * while an add() is pending. They cannot join the queue instead: a sync call cannot wait
 * for a pending async add without blocking the event loop that add needs to commit, and
 * running ahead of it would append natively out of call order.
 */
export class Datastore {
  readonly keyDim: number;
  readonly valueDim: number;
  readonly keyIndices: Int32Array;
  readonly valueIndices: Int32Array;
  readonly precision: KeyPrecision;
  readonly fastPath: FastPath;
  readonly #native: NativeDatastore;
  readonly #keyIdentity: boolean;
  readonly #valueIdentity: boolean;
  readonly #ids: string[] = [];
  readonly #rowGroup: number[] = [];
  readonly #groupOf = new Map<string, number>();
  readonly #groupSize: number[] = [];
  #pending: Promise<void> = Promise.resolve();
  /** add() calls accepted and not yet settled (queued or running). */
  #addsPending = 0;

  constructor(options: DatastoreOptions = {}) {
    if (!is.object(options as unknown)) throw invalidParam('options', 'object', options);
    checkKnownKeys('new Datastore', options, DATASTORE_OPTION_KEYS);
    this.keyDim = options.keyDim === undefined ? 1024 : checkInteger('keyDim', options.keyDim, 1, 1 << 20);
    this.valueDim = options.valueDim === undefined ? 1024 : checkInteger('valueDim', options.valueDim, 1, 1 << 20);
    this.keyIndices = options.keyIndices === undefined ? allIndices(this.keyDim) : checkIndexList('keyIndices', options.keyIndices, this.keyDim);
    this.valueIndices =
      options.valueIndices === undefined ? allIndices(this.valueDim) : checkIndexList('valueIndices', options.valueIndices, this.valueDim);
    this.precision = options.precision ?? 'f32';
    if (!PRECISIONS.includes(this.precision)) throw invalidParam('precision', PRECISIONS.map((x) => `'${x}'`).join(', '), options.precision);
    this.fastPath = resolveFastPath(checkSetting('fastPath', options.fastPath), this.precision);
    if (this.fastPath === 'int8' && this.keyIndices.length > 65536) {
      throw new RapmRangeError('RAPM_INVALID_ARG', `Expected a key width <= 65536 for fastPath 'int8' but received ${this.keyIndices.length}`);
    }
    if (this.precision === 'int8' && this.keyIndices.length > 65536) {
      throw new RapmRangeError('RAPM_INVALID_ARG', `Expected a key width <= 65536 for precision 'int8' (the int8 kernels' limit) but received ${this.keyIndices.length}`);
    }
    const conflict = crossSettingProblem({ precision: this.precision, fastPath: this.fastPath }, 'library', [FAST_PATH_PRECISION_RULE]);
    if (conflict !== null) throw new RapmError('RAPM_INVALID_ARG', conflict);
    this.#keyIdentity = this.keyIndices.length === this.keyDim && this.keyIndices.every((v, i) => v === i);
    this.#valueIdentity = this.valueIndices.length === this.valueDim && this.valueIndices.every((v, i) => v === i);
    const { Datastore: Native } = loadBinding();
    this.#native = new Native(this.keyIndices.length, this.valueIndices.length, PRECISION_CODE[this.precision], FAST_PATH_CODE[this.fastPath]);
  }

  /** Stored key width d (after index selection). */
  get d(): number {
    return this.keyIndices.length;
  }
  /** Stored value width dv (after index selection). */
  get dv(): number {
    return this.valueIndices.length;
  }
  /** Rows committed (visible to searches; see the class comment). */
  get size(): number {
    return this.#ids.length;
  }
  /** Bytes of native storage (keys, values, groups), including rows of an add() not yet committed. */
  get memoryBytes(): number {
    return this.#native.memoryBytes;
  }
  /**
   * Native bytes per row: keys (f32 4d, bf16 2d, int8 4 ceil(d/4) + 8 for codes, scale and code
   * sum), the fast path's shadow if any (bf16 2d, int8 4 ceil(d/4) + 8; none on a store of the
   * same precision), values 4 dv and the exclusion group 4. memoryBytes is this times the rows,
   * with keys padded to a multiple of 32 rows per segment.
   */
  get bytesPerRow(): number {
    const d = this.d;
    const int8Keys = 4 * Math.ceil(d / 4) + 8;
    const keys = this.precision === 'int8' ? int8Keys : this.precision === 'bf16' ? 2 * d : 4 * d;
    const shadow = this.fastPath === 'int8' && this.precision !== 'int8' ? int8Keys : this.fastPath === 'bf16' && this.precision === 'f32' ? 2 * d : 0;
    return keys + shadow + 4 * this.dv + 4;
  }
  /**
   * Fast-path counters since construction: queries searched with the fast path; how many of
   * them were redone by the exact scan because the first pass could not prove its candidates
   * held the exact top-K; the candidates the first pass kept for the others (summed); and how
   * many of those the exact re-rank computed (all of them when candidates are dense over the
   * store, as in a large batch; fewer otherwise, where a second round skips the ones that
   * cannot be among the K best). All stay 0 when fastPath is 'off' or the CPU lacks it.
   */
  get fastPathStats(): { queries: number; redone: number; candidates: number; reranked: number } {
    return this.#native.fastPathStats;
  }
  /** @internal Native segments holding the rows (tests: the merge policy, native/core/datastore.cpp). */
  get _segmentCount(): number {
    return this.#native._segmentCount;
  }
  /** Utterance id of a row (or its row number as a string when added without ids). */
  idOf(row: number): string {
    const id = this.#ids[row];
    if (id === undefined) throw invalidParam('row', `integer between 0 and ${this.size - 1}`, row);
    return id;
  }
  /** Rows sharing an utterance id with `id` (0 when absent). */
  countOf(id: string): number {
    const g = this.#groupOf.get(id);
    return g === undefined ? 0 : this.#groupSize[g]!;
  }

  /**
   * `copy`: the async add() reads arrays of its own, never the caller's: the native worker reads
   * them after add() has returned, and a caller's buffer can be transferred (postMessage,
   * structuredClone) and freed by then (a segfault, not an error), or modified (wrong rows). The
   * copy is one memcpy on the calling thread; addSync reads in place.
   */
  #prepareAdd(keys: Float32Array, values: Float32Array, ids: readonly string[] | undefined, copy: boolean): PreparedAdd {
    const m = checkMatrix('keys', keys, this.keyDim);
    checkMatrix('values', values, this.valueDim, m);
    if (ids !== undefined) {
      if (!Array.isArray(ids) || ids.length !== m) {
        throw Array.isArray(ids)
          ? new RapmRangeError('RAPM_SHAPE_MISMATCH', `Expected ${m} ids (one per key row) but received ${ids.length}`)
          : invalidParam('ids', 'array of strings', ids);
      }
      ids.forEach((id, i) => {
        if (!is.string(id)) throw invalidParam(`ids[${i}]`, 'non-empty string', id);
      });
    }
    return {
      m,
      k: this.#keyIdentity ? (copy ? keys.slice() : keys) : selectColumns(keys, this.keyDim, this.keyIndices),
      v: this.#valueIdentity ? (copy ? values.slice() : values) : selectColumns(values, this.valueDim, this.valueIndices),
    };
  }

  /** Refuse a synchronous append while an add() is queued or running (see the class comment). */
  #checkNoPendingAdd(what: string): void {
    if (this.#addsPending > 0) {
      throw new RapmError(
        'RAPM_STATE',
        `Cannot ${what} while an add() is pending (${this.#addsPending} queued or running): await it first, or use add(), which keeps call order`,
      );
    }
  }

  /** Assign exclusion groups to new rows and commit the JS-side row metadata. */
  #commitIds(m: number, ids: readonly string[] | undefined, dryRun: boolean): Int32Array {
    const groups = new Int32Array(m);
    const fresh = new Map<string, number>();
    let next = this.#groupSize.length;
    for (let i = 0; i < m; i++) {
      const id = ids ? ids[i]! : String(this.#ids.length + i);
      let g = this.#groupOf.get(id) ?? fresh.get(id);
      if (g === undefined) {
        g = next++;
        fresh.set(id, g);
      }
      groups[i] = g;
    }
    if (!dryRun) {
      for (const [id, g] of fresh) this.#groupOf.set(id, g);
      for (let i = 0; i < m; i++) {
        const g = groups[i]!;
        this.#groupSize[g] = (this.#groupSize[g] ?? 0) + 1;
        this.#ids.push(ids ? ids[i]! : String(this.#ids.length));
        this.#rowGroup.push(g);
      }
    }
    return groups;
  }

  /**
   * Append rows: keys [m, keyDim], values [m, valueDim], optional utterance ids (rows
   * with the same id are excluded together by leave-one-out). Runs off the JS thread;
   * appends are applied in call order, and the rows become visible (size, search,
   * idOf, save) all at once when the promise settles. The arrays are copied before add()
   * returns: the caller may modify or transfer them at once.
   */
  add(keys: Float32Array, values: Float32Array, ids?: readonly string[]): Promise<void> {
    const stack = new Error().stack;
    let p: PreparedAdd;
    try {
      p = this.#prepareAdd(keys, values, ids, true);
    } catch (e) {
      return Promise.reject(e);
    }
    const run = async (): Promise<void> => {
      try {
        // Groups are assigned against the committed state, which nothing else can change
        // until this add commits: appends are serialised by the queue and sync ones refused.
        const groups = this.#commitIds(p.m, ids, true);
        try {
          await this.#native.add(p.k, p.v, groups, p.m);
        } catch (e) {
          throw nativeError(e, stack);
        }
        this.#commitIds(p.m, ids, false);
      } finally {
        this.#addsPending--;
      }
    };
    this.#addsPending++;
    const result = this.#pending.then(run);
    this.#pending = result.catch(() => undefined);
    // The caller's own promise: the queue's handler must not mark an ignored failure handled.
    return result.then(() => undefined);
  }

  /**
   * add(), on the calling thread. For small inputs and tests. Throws RAPM_STATE while an
   * add() is pending (queued or running): await it first (see the class comment for why).
   */
  addSync(keys: Float32Array, values: Float32Array, ids?: readonly string[]): void {
    this.#checkNoPendingAdd('addSync()');
    const p = this.#prepareAdd(keys, values, ids, false);
    const groups = this.#commitIds(p.m, ids, true);
    try {
      this.#native.addSync(p.k, p.v, groups, p.m);
    } catch (e) {
      throw nativeError(e, new Error().stack);
    }
    this.#commitIds(p.m, ids, false);
  }

  /** `copy`: as #prepareAdd's (the async searches read a copy of the queries; searchSync reads in place). */
  #prepareSearch(queries: Float32Array, options: SearchOptions | undefined, withPrior: boolean, copy: boolean): Prepared {
    const opts = resolveSearchOptions(options);
    const b = checkMatrix('queries', queries, this.keyDim);
    const n = this.size;
    if (n === 0) throw new RapmError('RAPM_STATE', 'The datastore is empty: add() rows before searching');
    let exclude: Int32Array | null = null;
    if (options?.excludeRows !== undefined) {
      const rows = options.excludeRows;
      if (!(Array.isArray(rows) || ArrayBuffer.isView(rows))) throw invalidParam('excludeRows', 'array of row numbers', rows);
      if (rows.length !== b) {
        throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `Expected excludeRows of length ${b} (one per query) but received ${rows.length}`);
      }
      exclude = new Int32Array(b);
      for (let i = 0; i < b; i++) {
        const r = rows[i]!;
        if (!Number.isInteger(r) || r < -1 || r >= n) {
          throw new RapmRangeError('RAPM_INVALID_ARG', `Expected excludeRows[${i}] between -1 and ${n - 1} but received ${describe(r)}`);
        }
        exclude[i] = r < 0 ? -1 : this.#rowGroup[r]!;
      }
    } else if (options?.excludeIds !== undefined) {
      const ids = options.excludeIds;
      if (!Array.isArray(ids)) throw invalidParam('excludeIds', 'array of ids', ids);
      if (ids.length !== b) {
        throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `Expected excludeIds of length ${b} (one per query) but received ${ids.length}`);
      }
      exclude = new Int32Array(b);
      for (let i = 0; i < b; i++) {
        const id: unknown = ids[i];
        if (id !== null && id !== undefined && typeof id !== 'string') throw invalidParam(`excludeIds[${i}]`, 'id string, null or undefined', id);
        exclude[i] = id === null || id === undefined ? -1 : (this.#groupOf.get(id) ?? -1);
      }
    }
    // Always an explicit range: the native store may already hold rows of a pending add()
    // beyond n, which must stay invisible until committed.
    let range: [number, number] = [0, n];
    if (options?.rowRange !== undefined) {
      const rr = options.rowRange;
      if (!Array.isArray(rr) || rr.length !== 2) throw invalidParam('rowRange', 'array [start, end)', rr);
      const [s0, s1] = rr as [number, number];
      if (!Number.isInteger(s0) || !Number.isInteger(s1) || s0 < 0 || s1 > n || s0 >= s1) {
        throw new RapmRangeError('RAPM_INVALID_ARG', `Expected rowRange [start, end) with 0 <= start < end <= ${n} but received [${String(s0)}, ${String(s1)}]`);
      }
      range = [s0, s1];
    }
    const searched = range[1] - range[0];
    // K must fit in what each query can still see: the searched rows less its excluded group's
    // rows INSIDE the range (a group's rows outside it take nothing from the query; counted
    // with one pass over the range, only when a range and exclusions are both given).
    let excludedIn = (g: number): number => this.#groupSize[g]!;
    if (exclude && searched !== n) {
      const wanted = new Set<number>();
      for (const g of exclude) if (g >= 0) wanted.add(g);
      const counts = new Map<number, number>();
      if (wanted.size > 0) {
        for (let r = range[0]; r < range[1]; r++) {
          const g = this.#rowGroup[r]!;
          if (wanted.has(g)) counts.set(g, (counts.get(g) ?? 0) + 1);
        }
      }
      excludedIn = (g) => counts.get(g) ?? 0;
    }
    let maxExcluded = 0;
    let worst = -1;
    if (exclude) {
      for (let i = 0; i < b; i++) {
        const g = exclude[i]!;
        const s = g >= 0 ? excludedIn(g) : 0;
        if (s > maxExcluded) {
          maxExcluded = s;
          worst = i;
        }
      }
    }
    if (opts.k > searched - maxExcluded) {
      const where = searched === n ? `the datastore holds ${n} rows` : `rowRange holds ${searched} rows`;
      throw new RapmRangeError(
        'RAPM_K_TOO_LARGE',
        maxExcluded > 0
          ? `Expected k <= ${searched - maxExcluded} but received k = ${opts.k}: ${where} and query ${worst} excludes ${maxExcluded} of them`
          : `Expected k <= ${searched} (${searched === n ? 'rows in the datastore' : 'rows in rowRange'}) but received k = ${opts.k}`,
      );
    }
    const k = opts.k;
    return {
      queries: this.#keyIdentity ? (copy ? queries.slice() : queries) : selectColumns(queries, this.keyDim, this.keyIndices),
      b,
      opts,
      exclude,
      range,
      out: {
        b,
        k,
        prior: new Float32Array(withPrior ? b * this.dv : 0),
        neighbors: new Int32Array(b * k),
        weights: new Float32Array(b * k),
        similarities: new Float32Array(b * k),
      },
    };
  }

  /**
   * Exact top-K search: cosine similarity of each query [b, keyDim] to every key, the K
   * best (ties to the lower row), weights by `aggregate`, and prior = sum of weight x value.
   * Runs off the JS thread.
   */
  async search(queries: Float32Array, options?: SearchOptions): Promise<SearchResult> {
    const stack = new Error().stack;
    return this.#runSearch(this.#prepareSearch(queries, options, true, true), true, stack);
  }

  /** The native search of a prepared call; withPrior false passes no prior buffer, so no value rows are blended. */
  async #runSearch(p: Prepared, withPrior: boolean, stack: string | undefined): Promise<SearchResult> {
    const { out } = p;
    try {
      await this.#native.search(p.queries, p.b, out.k, p.opts.tau, AGGREGATE_CODE[p.opts.aggregate], p.exclude, withPrior ? out.prior : null, out.neighbors, out.weights, out.similarities, p.range[0], p.range[1]);
    } catch (e) {
      throw nativeError(e, stack);
    }
    return out;
  }

  /**
   * @internal search() without the prior: the neighbours, their similarities and weights (the
   * same as search()'s), with no blend of value rows (IncrementalPriors blends its merged lists
   * itself, so the per-search prior would be discarded).
   */
  async _searchNeighbors(queries: Float32Array, options?: SearchOptions): Promise<NeighborResult> {
    const stack = new Error().stack;
    const { prior: _prior, ...rest } = await this.#runSearch(this.#prepareSearch(queries, options, false, true), false, stack);
    return rest;
  }

  /** search(), on the calling thread. For small inputs and tests. */
  searchSync(queries: Float32Array, options?: SearchOptions): SearchResult {
    const p = this.#prepareSearch(queries, options, true, false);
    const { out } = p;
    try {
      this.#native.searchSync(p.queries, p.b, out.k, p.opts.tau, AGGREGATE_CODE[p.opts.aggregate], p.exclude, out.prior, out.neighbors, out.weights, out.similarities, p.range[0], p.range[1]);
    } catch (e) {
      throw nativeError(e, new Error().stack);
    }
    return out;
  }

  // ------------------------------------------------ persistence: thin delegations to persist.ts

  /** Write this datastore to `file`, atomically (see saveDatastore). */
  save(file: string, options?: SaveDatastoreOptions): Promise<SaveDatastoreResult> {
    return saveDatastore(this, file, options);
  }

  /** Read a datastore written by save() (see loadDatastore); options.fastPath as in the constructor. */
  static load(file: string, options?: LoadDatastoreOptions): Promise<Datastore> {
    return loadDatastore(file, options);
  }

  /** @internal For persist.ts: the ids of the committed rows (a copy; its length is the row count to save). */
  _ids(): string[] {
    return this.#ids.slice();
  }

  /** @internal For persist.ts: rows [begin, end) in stored form (NativeDatastore.exportRows; scales: int8 store only). */
  _exportRows(begin: number, end: number, keys: StoredKeys | null, values: Float32Array | null, groups: Int32Array | null, scales: Float32Array | null = null): void {
    if (end > this.size) throw new RapmRangeError('RAPM_INVALID_ARG', `Expected rows within the ${this.size} committed rows but received [${begin}, ${end})`);
    try {
      this.#native.exportRows(begin, end, keys, values, groups, scales);
    } catch (e) {
      throw nativeError(e, new Error().stack);
    }
  }

  /**
   * @internal For IncrementalPriors: prior [n, dv] from neighbour rows [n, k] of `values` [*, dv]
   * and their weights [n, k] (NativeDatastore.blendPriors; rows are checked natively).
   */
  _blendPriors(rows: Int32Array, weights: Float32Array, values: Float32Array, n: number, k: number, prior: Float32Array): void {
    try {
      this.#native.blendPriors(rows, weights, values, n, k, prior);
    } catch (e) {
      throw nativeError(e, new Error().stack);
    }
  }

  /** @internal For persist.ts: append rows in stored form (NativeDatastore.importRows; scales: int8 store only) with their ids; returns the groups assigned. */
  _importRows(keys: StoredKeys, values: Float32Array, ids: readonly string[] | undefined, m: number, scales?: Float32Array): Int32Array {
    this.#checkNoPendingAdd('import rows');
    const groups = this.#commitIds(m, ids, true);
    try {
      this.#native.importRows(keys, values, groups, m, scales);
    } catch (e) {
      throw nativeError(e, new Error().stack);
    }
    this.#commitIds(m, ids, false);
    return groups;
  }
}
