import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { run } from '../helpers/cli.js';
import { closestFlag, resolveArgs } from '../../src/cli/options.js';
import { POINT_SETTINGS } from '../../src/cli/options.js';

const root = path.resolve(import.meta.dirname, '../..');

describe('rapm CLI', () => {
  it('resolves a command line into typed settings with the schema defaults', () => {
    const { args, given } = resolveArgs({ config: 'B', k: 50, hidden: '512,256,128', 'leaky-priors': true }, POINT_SETTINGS);
    expect(args.config).toBe('B');
    expect(args.k).toBe(50);
    expect(args.tau).toBe(0.04);
    expect(args.aggregate).toBe('softmax');
    expect(args.hidden).toEqual([512, 256, 128]);
    expect(args.leakyPriors).toBe(true);
    expect(args.patience).toBe(5);
    expect(args.seed).toBe(1);
    expect([...given].sort()).toEqual(['config', 'hidden', 'k', 'leakyPriors']);
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
    expect(unknown.stderr).toMatch(/Did you mean progressive/);
  });

  it('suggests the closest flag for a misspelt option', async () => {
    const r = await run(['train', '--epoch', '3']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Unknown argument: epoch\. Did you mean --epochs for epoch\?/);
    const r2 = await run(['serve', '--datastore', 'x', '--max-bach', '8']);
    expect(r2.stderr).toMatch(/Did you mean --max-batch/);
    expect(closestFlag('wieght-decay', ['weight-decay', 'dropout'])).toBe('weight-decay');
    expect(closestFlag('zzzzzz', ['weight-decay', 'dropout'])).toBeNull();
  });

  it('a failing run exits 1 with a one-line reason and its code', async () => {
    const r = await run(['progressive', '--chunks', path.join(root, 'test/fixtures/does-not-exist'), '--out', '/tmp/rapm-cli-fail-' + process.pid]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/\[RAPM_/);
  });

  it('--version and -h', async () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };
    const v = await run(['--version']);
    expect(v.code).toBe(0);
    expect(v.stdout.trim()).toBe(pkg.version);
    const h = await run(['train', '-h']);
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/--epochs/);
  });

  it('help shows no default for what must be given: positionals and required flags', async () => {
    const pack = await run(['pack', '--help']);
    expect(pack.code).toBe(0);
    const positionals = /Positionals:\n([\s\S]*?)\n\n/.exec(pack.stdout)![1]!;
    expect(positionals).toMatch(/inputs\s+DRAL folders[\s\S]*\[required\]/);
    expect(positionals).not.toMatch(/default|repeat the flag/);
    // --out must be given to pack: the 'results' default of other commands is not shown.
    const out = /--out [\s\S]*?\]\n/.exec(pack.stdout)![0];
    expect(out).toMatch(/\[required\]/);
    expect(out).not.toMatch(/default/);
    const gen = await run(['generate', '--help']);
    expect(/Positionals:\n([\s\S]*?)\n\n/.exec(gen.stdout)![1]).not.toMatch(/default/);
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
