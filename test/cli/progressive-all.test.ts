/**
 * --confirm-steps counts steps after the stop rule fires; --all never stops, so the pair was
 * accepted and only changed the resume key. Refused by the CLI (before any data) and the library.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nativeMlpBackend } from '../../src/fusion/native-mlp.js';
import { runProgressive } from '../../src/experiments/progressive.js';
import { run } from '../helpers/cli.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-prog-all-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('progressive --all with --confirm-steps', () => {
  it('the CLI refuses the pair naming both flags, before reading data', async () => {
    fs.writeFileSync(path.join(tmp, 'f'), 'a file');
    const missing = path.join(tmp, 'f', 'chunks');
    const r = await run(['progressive', '--chunks', missing, '--out', path.join(tmp, 'f', 'out'), '--all', '--confirm-steps', '2', '--quiet']);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain('--confirm-steps');
    expect(r.stderr).toContain('--all');
    // Either alone reaches the data.
    for (const extra of [['--all'], ['--confirm-steps', '2']]) {
      const ok = await run(['progressive', '--chunks', missing, '--out', path.join(tmp, 'f', 'out'), ...extra, '--quiet']);
      expect(ok.code, ok.stderr).toBe(1);
    }
  });

  it('the library refuses all with confirmSteps', async () => {
    await expect(runProgressive({ chunks: path.join(tmp, 'none'), out: path.join(tmp, 'out'), all: true, confirmSteps: 2, backend: nativeMlpBackend })).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG', message: expect.stringContaining('confirmSteps') });
  });
});
