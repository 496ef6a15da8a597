// A failed add() or IncrementalPriors.update() whose promise the caller ignores must still surface
// as an unhandled rejection: the internal queues attach handlers to their own links, which made
// such failures silent (review of round 13). Run in a child, where the rejection is observable.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function unhandled(body: string): string[] {
  const script = `
const seen = [];
process.on('unhandledRejection', (e) => seen.push(e.code ?? String(e)));
const { Datastore, IncrementalPriors } = await import('./src/index.ts');
${body}
await new Promise((r) => setTimeout(r, 200));
console.log(JSON.stringify(seen));`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, encoding: 'utf8', timeout: 60_000 });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as string[];
}

describe('ignored failures of queued calls', () => {
  it('Datastore.add: a failing add that nobody awaits is an unhandled rejection', () => {
    // A NaN key is refused by the native add (RAPM_NON_FINITE), after add() has returned.
    expect(unhandled(`
const ds = new Datastore({ keyDim: 2, valueDim: 1 });
void ds.add(Float32Array.from([NaN, 1]), Float32Array.from([1]));`)).toEqual(['RAPM_NON_FINITE']);
  }, 60_000);

  it('IncrementalPriors.update: a failing update that nobody awaits is an unhandled rejection', () => {
    expect(unhandled(`
const ds = new Datastore({ keyDim: 2, valueDim: 1 });
await ds.add(Float32Array.from([1, 0, 0, 1, 1, 1]), Float32Array.from([1, 2, 3]), ['a', 'b', 'c']);
const ip = new IncrementalPriors(ds, { k: 2, tau: 0.1, aggregate: 'softmax' });
void ip.update({ en: Float32Array.from([1, 0]), ids: ['a', 'b'] });`)).toHaveLength(1);
  }, 60_000);
});
