import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { RapmError, isRapmError } from '../errors.js';

/** `<file>.tmp-<pid>-<random>`: the temporary name a file is written under before its rename. */
export function tempPathFor(file: string): string {
  return `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** Escape a string for use inside a RegExp. */
const reEscape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Is process `pid` alive on this machine? (EPERM: it exists but belongs to another user.) */
function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/**
 * Temporary files of `file` (exactly tempPathFor's pattern, `<name>.tmp-<pid>-<8 hex>`, in
 * the same folder) whose writer process is dead: left by a save that was killed (kill -9,
 * power loss) before it could remove its temporary. Never another target's temporaries, never
 * other files, never those of a live process (a concurrent save, in this process or another,
 * keeps its temporary). A recycled pid only makes a stale temporary wait for a later save.
 * Pids are this machine's: on a folder shared by several hosts, don't write one target
 * from two hosts at once.
 */
function staleTemps(file: string, names: readonly string[]): string[] {
  const re = new RegExp(`^${reEscape(path.basename(file))}\\.tmp-(\\d{1,10})-[0-9a-f]{8}$`);
  const out: string[] = [];
  for (const name of names) {
    const m = re.exec(name);
    if (m && !pidAlive(Number(m[1]))) out.push(path.join(path.dirname(file), name));
  }
  return out;
}

/** Remove the stale temporaries of `file` (see staleTemps); best effort, returns those removed. */
export function removeStaleTempsSync(file: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(path.dirname(file));
  } catch {
    return []; // no folder yet: the write itself reports it
  }
  return staleTemps(file, names).filter((t) => {
    try {
      fs.unlinkSync(t);
      return true;
    } catch {
      return false; // removed meanwhile by another save, or not ours to remove
    }
  });
}

/**
 * Remove the staging folders of `target` that a killed write left behind (kill -9 of train /
 * index / pack between mkdir and rename): tempPathFor's name (see staleTemps) beside it, a real
 * folder (not a link), its writer dead. Best effort; returns the folders removed. First the
 * old copies a killed replaceDirSync moved aside are dealt with (recoverMovedAsideSync): put
 * back when `target` is missing, kept beside it when it exists (warn with movedAsideNotices),
 * so the previous output is never lost.
 */
export function removeStaleStagingSync(target: string): string[] {
  const abs = path.resolve(target);
  recoverMovedAsideSync(abs);
  let names: string[];
  try {
    names = fs.readdirSync(path.dirname(abs));
  } catch {
    return [];
  }
  return staleTemps(abs, names).filter((p) => {
    try {
      if (!fs.lstatSync(p).isDirectory()) return false;
      fs.rmSync(p, { recursive: true, force: true });
      return true;
    } catch {
      return false; // removed meanwhile by another write, or not ours to remove
    }
  });
}

/**
 * Is `name` a side copy of another entry in its folder: a temporary (tempPathFor,
 * `<name>.tmp-<pid>-<8 hex>`) or a previous folder moved aside by replaceDirSync
 * (`<name>.old-<pid>-<8 hex>`)? Folder listings that read entries as data (listChunks) skip them.
 */
export function isSideCopyName(name: string): boolean {
  return /\.(tmp|old)-\d{1,10}-[0-9a-f]{8}$/.test(name);
}

/** `<target>.old-<pid>-<8 hex>`: where replaceDirSync moves the previous `target` while it swaps. */
function movedAsidePathFor(target: string): string {
  return `${target}.old-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** Does anything (a file, folder or link, even dangling) exist at `p`? */
function lexists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/** fsync a folder (its entries, after renames); a platform that cannot is left alone: the renames are still atomic. */
export function fsyncDirSync(dir: string): void {
  let fd = -1;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    /* not supported here */
  } finally {
    if (fd >= 0) fs.closeSync(fd);
  }
}

/**
 * The old copies of `target` a killed replaceDirSync left (real folders named
 * `<target>.old-<pid>-<hex>` whose writer is dead), newest first.
 */
export function movedAsideCopies(target: string): { p: string; t: number }[] {
  return movedAside(target).dead;
}

/** `<target>.old-<pid>-<hex>` siblings: folders of dead writers (movedAsideCopies), and whether a live writer has one (it is between its swap's renames). */
function movedAside(target: string): { dead: { p: string; t: number }[]; liveWriter: boolean } {
  const abs = path.resolve(target);
  const re = new RegExp(`^${reEscape(path.basename(abs))}\\.old-(\\d{1,10})-[0-9a-f]{8}$`);
  let names: string[];
  try {
    names = fs.readdirSync(path.dirname(abs));
  } catch {
    return { dead: [], liveWriter: false };
  }
  const olds: { p: string; t: number }[] = [];
  let liveWriter = false;
  for (const name of names) {
    const m = re.exec(name);
    if (!m) continue;
    if (pidAlive(Number(m[1]))) {
      liveWriter = true;
      continue;
    }
    const p = path.join(path.dirname(abs), name);
    try {
      const st = fs.lstatSync(p);
      if (st.isDirectory()) olds.push({ p, t: st.ctimeMs });
    } catch {
      /* gone meanwhile */
    }
  }
  return { dead: olds.sort((a, b) => b.t - a.t), liveWriter };
}

/**
 * The old copies of `target` that a killed replaceDirSync left (`<target>.old-<pid>-<hex>`,
 * a real folder, its writer dead). replaceDirSync renames its old copy out of the `.old-` name
 * (to a staging name) before it deletes it, so an `.old-` folder is always complete: the
 * previous contents of `target`, moved aside by a write killed between the swap's two renames.
 * When `target` is missing the newest old copy is renamed back. When `target` exists (someone
 * recreated it by hand, or another write made it, after the kill) the old copies are KEPT, not
 * deleted: `target` may be a partial or unrelated folder, and an old copy may be the user's
 * only complete copy of the previous output. Deleting here is not ours to decide, and refusing
 * every later write until someone looks would block a user who meant to recreate `target`; so
 * both stay and the caller warns, naming both paths (movedAsideNotices). A live writer's old
 * copy is never touched, and nothing is restored while one exists (it is mid-swap). Best effort; returns what it restored and what it kept.
 */
export function recoverMovedAsideSync(target: string): { restored: string | null; kept: string[] } {
  const abs = path.resolve(target);
  const { dead: olds, liveWriter } = movedAside(abs);
  let restored: string | null = null;
  // `target` is also missing while a LIVE writer is between its two renames (its own `.old-`
  // folder is there): restoring a dead writer's older copy then would put stale contents in
  // place and make the live writer's rename fail. Left for a later write to look at again.
  if (olds.length > 0 && !liveWriter && !lexists(abs)) {
    try {
      fs.renameSync(olds[0]!.p, abs);
      restored = olds.shift()!.p;
    } catch {
      /* another process restored it (or wrote target) first: the copy stays, looked at again next time */
    }
  }
  return { restored, kept: olds.map(({ p }) => p) };
}

/**
 * Warnings for the old copies of `target` kept beside an existing `target` (see
 * recoverMovedAsideSync), one per copy, naming both paths; `shown` is how the caller names
 * `target` (the path the user gave). Empty when there is nothing to say.
 */
export function movedAsideNotices(target: string, shown: string = target): string[] {
  if (!lexists(path.resolve(target))) return [];
  return movedAsideCopies(target).map(
    ({ p }) => `${shown} exists and so does ${p}, the complete previous contents of ${shown} that an interrupted write moved aside; both are kept: remove ${p} once you no longer need it`,
  );
}

/**
 * fsync every file and folder in the tree `dir` (a staging folder about to be swapped in),
 * folders after their entries, `dir` itself last: one fsync per file and per folder, so after
 * the swap's rename no file in a folder that looks complete can be empty or short after a
 * power loss. Links are not followed. A file already synced by its writer (atomicWrite) costs a
 * second fsync that writes nothing. Folders whose fsync the platform does not support are left
 * alone (fsyncDirSync); a file whose fsync fails throws.
 */
export function fsyncTreeSync(dir: string): void {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) fsyncTreeSync(p);
    else if (e.isFile()) {
      // Windows flushes only through a handle opened for writing; POSIX fsyncs a read-only one.
      const fd = fs.openSync(p, process.platform === 'win32' ? 'r+' : 'r');
      try {
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    }
  }
  fsyncDirSync(dir);
}

/**
 * Put the finished folder `staged` (a sibling of `target` on the same file system) in place of
 * `target`, the one swap every folder output uses (pack, bundles). First `staged` gets the
 * mode of the folder it replaces (an existing `target`: a folder made 0750 stays 0750), and
 * every file and folder in it is fsynced (fsyncTreeSync), so the folder that appears at
 * `target` never holds empty or short files after a power loss. An existing `target` is then
 * renamed aside to `<target>.old-<pid>-<hex>`, `staged` is renamed to `target`, and only then is
 * the old copy renamed to a staging name (tempPathFor) and removed: the old folder stays complete
 * until the new one is in place, and an `.old-` folder is always a complete one. If the second
 * rename fails the old folder is renamed back. A process killed between the two renames leaves
 * `target` missing and the old copy complete; the next write of `target` puts it back
 * (recoverMovedAsideSync, via removeStaleStagingSync); one killed while removing the old copy
 * leaves a staging folder that the next write removes.
 */
export function replaceDirSync(staged: string, target: string): void {
  let before: fs.Stats | null = null;
  try {
    before = fs.lstatSync(target);
  } catch {
    /* no target: nothing to copy, nothing to move aside */
  }
  if (before?.isDirectory()) fs.chmodSync(staged, before.mode & 0o7777);
  fsyncTreeSync(staged);
  let old: string | null = null;
  if (before !== null) {
    old = movedAsidePathFor(target);
    fs.renameSync(target, old);
  }
  // Test hook (test/cli/pack-swap.test.ts): stop between the two renames, so a test can kill -9 here.
  // Only a swap that moved an old folder aside has a "between": new folders (a pack's chunks
  // inside its stage) go straight in.
  const pause = process.env.RAPM_TEST_PAUSE_IN_SWAP;
  if (pause && old !== null) {
    // Written whole, then renamed: a test polling for the marker never reads it half written.
    fs.writeFileSync(`${pause}.part`, `${process.pid}\n${old ?? ''}\n`);
    fs.renameSync(`${pause}.part`, pause);
    const cell = new Int32Array(new SharedArrayBuffer(4));
    for (;;) Atomics.wait(cell, 0, 0, 1000);
  }
  try {
    fs.renameSync(staged, target);
  } catch (e) {
    if (old !== null) {
      try {
        fs.renameSync(old, target); // put the old folder back
      } catch {
        /* target was taken meanwhile (a concurrent write): the old copy stays, complete, and is reported by the next write */
      }
    }
    throw e;
  }
  fsyncDirSync(path.dirname(target));
  if (old !== null) {
    // Out of the `.old-` name first: a kill during the (long) removal then leaves a partial
    // folder under a staging name, which the next write removes, never a partial `.old-` folder
    // that recoverMovedAsideSync would take for a complete previous copy.
    let trash = old;
    try {
      trash = tempPathFor(target);
      fs.renameSync(old, trash);
    } catch {
      trash = old; // could not rename: remove it where it is
    }
    fs.rmSync(trash, { recursive: true, force: true });
  }
}

/** Async form of removeStaleTempsSync. */
export async function removeStaleTemps(file: string): Promise<string[]> {
  let names: string[];
  try {
    names = await fs.promises.readdir(path.dirname(file));
  } catch {
    return [];
  }
  const removed = await Promise.all(staleTemps(file, names).map((t) => fs.promises.unlink(t).then(() => t, () => null)));
  return removed.filter((t): t is string => t !== null);
}

/** Wrap a Node fs error as RAPM_IO naming the file and the operation; rapm errors pass through. */
export function ioError(op: string, file: string, e: unknown): Error {
  if (isRapmError(e)) return e;
  const err = e as NodeJS.ErrnoException;
  // Node's own messages already start with the code ('ENOSPC: no space left on device, ...'):
  // prefixing it again printed 'ENOSPC: ENOSPC: ...'.
  const why = err && err.code ? (String(err.message).startsWith(err.code) ? err.message : `${err.code}: ${err.message}`) : String(e);
  return new RapmError('RAPM_IO', `Cannot ${op} ${file} (${why})`, { cause: e });
}

/** What kind of file a Stats is, in words. */
export function fileKind(st: fs.Stats): string {
  if (st.isFile()) return 'regular file';
  if (st.isDirectory()) return 'directory';
  if (st.isFIFO()) return 'FIFO (named pipe)';
  if (st.isSocket()) return 'socket';
  if (st.isCharacterDevice()) return 'character device';
  if (st.isBlockDevice()) return 'block device';
  if (st.isSymbolicLink()) return 'symbolic link';
  return 'special file';
}

/**
 * The path a write by rename lands on: `file` itself when absent or a regular file; through a
 * symbolic link, the regular file it points at (so the link stays a link and its target gets
 * the new contents). Anything else is refused with RAPM_IO: a rename would replace a device
 * (save('/dev/null') as root replaced the device with a file), a FIFO, a socket or a folder, and
 * a dangling link or a loop of links has no file to write.
 */
export function writeTarget(file: string): string {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return file;
    throw ioError('stat', file, e);
  }
  let target = file;
  if (st.isSymbolicLink()) {
    try {
      target = fs.realpathSync(file);
      st = fs.statSync(target);
    } catch (e) {
      throw new RapmError('RAPM_IO', `Cannot write ${file}: it is a symbolic link to nothing or a loop of links (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { cause: e });
    }
  }
  if (!st.isFile()) throw new RapmError('RAPM_IO', `Cannot write ${file}: it is a ${fileKind(st)}, not a regular file, and writing would replace it`);
  return target;
}

/**
 * Write a file atomically: `write(fd)` fills a temporary file beside `file`, which is then
 * renamed over `file` (through a symbolic link: over its target; a device, FIFO, socket or
 * folder at `file` is refused, see writeTarget). On any failure the temporary file is removed and `file` keeps its old
 * contents (or stays absent). Readers never see a half-written file. A process killed
 * mid-write can't remove its temporary: the next write to the same `file` does (see staleTemps).
 */
export function atomicWriteSync(file: string, write: (fd: number) => void): void {
  const dest = writeTarget(file); // a regular file, absent, or a link's regular target
  removeStaleTempsSync(dest);
  const tmp = tempPathFor(dest);
  let fd = -1;
  try {
    fd = fs.openSync(tmp, 'wx');
    write(fd);
    fs.fsyncSync(fd); // the bytes are on disk before the name points at them
    fs.closeSync(fd);
    fd = -1;
    fs.renameSync(tmp, dest);
  } catch (e) {
    if (fd >= 0) {
      try {
        fs.closeSync(fd);
      } catch {
        /* already failing */
      }
    }
    try {
      fs.unlinkSync(tmp);
    } catch {
      /* not created */
    }
    throw ioError('write', file, e);
  }
}

/** Async form of atomicWriteSync. */
export async function atomicWrite(file: string, write: (fh: fs.promises.FileHandle) => Promise<void>): Promise<void> {
  const dest = writeTarget(file); // a regular file, absent, or a link's regular target
  await removeStaleTemps(dest);
  const tmp = tempPathFor(dest);
  let fh: fs.promises.FileHandle | undefined;
  try {
    fh = await fs.promises.open(tmp, 'wx');
    await write(fh);
    await fh.sync();
    await fh.close();
    fh = undefined;
    await fs.promises.rename(tmp, dest);
  } catch (e) {
    if (fh) await fh.close().catch(() => undefined);
    await fs.promises.unlink(tmp).catch(() => undefined);
    throw ioError('write', file, e);
  }
}

/** Write a whole text or byte payload atomically. */
export function writeFileAtomicSync(file: string, data: string | Uint8Array): void {
  atomicWriteSync(file, (fd) => {
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    writeAllSync(fd, buf, 0);
  });
}

/** Write every byte of `buf` at `position` (loops over short writes). */
export function writeAllSync(fd: number, buf: Uint8Array, position: number): void {
  let off = 0;
  while (off < buf.length) {
    const n = fs.writeSync(fd, buf, off, Math.min(buf.length - off, 1 << 30), position + off);
    if (n <= 0) throw new Error('short write');
    off += n;
  }
}

/** Make `dir` and its parents; RAPM_IO on failure. */
export function ensureDir(dir: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw ioError('create directory', dir, e);
  }
}

/** Byte view of a typed array without copying. */
export function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** `dir/name`, for messages and joins in one place. */
export function join(dir: string, name: string): string {
  return path.join(dir, name);
}
