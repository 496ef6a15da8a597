/** Small pieces every command shares: output guards, warnings, thread count. */
import fs from 'node:fs';
import { setConcurrency } from '../native/simd.js';
import { CliUsageError } from './options.js';

/**
 * Refuse to replace `file` (a file or folder) unless `overwrite`: a usage error naming the flag,
 * raised before any data is read.
 */
export function refuseExisting(file: string, overwrite: boolean, flag: string): void {
  if (overwrite) return;
  let exists = false;
  try {
    fs.lstatSync(file);
    exists = true;
  } catch {
    exists = false;
  }
  if (exists) throw new CliUsageError(`${flag}: ${file} already exists; pass --overwrite to replace it`);
}

/** A warning on stderr (not progress: --quiet keeps it). */
export function warn(line: string): void {
  process.stderr.write(`rapm: warning: ${line}\n`);
}

/** --threads: the native kernels' thread count (unchanged when absent). */
export function applyThreads(threads: number | undefined): void {
  if (threads !== undefined) setConcurrency(threads);
}
