/**
 * rapm gap reports no interval (src/experiments/sweeps.ts GAP_REFUSED): --resamples, --level and
 * --cluster-unit changed nothing but were accepted and listed in report.md. They are refused.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generate } from '../../src/data/generate.js';
import { runGap } from '../../src/experiments/sweeps.js';
import { run } from '../helpers/cli.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-gap-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('rapm gap takes no interval settings', () => {
  it('refuses --resamples, --level and --cluster-unit before reading data', async () => {
    fs.writeFileSync(path.join(tmp, 'f'), 'a file');
    const missing = path.join(tmp, 'f', 'data');
    for (const [flag, v] of [['--resamples', '1000'], ['--level', '0.9'], ['--cluster-unit', 'row']]) {
      const r = await run(['gap', '--data', missing, '--out', path.join(missing, 'out'), flag!, v!, '--quiet']);
      expect(r.code, `${flag}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toContain(flag!.slice(2));
    }
  });

  it('the library refuses them too', async () => {
    await expect(runGap({} as never, { level: 0.9 } as never)).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG', message: expect.stringContaining('level') });
  });

  it('runs without them, and its record does not list them', async () => {
    const data = path.join(tmp, 'data');
    await generate({ out: data, pairs: 300, seed: 4, speakers: 8 });
    const out = path.join(tmp, 'out');
    const r = await run(['gap', '--data', data, '--out', out, '--sizes', '120', '-k', '5', '--epochs', '1', '--train-seeds', '1', '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    const rec = JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8')) as { record: { config: Record<string, unknown> } };
    for (const k of ['resamples', 'level', 'clusterUnit']) expect(rec.record.config).not.toHaveProperty(k);
    expect(fs.readFileSync(path.join(out, 'report.md'), 'utf8')).not.toMatch(/resamples|clusterUnit/);
  });
});
