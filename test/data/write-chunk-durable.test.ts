// writeChunk (used outside pack too: progressive's prepared chunks, generate) fsyncs every file of
// the chunk before the folder gets its final name, so a chunk that looks complete after a power
// loss never holds an empty ids.txt, speakers.txt, split.txt or meta.json.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { writeChunk } from '../../src/data/chunks.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-chunk-sync-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());

describe('writeChunk', () => {
  it('fsyncs every file and the folder before the rename that publishes the chunk', async () => {
    const synced = new Set<number>();
    let atRename: { p: string; ino: number }[] | null = null;
    const realFsync = fs.fsyncSync;
    const realRename = fs.renameSync;
    const final = path.join(tmp, 'chunk-00000');
    vi.spyOn(fs, 'fsyncSync').mockImplementation((fd) => {
      synced.add(fs.fstatSync(fd).ino);
      return realFsync(fd);
    });
    vi.spyOn(fs, 'renameSync').mockImplementation((from, to) => {
      if (path.resolve(String(to)) === final) {
        const here = String(from);
        atRename = [{ p: here, ino: fs.statSync(here).ino }, ...fs.readdirSync(here).map((n) => ({ p: path.join(here, n), ino: fs.statSync(path.join(here, n)).ino }))];
      }
      return realRename(from, to);
    });
    const n = 3, dim = 4;
    await writeChunk(tmp, 'chunk-00000', { ids: ['a', 'b', 'c'], speakers: ['s1', 's1', 's2'], split: ['train', 'train', 'test'], en: new Float32Array(n * dim).fill(1), es: new Float32Array(n * dim).fill(2) }, { dim });
    vi.restoreAllMocks();
    expect(atRename, 'the publishing rename was seen').not.toBeNull();
    const names = atRename!.map(({ p }) => path.basename(p)).slice(1).sort();
    expect(names).toEqual(['en.npy', 'es.npy', 'ids.txt', 'meta.json', 'speakers.txt', 'split.txt']);
    expect(atRename!.filter(({ ino }) => !synced.has(ino)).map(({ p }) => path.basename(p))).toEqual([]);
    expect(fs.readFileSync(path.join(final, 'ids.txt'), 'utf8')).toBe('a\nb\nc\n');
  });
});
