/**
 * The data flags of the commands that read one dataset (train and the experiments): where the
 * data is (`--data`, or `--features` + `--filelists`), how it is split when it has no
 * filelists (`--split`, `--test-fraction`, seeded by `--seed`), and what to do with bad files
 * (`--on-problem`), frame-level arrays (`--pool-frames`) and speakers (`--speaker-pattern`).
 * The rules are in the README's "Bring your own features".
 */
import path from 'node:path';
import { loadDataSource, type DataLocation } from '../data/load.js';
import type { LoadedDataset } from '../data/dataset.js';
import { chooseSplit } from '../data/split.js';
import { keyIndices, type KeyConfig } from '../data/indices.js';
import { experimentData, type ExperimentData } from '../experiments/sweeps.js';
import { unknownSpeakersWarning } from '../experiments/evaluate.js';
import type { SettingValues } from '../settings.js';
import { CliUsageError } from './options.js';
import { RapmError } from '../errors.js';
import { warn } from './run.js';

/** The settings a one-dataset command lists besides `data` and `seed`. */
export const DATA_SETTINGS = ['features', 'filelists', 'split', 'testFraction', 'onProblem', 'poolFrames', 'speakerPattern'] as const;
export type DataArgs = SettingValues<(typeof DATA_SETTINGS)[number]> & { data: string; seed: number };

/** Cross-flag checks (before any data is read): --data and --features name the same thing. */
export function checkDataArgs(given: ReadonlySet<string>): void {
  if (given.has('data') && given.has('features')) throw new CliUsageError('Give either --data DIR or --features DIR (with --filelists DIR), not both');
  refuseTestFractionWithoutSplit(given);
}

/** --test-fraction sizes a split made here; without --split the official filelists' split is used and it would be ignored. */
export function refuseTestFractionWithoutSplit(given: ReadonlySet<string>): void {
  if (given.has('testFraction') && !given.has('split')) {
    throw new CliUsageError("--test-fraction sizes a split made here: give --split speaker or --split random too (without --split the filelists' official split is used)");
  }
}

/** True when the command reads the default data folder (not --features, not another --data). */
export function usesDefaultData(a: DataArgs, dir: string): boolean {
  return a.features === undefined && path.resolve(a.data) === path.resolve(dir);
}

/** Where the data is, as loadDataSource takes it. */
export function dataLocation(a: Pick<DataArgs, 'data' | 'features' | 'filelists'>): DataLocation {
  return a.features !== undefined ? { features: a.features, filelists: a.filelists } : { data: a.data, filelists: a.filelists };
}

/** The folders the data is read from (--data, or --features and --filelists): what an output must not replace. */
export function dataPaths(a: Pick<DataArgs, 'data' | 'features' | 'filelists'>): string[] {
  const loc = dataLocation(a);
  return [loc.data, loc.features, loc.filelists].filter((p): p is string => typeof p === 'string' && p.length > 0);
}

/** Where the train/test split of a one-dataset command comes from, for messages. */
export function splitSourceOf(a: Pick<DataArgs, 'split' | 'filelists'>): string {
  if (a.split !== undefined) return `--split ${a.split}`;
  if (a.filelists !== undefined) return `the train filelist in ${a.filelists}`;
  return 'its official split (train_filelist_en.txt, or split.txt in chunks)';
}

/**
 * An empty training split, refused as what it is before any -k check (which would otherwise say
 * "-k 1 is more than the 0 neighbours") or any datastore is built.
 */
export function refuseEmptyTraining(data: Pick<ExperimentData, 'pool' | 'source'>, splitSource: string): void {
  if (data.pool.n === 0) {
    throw new RapmError('RAPM_DATA', `The training split of ${data.source} is empty: ${splitSource} puts no pair in training. Give training pairs (list them in the train filelist or mark them 'train' in split.txt), or split the data here with --split speaker|random`);
  }
}

/**
 * -k against the training rows, before anything is trained or written: a bundle whose k exceeds
 * its datastore would be refused only later, by rapm serve. Leave-one-out priors search every
 * row but the query's own, so they need one more row. A split too small to give even one
 * neighbour is refused as such: no -k would do, so none is suggested.
 */
export function refuseKOverTrainRows(k: number, data: Pick<ExperimentData, 'pool' | 'source'>, leaveOneOut: boolean): void {
  const most = data.pool.n - (leaveOneOut ? 1 : 0);
  if (most < 1) {
    const pairs = `${data.pool.n} training pair${data.pool.n === 1 ? '' : 's'}`;
    throw new RapmError('RAPM_DATA', data.pool.n === 0
      ? `The training split of ${data.source} is empty: a datastore needs at least 1 training pair`
      : `The training split of ${data.source} is too small: ${pairs}, and leave-one-out priors exclude each query's own pair, so no neighbour is left; give at least 2 training pairs`);
  }
  if (k > most) {
    const why = leaveOneOut ? ` (${data.pool.n} training pairs, less the query's own with leave-one-out priors)` : ` (the training pairs the datastore holds)`;
    throw new RapmError('RAPM_K_TOO_LARGE', `-k ${k} is more than the ${most} neighbour${most === 1 ? '' : 's'} ${data.source} can give${why}; pass -k ${most} or less`);
  }
}

/** Report what --on-problem skip dropped (a warning: --quiet keeps it). */
export function reportSkipped(d: LoadedDataset): void {
  for (const n of d.notices ?? []) warn(`${d.source}: ${n}`);
  if (d.problems.length === 0) return;
  const shown = d.problems.slice(0, 3).map((p) => p.detail).join('; ');
  warn(`${d.source}: --on-problem skip dropped ${d.dropped ?? 0} pair(s) for ${d.problems.length} problem(s) (${shown}${d.problems.length > 3 ? '; ...' : ''}); ${d.n} pairs kept`);
}

/**
 * The EN columns a run's keys are built from, for the loaders' key check: Config B's 103 when
 * any of `configs` is B (a row zero on them cannot be such a key), else none (Config A's key is
 * the whole row, which the loaders always check).
 */
export function keyColumnsFor(configs: readonly KeyConfig[]): readonly number[] | null {
  return configs.includes('B') ? keyIndices('B') : null;
}

/**
 * Load the dataset of a one-dataset command and split it (filelists, or --split). `configs`:
 * the key configs the command builds from these rows (keyColumnsFor), so a row that cannot be
 * one of its keys is reported with its file, row and id before any training step.
 */
export async function loadExperimentData(a: DataArgs, configs: readonly KeyConfig[], onProgress?: (done: number, total: number) => void): Promise<ExperimentData> {
  const ds = await loadDataSource(dataLocation(a), { onProblem: a.onProblem, poolFrames: a.poolFrames ?? null, speakerPattern: a.speakerPattern, keyColumns: keyColumnsFor(configs), onProgress });
  reportSkipped(ds);
  const data = experimentData(ds, path.resolve(ds.source), chooseSplit(ds, a.split, a.seed, a.testFraction));
  refuseEmptyTraining(data, splitSourceOf(a));
  for (const t of data.tests) {
    const w = unknownSpeakersWarning(ds.source, t);
    if (w) warn(w);
  }
  return data;
}
