import { vi } from 'vitest';
import { main } from '../../src/cli/main.js';

/** Run the CLI in-process; stdout/stderr captured, exit code returned. */
export async function run(argv: string[]): Promise<{ code: number; stderr: string; stdout: string }> {
  const err: string[] = [];
  const out: string[] = [];
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((s) => (err.push(String(s)), true));
  const o = vi.spyOn(console, 'log').mockImplementation((...a) => void out.push(a.join(' ')));
  const w = vi.spyOn(process.stdout, 'write').mockImplementation((s) => (out.push(String(s)), true));
  try {
    const code = await main(argv);
    return { code, stderr: err.join(''), stdout: out.join('\n') };
  } finally {
    e.mockRestore();
    o.mockRestore();
    w.mockRestore();
  }
}
