/**
 * Flags that were accepted and had no effect in a combination are refused (exit 2, before any
 * data is read, naming both flags): index --seed without --split, generate --chunk-size with a
 * DRAL layout, generate --test-fraction with --test-pairs. grid now takes --seed (its --split
 * help said "seeded by --seed") under the same rule as index.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { run } from '../helpers/cli.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-ignored-'));
const file = path.join(tmp, 'a-file');
fs.writeFileSync(file, 'not a folder');
const missing = path.join(file, 'data');
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function usage(argv: string[], ...names: string[]): Promise<void> {
  const r = await run([...argv, '--quiet']);
  expect(r.code, `${argv.join(' ')}: ${r.stderr}`).toBe(2);
  for (const n of names) expect(r.stderr).toContain(n);
}
async function reachesData(argv: string[]): Promise<void> {
  const r = await run([...argv, '--quiet']);
  expect(r.code, `${argv.join(' ')}: ${r.stderr}`).toBe(1);
}

describe('flags without effect are refused', () => {
  for (const cmd of ['index', 'grid']) {
    it(`${cmd}: --seed needs --split`, async () => {
      const base = [cmd, '--data', missing, '--out', path.join(missing, 'out')];
      await usage([...base, '--seed', '12345'], '--seed', '--split');
      await reachesData([...base, '--seed', '12345', '--split', 'speaker']);
    });
  }

  it('generate: --chunk-size needs the chunks layout', async () => {
    const out = path.join(missing, 'gen');
    await usage(['generate', out, '--format', 'dral', '--chunk-size', '10'], '--chunk-size', '--format dral');
    await usage(['generate', out, '--pairs', '800', '--chunk-size', '10'], '--chunk-size', '--format auto');
    await reachesData(['generate', out, '--format', 'chunks', '--pairs', '100', '--chunk-size', '10']);
  });

  it('generate: --test-fraction with --test-pairs', async () => {
    await usage(['generate', path.join(missing, 'gen'), '--pairs', '100', '--test-pairs', '10', '--test-fraction', '0.3'], '--test-pairs', '--test-fraction');
  });
});
