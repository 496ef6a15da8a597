/**
 * Open the neighbour source a service asks for: exact (null: the Predictor searches the
 * datastore itself), approximate (faiss, built over the datastore or loaded from a file), or
 * PostgreSQL + pgvector (a table loaded by `rapm pg-load` from the same datastore).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { RapmError, RapmRangeError, isRapmError } from '../errors.js';
import { SETTINGS, SettingError, isSettingError, type SettingKey } from '../settings.js';
import { writeFileAtomicSync, writeTarget } from '../io/atomic.js';
import { readTextFileSync } from '../io/files.js';
import { AnnIndex, checkAnnFactory, refuseSearchKnobs, type AnnKind } from './ann.js';
import type { Datastore } from './datastore.js';
import { AnnSource, type NeighborSource } from './neighbor-source.js';
import { PgVectorSource, checkPgUrl, quoteTable, type PgSearchMode } from './pgvector.js';

export interface SourceSettings {
  /** faiss factory string ('IVF4096,Flat', 'HNSW32,Flat', ...): approximate search. */
  ann?: string;
  /** With ann: load the index from this file when it exists, else build it and save it there. */
  annIndex?: string;
  /** IVF lists per query (faiss IVF, or pgvector ivfflat.probes). */
  nprobe?: number;
  /** HNSW beam (faiss HNSW, or pgvector hnsw.ef_search). */
  efSearch?: number;
  pgUrl?: string;
  pgTable?: string;
  pgMode?: PgSearchMode;
  /** Longest wait for PostgreSQL, ms (PgVectorSource timeoutMs; default 30 s). */
  pgTimeoutMs?: number;
  /** Progress lines. */
  log?: (line: string) => void;
}

/**
 * What an --ann-index file was built from, kept beside it as `<file>.json`: the factory string and
 * a fingerprint of the datastore (rows, key columns, ids). A faiss file alone cannot tell: an
 * index built over another datastore of the same size and width loaded without complaint and
 * served its neighbours under this datastore's ids, and one built by another factory was
 * reported under the factory asked for.
 */
interface AnnIndexStamp {
  format: 'rapm-ann-index';
  factory: string;
  rows: number;
  datastore: string;
}

function datastoreFingerprint(ds: Datastore): string {
  const h = createHash('sha256');
  h.update(`${ds.size}\n${ds.keyDim}\n${Array.from(ds.keyIndices).join(',')}\n`);
  for (const id of ds._ids()) h.update(`${id}\n`);
  return `sha256:${h.digest('hex')}`;
}

function checkAnnIndexStamp(file: string, ds: Datastore, factory: string, log: (line: string) => void): void {
  const stampFile = `${file}.json`;
  if (!fs.existsSync(stampFile)) {
    log(`warning: ${stampFile} is missing, so nothing shows which datastore and factory ${file} was built from; delete ${file} to rebuild it with a record`);
    return;
  }
  let stamp: AnnIndexStamp;
  try {
    stamp = JSON.parse(readTextFileSync(stampFile, 'ANN index record')) as AnnIndexStamp;
  } catch (e) {
    throw new RapmError('RAPM_FORMAT', `Cannot read ${stampFile}: ${(e as Error).message}`, { cause: e });
  }
  if (stamp?.format !== 'rapm-ann-index') throw new RapmError('RAPM_FORMAT', `${stampFile} is not a rapm ANN index record`);
  if (stamp.factory !== factory) {
    throw new RapmError('RAPM_DATA', `${file} was built with --ann ${stamp.factory}, not ${factory}: pass --ann ${stamp.factory}, or delete ${file} to build it again`);
  }
  if (stamp.datastore !== datastoreFingerprint(ds)) {
    throw new RapmError('RAPM_DATA', `${file} was built over another datastore (${stamp.rows} rows, other ids or key columns than these ${ds.size}): delete it to build it over this one`);
  }
}

/** The source settings, in the order a refusal's message is matched against their flags. */
const SOURCE_KEYS = ['nprobe', 'efSearch', 'annIndex', 'ann', 'pgTimeoutMs', 'pgTable', 'pgMode', 'pgUrl'] as const satisfies readonly (keyof SourceSettings & SettingKey)[];

/**
 * A refusal of the source settings (RAPM_INVALID_ARG, raised by the faiss or pgvector code that
 * knows why) as the SettingError every other refused setting is, so the CLI reports it as a usage
 * error (exit 2) through the one test, isSettingError. The setting is the first given one whose
 * flag the message names, else the source's own (--ann or --pg-url). (It used to be marked in a
 * WeakSet of its own: a second notion of "a refused setting" beside SettingError.)
 */
function asSettingError(e: Error & { code: 'RAPM_INVALID_ARG' }, settings: SourceSettings): SettingError {
  const given = SOURCE_KEYS.filter((key) => settings[key] !== undefined);
  const key = given.find((k) => e.message.includes(`--${SETTINGS[k].flag}`)) ?? (settings.pgUrl !== undefined ? 'pgUrl' : 'ann');
  const out = new SettingError(e.code, e.message, SETTINGS[key].flag, key);
  out.stack = e.stack;
  Object.defineProperty(out, 'cause', { value: e, configurable: true, writable: true });
  return out;
}

/** True for an error of openNeighborSource that refuses its settings (a bad or mismatched --nprobe, --ef-search, --pg-url, ...): the SettingError of a source setting. */
export function isSourceSettingError(e: unknown): e is SettingError {
  return isSettingError(e) && (SOURCE_KEYS as readonly string[]).includes(e.key);
}

const KNOB_NAMES = { nprobe: 'nprobe (--nprobe)', efSearch: 'efSearch (--ef-search)' } as const;

/** Refuse nprobe / efSearch for a faiss index of a kind they do not apply to (faiss would ignore them), in the CLI's words. */
function refuseFaissKnobs(settings: SourceSettings, kind: AnnKind): void {
  refuseSearchKnobs(kind, settings, `--ann ${settings.ann}`, { knob: (k) => KNOB_NAMES[k] });
}

/**
 * The source for `settings`, or null for exact search on the datastore. Close it with closeSource().
 * A search knob for another kind of index (nprobe with HNSW, efSearch with IVF; faiss from the
 * --ann factory, pgvector from the index that answers) is refused (RAPM_INVALID_ARG), for
 * faiss before the index is built.
 */
export async function openNeighborSource(ds: Datastore, settings: SourceSettings): Promise<NeighborSource | null> {
  try {
    return await openSource(ds, settings);
  } catch (e) {
    if (isRapmError(e) && e.code === 'RAPM_INVALID_ARG' && !isSettingError(e)) throw asSettingError(e as Error & { code: 'RAPM_INVALID_ARG' }, settings);
    throw e;
  }
}

async function openSource(ds: Datastore, settings: SourceSettings): Promise<NeighborSource | null> {
  const log = settings.log ?? (() => {});
  if (settings.ann !== undefined && settings.pgUrl !== undefined) {
    throw new RapmRangeError('RAPM_INVALID_ARG', 'Expected at most one of ann (--ann) and pgUrl (--pg-url)');
  }
  if (settings.pgUrl !== undefined) {
    checkPgUrl(settings.pgUrl, 'pgUrl (--pg-url)');
    quoteTable(settings.pgTable ?? 'rapm_keys', 'pgTable (--pg-table)');
    const mode = settings.pgMode ?? 'exact';
    const src = await PgVectorSource.forDatastore(ds, { url: settings.pgUrl, table: settings.pgTable ?? 'rapm_keys', mode, efSearch: settings.efSearch, probes: settings.nprobe, timeoutMs: settings.pgTimeoutMs });
    log(`neighbours from PostgreSQL table ${src.table} (${src.size} rows, vector(${src.d}), mode ${mode}${src.index ? `: ${src.index.method} index ${src.index.name}` : ''})`);
    return src;
  }
  if (settings.ann === undefined) {
    if (settings.nprobe !== undefined || settings.efSearch !== undefined || settings.annIndex !== undefined) {
      throw new RapmRangeError('RAPM_INVALID_ARG', 'nprobe (--nprobe), efSearch (--ef-search) and annIndex (--ann-index) need approximate search (--ann) or --pg-url');
    }
    return null;
  }
  // Named as the setting it came from (not AnnIndex.create's 'factory'), before a saved index is read or one is built.
  checkAnnFactory(settings.ann, ds.d, 'ann (--ann)');
  let source: AnnSource;
  const t0 = performance.now();
  if (settings.annIndex !== undefined && fs.existsSync(settings.annIndex)) {
    checkAnnIndexStamp(settings.annIndex, ds, settings.ann, log);
    const index = AnnIndex.load(settings.annIndex, { factory: settings.ann });
    refuseFaissKnobs(settings, index.kind);
    source = AnnSource.over(ds, index);
    log(`approximate index loaded from ${settings.annIndex} (${index.kind}, ${index.ntotal} rows) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  } else {
    // The kind of index the factory makes, from an empty one, so that a knob it ignores is
    // refused before the build (which can take minutes), not after it.
    const empty = AnnIndex.create({ d: ds.d, factory: settings.ann });
    refuseFaissKnobs(settings, empty.kind);
    empty.setSearchParams({ nprobe: settings.nprobe, efSearch: settings.efSearch }); // and a value out of range (nprobe > nlist)
    if (settings.annIndex !== undefined) {
      // Where it will be saved, checked before the build (which can take minutes), not after.
      const dir = path.dirname(path.resolve(settings.annIndex));
      if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new RapmError('RAPM_IO', `Cannot save the index to ${settings.annIndex} (--ann-index): its folder ${dir} does not exist`);
      writeTarget(settings.annIndex);
    }
    log(`building the approximate index ${settings.ann} over ${ds.size} rows (save it with --ann-index FILE to skip this next time)...`);
    source = await AnnSource.fromDatastore(ds, { factory: settings.ann });
    log(`built in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    if (settings.annIndex !== undefined) {
      source.index.save(settings.annIndex);
      const stamp: AnnIndexStamp = { format: 'rapm-ann-index', factory: settings.ann, rows: ds.size, datastore: datastoreFingerprint(ds) };
      writeFileAtomicSync(`${settings.annIndex}.json`, JSON.stringify(stamp, null, 1) + '\n');
      log(`saved to ${settings.annIndex} (with ${settings.annIndex}.json: the factory and datastore it was built from)`);
    }
  }
  // The knobs were refused above for this kind (a built index is of its factory's kind).
  const { kind } = source.index;
  source.index.setSearchParams({ nprobe: settings.nprobe, efSearch: settings.efSearch });
  log(`approximate search: ${settings.ann} (${kind}${kind === 'ivf' ? `, nprobe ${source.index.nprobe}` : kind === 'hnsw' ? `, efSearch ${source.index.efSearch}` : ''})`);
  return source;
}

/** Release what a source holds (the pgvector connection pool). */
export async function closeSource(source: NeighborSource | null): Promise<void> {
  if (source instanceof PgVectorSource) await source.close();
}

