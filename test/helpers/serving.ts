import { runServe } from '../../src/cli/commands/serve.js';

/**
 * Run `rapm serve` in-process (runServe) with `args`, call `use(url, logLines)` once it listens,
 * then shut it down (abort, as SIGTERM does) and wait for it to stop. A failure to start rejects.
 */
export async function serving<T>(args: Parameters<typeof runServe>[0], use: (url: string, lines: string[]) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  let url = '';
  const lines: string[] = [];
  let failed: unknown = null;
  const running = runServe(args, { signal: ac.signal, handleSignals: false, onListening: (u) => (url = u), log: (l) => lines.push(l) }).catch((e: unknown) => {
    failed = e;
  });
  while (!url && !failed) await new Promise((r) => setTimeout(r, 5));
  if (failed) throw failed;
  try {
    return await use(url, lines);
  } finally {
    ac.abort();
    await running;
  }
}
