/**
 * A bundle write killed with -9 (train / index) leaves its `<out>.tmp-<pid>-<hex>` staging folder
 * behind. The next write to the same --out removes those whose pid is dead, and only those: a live
 * pid's folder (a concurrent write), another bundle's, and names off the exact pattern are kept.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate } from '../../src/data/generate.js';
import { run } from '../helpers/cli.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-staging-'));
const data = path.join(tmp, 'data');
const models = path.join(tmp, 'models');
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

beforeAll(async () => {
  await generate({ out: data, pairs: 60, speakers: 3, seed: 8 });
}, 60_000);

/** The pid of a process that has exited (and was reaped): process.kill(pid, 0) gives ESRCH. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  const pid = Number(r.stdout);
  expect(() => process.kill(pid, 0)).toThrow(expect.objectContaining({ code: 'ESRCH' }));
  return pid;
}

function stagingFolder(name: string): string {
  const p = path.join(models, name);
  fs.mkdirSync(p, { recursive: true });
  fs.writeFileSync(path.join(p, 'rapm.json'), '{}');
  return p;
}

describe('stale bundle staging folders', () => {
  it('index --out removes the staging folders of that out left by a dead process, and keeps every other', async () => {
    const dead = deadPid();
    const stale = stagingFolder(`m1.tmp-${dead}-0123abcd`);
    const live = stagingFolder(`m1.tmp-${process.pid}-89abcdef`);
    const otherOut = stagingFolder(`m2.tmp-${dead}-0123abcd`);
    const offPattern = stagingFolder(`m1.tmp-${dead}-notahex1`);
    const prefix = stagingFolder(`xm1.tmp-${dead}-0123abcd`);
    // pid 1 always exists (EPERM for a non-root user counts as alive).
    const init = stagingFolder('m1.tmp-1-aaaaaaaa');
    const r = await run(['index', '--data', data, '--out', path.join(models, 'm1'), '-k', '3', '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    expect(fs.existsSync(stale), 'a dead pid\'s staging folder of m1').toBe(false);
    for (const kept of [live, otherOut, offPattern, prefix, init]) expect(fs.existsSync(kept), kept).toBe(true);
    expect(fs.readdirSync(models).sort()).toEqual(['m1', path.basename(live), path.basename(otherOut), path.basename(offPattern), path.basename(prefix), path.basename(init)].sort());
  }, 60_000);

  it('pack --out removes its own dead staging folders the same way (src/io/atomic.ts removeStaleStagingSync)', async () => {
    const dead = deadPid();
    const stale = stagingFolder(`chunks.tmp-${dead}-0123abcd`);
    const live = stagingFolder(`chunks.tmp-${process.pid}-89abcdef`);
    const r = await run(['pack', data, '--out', path.join(models, 'chunks'), '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    expect(fs.existsSync(stale), "a dead pid's staging folder of chunks").toBe(false);
    expect(fs.existsSync(live)).toBe(true);
  }, 60_000);
});
