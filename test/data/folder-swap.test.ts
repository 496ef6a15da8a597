/**
 * generate and writeChunk (overwrite) replace an existing folder with replaceDirSync, the one
 * swap (src/io/atomic.ts). They used to move the old folder to a `.tmp-<pid>` name and then
 * rename the new one in: a failure or kill between the two renames left the folder missing and
 * its complete old copy under a staging name that the next write deleted. generate also never
 * fsynced its feature files, filelists or manifest before publishing the folder.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { listChunks, loadChunks, writeChunk, writeChunks } from '../../src/data/chunks.js';
import { generate } from '../../src/data/generate.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-folder-swap-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());

const small = (out: string, seed: number) => generate({ out, pairs: 20, testPairs: 4, speakers: 2, seed, format: 'dral' });
/** Every file of a folder tree with its contents, for "still complete" checks. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (e.isFile()) out[path.relative(dir, path.join(e.parentPath, e.name))] = fs.readFileSync(path.join(e.parentPath, e.name)).toString('base64');
  }
  return out;
}
/** Make renameSync throw on the rename that publishes the staged folder at `target` (and, with `alsoBack`, on every later rename onto it: a kill). */
function failPublish(target: string, alsoBack = false): void {
  const real = fs.renameSync;
  let failed = false;
  vi.spyOn(fs, 'renameSync').mockImplementation((from, to) => {
    if (path.resolve(String(to)) === target && (String(from).includes('.tmp-') || (alsoBack && failed))) {
      failed = true;
      throw Object.assign(new Error('injected fault between the renames'), { code: 'EIO' });
    }
    return real(from, to);
  });
}
/** A pid no process has here (so the moved-aside copy looks like a killed writer's). */
function deadPid(): number {
  for (let p = 4_000_000; ; p++) {
    try {
      process.kill(p, 0);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ESRCH') return p;
    }
  }
}

describe('generate replaces its output folder with the one swap', () => {
  it('a fault between the renames leaves the old folder complete in place', async () => {
    const out = path.join(tmp, 'gen-fault');
    await small(out, 1);
    const before = snapshot(out);
    failPublish(out);
    await expect(generate({ out, pairs: 20, testPairs: 4, speakers: 2, seed: 2, format: 'dral', overwrite: true })).rejects.toThrow(/injected fault/);
    vi.restoreAllMocks();
    expect(snapshot(out)).toEqual(before);
    expect(fs.readdirSync(tmp).filter((n) => n.startsWith('gen-fault.'))).toEqual([]);
  });

  it('a kill between the renames keeps the old copy, and the next generate puts it back first', async () => {
    const out = path.join(tmp, 'gen-kill');
    await small(out, 1);
    const before = snapshot(out);
    failPublish(out, true);
    await expect(generate({ out, pairs: 20, testPairs: 4, speakers: 2, seed: 2, format: 'dral', overwrite: true })).rejects.toThrow(/injected fault/);
    vi.restoreAllMocks();
    expect(fs.existsSync(out)).toBe(false);
    const [aside] = fs.readdirSync(tmp).filter((n) => n.startsWith('gen-kill.old-'));
    expect(aside).toBeDefined();
    expect(snapshot(path.join(tmp, aside!))).toEqual(before);
    // As if that process had been killed: its pid is dead.
    fs.renameSync(path.join(tmp, aside!), path.join(tmp, aside!.replace(/\.old-\d+-/, `.old-${deadPid()}-`)));
    // The next generate finds the old copy back in place: not empty, so it needs --overwrite.
    await expect(small(out, 3)).rejects.toThrow(/exists and is not empty/);
    expect(snapshot(out)).toEqual(before);
  });

  it('fsyncs every file and folder of the new folder before the rename that publishes it', async () => {
    const out = path.join(tmp, 'gen-sync');
    await small(out, 1);
    const synced = new Set<number>();
    const realFsync = fs.fsyncSync;
    const realRename = fs.renameSync;
    let unsynced: string[] | null = null;
    vi.spyOn(fs, 'fsyncSync').mockImplementation((fd) => {
      synced.add(fs.fstatSync(fd).ino);
      return realFsync(fd);
    });
    vi.spyOn(fs, 'renameSync').mockImplementation((from, to) => {
      if (path.resolve(String(to)) === out && String(from).includes('.tmp-')) {
        const here = String(from);
        const all = [here, ...fs.readdirSync(here, { recursive: true }).map((n) => path.join(here, String(n)))];
        unsynced = all.filter((p) => !synced.has(fs.statSync(p).ino)).map((p) => path.relative(here, p) || '.');
      }
      return realRename(from, to);
    });
    await generate({ out, pairs: 20, testPairs: 4, speakers: 2, seed: 2, format: 'dral', overwrite: true });
    vi.restoreAllMocks();
    expect(unsynced, 'the publishing rename was seen').not.toBeNull();
    expect(unsynced).toEqual([]);
    expect(fs.existsSync(path.join(out, 'generated.json'))).toBe(true);
  });
});

describe('writeChunk with overwrite replaces a chunk with the one swap', () => {
  const data = (v: number) => ({ ids: ['a', 'b'], en: new Float32Array(8).fill(v), es: new Float32Array(8).fill(v) });

  it('a fault between the renames leaves the old chunk complete in place', async () => {
    const dir = path.join(tmp, 'chunks-fault');
    await writeChunk(dir, 'chunk-00000', data(1), { dim: 4 });
    const before = snapshot(path.join(dir, 'chunk-00000'));
    failPublish(path.join(dir, 'chunk-00000'));
    await expect(writeChunk(dir, 'chunk-00000', data(2), { dim: 4, overwrite: true })).rejects.toThrow(/injected fault/);
    vi.restoreAllMocks();
    expect(snapshot(path.join(dir, 'chunk-00000'))).toEqual(before);
    expect(fs.readdirSync(dir)).toEqual(['chunk-00000']);
  });

  it('a kill between the renames: the old copy is never read as a chunk, and the next overwrite puts it back first', async () => {
    const dir = path.join(tmp, 'chunks-kill');
    const en = new Float32Array(4 * 1024).map((_, i) => Math.sin(i) + 0.5);
    await writeChunks({ ids: ['a_1', 'a_2', 'b_3', 'b_4'], speakers: null, en, es: en.slice(), n: 4 }, dir, { chunkSize: 2 });
    const name = listChunks(dir)[1]!;
    const before = snapshot(path.join(dir, name));
    failPublish(path.join(dir, name), true);
    await expect(writeChunk(dir, name, { ids: ['b_3', 'b_4'], en: en.subarray(0, 2048), es: en.subarray(0, 2048) }, { overwrite: true })).rejects.toThrow(/injected fault/);
    vi.restoreAllMocks();
    const [aside] = fs.readdirSync(dir).filter((n) => n.startsWith(`${name}.old-`));
    expect(snapshot(path.join(dir, aside!))).toEqual(before);
    // Not a chunk: read, it would be a chunk of its own (ids twice once the chunk is back).
    expect(listChunks(dir)).toEqual([listChunks(dir)[0]]);
    fs.renameSync(path.join(dir, aside!), path.join(dir, aside!.replace(/\.old-\d+-/, `.old-${deadPid()}-`)));
    const seen: string[] = [];
    const real = fs.renameSync;
    vi.spyOn(fs, 'renameSync').mockImplementation((from, to) => {
      if (String(to) === path.join(dir, name) && String(from).includes('.old-')) seen.push('put back');
      return real(from, to);
    });
    await writeChunk(dir, name, { ids: ['b_3', 'b_4'], en: en.subarray(2048), es: en.subarray(2048) }, { overwrite: true });
    vi.restoreAllMocks();
    expect(seen).toEqual(['put back']);
    expect(fs.readdirSync(dir).sort()).toEqual([...listChunks(dir), 'chunks.json'].sort());
    expect((await loadChunks(dir)).ids).toEqual(['a_1', 'a_2', 'b_3', 'b_4']);
  });
});
