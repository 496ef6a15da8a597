/**
 * Every loader reads regular files only. A FIFO, socket or device would block forever (a FIFO
 * with no writer) or stream without end (/dev/zero); a directory gives a confusing EISDIR
 * later. `assertRegularFile` is the one check every loader calls before it opens a file;
 * `openRegularSync` / `openRegular` also close the race between that check and the open: they
 * open with O_NONBLOCK (which never blocks on a FIFO and changes nothing for regular files) and
 * check the opened descriptor.
 */
import fs from 'node:fs';
import path from 'node:path';
import { RapmError } from '../errors.js';
import { fileKind, ioError } from './atomic.js';

export { fileKind } from './atomic.js';

function notRegular(file: string, what: string, st: fs.Stats): RapmError {
  return new RapmError('RAPM_IO', `Cannot read ${what} ${file}: it is a ${fileKind(st)}, not a regular file`);
}

/**
 * Throw RAPM_IO unless `file` is a regular file (symbolic links are followed). `what` names
 * the file in the message ("datastore", "ONNX model", ...).
 */
export function assertRegularFile(file: string, what = 'file'): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (e) {
    throw ioError(`read ${what}`, file, e);
  }
  if (!st.isFile()) throw notRegular(file, what, st);
}

const O_NONBLOCK = fs.constants.O_NONBLOCK ?? 0;

/** Open `file` read-only, refusing anything but a regular file without ever blocking on it. */
export function openRegularSync(file: string, what = 'file'): number {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | O_NONBLOCK);
  } catch (e) {
    throw ioError(`open ${what}`, file, e);
  }
  let st: fs.Stats;
  try {
    st = fs.fstatSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    throw ioError(`stat ${what}`, file, e);
  }
  if (!st.isFile()) {
    fs.closeSync(fd);
    throw notRegular(file, what, st);
  }
  return fd;
}

/** Async form of openRegularSync. */
export async function openRegular(file: string, what = 'file'): Promise<fs.promises.FileHandle> {
  let fh: fs.promises.FileHandle;
  try {
    fh = await fs.promises.open(file, fs.constants.O_RDONLY | O_NONBLOCK);
  } catch (e) {
    throw ioError(`open ${what}`, file, e);
  }
  let st: fs.Stats;
  try {
    st = await fh.stat();
  } catch (e) {
    await fh.close().catch(() => undefined);
    throw ioError(`stat ${what}`, file, e);
  }
  if (!st.isFile()) {
    await fh.close().catch(() => undefined);
    throw notRegular(file, what, st);
  }
  return fh;
}

/**
 * Read a whole text file that must be a regular file (filelists, ids.txt, meta.json). A leading
 * UTF-8 byte-order mark (Notepad, pandas' utf-8-sig) is dropped: it would otherwise become part
 * of the first id, or make JSON.parse fail, though nothing of it shows.
 */
export function readTextFileSync(file: string, what = 'file'): string {
  const fd = openRegularSync(file, what);
  try {
    const text = fs.readFileSync(fd, 'utf8');
    return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  } catch (e) {
    throw ioError(`read ${what}`, file, e);
  } finally {
    fs.closeSync(fd);
  }
}

/** Read a whole binary file that must be a regular file (never blocking on a FIFO). */
export async function readRegularFile(file: string, what = 'file'): Promise<Buffer> {
  const fh = await openRegular(file, what);
  try {
    return await fh.readFile();
  } catch (e) {
    throw ioError(`read ${what}`, file, e);
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/** Read a whole binary file that must be a regular file (sync form of readRegularFile). */
export function readRegularFileSync(file: string, what = 'file'): Buffer {
  const fd = openRegularSync(file, what);
  try {
    return fs.readFileSync(fd);
  } catch (e) {
    throw ioError(`read ${what}`, file, e);
  } finally {
    fs.closeSync(fd);
  }
}

/** `p` with symlinks resolved as far as it exists (the rest appended): where it really is, even before it is created. */
export function realPath(p: string): string {
  const abs = path.resolve(p);
  try {
    return fs.realpathSync(abs);
  } catch {
    const parent = path.dirname(abs);
    return parent === abs ? abs : path.join(realPath(parent), path.basename(abs));
  }
}

/** Whether `child` is `parent` ('same') or inside it ('inside'), symlinks resolved (realPath); null otherwise. */
export function insideOf(child: string, parent: string): 'same' | 'inside' | null {
  const rel = path.relative(realPath(parent), realPath(child));
  if (rel === '') return 'same';
  return rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel) ? 'inside' : null;
}
