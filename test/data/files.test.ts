// Every loader refuses FIFOs and devices instead of blocking on them (issue 10: "readNpy on a
// FIFO hangs"; "non-regular files are refused by every loader"). The loaders run in a child
// process with a time limit, so a regression shows up as a failed test, not a hung run.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeNpySync } from '../../src/data/npy.js';
import { assertRegularFile, fileKind } from '../../src/io/files.js';

const root = path.resolve(import.meta.dirname, '../..');
const D = 1024;
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-files-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function mkfifo(file: string): void {
  const r = spawnSync('mkfifo', [file]);
  if (r.status !== 0) throw new Error(`mkfifo failed: ${r.stderr}`);
}

describe('non-regular files', () => {
  it('assertRegularFile names the kind of file', () => {
    const fifo = path.join(tmp, 'pipe');
    mkfifo(fifo);
    expect(fileKind(fs.statSync(fifo))).toBe('FIFO (named pipe)');
    expect(() => assertRegularFile(fifo, 'datastore')).toThrow(/Cannot read datastore .*pipe: it is a FIFO \(named pipe\), not a regular file/);
    expect(() => assertRegularFile(tmp, 'x')).toThrow(/it is a directory/);
    expect(() => assertRegularFile('/dev/null', 'x')).toThrow(/character device/);
    expect(() => assertRegularFile(path.join(tmp, 'nope'), 'x')).toThrow(expect.objectContaining({ code: 'RAPM_IO' }));
  });

  it('every loader refuses a FIFO or a device with RAPM_IO, without blocking', () => {
    // A DRAL folder whose one EN file is a FIFO, a chunk whose ids.txt / en.npy are FIFOs.
    const dral = path.join(tmp, 'dral');
    fs.mkdirSync(dral);
    writeNpySync(path.join(dral, 'ES_s1_a_features.npy'), new Float32Array(D), [D]);
    mkfifo(path.join(dral, 'EN_s1_a_features.npy'));
    const chunks = path.join(tmp, 'chunks');
    fs.mkdirSync(path.join(chunks, 'c0'), { recursive: true });
    writeNpySync(path.join(chunks, 'c0', 'es.npy'), new Float32Array(D), [1, D]);
    mkfifo(path.join(chunks, 'c0', 'en.npy'));
    mkfifo(path.join(chunks, 'c0', 'ids.txt'));
    // A good chunk beside it: --on-problem skip drops c0 and keeps c1.
    fs.mkdirSync(path.join(chunks, 'c1'));
    writeNpySync(path.join(chunks, 'c1', 'en.npy'), new Float32Array(D).fill(1), [1, D]);
    writeNpySync(path.join(chunks, 'c1', 'es.npy'), new Float32Array(D).fill(1), [1, D]);
    fs.writeFileSync(path.join(chunks, 'c1', 'ids.txt'), 'b\n');
    const fifo = path.join(tmp, 'x.npy');
    mkfifo(fifo);
    const lists = path.join(tmp, 'lists');
    fs.mkdirSync(lists);
    mkfifo(path.join(lists, 'train_filelist_en.txt'));

    const u = (p: string): string => JSON.stringify(pathToFileURL(path.join(root, p)).href);
    const script = `
      const npy = await import(${u('src/data/npy.ts')});
      const ds = await import(${u('src/data/dataset.ts')});
      const ch = await import(${u('src/data/chunks.ts')});
      const ps = await import(${u('src/retrieval/persist.ts')});
      const ox = await import(${u('src/fusion/onnx-session.ts')});
      const an = await import(${u('src/retrieval/ann.ts')});
      const out = {};
      const tryIt = async (name, f) => { try { await f(); out[name] = 'no error'; } catch (e) { out[name] = (e.code ?? '?') + ' ' + e.message; } };
      const fifo = ${JSON.stringify(fifo)};
      await tryIt('readNpy', () => npy.readNpy(fifo));
      await tryIt('readNpySync', () => npy.readNpySync(fifo));
      await tryIt('readNpyHeader', () => npy.readNpyHeader(fifo));
      await tryIt('readNpyHeaderSync', () => npy.readNpyHeaderSync(fifo));
      await tryIt('readNpyRows', () => npy.readNpyRows(fifo, 0, 1));
      await tryIt('readNpyInto', () => npy.readNpyInto(fifo, new Float32Array(1)));
      await tryIt('readNpyDevice', () => npy.readNpy('/dev/zero'));
      await tryIt('loadDral', () => ds.loadDral(${JSON.stringify(dral)}, { filelists: false }));
      await tryIt('loadDralFilelist', () => ds.loadDral(${JSON.stringify(dral)}, { filelistDir: ${JSON.stringify(lists)} }));
      await tryIt('loadChunks', () => ch.loadChunks(${JSON.stringify(chunks)}));
      try { out.loadChunksSkip = String((await ch.loadChunks(${JSON.stringify(chunks)}, { onProblem: 'skip' })).n); } catch (e) { out.loadChunksSkip = (e.code ?? '?') + ' ' + e.message; }
      await tryIt('loadDatastore', () => ps.loadDatastore(fifo));
      await tryIt('readDatastoreHeader', () => ps.readDatastoreHeader(fifo));
      const ld = await import(${u('src/data/load.ts')});
      await tryIt('filelistsFifo', () => ld.resolveDataLayout({ data: ${JSON.stringify(dral)}, filelists: fifo }));
      await tryIt('dataFifo', () => ld.resolveDataLayout(fifo));
      await tryIt('FusionSession', () => ox.FusionSession.create(fifo));
      await tryIt('AnnIndex', async () => an.AnnIndex.load(fifo));
      console.log(JSON.stringify(out));
    `;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, encoding: 'utf8', timeout: 50_000 });
    expect(r.error, 'the loaders finished (a FIFO read that blocks would time out here)').toBeUndefined();
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, string>;
    for (const k of ['readNpy', 'readNpySync', 'readNpyHeader', 'readNpyHeaderSync', 'readNpyRows', 'readNpyInto', 'loadDatastore', 'readDatastoreHeader', 'FusionSession', 'AnnIndex']) {
      expect(out[k], k).toMatch(/^RAPM_IO .*x\.npy: it is a FIFO \(named pipe\), not a regular file/);
    }
    expect(out.readNpyDevice).toMatch(/^RAPM_IO .*\/dev\/zero: it is a character device/);
    // A FIFO where a folder belongs is named as what it is (it used to read 'ENOENT: no such folder').
    expect(out.filelistsFifo).toMatch(/^RAPM_IO Cannot open filelist folder \(--filelists\) .*x\.npy \(ENOTDIR: not a folder but a FIFO \(named pipe\)\)/);
    expect(out.dataFifo).toMatch(/^RAPM_IO Cannot open dataset folder .*x\.npy \(ENOTDIR: not a folder but a FIFO/);
    // The DRAL loader lists the FIFO among its problems (one message), naming the file.
    expect(out.loadDral).toMatch(/^RAPM_DATA [\s\S]*unreadable file \(1\)[\s\S]*EN_s1_a_features\.npy: it is a FIFO/);
    expect(out.loadDralFilelist).toMatch(/^RAPM_IO .*train_filelist_en\.txt: it is a FIFO/);
    // A chunk's unreadable ids.txt is one of its problems (listed; skipped with the chunk), as a FIFO en.npy is.
    expect(out.loadChunks).toMatch(/^RAPM_DATA [\s\S]*chunk c0: [\s\S]*ids\.txt: it is a FIFO/);
    expect(out.loadChunksSkip).toBe('1');
  });
});
