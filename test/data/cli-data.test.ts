// The data flags on the command line: --features/--filelists, --split, --on-problem skip,
// --pool-frames mean, and errors that name flags (not library functions).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate } from '../../src/data/generate.js';
import { readNpySync, writeNpySync } from '../../src/data/npy.js';
import { run } from '../helpers/cli.js';

let tmp: string;
let features: string;
let lists: string;
beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-cli-data-'));
  const flat = path.join(tmp, 'flat');
  await generate({ out: flat, pairs: 300, testPairs: 60, seed: 4, speakers: 10, format: 'dral' });
  // The reference layout: features in one folder, filelists in another.
  features = path.join(tmp, 'release', 'features');
  lists = path.join(tmp, 'release', 'lists');
  fs.mkdirSync(features, { recursive: true });
  fs.mkdirSync(lists);
  for (const f of fs.readdirSync(flat)) {
    if (f.endsWith('.npy')) fs.renameSync(path.join(flat, f), path.join(features, f));
    else if (f.endsWith('_filelist_en.txt')) fs.renameSync(path.join(flat, f), path.join(lists, f));
  }
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const grid = (out: string, ...extra: string[]): string[] => ['grid', '--ks', '5', '--taus', '0.04', '--out', path.join(tmp, out), '--quiet', ...extra];

describe('data flags', () => {
  it('--features DIR --filelists DIR read the reference layout in place', async () => {
    const r = await run(grid('g1', '--features', features, '--filelists', lists));
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(fs.readFileSync(path.join(tmp, 'g1', 'results.json'), 'utf8')) as { rows: { n?: number }[]; record: { dataSource: string } };
    expect(res.record.dataSource).toBe(path.resolve(features));
  });

  it('without filelists the error names --split; --split speaker|random makes the split', async () => {
    const r = await run(grid('g2', '--features', features));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no official split .*pass --split speaker .* or --split random, seeded by --seed, or give the filelists with --filelists DIR/);
    expect(r.stderr).toContain('[RAPM_DATA]');
    for (const split of ['speaker', 'random']) {
      const ok = await run(grid(`g3-${split}`, '--features', features, '--split', split));
      expect(ok.code, ok.stderr).toBe(0);
    }
    const bad = await run(grid('g4', '--features', features, '--split', 'halves'));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--split must be one of speaker, random/);
    const both = await run(grid('g5', '--features', features, '--data', features));
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/either --data DIR or --features DIR/);
  });

  it('--on-problem skip drops and counts bad pairs; the default lists them and names the flag', async () => {
    const broken = path.join(tmp, 'broken');
    fs.cpSync(features, broken, { recursive: true });
    const names = fs.readdirSync(broken).filter((f) => f.startsWith('EN_')).sort();
    fs.writeFileSync(path.join(broken, names[0]!), 'not numpy');
    fs.rmSync(path.join(broken, names[1]!.replace(/^EN_/, 'ES_')));
    const fail = await run(grid('s1', '--features', broken, '--filelists', lists));
    expect(fail.code).toBe(1);
    expect(fail.stderr).toMatch(/pass --on-problem skip to drop the affected pairs/);
    const skip = await run(grid('s2', '--features', broken, '--filelists', lists, '--on-problem', 'skip'));
    expect(skip.code, skip.stderr).toBe(0);
    expect(skip.stderr).toMatch(/warning: .*--on-problem skip dropped 2 pair\(s\) for 3 problem\(s\) .*; 298 pairs kept/);
  });

  it('--pool-frames mean averages frame-level files; without it they are refused with that advice', async () => {
    const frames = path.join(tmp, 'frames');
    fs.cpSync(features, frames, { recursive: true });
    for (const f of fs.readdirSync(frames).filter((n) => n.startsWith('EN_'))) {
      const v = readNpySync(path.join(frames, f)).data as Float32Array;
      const two = new Float32Array(2 * 1024);
      for (let j = 0; j < 1024; j++) {
        two[j] = v[j]! - 0.5;
        two[1024 + j] = v[j]! + 0.5; // mean = the original vector
      }
      writeNpySync(path.join(frames, f), two, [2, 1024]);
    }
    const refused = await run(grid('p1', '--features', frames, '--filelists', lists));
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/frame-level features \(T x 1024\).*pass --pool-frames mean/);
    const pooled = await run(grid('p2', '--features', frames, '--filelists', lists, '--pool-frames', 'mean'));
    expect(pooled.code, pooled.stderr).toBe(0);
    const plain = await run(grid('p3', '--features', features, '--filelists', lists));
    expect(plain.code).toBe(0);
    const rows = (dir: string) => (JSON.parse(fs.readFileSync(path.join(tmp, dir, 'results.json'), 'utf8')) as { rows: Record<string, unknown>[] }).rows;
    const a = rows('p2').map((r) => Number(r.cosine ?? r.mean ?? r.plain));
    const b = rows('p3').map((r) => Number(r.cosine ?? r.mean ?? r.plain));
    expect(a.every(Number.isFinite)).toBe(true);
    for (let i = 0; i < a.length; i++) expect(a[i]).toBeCloseTo(b[i]!, 5);
  });
});

describe('progressive data flags', () => {
  it('--allow-overlap runs and warns even with --quiet; without it the overlap is refused before any training', async () => {
    const chunks = path.join(tmp, 'overlap-chunks');
    const packed = await run(['pack', path.join(tmp, 'release', 'features'), '--filelists', lists, '--out', chunks, '--chunk-size', '150', '--quiet']);
    expect(packed.code, packed.stderr).toBe(0);
    expect(packed.stdout).toMatch(/Packed 300 pairs \(60 of them test pairs from the filelists\) into 2 chunk folder\(s\)/);
    const again = await run(['pack', path.join(tmp, 'release', 'features'), '--out', chunks, '--quiet']);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/already holds 2 chunk folder\(s\); pass --overwrite/);
    const base = ['progressive', '--initial', path.join(tmp, 'release'), '--filelists', lists, '--chunks', chunks, '--max-steps', '1', '--epochs', '2', '--resamples', '1000', '--quiet'];
    const refused = await run([...base, '--out', path.join(tmp, 'prog-a')]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/300 utterance id\(s\) appear in more than one place[\s\S]*\[RAPM_DATA\]/);
    expect(fs.existsSync(path.join(tmp, 'prog-a', 'state.json'))).toBe(false);
    const allowed = await run([...base, '--out', path.join(tmp, 'prog-b'), '--allow-overlap']);
    expect(allowed.code, allowed.stderr).toBe(0);
    expect(allowed.stderr).toMatch(/rapm: warning: 300 utterance id\(s\) appear in more than one place[\s\S]*--allow-overlap: continuing/);
  });
});
