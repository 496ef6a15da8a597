import path from 'node:path';
import type { Argv, CommandModule, Options } from 'yargs';
import { ensureDefaultData } from '../../data/generate.js';
import { loadDataset } from '../../data/load.js';
import { RapmRangeError } from '../../errors.js';
import { clampSizes, experimentData, runBias, runDropout, runGap, runGrid, runSubsample, type ExperimentOutput } from '../../experiments/sweeps.js';
import { fusionOptions, pointOptions, retrievalOptions, runOptions } from '../options.js';
import { progressBars } from '../progress.js';
import { DEFAULT_CHUNKS, ensureDefaultChunks } from './progressive.js';

const dataOption = {
  data: { type: 'string', default: DEFAULT_CHUNKS, describe: 'Dataset with an official train/test split (DRAL folder or chunks); the default is generated if missing' },
} satisfies Record<string, Options>;

function numbers(name: string, text: string): number[] {
  const v = String(text).split(',').map((s) => Number(s.trim()));
  if (v.length === 0 || v.some((x) => !Number.isFinite(x))) throw new RapmRangeError('RAPM_INVALID_ARG', `Expected --${name} as comma-separated numbers but received '${text}'`);
  return v;
}

type Args = Record<string, unknown> & { data: string; out: string; json: boolean; quiet: boolean };

type Bars = ReturnType<typeof progressBars>;

async function load(a: Args, bar: Bars) {
  if (path.resolve(a.data) === path.resolve(DEFAULT_CHUNKS)) await ensureDefaultChunks(a.quiet || a.json, bar);
  const ds = await loadDataset(a.data, { onProgress: (d, t) => bar('loading', d, t) });
  return experimentData(ds, path.resolve(a.data));
}

function common(a: Args, bar: Bars) {
  return { ...pointOptions(a, bar), out: a.out };
}

function finish(a: Args, r: ExperimentOutput) {
  if (a.json) console.log(JSON.stringify({ summary: r.summary, record: r.record, rows: r.rows }));
  else console.log(`${r.summary}\nReport: ${path.join(a.out, 'report.md')}`);
}

function experiment(name: string, describe: string, extra: Record<string, Options>, run: (a: Args, bar: Bars) => Promise<ExperimentOutput>): CommandModule<object, Args> {
  return {
    command: name,
    describe,
    builder: (y: Argv) => y.options({ ...dataOption, out: { type: 'string', default: `results/${name}`, describe: 'Results folder' }, ...extra, ...retrievalOptions, ...fusionOptions, ...runOptions }) as never,
    handler: async (a) => finish(a, await run(a, progressBars(a.quiet || a.json))),
  };
}

export const experimentCommands: CommandModule<object, Args>[] = [
  experiment('subsample', 'Seed 6.1: plain vs fusion and the gain per data size (sampling with replacement, several seeds)', {
    sizes: { type: 'string', default: '500,1000,2000,4000,8000,16000', describe: 'Training set sizes' },
    seeds: { type: 'number', default: 3, describe: 'Samples per size' },
  }, async (a, bar) => {
    const data = await load(a, bar);
    return runSubsample(data, { ...common(a, bar), sizes: clampSizes(numbers('sizes', a.sizes as string), Number.MAX_SAFE_INTEGER), seeds: a.seeds as number });
  }),
  experiment('bias', 'Seed 6.2: inject ES += s * EN[:, :101] and check whether fusion learns it', {
    strengths: { type: 'string', default: '0,0.05,0.1,0.2', describe: 'Bias strengths s' },
    sizes: { type: 'string', default: '2316,20000', describe: 'Training set sizes' },
  }, async (a, bar) => {
    const data = await load(a, bar);
    return runBias(data, { ...common(a, bar), strengths: numbers('strengths', a.strengths as string), sizes: clampSizes(numbers('sizes', a.sizes as string), data.pool.n) });
  }),
  experiment('gap', 'Seed 6.3: train (leave-one-out), validation and test scores vs data size', {
    sizes: { type: 'string', default: '500,1000,2000,4000,8000,16000', describe: 'Training set sizes' },
  }, async (a, bar) => {
    const data = await load(a, bar);
    return runGap(data, { ...common(a, bar), sizes: clampSizes(numbers('sizes', a.sizes as string), data.pool.n) });
  }),
  experiment('grid', 'Published Tables 2/3: plain retrieval over K x tau, aggregation, Config A vs B', {
    ks: { type: 'string', default: '1,10,30,50,70,90,120', describe: 'K values' },
    taus: { type: 'string', default: '0.01,0.03,0.04,0.07,0.1', describe: 'Softmax temperatures' },
  }, async (a, bar) => {
    const a2 = { ...a, data: a.data === DEFAULT_CHUNKS ? 'data/default' : a.data };
    if (a2.data === 'data/default') await ensureDefaultData(a2.data);
    const data = experimentData(await loadDataset(a2.data, { onProgress: (d, t) => bar('loading', d, t) }), path.resolve(a2.data));
    return runGrid(data, { out: a.out, seed: a.seed as number, ks: numbers('ks', a.ks as string), taus: numbers('taus', a.taus as string), resamples: a.resamples as number, log: a.quiet ? undefined : (l) => process.stderr.write(`${l}\n`) });
  }),
  experiment('dropout', 'Seed 4.3: the best fusion dropout per data size', {
    sizes: { type: 'string', default: '2316,20000', describe: 'Training set sizes' },
    dropouts: { type: 'string', default: '0,0.1,0.2,0.3', describe: 'Dropout probabilities' },
  }, async (a, bar) => {
    const data = await load(a, bar);
    return runDropout(data, { ...common(a, bar), sizes: clampSizes(numbers('sizes', a.sizes as string), data.pool.n), dropouts: numbers('dropouts', a.dropouts as string) });
  }),
];
