// The NEON kernels run on every CI run: scripts/test-neon-qemu.sh cross-compiles the native
// core and kernels for aarch64 and runs native/test/kernel_test.cpp under qemu-user (scalar
// and neon against scalar and a double reference, every d of the usual list).
// Without the cross compiler or qemu this one test is skipped with the reason printed,
// unless RAPM_REQUIRE_NEON_QEMU=1 (set by .ci/run), where their absence fails it.
// It also skips under test:asan (below).
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const script = path.join(root, 'scripts', 'test-neon-qemu.sh');
const DIMS = [1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 101, 103, 1024];

const onPath = (cmd: string): boolean => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
const missing = [
  onPath('aarch64-linux-gnu-g++') ? null : 'aarch64-linux-gnu-g++ (g++-aarch64-linux-gnu)',
  onPath('qemu-aarch64-static') || onPath('qemu-aarch64') ? null : 'qemu-aarch64 (qemu-user-static)',
].filter((m): m is string => m !== null);
const required = process.env.RAPM_REQUIRE_NEON_QEMU === '1';
// Under `npm run test:asan` (libasan preloaded) the same static aarch64 binary would run again
// on the same inputs; it already ran in `npm test`, and qemu-user cannot host ASan anyway.
const underAsan = (process.env.LD_PRELOAD ?? '').includes('libasan');
const skip = underAsan || (missing.length > 0 && !required);
if (underAsan) console.warn('neon-qemu.test.ts: SKIPPED under test:asan (it ran in npm test; ASan does not apply to the qemu binary)');
else if (skip) console.warn(`neon-qemu.test.ts: SKIPPED, missing ${missing.join(', ')}; install with 'bash scripts/setup.sh --no-run' as root`);

describe('NEON kernels under qemu-user', () => {
  it.skipIf(skip)(
    'scalar and neon pass every check at every d (cross-compiled for aarch64, run in qemu)',
    () => {
      expect(missing, 'RAPM_REQUIRE_NEON_QEMU=1: the aarch64 toolchain and qemu must be installed (scripts/setup.sh)').toEqual([]);
      const r = spawnSync('bash', [script], { cwd: root, encoding: 'utf8', timeout: 540_000 });
      const out = `${r.stdout}${r.stderr}`;
      // The CI log shows the counts.
      console.log(out.split('\n').filter((l) => /^(rapm kernel test|kernel-test|scalar|neon):/.test(l)).join('\n'));
      expect(r.error, out).toBeUndefined();
      expect(r.status, out).toBe(0);
      expect(out).toMatch(/rapm kernel test: aarch64, levels scalar, neon, /);
      const dims = /d in \{([0-9,]+)\}/.exec(out)?.[1].split(',').map(Number);
      expect(dims).toEqual(DIMS);
      for (const level of ['scalar', 'neon']) {
        const m = new RegExp(`^${level}: (\\d+) checks passed \\(`, 'm').exec(out);
        expect(m, `${level} line in:\n${out}`).not.toBeNull();
        expect(Number(m?.[1])).toBeGreaterThan(5000);
      }
      expect(out).toMatch(/^neon: \d+ checks passed \(similarity \+ neon MLP kernels\)$/m);
      expect(out).toMatch(/under qemu-aarch64/);
      expect(out).not.toMatch(/FAIL/);
    },
    600_000,
  );
});
