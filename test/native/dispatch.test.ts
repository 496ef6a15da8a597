// RAPM_SIMD at addon load: a supported level is used; a known level this CPU or build cannot
// run falls back to the best one with a RapmSimdWarning naming it; anything else is a
// RAPM_INVALID_ARG error naming the valid levels. Each case loads the addon in a fresh process.
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
  result: { level?: string; levels?: string[]; code?: string; name?: string; message?: string };
}

function loadWith(rapmSimd: string | undefined): Child {
  const env = { ...process.env };
  delete env.RAPM_SIMD;
  if (rapmSimd !== undefined) env.RAPM_SIMD = rapmSimd;
  const code = `
    import { simdLevel, simdLevels } from './src/native/simd.ts';
    try {
      console.log(JSON.stringify({ level: simdLevel(), levels: simdLevels() }));
    } catch (e) {
      console.log(JSON.stringify({ code: e.code, name: e.name, message: e.message }));
    }`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: root, env, encoding: 'utf8', timeout: 60_000 });
  const line = r.stdout.trim().split('\n').at(-1) ?? '';
  return { status: r.status, stderr: r.stderr, result: line.startsWith('{') ? JSON.parse(line) : { message: `no JSON: ${r.stdout} ${r.stderr}` } };
}

describe('RAPM_SIMD', () => {
  it('unset or empty: the best supported level, no warning', () => {
    for (const v of [undefined, '']) {
      const c = loadWith(v);
      expect(c.result.level, c.stderr).toBe(best);
      expect(c.stderr).not.toMatch(/RapmSimdWarning/);
    }
  });

  it('each supported level is used as named, without a warning', () => {
    for (const level of levels) {
      const c = loadWith(level);
      expect(c.result.level, c.stderr).toBe(level);
      expect(c.result.levels).toEqual(levels);
      expect(c.stderr).not.toMatch(/RapmSimdWarning/);
    }
  });

  it('a misspelt value is a RAPM_INVALID_ARG error naming the valid levels', () => {
    const c = loadWith('avx512x');
    expect(c.status).toBe(0);
    expect(c.result.code, JSON.stringify(c.result)).toBe('RAPM_INVALID_ARG');
    expect(c.result.name).toBe('RangeError');
    expect(c.result.message).toContain("RAPM_SIMD='avx512x' is not a SIMD level");
    expect(c.result.message).toContain('valid levels: scalar, neon, avx2, avx512');
    expect(c.result.message).toContain(`supported here: ${levels.join(', ')}`);
    // Not dressed up as a missing or broken build.
    expect(c.result.message).not.toMatch(/npm run build:native|Could not load/);
    const upper = loadWith('AVX2');
    expect(upper.result.code).toBe('RAPM_INVALID_ARG');
  });

  it('a known level this CPU or build cannot run falls back to the best level, with a warning saying so', () => {
    const foreign = ['neon', 'avx2', 'avx512'].find((l) => !levels.includes(l as never));
    expect(foreign, `every known level is supported here (${levels.join(', ')})`).toBeDefined();
    const c = loadWith(foreign);
    expect(c.result.level, c.stderr).toBe(best);
    expect(c.stderr).toMatch(/RapmSimdWarning/);
    expect(c.stderr).toContain(`RAPM_SIMD=${foreign} is not supported by this CPU or build; using ${best} (supported here: ${levels.join(', ')})`);
  });
});
