// RAPM_SIMD at addon load: a supported level is used; a known level this CPU or build cannot
// run, or a value that is no level at all, falls back to the best one with one process
// warning (RapmSimdWarning, code RAPM_SIMD) saying which and naming the valid levels.
// Each case loads the addon in a fresh process.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { simdLevels } from '../../src/native/simd.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const levels = simdLevels();
const best = levels[0];

interface Child {
  status: number | null;
  stderr: string;
  warnings: string[]; // 'name code message' of every process warning
  result: { level?: string; levels?: string[]; message?: string };
}

const addonPath = process.env.RAPM_NATIVE || path.join(root, 'build', 'Release', 'rapm.node');

// Loads the addon in a fresh process with RAPM_SIMD set (or unset), directly (fast), or through
// the library's loader (src/native/simd.ts, via tsx) when `viaLibrary`.
function loadWith(rapmSimd: string | undefined, viaLibrary = false): Child {
  const env = { ...process.env };
  delete env.RAPM_SIMD;
  if (rapmSimd !== undefined) env.RAPM_SIMD = rapmSimd;
  const report = `process.on('warning', (w) => console.log('WARNING ' + w.name + ' ' + w.code + ' ' + w.message));`;
  const args = viaLibrary
    ? ['--import', 'tsx', '--input-type=module', '-e', `${report}
       import { simdLevel, simdLevels } from './src/native/simd.ts';
       console.log(JSON.stringify({ level: simdLevel(), levels: simdLevels() }));`]
    : ['-e', `${report}
       const b = require(${JSON.stringify(addonPath)});
       console.log(JSON.stringify({ level: b.simdLevel(), levels: b.simdLevels() }));`];
  const r = spawnSync(process.execPath, args, { cwd: root, env, encoding: 'utf8', timeout: 120_000 });
  const lines = r.stdout.trim().split('\n');
  const line = lines.find((l) => l.startsWith('{')) ?? '';
  const warnings = lines.filter((l) => l.startsWith('WARNING ')).map((l) => l.slice('WARNING '.length));
  return { status: r.status, stderr: r.stderr, warnings, result: line ? JSON.parse(line) : { message: `no JSON: ${r.stdout} ${r.stderr}` } };
}

// Each test spawns node processes: generous timeouts for a loaded machine (and ASan).
describe('RAPM_SIMD', { timeout: 180_000 }, () => {
  it('unset or empty: the best supported level, no warning', () => {
    for (const v of [undefined, '']) {
      const c = loadWith(v);
      expect(c.result.level, c.stderr).toBe(best);
      expect(c.warnings).toEqual([]);
    }
  });

  it('each supported level is used as named, without a warning', () => {
    for (const level of levels) {
      const c = loadWith(level);
      expect(c.result.level, c.stderr).toBe(level);
      expect(c.result.levels).toEqual(levels);
      expect(c.warnings).toEqual([]);
    }
  });

  it('a misspelt value falls back to the best level with a RAPM_SIMD warning naming the valid levels', () => {
    for (const [typo, viaLibrary] of [['avx512x', true], ['AVX2', false], ['neon ', false]] as const) {
      const c = loadWith(typo, viaLibrary);
      expect(c.status).toBe(0);
      expect(c.result.level, JSON.stringify(c.result)).toBe(best);
      expect(c.warnings).toEqual([
        `RapmSimdWarning RAPM_SIMD RAPM_SIMD=${JSON.stringify(typo)} is not a SIMD level; using ${best} (valid levels: scalar, neon, avx2, avx512, avx512vnni, avx512bf16; supported here: ${levels.join(', ')})`,
      ]);
    }
  });

  it('a known level this CPU or build cannot run falls back to the best level, with a warning saying so', () => {
    const foreign = ['neon', 'avx2', 'avx512'].find((l) => !levels.includes(l as never));
    expect(foreign, `every known level is supported here (${levels.join(', ')})`).toBeDefined();
    const c = loadWith(foreign);
    expect(c.result.level, c.stderr).toBe(best);
    expect(c.warnings).toEqual([
      `RapmSimdWarning RAPM_SIMD RAPM_SIMD=${foreign} is not supported by this CPU or build; using ${best} (supported here: ${levels.join(', ')})`,
    ]);
  });
});

// RAPM_THREADS at addon load: an integer in [1, 1024] sizes the pool; anything else set is named
// in one RapmThreadsWarning (code RAPM_THREADS) and the pool takes one thread per core, as unset.
describe('RAPM_THREADS', { timeout: 180_000 }, () => {
  function threadsWith(v: string | undefined): { threads: number; warnings: string[]; stderr: string } {
    const env: NodeJS.ProcessEnv = { ...process.env, RAPM_SIMD: '' };
    delete env.RAPM_THREADS;
    if (v !== undefined) env.RAPM_THREADS = v;
    const r = spawnSync(process.execPath, ['-e', `process.on('warning', (w) => console.log('WARNING ' + w.name + ' ' + w.code + ' ' + w.message));
       console.log(JSON.stringify({ threads: require(${JSON.stringify(addonPath)}).concurrency() }));`], { cwd: root, env, encoding: 'utf8', timeout: 120_000 });
    const lines = r.stdout.trim().split('\n');
    const line = lines.find((l) => l.startsWith('{')) ?? '{"threads":-1}';
    return { threads: (JSON.parse(line) as { threads: number }).threads, warnings: lines.filter((l) => l.startsWith('WARNING ')).map((l) => l.slice(8)), stderr: r.stderr };
  }

  it('a valid value is used; a bad one is named in a warning, never read as a prefix', () => {
    const unset = threadsWith(undefined);
    expect(unset.warnings, unset.stderr).toEqual([]);
    expect(unset.threads).toBeGreaterThanOrEqual(1);
    expect(threadsWith('3')).toMatchObject({ threads: 3, warnings: [] });
    for (const bad of ['abc', '0', '-1', '2.5', '1abc', '99999']) {
      const c = threadsWith(bad);
      expect(c.threads, bad).toBe(unset.threads); // not atoi's 1 or 2
      expect(c.warnings).toEqual([`RapmThreadsWarning RAPM_THREADS RAPM_THREADS="${bad}" is not an integer in [1, 1024]; using ${unset.threads} (one per hardware thread)`]);
    }
  });
});
