/**
 * `rapm generate <out>`: write DRAL-like pairs (calibrated to the published R-APM figures)
 * as a DRAL feature folder or as packed chunks. A thin layer over `generate()`.
 */
import fs from 'node:fs';
import type { CommandModule } from 'yargs';
import { progressBars } from '../progress.js';
import { generate, type GeneratorModel } from '../../data/generate.js';
import { CliUsageError, defineCommand } from '../options.js';
import { AUTO_DRAL_MAX_PAIRS } from '../../settings.js';

export const generateCommand: CommandModule = defineCommand({
  command: 'generate <out>',
  describe: 'Generate DRAL-like (EN, ES) pairs calibrated to the published R-APM figures',
  settings: ['out', 'pairs', 'seed', 'format', 'speakers', 'unseenSpeakers', 'testFraction', 'testPairs', 'chunkSize', 'biasStrength', 'generatorModel', 'overwrite', 'json', 'quiet'],
  overrides: {
    out: { help: 'Output folder (created; must be empty unless --overwrite)' },
    seed: { help: 'Dataset seed (same seed, same data)' },
    overwrite: { help: 'Replace a non-empty output folder' },
  },
  check: (a, given) => {
    if (a.testPairs !== undefined && a.testPairs >= a.pairs) throw new CliUsageError(`--test-pairs must be less than --pairs (${a.pairs}), got ${a.testPairs}`);
    // Flags that would be accepted and change nothing: refused, naming both flags.
    if (given.has('testFraction') && given.has('testPairs')) throw new CliUsageError('--test-pairs sets the test split exactly and overrides --test-fraction: give one of them');
    const layout = a.format === 'auto' ? (a.pairs <= AUTO_DRAL_MAX_PAIRS ? 'dral' : 'chunks') : a.format;
    if (given.has('chunkSize') && layout === 'dral') {
      const why = a.format === 'auto' ? `--format auto writes a DRAL folder for --pairs ${a.pairs} (up to ${AUTO_DRAL_MAX_PAIRS})` : '--format dral writes one file per utterance';
      throw new CliUsageError(`--chunk-size sizes the chunks of --format chunks, but ${why}: drop --chunk-size or give --format chunks`);
    }
    if (a.overwrite) return;
    let entries: string[] = [];
    try {
      entries = fs.readdirSync(a.out);
    } catch {
      entries = [];
    }
    if (entries.length > 0) throw new CliUsageError(`${a.out} is not empty; pass --overwrite to replace it`);
  },
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
      model: argv.generatorModel as Partial<GeneratorModel> | undefined,
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
});
