// The README's "Bring your own features" commands run as written, in a temp folder, with
// smaller sizes (the idea of test/readme.test.ts for the library example). `node dist/cli/bin.js`
// runs the CLI from source (tsx), so the test checks this checkout, not a stale build.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadChunks } from '../../src/data/chunks.js';
import { loadDral } from '../../src/data/dataset.js';

const root = path.resolve(import.meta.dirname, '../..');
const tsx = import.meta.resolve('tsx'); // an absolute URL: the commands run in a temp folder
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-readme-byof-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Small sizes for the test: the README's numbers are for users. */
const SMALLER: [RegExp, string][] = [
  [/--pairs 6000\b/, '--pairs 1200'],
  [/--chunk-size 1000\b/, '--chunk-size 200'],
];

function shellBlock(): string[] {
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const section = /## Bring your own features\n([\s\S]*?)\n## /.exec(readme)?.[1] ?? '';
  const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1] ?? '';
  return block.split('\n').filter((l) => l.trim() !== '');
}

/** Split a command line into words (the README's lines use no quotes). */
function words(line: string): string[] {
  return line.replace(/\s+#.*$/, '').trim().split(/\s+/);
}

describe('README: Bring your own features', () => {
  it('runs every command as written on a generated DRAL folder, and the leakage example is refused', () => {
    const lines = shellBlock();
    expect(lines.length, 'README has a sh block under Bring your own features').toBeGreaterThanOrEqual(4);
    const results: { line: string; status: number | null; stderr: string; stdout: string }[] = [];
    for (const line of lines) {
      let cmd = line;
      for (const [re, to] of SMALLER) cmd = cmd.replace(re, to);
      const argv = words(cmd);
      expect(argv.slice(0, 2), `each line runs the CLI: ${line}`).toEqual(['node', 'dist/cli/bin.js']);
      const r = spawnSync(process.execPath, ['--import', tsx, path.join(root, 'src/cli/bin.ts'), ...argv.slice(2), '--quiet'], { cwd: tmp, encoding: 'utf8', timeout: 240_000 });
      results.push({ line, status: r.status, stderr: r.stderr, stdout: r.stdout });
      const refused = /#.*refused/.test(line);
      if (refused) {
        expect(r.status, `${line}\n${r.stderr}`).toBe(1);
        expect(r.stderr).toMatch(/utterance id\(s\) appear in more than one place[\s\S]*initial set \((train|test)\) and chunk chunk-0000\d[\s\S]*--allow-overlap[\s\S]*\[RAPM_DATA\]/);
      } else {
        expect(r.status, `${line}\n${r.stderr}`).toBe(0);
      }
    }
    // What the README says the commands produce.
    expect(fs.existsSync(path.join(tmp, 'my-dral', 'train_filelist_en.txt'))).toBe(true);
    expect(fs.readdirSync(path.join(tmp, 'my-chunks')).filter((n) => n.startsWith('chunk-'))).toHaveLength(6);
    expect(fs.existsSync(path.join(tmp, 'results', 'my-run', 'report.md'))).toBe(true);
    expect(fs.existsSync(path.join(tmp, 'results', 'leak', 'state.json'))).toBe(false);
    const progressive = results.find((r) => r.line.includes('results/my-run'))!;
    expect(progressive.stdout).toMatch(/Report: results\/my-run\/report\.md/);
  }, 600_000);

  it('the README numbers for the generated folder and its chunks are what the commands give', async () => {
    // Runs after the first test: its folders are 1,200 pairs; the README's 6,000 scale by 5.
    const dral = await loadDral(path.join(tmp, 'my-dral'));
    expect(dral.n).toBe(1200);
    expect(dral.official!.test.length).toBe(240); // README: 1,198 test pairs at 6,000
    expect(new Set(dral.speakers).size).toBeGreaterThan(60); // README: 70 speakers at 6,000
    const chunks = await loadChunks(path.join(tmp, 'my-chunks'));
    expect([...chunks.ids].sort()).toEqual(dral.ids); // --shuffle: the same pairs, in another order
    expect(chunks.ids).not.toEqual(dral.ids);
    const row = chunks.ids.indexOf(dral.ids[7]!);
    expect(chunks.en.subarray(row * 1024, (row + 1) * 1024)).toEqual(dral.en.subarray(7 * 1024, 8 * 1024));
    expect(chunks.official!.test.sort()).toEqual([...dral.official!.test].sort());
  });
});
