/**
 * `rapm pack --seed`: it seeds --shuffle only, so without --shuffle it is a usage error (exit 2)
 * naming both flags; and its range is the seed setting's (src/settings.ts SEED_MAX), in the CLI
 * and in packDral alike (packDral refused seeds above 2^31 that the CLI had accepted: exit 1, late).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listChunks, loadChunks } from '../../src/data/chunks.js';
import { generate } from '../../src/data/generate.js';
import { packDral } from '../../src/data/pack.js';
import { SEED_MAX } from '../../src/settings.js';
import { run } from '../helpers/cli.js';

let tmp: string;
let dral: string;
beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-pack-seed-'));
  dral = path.join(tmp, 'dral');
  await generate({ out: dral, pairs: 20, testPairs: 4, seed: 5, speakers: 4, format: 'dral' });
}, 60_000);
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('pack --seed', () => {
  it('without --shuffle is a usage error naming --seed and --shuffle, before anything is written', async () => {
    for (const extra of [[], ['--no-shuffle']]) {
      const out = path.join(tmp, `no-shuffle${extra.length}`);
      const r = await run(['pack', dral, '--out', out, '--seed', '99', ...extra]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/--seed needs --shuffle/);
      expect(fs.existsSync(out)).toBe(false);
    }
    // Without --seed, or with --shuffle, pack runs.
    expect((await run(['pack', dral, '--out', path.join(tmp, 'plain'), '--quiet'])).code).toBe(0);
    expect((await run(['pack', dral, '--out', path.join(tmp, 'shuffled'), '--shuffle', '--seed', '99', '--quiet'])).code).toBe(0);
  }, 60_000);

  it('takes every seed of the setting range, and refuses the next one up front (exit 2)', async () => {
    expect(SEED_MAX).toBe(2 ** 32 - 1);
    for (const seed of [3_000_000_000, SEED_MAX]) {
      const out = path.join(tmp, `cli-${seed}`);
      const r = await run(['pack', dral, '--out', out, '--shuffle', '--seed', String(seed), '--chunk-size', '8', '--quiet']);
      expect(r.code, r.stderr).toBe(0);
      expect(listChunks(out)).toHaveLength(3);
    }
    const out = path.join(tmp, 'cli-over');
    const r = await run(['pack', dral, '--out', out, '--shuffle', '--seed', String(SEED_MAX + 1)]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`--seed must be an integer in [0, ${SEED_MAX}], got '${SEED_MAX + 1}'`);
    expect(fs.existsSync(out)).toBe(false);
  }, 60_000);

  it('packDral checks seed against the same range, naming seed', async () => {
    const a = path.join(tmp, 'lib-max');
    await packDral([dral], a, { shuffle: true, seed: SEED_MAX, chunkSize: 8 });
    const ids = (await loadChunks(a)).ids;
    expect([...ids].sort()).toEqual([...(await loadChunks(path.join(tmp, 'plain'))).ids].sort());
    // The seed matters over the whole range (2^31 + 1 was refused before, and is not 1's order).
    const b = path.join(tmp, 'lib-2p31');
    await packDral([dral], b, { shuffle: true, seed: 2 ** 31 + 1, chunkSize: 8 });
    expect((await loadChunks(b)).ids).not.toEqual(ids);
    for (const seed of [SEED_MAX + 1, -1, 1.5]) {
      const out = path.join(tmp, `lib-bad`);
      await expect(packDral([dral], out, { shuffle: true, seed })).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG', message: `seed must be an integer in [0, ${SEED_MAX}], got ${seed}` });
      expect(fs.existsSync(out)).toBe(false);
    }
  }, 60_000);
});
