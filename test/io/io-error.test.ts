// ioError: one RAPM_IO message per failed file operation, naming the file and why.
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ioError } from '../../src/io/atomic.js';

describe('ioError', () => {
  it("states the code once: Node's messages already start with it ('ENOSPC: ENOSPC: ...' before)", () => {
    let thrown: unknown;
    try {
      fs.readFileSync('/nonexistent-rapm-dir/x');
    } catch (e) {
      thrown = e;
    }
    const e = ioError('read', '/nonexistent-rapm-dir/x', thrown) as Error & { code?: string };
    expect(e.code).toBe('RAPM_IO');
    expect(e.message).toBe("Cannot read /nonexistent-rapm-dir/x (ENOENT: no such file or directory, open '/nonexistent-rapm-dir/x')");
    // An error whose message does not start with its code still gets the code in front.
    const nospc = Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
    expect(ioError('write', 'f', nospc).message).toBe('Cannot write f (ENOSPC: no space left on device)');
  });
});
