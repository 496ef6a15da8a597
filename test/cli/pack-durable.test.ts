/**
 * `rapm pack` output survives a power loss and keeps what the user had: every file the pack
 * wrote into its staging folder (.npy, ids.txt, speakers.txt, split.txt, meta.json,
 * chunks.json) and every folder is fsynced before the staging folder is renamed to --out; a
 * replaced --out keeps its mode; an old copy a killed pack moved aside is kept (with a warning
 * naming both) when --out was recreated meanwhile, never deleted.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { listChunks } from '../../src/data/chunks.js';
import { generate } from '../../src/data/generate.js';
import { packDral } from '../../src/data/pack.js';
import { run } from '../helpers/cli.js';

let tmp: string;
let dral: string;
beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-pack-durable-'));
  dral = path.join(tmp, 'dral');
  await generate({ out: dral, pairs: 30, testPairs: 6, seed: 4, speakers: 3, format: 'dral' });
}, 60_000);
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());

describe('pack output', () => {
  it('fsyncs every file and folder of the staging folder before swapping it in as --out', async () => {
    const out = path.join(tmp, 'synced');
    await packDral([dral], out, { chunkSize: 10 }); // an old --out to replace, too
    const synced = new Set<number>();
    let atSwap: { p: string; ino: number }[] | null = null;
    const realFsync = fs.fsyncSync;
    const realRename = fs.renameSync;
    vi.spyOn(fs, 'fsyncSync').mockImplementation((fd) => {
      synced.add(fs.fstatSync(fd).ino);
      return realFsync(fd);
    });
    vi.spyOn(fs, 'renameSync').mockImplementation((from, to) => {
      if (path.resolve(String(to)) === out && String(from).includes('.tmp-')) {
        const walk = (p: string): { p: string; ino: number }[] => {
          const st = fs.lstatSync(p);
          const here = [{ p, ino: st.ino }];
          return st.isDirectory() ? here.concat(...fs.readdirSync(p).map((n) => walk(path.join(p, n)))) : here;
        };
        atSwap = walk(String(from));
      }
      return realRename(from, to);
    });
    await packDral([dral], out, { chunkSize: 16, overwrite: true, speakerPattern: '^([^_]+)_' });
    vi.restoreAllMocks();
    expect(atSwap, 'the swap rename was seen').not.toBeNull();
    const names = new Set(atSwap!.map(({ p }) => path.basename(p)));
    for (const n of ['chunks.json', 'chunk-00000', 'en.npy', 'es.npy', 'ids.txt', 'speakers.txt', 'split.txt', 'meta.json']) expect(names, n).toContain(n);
    const stage = atSwap![0]!.p;
    const unsynced = atSwap!.filter(({ ino }) => !synced.has(ino)).map(({ p }) => path.relative(stage, p) || '.');
    expect(unsynced).toEqual([]);
    expect(listChunks(out)).toEqual(['chunk-00000', 'chunk-00001']);
  }, 60_000);

  it('--overwrite keeps the mode of the --out it replaces', async () => {
    const out = path.join(tmp, 'mode');
    expect((await run(['pack', dral, '--out', out, '--chunk-size', '10', '--quiet'])).code).toBe(0);
    fs.chmodSync(out, 0o750);
    const r = await run(['pack', dral, '--out', out, '--chunk-size', '15', '--overwrite', '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    expect(listChunks(out)).toHaveLength(2);
    expect(fs.statSync(out).mode & 0o7777).toBe(0o750);
  }, 60_000);

  it('keeps the old copy a killed pack moved aside when --out was recreated, and warns naming both', async () => {
    const out = path.join(tmp, 'recreated');
    await packDral([dral], out, { chunkSize: 10 });
    // A pack killed between the swap's renames (its pid now dead) left the old --out moved aside ...
    const deadPid = spawnSync(process.execPath, ['-e', '']).pid!;
    const aside = `${out}.old-${deadPid}-0badc0de`;
    fs.renameSync(out, aside);
    // ... and then the user recreated --out by hand.
    fs.mkdirSync(out);
    const r = await run(['pack', dral, '--out', out, '--chunk-size', '30']);
    expect(r.code, r.stderr).toBe(0);
    expect(listChunks(out)).toEqual(['chunk-00000']);
    expect(listChunks(aside)).toEqual(['chunk-00000', 'chunk-00001', 'chunk-00002']);
    expect(r.stderr).toContain(`${out} exists and so does ${aside}`);
    expect(r.stderr).toContain(`remove ${aside} once you no longer need it`);
    // Every later write keeps it too, until the user removes it.
    expect((await run(['pack', dral, '--out', out, '--overwrite', '--quiet'])).code).toBe(0);
    expect(listChunks(aside)).toHaveLength(3);
  }, 60_000);
});
