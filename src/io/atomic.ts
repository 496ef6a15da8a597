import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { RapmError } from '../errors.js';

/**
 * Write a file so that readers only ever see the old or the whole new content:
 * write a temp file next to it, fsync, rename over the target, fsync the folder.
 * On failure the temp file is removed and the target is untouched.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array | Iterable<Uint8Array>): Promise<void> {
  const dir = path.dirname(path.resolve(file));
  const tmp = path.join(dir, `.${path.basename(file)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    await mkdir(dir, { recursive: true });
    const fh = await open(tmp, 'w');
    try {
      if (typeof data === 'string' || data instanceof Uint8Array) {
        await fh.writeFile(data);
      } else {
        for (const chunk of data) await fh.write(chunk);
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    const err = e as NodeJS.ErrnoException;
    throw new RapmError('RAPM_IO', `Could not write ${file}: ${err.code ?? ''} ${err.message}`.trim(), { cause: e });
  }
  try {
    const dh = await open(dir, 'r');
    await dh.sync().finally(() => dh.close());
  } catch {
    // Directory fsync is best-effort (not supported on every platform).
  }
}
