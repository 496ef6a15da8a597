import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliReference } from '../../src/cli/docs.js';

describe('README CLI reference', () => {
  it('matches the command definitions (run npm run docs:cli after changing options)', async () => {
    const readme = readFileSync(path.resolve(import.meta.dirname, '../../README.md'), 'utf8');
    const a = readme.indexOf('<!-- cli:start');
    const b = readme.indexOf('<!-- cli:end -->');
    expect(a).toBeGreaterThan(0);
    const section = readme.slice(readme.indexOf('-->', a) + 3, b).trim();
    expect(section).toBe((await cliReference()).trim());
  });
});
