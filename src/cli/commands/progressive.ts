import path from 'node:path';
import type { CommandModule } from 'yargs';
import { runProgressive } from '../../experiments/progressive.js';
import { generateProgressiveData } from '../../experiments/progressive-data.js';
import { PROGRESSIVE_FILES } from '../../experiments/progressive-report.js';
import { CliUsageError, defineCommand, POINT_SETTINGS, pointOptions, refuseTauWithoutSoftmax } from '../options.js';
import { insideOf } from '../../io/files.js';
import { refuseTestFractionWithoutSplit } from '../data-args.js';
import { applyThreads, refuseExisting, warn } from '../run.js';
import { progressBars } from '../progress.js';

export const DEFAULT_CHUNKS = 'data/chunks';

export async function ensureDefaultChunks(quiet: boolean, bar: (label: string, done: number, total: number) => void): Promise<void> {
  const r = await generateProgressiveData({
    out: DEFAULT_CHUNKS,
    onProgress: (d, t) => bar('generating the default data (about 200K pairs, 1.6 GB; once)', d, t),
  });
  if (r.generated && !quiet) process.stderr.write(`default data written to ${DEFAULT_CHUNKS}\n`);
}

/**
 * --out inside a data folder, refused before anything is created: a results folder inside
 * --chunks is read as a (broken) chunk on this and every later run, and one inside a test or
 * initial folder is read as part of that data.
 */
export function refuseOutInsideData(a: { out: string; chunks: string; initial?: string; tests: readonly string[]; testSeen: readonly string[]; testUnseen: readonly string[] }): void {
  const inputs: [string, string][] = [['--chunks', a.chunks], ...(a.initial !== undefined ? [['--initial', a.initial] as [string, string]] : []), ...a.tests.map((t): [string, string] => ['--test', t]), ...a.testSeen.map((t): [string, string] => ['--test-seen', t]), ...a.testUnseen.map((t): [string, string] => ['--test-unseen', t])];
  for (const [flag, dir] of inputs) {
    const where = insideOf(a.out, dir);
    if (where !== null) {
      throw new CliUsageError(`--out ${a.out} is ${where === 'same' ? 'the folder' : 'inside the folder'} of ${flag} ${dir}: the results would be read as part of the data (a results folder in --chunks is taken for a broken chunk on every later run); give an --out outside the data folders`);
    }
  }
}

export const progressiveCommand: CommandModule = defineCommand({
  command: 'progressive',
  describe: 'Grow the datastore chunk by chunk and find the size at which fusion pays off',
  settings: ['chunks', 'initial', 'filelists', 'tests', 'testSeen', 'testUnseen', 'split', 'testFraction', 'allowOverlap', 'onProblem', 'poolFrames', 'speakerPattern', 'out', 'threshold', 'decideOn', 'all', 'resume', 'overwrite', 'maxSteps', 'warmStart', 'confirmSteps', ...POINT_SETTINGS, 'json', 'quiet'],
  overrides: {
    out: { default: 'results/progressive', help: 'Results folder: report.md, results.json/.csv, gain.svg, scores.svg, gap.svg, state.json' },
    overwrite: { help: 'Replace a run already in --out' },
    filelists: { help: 'Folder holding the filelists of --initial, when they are not beside its feature files' },
    split: { help: 'Split the initial set here (seeded by --seed, --test-fraction of its pairs): speaker-disjoint or random. For an initial set without filelists; replaces them when given' },
  },
  check: (a, given) => {
    refuseTauWithoutSoftmax(a, given);
    refuseTestFractionWithoutSplit(given);
    if (a.filelists !== undefined && a.initial === undefined) throw new CliUsageError('--filelists names the filelists of --initial: give --initial too');
    if (a.split !== undefined && a.initial === undefined) throw new CliUsageError('--split splits the initial set: give --initial too');
    if (a.all && given.has('confirmSteps')) throw new CliUsageError('--confirm-steps has no effect with --all: every chunk runs and the stop rule it confirms never stops the loop; drop --confirm-steps or --all');
    if (a.resume && a.overwrite) throw new CliUsageError('--resume and --overwrite exclude each other: continue the run in --out, or replace it');
    refuseOutInsideData(a);
    if (!a.resume) refuseExisting(path.join(a.out, 'state.json'), a.overwrite, '--out');
  },
  handler: async (a, given) => {
    applyThreads(a.threads);
    const quiet = a.quiet || a.json;
    const bar = progressBars(quiet);
    if (path.resolve(a.chunks) === path.resolve(DEFAULT_CHUNKS)) {
      // The embedded default: generated on first use (and after a generator change); a no-op otherwise.
      await ensureDefaultChunks(quiet, bar);
    }
    const result = await runProgressive({
      ...pointOptions(a, bar),
      chunks: a.chunks,
      initial: a.initial,
      out: a.out,
      threshold: a.threshold,
      all: a.all,
      resume: a.resume,
      overwrite: a.overwrite,
      decideOn: a.decideOn,
      maxSteps: a.maxSteps,
      filelists: a.filelists,
      tests: a.tests,
      testSeen: a.testSeen,
      testUnseen: a.testUnseen,
      split: a.split,
      testFraction: given.has('testFraction') ? a.testFraction : undefined,
      allowOverlap: a.allowOverlap,
      onProblem: a.onProblem,
      poolFrames: a.poolFrames ?? null,
      speakerPattern: a.speakerPattern,
      warn,
      warmStart: a.warmStart,
      confirmSteps: given.has('confirmSteps') ? a.confirmSteps : undefined,
    });
    if (a.json) {
      console.log(JSON.stringify(result));
      return;
    }
    console.log(result.decision);
    if (result.recommendation) console.log(`Recommended: ${JSON.stringify({ use_fusion: result.recommendation.use_fusion, retrieval: result.recommendation.retrieval, fusion: result.recommendation.fusion })}`);
    console.log(`Report: ${path.join(a.out, PROGRESSIVE_FILES.report)}  (plots: ${PROGRESSIVE_FILES.gain}, ${PROGRESSIVE_FILES.scores}, ${PROGRESSIVE_FILES.gap})`);
  },
});
