/**
 * Find the layout of a data folder and load it in place (no conversion). The rules, in order
 * (src/data/README.md and the README's "Bring your own features" describe them for users):
 *
 * 1. `features` given (CLI `--features DIR`): a DRAL feature folder; its filelists are in
 *    `filelists` (`--filelists DIR`) when given, else beside the feature files.
 * 2. `dir` is one chunk folder (holds en.npy, es.npy, ids.txt): that chunk alone.
 * 3. `dir` has chunk sub-folders: a chunks folder (also when it holds only chunks.json, so that
 *    a chunk set whose chunk folders are gone is reported as such).
 * 4. `dir` holds EN_<id>_features.npy files: a DRAL folder (filelists beside them, or in
 *    `filelists`).
 * 5. `dir` has a `features/` sub-folder: the R-APM reference / DRAL release layout. The
 *    feature files are in `dir/features`; the filelists are looked for in `filelists` when
 *    given, else in `dir`, `dir/filelists` and `dir/features`, the first that holds one.
 */
import fs from 'node:fs';
import path from 'node:path';
import { RapmError } from '../errors.js';
import { ioError, movedAsideCopies } from '../io/atomic.js';
import { fileKind } from '../io/files.js';
import { isChunkFolder, listChunks, loadChunks, type LoadChunksOptions } from './chunks.js';
import { loadDral, type LoadDralOptions, type LoadedDataset } from './dataset.js';

export type LoadDatasetOptions = LoadDralOptions & LoadChunksOptions;

/** Where a dataset is: `data` (any layout), or `features` (+ `filelists`) for a DRAL release. */
export interface DataLocation {
  data?: string;
  features?: string;
  filelists?: string;
}

/** A resolved layout: what loadDataSource will read. */
export type DataLayout =
  | { kind: 'dral'; features: string; filelists: string | null }
  | { kind: 'chunks'; dir: string }
  | { kind: 'chunk'; dir: string; name: string };

const FILELISTS = ['train_filelist_en.txt', 'test_filelist_en.txt'];
const FEATURE_FILE = /^(EN|ES)_[^]+_features\.npy$/;

function hasFilelist(dir: string): boolean {
  return FILELISTS.some((f) => fs.existsSync(path.join(dir, f)));
}

function isDir(dir: string): boolean {
  try {
    return fs.statSync(dir).isDirectory();
  } catch {
    return false;
  }
}

/** RAPM_IO for a path that is not a folder: absent (ENOENT), or what it is instead (ENOTDIR). */
function notAFolder(op: string, dir: string): Error {
  let st: fs.Stats | null = null;
  try {
    st = fs.statSync(dir);
  } catch {
    st = null;
  }
  // Missing because a pack (or bundle write) was killed mid-swap: say where its previous contents are.
  const aside = st ? undefined : movedAsideCopies(dir)[0]?.p;
  const why = aside ? `no such folder: a write into it was interrupted, and its previous contents are in ${aside}; rename that back, or run the write again (rapm pack puts it back first)` : 'no such folder';
  const e = st ? Object.assign(new Error(`not a folder but a ${fileKind(st)}`), { code: 'ENOTDIR' }) : Object.assign(new Error(why), { code: 'ENOENT' });
  return ioError(op, dir, e);
}

function hasFeatureFiles(dir: string): boolean {
  try {
    return fs.readdirSync(dir).some((n) => FEATURE_FILE.test(n));
  } catch {
    return false;
  }
}

/** Work out the layout of a data location (rules in the file comment). Reads only folder listings. */
export function resolveDataLayout(loc: DataLocation | string): DataLayout {
  const l: DataLocation = typeof loc === 'string' ? { data: loc } : loc;
  if (l.filelists !== undefined && !isDir(l.filelists)) throw notAFolder('open filelist folder (--filelists)', l.filelists);
  if (l.features !== undefined) {
    if (l.data !== undefined) throw new RapmError('RAPM_INVALID_ARG', 'Give either --data DIR or --features DIR (with --filelists DIR), not both');
    if (!isDir(l.features)) throw notAFolder('open feature folder (--features)', l.features);
    return { kind: 'dral', features: l.features, filelists: l.filelists ?? null };
  }
  const dir = l.data;
  if (dir === undefined) throw new RapmError('RAPM_INVALID_ARG', 'No data given: pass --data DIR, or --features DIR (with --filelists DIR)');
  if (!isDir(dir)) throw notAFolder('open dataset folder', dir);
  if (isChunkFolder(dir)) {
    if (l.filelists !== undefined) throw new RapmError('RAPM_INVALID_ARG', `--filelists applies to DRAL feature folders, but ${dir} is a chunk folder`);
    const abs = path.resolve(dir);
    return { kind: 'chunk', dir: path.dirname(abs), name: path.basename(abs) };
  }
  if (hasFeatureFiles(dir)) return { kind: 'dral', features: dir, filelists: l.filelists ?? null };
  if (listChunks(dir).some((name) => isChunkFolder(path.join(dir, name)))) {
    if (l.filelists !== undefined) throw new RapmError('RAPM_INVALID_ARG', `--filelists applies to DRAL feature folders, but ${dir} is a chunks folder`);
    return { kind: 'chunks', dir };
  }
  // chunks.json marks a chunk set even when its chunk folders are gone: loadChunks says that,
  // rather than "DRAL folder ... holds no EN_... pairs".
  if (fs.existsSync(path.join(dir, 'chunks.json'))) {
    if (l.filelists !== undefined) throw new RapmError('RAPM_INVALID_ARG', `--filelists applies to DRAL feature folders, but ${dir} is a chunks folder`);
    return { kind: 'chunks', dir };
  }
  const features = path.join(dir, 'features');
  if (isDir(features)) {
    const lists = l.filelists ?? [dir, path.join(dir, 'filelists'), features].find((d) => isDir(d) && hasFilelist(d)) ?? null;
    return { kind: 'dral', features, filelists: lists };
  }
  // Nothing recognisable: loadDral reports the empty folder with the names it looks for.
  return { kind: 'dral', features: dir, filelists: l.filelists ?? null };
}

/** Load a data location in whichever layout it has (see resolveDataLayout). */
export async function loadDataSource(loc: DataLocation | string, options: LoadDatasetOptions = {}): Promise<LoadedDataset> {
  const layout = resolveDataLayout(loc);
  if (layout.kind === 'chunks') return loadChunks(layout.dir, options);
  if (layout.kind === 'chunk') return { ...(await loadChunks(layout.dir, { ...options, only: [layout.name] })), source: path.join(layout.dir, layout.name) };
  return loadDral(layout.features, layout.filelists ? { ...options, filelistDir: layout.filelists } : options);
}

/**
 * Load a folder in whichever layout it has: packed chunks, one chunk folder, a DRAL feature
 * folder, or a folder with a `features/` sub-folder (see resolveDataLayout).
 */
export async function loadDataset(dir: string, options: LoadDatasetOptions = {}): Promise<LoadedDataset> {
  return loadDataSource({ data: dir }, options);
}
