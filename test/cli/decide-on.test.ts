// `progressive --decide-on X` with no X-speaker test set is an error naming the flag, never a
// silent switch to the other test set.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generate } from '../../src/data/generate.js';
import { run } from '../helpers/cli.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-decide-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('progressive --decide-on', () => {
  it('refuses a test set the data does not have', async () => {
    const chunks = path.join(tmp, 'chunks');
    // No unseen speakers: every test row's speaker has training rows, so only a seen test set exists.
    await generate({ out: chunks, pairs: 600, format: 'chunks', chunkSize: 300, unseenSpeakers: 0 });
    const out = path.join(tmp, 'out');
    const r = await run(['progressive', '--chunks', chunks, '--out', out, '--decide-on', 'unseen', '--max-steps', '1', '--quiet']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--decide-on\) is 'unseen' but the data has no unseen-speaker test set \(test sets: seen \d+ pairs\); pass --decide-on seen \[RAPM_DATA\]/);
    expect(fs.existsSync(path.join(out, 'state.json'))).toBe(false);
  }, 120_000);
});
