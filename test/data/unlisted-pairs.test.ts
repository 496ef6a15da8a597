// One rule for DRAL pairs listed in neither filelist: they are not part of the official split
// and are left out by every consumer (loadDataset, pack, progressive --initial), with a notice.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadChunks } from '../../src/data/chunks.js';
import { generate } from '../../src/data/generate.js';
import { loadDataset } from '../../src/data/load.js';
import { packDral } from '../../src/data/pack.js';
import { officialSplit } from '../../src/data/split.js';
import { openSources } from '../../src/experiments/progressive-sources.js';
import { run } from '../helpers/cli.js';

let tmp: string;
let dral: string;
const extra = ['s000_9001', 's001_9002'];
beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-unlisted-'));
  dral = path.join(tmp, 'dral');
  await generate({ out: dral, pairs: 30, testPairs: 6, seed: 1, speakers: 3, format: 'dral' });
  // Two more pairs, copies of a listed one under new ids that neither filelist names.
  const first = fs.readFileSync(path.join(dral, 'train_filelist_en.txt'), 'utf8').split('\n')[0]!.replace(/^EN_(.+)\.wav$/, '$1');
  for (const id of extra) {
    for (const lang of ['EN', 'ES']) fs.copyFileSync(path.join(dral, `${lang}_${first}_features.npy`), path.join(dral, `${lang}_${id}_features.npy`));
  }
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const NOTICE = /^2 pairs are in neither filelist \(train_filelist_en\.txt, test_filelist_en\.txt\); left out: s000_9001, s001_9002$/;

describe('pairs in neither filelist', () => {
  it('loadDataset leaves them out and says so in one notice line', async () => {
    const ds = await loadDataset(dral);
    expect(ds.n).toBe(30);
    for (const id of extra) expect(ds.ids).not.toContain(id);
    expect(ds.notices).toHaveLength(1);
    expect(ds.notices![0]).toMatch(NOTICE);
    const s = officialSplit(ds);
    expect(s.train.length + s.test.length).toBe(ds.n);
  });

  it('pack leaves them out too (they are not packed as training pairs) and returns the notice', async () => {
    const out = path.join(tmp, 'packed');
    const r = await packDral([dral], out, { chunkSize: 50 });
    expect(r.rows).toBe(30);
    expect(r.testRows).toBe(6);
    expect(r.notices).toHaveLength(1);
    expect(r.notices[0]).toContain(`${dral}: 2 pairs are in neither filelist`);
    const packed = await loadChunks(out);
    for (const id of extra) expect(packed.ids).not.toContain(id);
    expect(packed.official!.train).toHaveLength(24);
  });

  it('the CLI prints the notice: index, pack and progressive --initial', async () => {
    const line = /rapm: warning: .*dral: 2 pairs are in neither filelist .*left out: s000_9001, s001_9002/;
    const idx = await run(['index', '--data', dral, '--out', path.join(tmp, 'bundle'), '-k', '5']);
    expect(idx.code, idx.stderr).toBe(0);
    expect(idx.stderr).toMatch(line);
    const pk = await run(['pack', dral, '--out', path.join(tmp, 'packed-cli')]);
    expect(pk.code, pk.stderr).toBe(0);
    expect(pk.stderr).toMatch(line);
    const warnings: string[] = [];
    await openSources({ initial: dral, warn: (l) => warnings.push(l) });
    expect(warnings.some((l) => /^initial set .*dral: 2 pairs are in neither filelist/.test(l))).toBe(true);
  }, 60_000);

  it('progressive --initial does not train on them', async () => {
    const src = await openSources({ initial: dral });
    const ids: string[] = [];
    for await (const c of src.iterate()) ids.push(...c.ids);
    expect(ids).toHaveLength(30);
    for (const id of extra) expect(ids).not.toContain(id);
  });
});
