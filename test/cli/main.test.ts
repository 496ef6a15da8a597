import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import yargs from 'yargs';
import { progressiveOptions } from '../../src/cli/commands/progressive.js';
import { main } from '../../src/cli/main.js';
import { fusionOptions, parseHidden, retrievalOptions, runOptions } from '../../src/cli/options.js';

const root = path.resolve(import.meta.dirname, '../..');

async function run(argv: string[]): Promise<{ code: number; stderr: string; stdout: string }> {
  const err: string[] = [];
  const out: string[] = [];
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((s) => (err.push(String(s)), true));
  const o = vi.spyOn(console, 'log').mockImplementation((...a) => void out.push(a.join(' ')));
  try {
    const code = await main(argv);
    return { code, stderr: err.join(''), stdout: out.join('\n') };
  } finally {
    e.mockRestore();
    o.mockRestore();
  }
}

describe('rapm CLI', () => {
  it('parses a progressive command line with its defaults', async () => {
    // The same option objects the command registers, parsed without running it.
    const argv = await yargs(['--config', 'B', '--k', '50', '--hidden', '512,256,128', '--all'])
      .options({ ...progressiveOptions, ...retrievalOptions, ...fusionOptions, ...runOptions })
      .strict()
      .parseAsync();
    expect(argv.config).toBe('B');
    expect(argv.k).toBe(50);
    expect(argv.tau).toBe(0.04);
    expect(argv.aggregate).toBe('softmax');
    expect(argv.all).toBe(true);
    expect(parseHidden(argv.hidden as string)).toEqual([512, 256, 128]);
  });

  it('usage errors exit 2 with one line naming the problem', async () => {
    const none = await run([]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/rapm: Name a command/);
    const bad = await run(['progressive', '--config', 'C']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/config/);
    const unknown = await run(['progresive']);
    expect(unknown.code).toBe(2);
  });

  it('a failing run exits 1 with a one-line reason and its code', async () => {
    const r = await run(['progressive', '--chunks', path.join(root, 'test/fixtures/npy'), '--out', '/tmp/rapm-cli-fail', '--tau', '-1']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/tau.*\[RAPM_INVALID_ARG\]/);
    expect(() => parseHidden('256,x')).toThrow(/--hidden/);
  });

  it('node dist/progressive.js --help runs as a separate process', () => {
    const bin = path.join(root, 'dist/progressive.js');
    expect(fs.existsSync(bin), 'dist/ is built by npm run build:ts (scripts/setup.sh)').toBe(true);
    const r = spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/--chunks/);
    expect(r.stdout).toMatch(/--resume/);
    expect(execFileSync(process.execPath, [path.join(root, 'dist/cli/bin.js'), '--help'], { encoding: 'utf8' })).toMatch(/rapm progressive/);
  });
});
