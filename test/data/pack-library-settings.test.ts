// packDral's options take the ranges of the settings of the same name (src/settings.ts), the
// ones the CLI checks, and refuse a seed that would be ignored.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { packDral } from '../../src/data/pack.js';
import { SETTINGS } from '../../src/settings.js';

describe('packDral options', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-pack-opts-'));
  const out = path.join(tmp, 'out');
  const input = path.join(tmp, 'missing-input'); // never read: the options are refused first

  it('chunkSize: the chunkSize setting range, nothing beyond it', async () => {
    const max = (SETTINGS.chunkSize as unknown as { bounds: { hi: number } }).bounds.hi;
    expect(max).toBe(1_000_000);
    await expect(packDral([input], out, { chunkSize: max + 1 })).rejects.toThrow(/chunkSize/);
    await expect(packDral([input], out, { chunkSize: 0 })).rejects.toThrow(/chunkSize/);
    await expect(packDral([input], out, { chunkSize: 2.5 })).rejects.toThrow(/chunkSize/);
    // In range: the options pass and the missing input is what fails.
    await expect(packDral([input], out, { chunkSize: max })).rejects.not.toThrow(/chunkSize/);
  });

  it('seed without shuffle is refused (it would be ignored); with shuffle it is taken', async () => {
    await expect(packDral([input], out, { seed: 7 })).rejects.toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG', message: expect.stringMatching(/seed 7 has no effect without shuffle/) }));
    await expect(packDral([input], out, { seed: 7, shuffle: true })).rejects.not.toThrow(/seed/);
  });
});
