// The README's library example runs as written (with the data folder pointed at a temp copy).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it, vi } from 'vitest';

const root = path.resolve(import.meta.dirname, '..');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'rapm-readme-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('README', () => {
  it('the library example runs and prints the Config B score it claims', async () => {
    const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
    const block = /## Quick start[\s\S]*?```ts\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block, 'README has a ts example under Quick start').toBeTruthy();
    const data = path.join(tmp, 'default');
    const code = block!
      .replace("from 'rapm'", `from ${JSON.stringify(pathToFileURL(path.join(root, 'src/index.ts')).href)}`)
      .replaceAll("'data/default'", JSON.stringify(data));
    const file = path.join(root, 'test', `.readme-example-${process.pid}.ts`);
    writeFileSync(file, code);
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    try {
      await import(pathToFileURL(file).href);
      const printed = Number(log.mock.calls[0]?.[0]);
      expect(printed).toBeGreaterThan(0.869);
      expect(printed).toBeLessThan(0.889); // the comment says ≈ 0.879
    } finally {
      log.mockRestore();
      rmSync(file, { force: true });
    }
  });

  it('the quick start is exactly two commands and .ci/run runs them', () => {
    const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
    const sh = /## Quick start\s+```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? '';
    const commands = sh.split('\n').map((l) => l.replace(/#.*/, '').trim()).filter(Boolean);
    expect(commands).toEqual(['bash scripts/setup.sh', 'npm test']);
    const ci = readFileSync(path.join(root, '.ci/run'), 'utf8');
    for (const c of commands) expect(ci).toContain(c);
  });
});
