/**
 * `rapm pack --overwrite` replaces --out in one swap (io/atomic.ts replaceDirSync): the old
 * folder stays complete until the new one is in place, and a pack killed (kill -9) or failing
 * between the swap's renames leaves the old folder or the new one, never neither and never a mix.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { listChunks, loadChunks } from '../../src/data/chunks.js';
import { generate } from '../../src/data/generate.js';
import { loadDataset } from '../../src/data/load.js';
import { packDral } from '../../src/data/pack.js';

const root = path.resolve(import.meta.dirname, '../..');
let tmp: string;
let dral: string;
beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-pack-swap-'));
  dral = path.join(tmp, 'dral');
  await generate({ out: dral, pairs: 50, testPairs: 10, seed: 3, speakers: 5, format: 'dral' });
}, 60_000);
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());

/** What a chunk set holds, compared whole: chunk names, ids and both matrices. */
async function snapshot(dir: string): Promise<{ chunks: string[]; ids: string[]; en: number[]; es: number[] }> {
  const d = await loadChunks(dir);
  return { chunks: listChunks(dir), ids: d.ids, en: Array.from(d.en.subarray(0, 4096)), es: Array.from(d.es.subarray(d.es.length - 4096)) };
}

const leftovers = (dir: string, base: string): string[] => fs.readdirSync(dir).filter((n) => n.startsWith(`${base}.`));

describe('pack --overwrite swaps --out in atomically', () => {
  it('a pack killed with -9 between the swap renames leaves the old folder complete, and the next pack puts it back', async () => {
    const out = path.join(tmp, 'killed');
    await packDral([dral], out, { chunkSize: 10 });
    const before = await snapshot(out);
    expect(before.chunks).toHaveLength(5);
    const marker = path.join(tmp, 'paused');
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'pack-swap.child.ts'), dral, out], {
      cwd: root,
      env: { ...process.env, RAPM_TEST_PAUSE_IN_SWAP: marker },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    // Wait until the child stands between the two renames (the hook wrote the marker), or has exited.
    let exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
    void exited.then((e) => (exit = e));
    const deadline = Date.now() + 50_000;
    while (!fs.existsSync(marker) && exit === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(exit, `the child finished without stopping at the swap (stdout ${stdout}, stderr ${stderr})`).toBeNull();
    expect(fs.existsSync(marker), 'the child reached the swap').toBe(true);
    const [pid, aside] = fs.readFileSync(marker, 'utf8').split('\n');
    expect(Number(pid)).toBe(child.pid);
    // The kill moment: --out is moved aside (complete), the new folder is staged, nothing is at --out.
    expect(fs.existsSync(out)).toBe(false);
    expect(aside).toMatch(new RegExp(`^${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.old-${child.pid}-[0-9a-f]{8}$`));
    expect(listChunks(aside!)).toEqual(before.chunks);
    child.kill('SIGKILL');
    expect(await exited).toEqual({ code: null, signal: 'SIGKILL' });
    expect(stdout).not.toContain('finished');
    // A reader is told where the old folder went.
    await expect(loadDataset(out)).rejects.toThrow(new RegExp(`a write into it was interrupted, and its previous contents are in .*killed\\.old-${child.pid}-`));
    // The next pack puts the old folder back first: without --overwrite it is refused as holding chunks.
    await expect(packDral([dral], out, { chunkSize: 25 })).rejects.toThrow(/already holds 5 chunk folder\(s\); pass --overwrite/);
    expect(await snapshot(out)).toEqual(before);
    expect(leftovers(tmp, 'killed')).toEqual([]); // the dead child's staging folder is gone too
    // And with --overwrite the new one replaces it, leaving nothing beside it.
    await packDral([dral], out, { chunkSize: 25, overwrite: true });
    expect(listChunks(out)).toEqual(['chunk-00000', 'chunk-00001']);
    expect((await loadChunks(out)).ids).toEqual(before.ids);
    expect(leftovers(tmp, 'killed')).toEqual([]);
  }, 90_000);

  it('a rename failing in the middle of the swap leaves the old folder exactly as it was', async () => {
    const out = path.join(tmp, 'fault');
    await packDral([dral], out, { chunkSize: 10 });
    const before = await snapshot(out);
    const real = fs.renameSync;
    let injected = 0;
    // Fail the first rename that puts new data at --out (the swap), whatever the order of the other steps.
    vi.spyOn(fs, 'renameSync').mockImplementation((from, to) => {
      const dest = path.resolve(String(to));
      if (injected === 0 && String(from).includes('.tmp-') && (dest === out || dest.startsWith(out + path.sep))) {
        injected++;
        throw Object.assign(new Error('EIO: injected fault'), { code: 'EIO' });
      }
      return real(from, to);
    });
    await expect(packDral([dral], out, { chunkSize: 25, overwrite: true })).rejects.toThrow(/EIO: injected fault/);
    expect(injected).toBe(1);
    vi.restoreAllMocks();
    expect(await snapshot(out)).toEqual(before);
    expect(leftovers(tmp, 'fault')).toEqual([]);
  }, 60_000);

  it('through a symbolic link --out stays a link and the folder it points at is replaced', async () => {
    const real = path.join(tmp, 'real-out');
    const link = path.join(tmp, 'link-out');
    await packDral([dral], real, { chunkSize: 10 });
    fs.symlinkSync(real, link);
    await packDral([dral], link, { chunkSize: 50, overwrite: true });
    expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
    expect(listChunks(real)).toEqual(['chunk-00000']);
    const dangling = path.join(tmp, 'dangling');
    fs.symlinkSync(path.join(tmp, 'nowhere', 'x'), dangling);
    await expect(packDral([dral], dangling)).rejects.toMatchObject({ code: 'RAPM_IO', message: expect.stringContaining(`Cannot pack into ${dangling}: it is a symbolic link to nothing`) });
    const file = path.join(tmp, 'a-file');
    fs.writeFileSync(file, 'x');
    await expect(packDral([dral], file)).rejects.toMatchObject({ code: 'RAPM_IO', message: `Cannot pack into ${file}: it is a regular file, not a folder` });
    expect(fs.readFileSync(file, 'utf8')).toBe('x');
  }, 60_000);
});
