/**
 * `rapm pack <inputs..> --out DIR`: DRAL folders to chunk folders for `rapm progressive`.
 * A thin layer over `packDral` (src/data/pack.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { CommandModule } from 'yargs';
import { listChunks } from '../../data/chunks.js';
import { packDral } from '../../data/pack.js';
import { CliUsageError, defineCommand } from '../options.js';
import { progressBars } from '../progress.js';
import { warn } from '../run.js';

export const packCommand: CommandModule = defineCommand({
  command: 'pack <inputs..>',
  describe: 'Pack DRAL feature folders into chunk folders for the progressive loop',
  settings: ['inputs', 'out', 'filelists', 'chunkSize', 'shuffle', 'seed', 'onProblem', 'poolFrames', 'speakerPattern', 'overwrite', 'json', 'quiet'],
  overrides: {
    out: { demand: true, help: 'Folder to write the chunk folders into (chunk-00000, chunk-00001, ...)' },
    chunkSize: { help: 'Pairs per chunk (the step size of rapm progressive)' },
    filelists: { help: 'Folder holding the filelists of the (one) input, when they are not beside its feature files' },
    overwrite: { help: 'Replace the chunks already in --out' },
    seed: { help: 'Seed of --shuffle' },
  },
  check: (a, given) => {
    // --seed only seeds the shuffle: without --shuffle it would be accepted and change nothing.
    if (given.has('seed') && !a.shuffle) throw new CliUsageError('--seed needs --shuffle: it seeds the shuffle, and without --shuffle the pairs keep their input order');
    if (a.filelists !== undefined && a.inputs.length !== 1) throw new CliUsageError(`--filelists names the filelists of one input, but ${a.inputs.length} inputs were given`);
    // Refused before any data is read (packDral checks again, for library callers).
    let chunks: string[] = [];
    try {
      if (fs.statSync(a.out).isDirectory()) chunks = listChunks(a.out);
    } catch {
      chunks = [];
    }
    if (chunks.length > 0 && !a.overwrite) throw new CliUsageError(`--out: ${a.out} already holds ${chunks.length} chunk folder(s); pass --overwrite to replace them`);
  },
  handler: async (a) => {
    const bar = progressBars(a.quiet || a.json);
    const inputs = a.filelists !== undefined ? [{ data: a.inputs[0]!, filelists: a.filelists }] : a.inputs;
    const r = await packDral(inputs, a.out, {
      chunkSize: a.chunkSize,
      shuffle: a.shuffle,
      seed: a.shuffle ? a.seed : undefined,
      overwrite: a.overwrite,
      onProblem: a.onProblem,
      poolFrames: a.poolFrames ?? null,
      speakerPattern: a.speakerPattern,
      onProgress: (label, done, total) => bar(label, done, total),
    });
    for (const n of r.notices) warn(n);
    for (const s of r.skipped) warn(`${s.input}: --on-problem skip dropped ${s.dropped} pair(s) for ${s.problems.length} problem(s) (${s.problems.slice(0, 3).map((p) => p.detail).join('; ')}${s.problems.length > 3 ? '; ...' : ''})`);
    if (a.json) {
      // skipped: problems; dropped: the pairs they cost.
      process.stdout.write(JSON.stringify({ out: r.out, chunks: r.chunks, rows: r.rows, testRows: r.testRows, skipped: r.skipped.reduce((n, s) => n + s.problems.length, 0), dropped: r.dropped }) + '\n');
      return;
    }
    const f = (x: number): string => x.toLocaleString('en-US');
    process.stdout.write(`Packed ${f(r.rows)} pairs (${f(r.testRows)} of them test pairs from the filelists) into ${r.chunks} chunk folder(s) in ${path.resolve(r.out)}\n`);
  },
});
