// rapm index / train after a bundle write that was killed between its swap's renames (the old
// bundle moved aside to <out>.old-<dead pid>-<hex>): the old bundle is put back BEFORE any data
// is loaded or any net trained, so it is refused without --overwrite at once; and when the user
// recreated <out> meanwhile, the kept old copy is reported naming both folders.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate } from '../../src/data/generate.js';
import { run } from '../helpers/cli.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-bundle-recovery-'));
const dral = path.join(tmp, 'dral');
beforeAll(async () => {
  await generate({ out: dral, pairs: 60, testPairs: 12, seed: 8, speakers: 4, format: 'dral' });
}, 60_000);
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const deadPid = (): number => spawnSync(process.execPath, ['-e', '']).pid!;

describe('bundle writes after a killed swap', () => {
  it('index: the moved-aside bundle is put back and refused before the data is read', async () => {
    const out = path.join(tmp, 'b1');
    expect((await run(['index', '--data', dral, '--out', out, '-k', '5', '--quiet'])).code).toBe(0);
    const before = fs.readFileSync(path.join(out, 'rapm.json'), 'utf8');
    fs.renameSync(out, `${out}.old-${deadPid()}-0badc0de`);
    // Data that cannot be read: a refusal that came after loading would name it instead.
    const r = await run(['index', '--data', path.join(tmp, 'no-such-data'), '--out', out, '-k', '5', '--quiet']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/already exists; pass --overwrite/);
    expect(r.stderr).not.toMatch(/no-such-data/);
    expect(fs.readFileSync(path.join(out, 'rapm.json'), 'utf8')).toBe(before);
  }, 60_000);

  it('index: an old copy kept beside a recreated --out is reported, naming both', async () => {
    const out = path.join(tmp, 'b2');
    expect((await run(['index', '--data', dral, '--out', out, '-k', '5', '--quiet'])).code).toBe(0);
    const aside = `${out}.old-${deadPid()}-0badc0de`;
    fs.renameSync(out, aside);
    fs.mkdirSync(out); // recreated by hand, empty
    const r = await run(['index', '--data', dral, '--out', out, '-k', '5', '--overwrite', '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(aside);
    expect(fs.existsSync(path.join(aside, 'rapm.json'))).toBe(true);
    expect(fs.existsSync(path.join(out, 'rapm.json'))).toBe(true);
  }, 60_000);
});
