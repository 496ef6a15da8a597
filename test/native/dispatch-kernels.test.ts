// The standalone C++ kernel test (native/test/kernel_test.cpp, scripts/kernel-test.sh) on this
// machine: every SIMD level the addon reports, against scalar and a double reference, over the
// usual d. Under `npm run test:asan` (libasan preloaded) it builds and runs with ASan + UBSan.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { simdLevels } from '../../src/native/simd.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const underAsan = (process.env.LD_PRELOAD ?? '').includes('libasan');

describe('C++ kernel test on this machine', () => {
  it(
    `every level the addon reports passes against scalar${underAsan ? ' (ASan + UBSan build)' : ''}`,
    () => {
      const args = [path.join(root, 'scripts', 'kernel-test.sh'), ...(underAsan ? ['--asan'] : [])];
      const r = spawnSync('bash', args, { cwd: root, encoding: 'utf8', timeout: 540_000 });
      const out = `${r.stdout}${r.stderr}`;
      console.log(out.split('\n').filter((l) => /^(rapm kernel test|kernel-test|cpu|[a-z0-9_]+: \d+ checks)/.test(l)).join('\n'));
      expect(r.error, out).toBeUndefined();
      expect(r.status, out).toBe(0);
      const levels = simdLevels();
      // The same levels as the addon, scalar first (it is the reference the others meet).
      const ran = /levels ([a-z0-9_, ]+), d in/.exec(out)?.[1].split(', ');
      expect(ran).toEqual(['scalar', ...levels.filter((l) => l !== 'scalar')]);
      for (const level of levels) {
        const m = new RegExp(`^${level}: (\\d+) checks passed \\(`, 'm').exec(out);
        expect(m, `${level} line in:\n${out}`).not.toBeNull();
        expect(Number(m?.[1])).toBeGreaterThan(5000);
      }
      expect(out).toMatch(new RegExp(`all ${levels.length} levels passed`));
      expect(out).not.toMatch(/FAIL|runtime error|AddressSanitizer/);
    },
    600_000,
  );
});
