/**
 * replaceDirSync / recoverMovedAsideSync (src/io/atomic.ts), the folder swap of pack and
 * bundles: every file and folder of the staged folder is fsynced before it is renamed in; the
 * new folder keeps the replaced folder's mode; an `.old-` copy (the complete previous folder a
 * killed swap moved aside) is never deleted when the target exists again, and a swap never
 * leaves a partial folder under an `.old-` name.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { movedAsideNotices, recoverMovedAsideSync, removeStaleStagingSync, replaceDirSync, tempPathFor } from '../../src/io/atomic.js';

let tmp: string;
/** The pid of a process that has exited: what a killed writer's names carry. */
let deadPid: number;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-replace-dir-'));
  deadPid = spawnSync(process.execPath, ['-e', '']).pid!;
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());

/** A folder holding `files` (name -> text), subfolders made as needed. */
function folder(dir: string, files: Record<string, string>): string {
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), text);
  }
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}
const read = (dir: string, name: string): string => fs.readFileSync(path.join(dir, name), 'utf8');
const siblings = (dir: string): string[] => fs.readdirSync(path.dirname(dir)).filter((n) => n.startsWith(`${path.basename(dir)}.`));

/** Record the inodes fsynced through fs.fsyncSync, and at the rename that puts `staged` at `target`, every inode in `staged`. */
function watchSwap(target: string): { synced: Set<number>; atSwap: { p: string; ino: number }[] | null } {
  const w = { synced: new Set<number>(), atSwap: null as { p: string; ino: number }[] | null };
  const realFsync = fs.fsyncSync;
  const realRename = fs.renameSync;
  vi.spyOn(fs, 'fsyncSync').mockImplementation((fd) => {
    w.synced.add(fs.fstatSync(fd).ino);
    return realFsync(fd);
  });
  vi.spyOn(fs, 'renameSync').mockImplementation((from, to) => {
    if (path.resolve(String(to)) === path.resolve(target) && String(from).includes('.tmp-')) {
      const walk = (p: string): { p: string; ino: number }[] => {
        const st = fs.lstatSync(p);
        const here = [{ p, ino: st.ino }];
        return st.isDirectory() ? here.concat(...fs.readdirSync(p).map((n) => walk(path.join(p, n)))) : here;
      };
      w.atSwap = walk(String(from));
    }
    return realRename(from, to);
  });
  return w;
}

describe('replaceDirSync', () => {
  it('fsyncs every file and folder of the staged folder before the rename that swaps it in', () => {
    const target = folder(path.join(tmp, 'synced'), { 'old.txt': 'old' });
    const staged = folder(tempPathFor(target), { 'a.txt': 'a', 'sub/b.npy': 'b', 'sub/deeper/c.json': '{}' });
    const w = watchSwap(target);
    replaceDirSync(staged, target);
    vi.restoreAllMocks();
    expect(w.atSwap, 'the swap rename was seen').not.toBeNull();
    expect(w.atSwap!.length).toBe(6); // the folder, a.txt, sub, sub/b.npy, sub/deeper, sub/deeper/c.json
    const unsynced = w.atSwap!.filter(({ ino }) => !w.synced.has(ino)).map(({ p }) => path.relative(staged, p) || '.');
    expect(unsynced).toEqual([]);
    expect(read(target, 'sub/deeper/c.json')).toBe('{}');
    expect(siblings(target)).toEqual([]);
  });

  it('gives the new folder the mode of the folder it replaces', () => {
    const target = folder(path.join(tmp, 'mode'), { 'x.txt': 'x' });
    fs.chmodSync(target, 0o750);
    const staged = folder(tempPathFor(target), { 'y.txt': 'y' });
    fs.chmodSync(staged, 0o755); // what mkdir gives under the usual umask
    replaceDirSync(staged, target);
    expect(fs.statSync(target).mode & 0o7777).toBe(0o750);
    expect(read(target, 'y.txt')).toBe('y');
    // With nothing to replace, the staged folder's own mode stays.
    const fresh = path.join(tmp, 'mode-fresh');
    const staged2 = folder(tempPathFor(fresh), { 'z.txt': 'z' });
    fs.chmodSync(staged2, 0o711);
    replaceDirSync(staged2, fresh);
    expect(fs.statSync(fresh).mode & 0o7777).toBe(0o711);
  });

  it('a swap that dies while removing the old copy leaves it under a staging name, never as an .old- copy', () => {
    const target = folder(path.join(tmp, 'rm-dies'), { 'old.txt': 'old' });
    const staged = folder(tempPathFor(target), { 'new.txt': 'new' });
    vi.spyOn(fs, 'rmSync').mockImplementation(() => {
      throw Object.assign(new Error('EIO: injected fault'), { code: 'EIO' });
    });
    expect(() => replaceDirSync(staged, target)).toThrow(/EIO/);
    vi.restoreAllMocks();
    expect(read(target, 'new.txt')).toBe('new');
    const left = siblings(target);
    expect(left).toHaveLength(1);
    expect(left[0]).toMatch(new RegExp(`^rm-dies\\.tmp-${process.pid}-[0-9a-f]{8}$`));
    fs.rmSync(path.join(tmp, left[0]!), { recursive: true });
  });
});

describe('recoverMovedAsideSync', () => {
  it('keeps an old copy when the target exists again (recreated by hand), and says where both are', () => {
    const target = folder(path.join(tmp, 'recreated'), { 'by-hand.txt': 'new, by hand' });
    const old = folder(`${target}.old-${deadPid}-0123abcd`, { 'chunk-00000/ids.txt': 'the only complete copy\n' });
    // What every write of the target runs first.
    removeStaleStagingSync(target);
    expect(read(old, 'chunk-00000/ids.txt')).toBe('the only complete copy\n');
    expect(read(target, 'by-hand.txt')).toBe('new, by hand');
    expect(recoverMovedAsideSync(target)).toEqual({ restored: null, kept: [old] });
    const notices = movedAsideNotices(target, 'recreated');
    expect(notices).toHaveLength(1);
    expect(notices[0]).toContain('recreated exists and so does');
    expect(notices[0]).toContain(old);
    // A swap into the target leaves the kept copy alone too.
    replaceDirSync(folder(tempPathFor(target), { 'swapped.txt': 's' }), target);
    expect(read(old, 'chunk-00000/ids.txt')).toBe('the only complete copy\n');
    // Once the user removes it, nothing more is said.
    fs.rmSync(old, { recursive: true });
    expect(movedAsideNotices(target)).toEqual([]);
  });

  it('with the target missing puts the newest old copy back and keeps the others', () => {
    const target = path.join(tmp, 'missing');
    const older = folder(`${target}.old-${deadPid}-00000001`, { 'v.txt': '1' });
    // ctime orders them, and file times tick coarsely (a jiffy): wait before making the newer one.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
    folder(`${target}.old-${deadPid}-00000002`, { 'v.txt': '2' });
    removeStaleStagingSync(target);
    expect(read(target, 'v.txt')).toBe('2');
    expect(read(older, 'v.txt')).toBe('1');
    expect(movedAsideNotices(target)).toHaveLength(1);
  });

  it('restores nothing while a live writer is between its renames (its own .old- copy is there)', () => {
    // The target is missing because a LIVE writer (this process's pid) moved it aside and has not
    // renamed its new folder in yet; a dead writer's older copy is also kept there. Restoring
    // that stale copy would put old contents in place and make the live writer's rename fail.
    const target = path.join(tmp, 'mid-swap');
    const stale = folder(`${target}.old-${deadPid}-0000000a`, { 'v.txt': 'v1 (stale)' });
    const live = folder(`${target}.old-${process.pid}-0000000b`, { 'v.txt': 'v2 (being replaced)' });
    removeStaleStagingSync(target);
    expect(fs.existsSync(target)).toBe(false);
    expect(recoverMovedAsideSync(target)).toEqual({ restored: null, kept: [stale] });
    // The live writer finishes: its new folder goes in, its old copy away; the stale one is kept.
    folder(target, { 'v.txt': 'v3 (new)' });
    fs.rmSync(live, { recursive: true });
    removeStaleStagingSync(target);
    expect(read(target, 'v.txt')).toBe('v3 (new)');
    expect(read(stale, 'v.txt')).toBe('v1 (stale)');
  });
});
