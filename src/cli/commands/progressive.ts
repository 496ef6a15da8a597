import path from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { PROGRESSIVE_DEFAULTS, runProgressive } from '../../experiments/progressive.js';
import { generateProgressiveData } from '../../experiments/progressive-data.js';
import { PROGRESSIVE_FILES } from '../../experiments/progressive-report.js';
import { fusionOptions, pointOptions, retrievalOptions, runOptions } from '../options.js';
import { progressBars } from '../progress.js';

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
  'confirm-steps': { type: 'number', default: PROGRESSIVE_DEFAULTS.confirmSteps, describe: 'Steps run after the first useful one before stopping (a check that the gain holds; 0: stop at once)' },
  'warm-start': { type: 'boolean', default: PROGRESSIVE_DEFAULTS.warmStart, describe: "Start each step's fusion nets from the previous step's (--no-warm-start: from scratch)" },
} as const;

type Args = Record<string, unknown> & { chunks: string; out: string; json: boolean; quiet: boolean };

export const progressiveCommand: CommandModule<object, Args> = {
  command: 'progressive',
  describe: 'Grow the datastore chunk by chunk and find the size at which fusion pays off',
  builder: (y: Argv) => y.options({ ...progressiveOptions, ...retrievalOptions, ...fusionOptions, ...runOptions }) as never,
  handler: async (a) => {
    const quiet = a.quiet || a.json;
    const bar = progressBars(quiet);
    if (path.resolve(a.chunks) === path.resolve(DEFAULT_CHUNKS)) {
      // The embedded default: generated on first use (and after a generator change); a no-op otherwise.
      await ensureDefaultChunks(quiet, bar);
    }
    const result = await runProgressive({
      ...pointOptions(a, bar),
      chunks: a.chunks,
      initial: a.initial as string | undefined,
      out: a.out,
      threshold: a.threshold as number,
      all: a.all as boolean,
      resume: a.resume as boolean,
      overwrite: a.overwrite as boolean,
      decideOn: a['decide-on'] as 'seen' | 'unseen',
      maxSteps: a['max-steps'] as number | undefined,
      warmStart: a['warm-start'] as boolean,
      confirmSteps: a['confirm-steps'] as number,
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
