/**
 * `rapm generate <out>`: write DRAL-like pairs (calibrated to the published R-APM figures)
 * as a DRAL feature folder or as packed chunks. A thin layer over `generate()`.
 */
import type { Argv, CommandModule } from 'yargs';
import { progressBars } from '../progress.js';
import { RapmRangeError } from '../../errors.js';
import { DEFAULT_DATASET, DEFAULT_SEED, DEFAULT_SPEAKERS, DEFAULT_TEST_FRACTION, generate, type GenerateFormat, type GeneratorModel } from '../../data/generate.js';

export interface GenerateArgs {
  out: string;
  pairs: number;
  seed: number;
  format: GenerateFormat;
  speakers: number;
  unseenSpeakers: number;
  testFraction: number;
  testPairs?: number;
  chunkSize: number;
  biasStrength: number;
  model?: string;
  overwrite: boolean;
  json: boolean;
  quiet: boolean;
}

function parseModel(text: string | undefined): Partial<GeneratorModel> | undefined {
  if (text === undefined) return undefined;
  try {
    const v = JSON.parse(text) as unknown;
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
    return v as Partial<GeneratorModel>;
  } catch (e) {
    throw new RapmRangeError('RAPM_INVALID_ARG', `Expected a JSON object of model knobs for --model (e.g. '{"esNoise": 0.7}') but received '${text}' (${(e as Error).message})`);
  }
}

export const generateCommand: CommandModule<object, GenerateArgs> = {
  command: 'generate <out>',
  describe: 'Generate DRAL-like (EN, ES) pairs calibrated to the published R-APM figures',
  builder: (y: Argv) =>
    y
      .positional('out', { type: 'string', describe: 'Output folder (created; must be empty unless --overwrite)', demandOption: true })
      .option('pairs', { type: 'number', default: DEFAULT_DATASET.pairs, describe: 'Number of pairs (2 to 2,000,000)' })
      .option('seed', { type: 'number', default: DEFAULT_SEED, describe: 'Dataset seed (same seed, same data)' })
      .option('format', { choices: ['dral', 'chunks', 'auto'] as const, default: 'auto' as GenerateFormat, describe: 'dral: EN_/ES_<id>_features.npy + filelists; chunks: packed en.npy/es.npy; auto: dral up to 20,000 pairs' })
      .option('speakers', { type: 'number', default: DEFAULT_SPEAKERS, describe: 'Training (seen) speakers' })
      .option('unseen-speakers', { type: 'number', default: 0, describe: 'Extra speakers that appear only in the test split' })
      .option('test-fraction', { type: 'number', default: DEFAULT_TEST_FRACTION, describe: 'Share of pairs in the test split (default: 578/2894, the published split)' })
      .option('test-pairs', { type: 'number', describe: 'Exact number of test pairs (overrides --test-fraction)' })
      .option('chunk-size', { type: 'number', default: 50_000, describe: 'Rows per chunk (chunks format)' })
      .option('bias-strength', { type: 'number', default: 0, describe: 'Synthetic bias of the seed report: ES[:, spanish_winners] += s * EN[:, :101]' })
      .option('model', { type: 'string', describe: 'JSON object overriding generator knobs, e.g. \'{"esNoise": 0.7}\'' })
      .option('overwrite', { type: 'boolean', default: false, describe: 'Replace a non-empty output folder' })
      .option('json', { type: 'boolean', default: false, describe: 'Print the result as JSON' })
      .option('quiet', { type: 'boolean', default: false, describe: 'No progress output' }) as unknown as Argv<GenerateArgs>,
  handler: async (argv) => {
    const bar = progressBars(argv.quiet || argv.json);
    const res = await generate({
      out: argv.out,
      pairs: argv.pairs,
      seed: argv.seed,
      format: argv.format,
      speakers: argv.speakers,
      unseenSpeakers: argv.unseenSpeakers,
      testFraction: argv.testFraction,
      testPairs: argv.testPairs,
      chunkSize: argv.chunkSize,
      biasStrength: argv.biasStrength,
      model: parseModel(argv.model),
      overwrite: argv.overwrite,
      onProgress: (done: number, total: number) => bar('generate', done, total),
    });
    if (argv.json) {
      process.stdout.write(JSON.stringify(res, null, 2) + '\n');
      return;
    }
    const f = (x: number): string => x.toLocaleString('en-US');
    const spk = `${f(res.seenSpeakers)} speakers${res.unseenSpeakers ? ` + ${f(res.unseenSpeakers)} unseen in test` : ''}`;
    process.stdout.write(
      `Generated ${f(res.n)} pairs (${f(res.train)} train / ${f(res.test)} test, ${spk}) into ${res.out} as ${res.format === 'dral' ? 'a DRAL folder' : 'packed chunks'} in ${res.seconds.toFixed(1)} s\n` +
        `hash ${res.hash}\n`,
    );
  },
};
