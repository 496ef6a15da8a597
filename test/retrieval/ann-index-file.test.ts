// --ann-index FILE: the index is saved with a record of its factory and datastore
// (<file>.json), and loading it over another datastore, or under another factory, is refused.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { faissAvailable } from '../../src/retrieval/ann.js';
import { Datastore } from '../../src/retrieval/datastore.js';
import { openNeighborSource } from '../../src/retrieval/sources.js';
import { randn } from '../helpers/random.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-annfile-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

// Without faiss-node (scripts/build-faiss-node.sh) there is no ANN index to save; CI builds it.
describe.skipIf(!faissAvailable())('--ann-index files', () => {
  const n = 300, d = 16;
  const store = (seed: number, prefix: string) => {
    const ds = new Datastore({ keyDim: d, valueDim: 2 });
    ds.addSync(randn(n * d, seed), randn(n * 2, seed + 1), Array.from({ length: n }, (_, r) => `${prefix}-${r}`));
    return ds;
  };

  it('reload checks the record: same datastore and factory load; another datastore or factory is refused', async () => {
    const file = path.join(tmp, 'idx.faiss');
    const a = store(1, 'a');
    const lines: string[] = [];
    const log = (l: string) => lines.push(l);
    expect(await openNeighborSource(a, { ann: 'HNSW8,Flat', annIndex: file, log })).not.toBeNull();
    expect(JSON.parse(fs.readFileSync(`${file}.json`, 'utf8'))).toMatchObject({ format: 'rapm-ann-index', factory: 'HNSW8,Flat', rows: n });
    await openNeighborSource(a, { ann: 'HNSW8,Flat', annIndex: file, log });
    expect(lines.some((l) => l.startsWith(`approximate index loaded from ${file}`))).toBe(true);
    // The same shape, other data and ids: it used to load and serve a's neighbours under b's ids.
    await expect(openNeighborSource(store(5, 'b'), { ann: 'HNSW8,Flat', annIndex: file, log })).rejects.toMatchObject({ code: 'RAPM_DATA', message: expect.stringMatching(/idx\.faiss was built over another datastore/) });
    // Another factory: it used to load the HNSW file and report it as IVF.
    await expect(openNeighborSource(a, { ann: 'IVF4,Flat', annIndex: file, log })).rejects.toMatchObject({ code: 'RAPM_DATA', message: expect.stringMatching(/was built with --ann HNSW8,Flat, not IVF4,Flat/) });
    // No record (an index from before records, or from faiss itself): loaded, with a warning.
    fs.rmSync(`${file}.json`);
    lines.length = 0;
    await openNeighborSource(a, { ann: 'HNSW8,Flat', annIndex: file, log });
    expect(lines[0]).toMatch(/warning: .*idx\.faiss\.json is missing/);
  });

  it('a path the index cannot be saved to is refused before the build, not after it', async () => {
    const lines: string[] = [];
    await expect(openNeighborSource(store(1, 'a'), { ann: 'HNSW8,Flat', annIndex: path.join(tmp, 'no', 'such', 'idx.faiss'), log: (l) => lines.push(l) })).rejects.toMatchObject({ code: 'RAPM_IO', message: expect.stringMatching(/\(--ann-index\): its folder .* does not exist/) });
    const dangling = path.join(tmp, 'dangling.faiss');
    fs.symlinkSync(path.join(tmp, 'nowhere', 'x'), dangling);
    await expect(openNeighborSource(store(1, 'a'), { ann: 'HNSW8,Flat', annIndex: dangling, log: (l) => lines.push(l) })).rejects.toMatchObject({ code: 'RAPM_IO', message: expect.stringMatching(/symbolic link to nothing/) });
    expect(lines.some((l) => l.startsWith('building'))).toBe(false);
  });
});
