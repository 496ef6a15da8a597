import path from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { PROGRESSIVE_DEFAULTS, runProgressive } from '../../experiments/progressive.js';
import { generateProgressiveData } from '../../experiments/progressive-data.js';
import { PROGRESSIVE_FILES } from '../../experiments/progressive-report.js';
import { nativeMlpBackend } from '../../fusion/native-mlp.js';
import { fusionOptions, parseHidden, retrievalOptions, runOptions } from '../options.js';
import { progress, type Progress } from '../progress.js';

export const DEFAULT_CHUNKS = 'data/chunks';

export async function ensureDefaultChunks(quiet: boolean, bar: (label: string, done: number, total: number) => void): Promise<void> {
  const r = await generateProgressiveData({
    out: DEFAULT_CHUNKS,
    onProgress: (d, t) => bar('generating the default data (about 200K pairs, 1.6 GB; once)', d, t),
  });
  if (r.generated && !quiet) process.stderr.write(`default data written to ${DEFAULT_CHUNKS}\n`);
}

export const progressiveOptions = {
  chunks: { type: 'string', default: DEFAULT_CHUNKS, describe: `Folder of chunk folders (name order). The default folder is generated if missing` },
  initial: { type: 'string', describe: 'Start from this dataset (DRAL folder or chunks) instead of the first chunk' },
  out: { type: 'string', default: 'results/progressive', describe: 'Results folder: report.md, results.json/.csv, gain.svg, scores.svg, gap.svg, state.json' },
  threshold: { type: 'number', default: PROGRESSIVE_DEFAULTS.threshold, describe: 'Fusion is useful when its gain exceeds this with a 95% interval above zero' },
  'decide-on': { choices: ['seen', 'unseen'], default: PROGRESSIVE_DEFAULTS.decideOn, describe: 'Test set the stop rule reads' },
  all: { type: 'boolean', default: false, describe: 'Run every chunk, even after fusion became useful' },
  resume: { type: 'boolean', default: false, describe: 'Continue the run in --out from its last finished step' },
  overwrite: { type: 'boolean', default: false, describe: 'Replace a run already in --out' },
  'max-steps': { type: 'number', describe: 'Stop after this many steps' },
} as const;

type Args = Record<string, unknown> & { chunks: string; out: string; json: boolean; quiet: boolean };

export const progressiveCommand: CommandModule<object, Args> = {
  command: 'progressive',
  describe: 'Grow the datastore chunk by chunk and find the size at which fusion pays off',
  builder: (y: Argv) => y.options({ ...progressiveOptions, ...retrievalOptions, ...fusionOptions, ...runOptions }) as never,
  handler: async (a) => {
    const quiet = a.quiet || a.json;
    const bars = new Map<string, Progress>();
    const bar = (label: string, done: number, total: number) => {
      if (quiet) return;
      let p = bars.get(label);
      if (!p) {
        p = progress(label);
        bars.set(label, p);
      }
      p.update(done, total);
      if (done >= total) {
        p.done();
        bars.delete(label);
      }
    };
    if (path.resolve(a.chunks) === path.resolve(DEFAULT_CHUNKS)) {
      // The embedded default: generated on first use (and after a generator change); a no-op otherwise.
      await ensureDefaultChunks(quiet, bar);
    }
    const result = await runProgressive({
      chunks: a.chunks,
      initial: a.initial as string | undefined,
      out: a.out,
      config: a.config as 'A' | 'B',
      k: a.k as number,
      tau: a.tau as number,
      aggregate: a.aggregate as 'softmax',
      hidden: parseHidden(a.hidden as string),
      dropout: a.dropout as number,
      seed: a.seed as number,
      threshold: a.threshold as number,
      all: a.all as boolean,
      resume: a.resume as boolean,
      overwrite: a.overwrite as boolean,
      decideOn: a['decide-on'] as 'seen',
      leaveOneOut: !(a['leaky-priors'] as boolean),
      epochs: a.epochs as number,
      patience: a.patience as number,
      batchSize: a['batch-size'] as number,
      lr: a.lr as number,
      weightDecay: a['weight-decay'] as number,
      valFraction: a['val-fraction'] as number,
      resamples: a.resamples as number,
      maxSteps: a['max-steps'] as number | undefined,
      backend: nativeMlpBackend,
      log: quiet ? undefined : (line) => process.stderr.write(`${line}\n`),
      progress: bar,
    });
    if (a.json) {
      console.log(JSON.stringify(result));
      return;
    }
    console.log(result.decision);
    if (result.recommendation) console.log(`Recommended: ${JSON.stringify({ use_fusion: result.recommendation.use_fusion, retrieval: result.recommendation.retrieval, fusion: result.recommendation.fusion })}`);
    console.log(`Report: ${path.join(a.out, PROGRESSIVE_FILES.report)}  (plots: ${PROGRESSIVE_FILES.gain}, ${PROGRESSIVE_FILES.scores}, ${PROGRESSIVE_FILES.gap})`);
  },
};
