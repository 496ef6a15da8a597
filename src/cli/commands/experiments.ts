import path from 'node:path';
import type { CommandModule } from 'yargs';
import { ensureDefaultData } from '../../data/generate.js';
import type { KeyConfig } from '../../data/indices.js';
import { GAP_REFUSED, clampSizes, refuseSubsampleSizes, runBias, runDropout, runGap, runGrid, runSubsample, type ExperimentData, type ExperimentOutput } from '../../experiments/sweeps.js';
import { SETTINGS, type SettingKey, type SettingValues } from '../../settings.js';
import { CliUsageError, dataSelection, defineCommand, POINT_SETTINGS, pointOptions, refuseSeedWithoutSplit, refuseTauWithoutSoftmax, type Overrides, type PointSettings } from '../options.js';
import { progressBars } from '../progress.js';
import { applyThreads, refuseExisting, warn } from '../run.js';
import { DATA_SETTINGS, checkDataArgs, loadExperimentData, usesDefaultData, type DataArgs } from '../data-args.js';
import { DEFAULT_CHUNKS, ensureDefaultChunks } from './progressive.js';

type Bars = ReturnType<typeof progressBars>;
type RunArgs = { data: string; out: string; json: boolean; quiet: boolean; overwrite: boolean; threads: number | undefined } & Omit<DataArgs, 'seed'>;

const RUN = ['data', ...DATA_SETTINGS, 'out', 'json', 'quiet', 'overwrite', 'threads'] as const;

function runOverrides(name: string): Overrides<(typeof RUN)[number]> {
  return {
    data: { default: DEFAULT_CHUNKS, help: 'Dataset with an official train/test split (DRAL folder or chunks); the default is generated if missing' },
    out: { default: `results/${name}`, help: 'Results folder (report.md, results.json/.csv, plots)' },
  };
}

/** Everything before the data: output folder free (or --overwrite), threads set. */
function prepare(a: RunArgs): void {
  refuseExisting(path.join(a.out, 'results.json'), a.overwrite, '--out');
  applyThreads(a.threads);
}

/** Load the run's data; `configs`: the key configs it builds from the rows (what the loaders check the EN rows against). */
async function load(a: RunArgs & { seed?: number }, configs: readonly KeyConfig[], bar: Bars, defaultChunks = true): Promise<ExperimentData> {
  const args = { ...a, seed: a.seed ?? SETTINGS.seed.default };
  if (defaultChunks && usesDefaultData(args, DEFAULT_CHUNKS)) await ensureDefaultChunks(a.quiet || a.json, bar);
  return loadExperimentData(args, configs, (d, t) => bar('loading', d, t));
}

function finish(a: RunArgs, r: ExperimentOutput): void {
  if (a.json) console.log(JSON.stringify({ summary: r.summary, record: r.record, rows: r.rows }));
  else console.log(`${r.summary}\nReport: ${path.join(a.out, 'report.md')}`);
}

/** The argument checks every sweep over fusion points shares (data flags, --tau with a softmax only). */
function checkPointRun(a: Parameters<typeof refuseTauWithoutSoftmax>[0], given: ReadonlySet<string>): void {
  checkDataArgs(given);
  refuseTauWithoutSoftmax(a, given);
}

/** A sweep over the fusion point settings plus its own lists. */
function pointExperiment<const E extends SettingKey>(
  name: string,
  describe: string,
  extra: readonly E[],
  overrides: Overrides<E>,
  run: (a: RunArgs & PointSettings & SettingValues<E>, data: ExperimentData, bar: Bars) => Promise<ExperimentOutput>,
  checkOwn?: (a: RunArgs & PointSettings & SettingValues<E>) => void,
): CommandModule {
  return defineCommand({
    command: name,
    describe,
    settings: [...RUN, ...extra, ...POINT_SETTINGS],
    overrides: { ...runOverrides(name), ...overrides } as Overrides<(typeof RUN)[number] | E | (typeof POINT_SETTINGS)[number]>,
    check: (a, given) => {
      checkPointRun(a, given);
      checkOwn?.(a);
    },
    handler: async (a) => {
      prepare(a);
      const bar = progressBars(a.quiet || a.json);
      finish(a, await run(a, await load(a, [a.config], bar), bar));
    },
  });
}

type GapKey = (typeof RUN)[number] | 'sizes' | Exclude<(typeof POINT_SETTINGS)[number], (typeof GAP_REFUSED)[number]>;
const GAP_SETTINGS: readonly GapKey[] = [...RUN, 'sizes', ...POINT_SETTINGS.filter((k): k is Exclude<typeof k, (typeof GAP_REFUSED)[number]> => !(GAP_REFUSED as readonly string[]).includes(k))];

export const experimentCommands: CommandModule[] = [
  pointExperiment('subsample', 'Seed 6.1: plain vs fusion and the gain per data size (sampling with replacement, several seeds)', ['sizes', 'seeds'], {}, async (a, data, bar) => {
    // Sampling with replacement can draw more rows than the pool holds, but then rows repeat: say so.
    const over = a.sizes.filter((s) => s > data.pool.n);
    if (over.length > 0) warn(`sizes ${over.join(', ')} exceed the ${data.pool.n} training pairs: those samples repeat rows (sampling with replacement)`);
    return runSubsample(data, { ...pointOptions(a, bar), dataSelection: dataSelection(a), out: a.out, sizes: clampSizes(a.sizes, Number.MAX_SAFE_INTEGER), seeds: a.seeds });
  }, (a) => {
    // Before any data is read: repeated sizes, and a smallest size that cannot give -k neighbours.
    try {
      refuseSubsampleSizes(a.sizes, a.k, !a.leakyPriors);
    } catch (e) {
      throw new CliUsageError((e as Error).message);
    }
  }),
  pointExperiment('bias', 'Seed 6.2: inject ES += s * EN[:, :101] and check whether fusion learns it', ['strengths', 'sizes'], { sizes: { default: [2316, 20000] } }, async (a, data, bar) =>
    runBias(data, { ...pointOptions(a, bar), dataSelection: dataSelection(a), out: a.out, strengths: a.strengths, sizes: clampSizes(a.sizes, data.pool.n, warn) }),
  ),
  defineCommand({
    command: 'gap',
    describe: 'Seed 6.3: train (leave-one-out), validation and test scores vs data size',
    // No gain interval: --resamples, --level and --cluster-unit are not taken (see GAP_REFUSED).
    settings: GAP_SETTINGS,
    overrides: runOverrides('gap') as Overrides<(typeof GAP_SETTINGS)[number]>,
    check: checkPointRun,
    handler: async (a) => {
      prepare(a);
      const bar = progressBars(a.quiet || a.json);
      const data = await load(a, [a.config], bar);
      const { resamples: _r, level: _l, clusterUnit: _c, ...point } = pointOptions({ ...a, resamples: SETTINGS.resamples.default, level: SETTINGS.level.default, clusterUnit: SETTINGS.clusterUnit.default }, bar);
      finish(a, await runGap(data, { ...point, dataSelection: dataSelection(a), out: a.out, sizes: clampSizes(a.sizes, data.pool.n, warn) }));
    },
  }),
  defineCommand({
    command: 'grid',
    describe: 'Published Tables 2/3: plain retrieval over K x tau, aggregation, Config A vs B',
    settings: [...RUN, 'seed', 'onlyConfig', 'ks', 'taus'],
    overrides: { ...runOverrides('grid'), data: { default: 'data/default', help: 'Dataset with an official train/test split (DRAL folder or chunks); the default is generated if missing' }, seed: { help: 'Seed of --split (refused without it: the grid itself has no random choice)' } },
    check: (a, given) => {
      checkDataArgs(given);
      refuseSeedWithoutSplit(given, 'grid');
      // Before any data is read (runGrid checks again, for library callers).
      for (const [flag, list] of [['--ks', a.ks], ['--taus', a.taus]] as const) {
        if (new Set(list).size !== list.length) throw new CliUsageError(`${flag} ${list.join(',')} repeats a value (each would be run and reported twice)`);
      }
    },
    handler: async (a, given) => {
      prepare(a);
      const bar = progressBars(a.quiet || a.json);
      if (usesDefaultData({ ...a, seed: SETTINGS.seed.default }, 'data/default')) await ensureDefaultData(a.data, { onProgress: (d, t) => bar('generating default data', d, t) });
      // The grid runs both configs unless --only-config: Config B's keys are built from these rows too.
      const configs: KeyConfig[] = a.onlyConfig ? [a.onlyConfig] : ['A', 'B'];
      const data = await load(a, configs, bar, false);
      const quiet = a.quiet || a.json;
      // The default K list reaches 120: on a smaller training set its larger values are left out
      // with a warning (runGrid refuses them, so given values above the pool stay an error).
      let ks = a.ks;
      if (!given.has('ks') && ks.some((k) => k > data.pool.n) && ks.some((k) => k <= data.pool.n)) {
        warn(`the default --ks ${ks.filter((k) => k > data.pool.n).join(',')} exceed the ${data.pool.n} training pairs of ${data.source}; left out`);
        ks = ks.filter((k) => k <= data.pool.n);
      }
      // The grid has no random choice; the record carries the seed of --split (the default without it).
      finish(a, await runGrid(data, { out: a.out, seed: a.seed, dataSelection: dataSelection(a), ks, taus: a.taus, configs, log: quiet ? undefined : (l) => process.stderr.write(`${l}\n`) }));
    },
  }),
  defineCommand({
    command: 'dropout',
    describe: 'Seed 4.3: the best fusion dropout per data size',
    // Every point setting but --dropout, which --dropouts replaces.
    settings: [...RUN, 'sizes', 'dropouts', ...POINT_SETTINGS.filter((k): k is Exclude<typeof k, 'dropout'> => k !== 'dropout')],
    overrides: { ...runOverrides('dropout'), sizes: { default: [2316, 20000] } },
    check: checkPointRun,
    handler: async (a) => {
      prepare(a);
      const bar = progressBars(a.quiet || a.json);
      const data = await load(a, [a.config], bar);
      finish(a, await runDropout(data, { ...pointOptions({ ...a, dropout: a.dropouts[0]! }, bar), dataSelection: dataSelection(a), out: a.out, sizes: clampSizes(a.sizes, data.pool.n, warn), dropouts: a.dropouts }));
    },
  }),
];
