/**
 * Chunk data without speakers.txt: the test rows' speakers are unknown, so the gain interval can
 * only be a bootstrap by row and the rows must not be called seen-speaker test pairs. Every
 * command that scores such data says so with a warning (progressive used to print "row bootstrap
 * on 12 seen-speaker test pairs" without a word).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate } from '../../src/data/generate.js';
import { run } from '../helpers/cli.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-nospk-'));
const withSpeakers = path.join(tmp, 'ch');
const noSpeakers = path.join(tmp, 'nsp');
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

beforeAll(async () => {
  await generate({ out: withSpeakers, pairs: 60, speakers: 3, seed: 5, format: 'chunks' });
  fs.cpSync(withSpeakers, noSpeakers, { recursive: true });
  for (const c of fs.readdirSync(noSpeakers)) {
    const f = path.join(noSpeakers, c, 'speakers.txt');
    if (fs.existsSync(f)) fs.rmSync(f);
  }
}, 60_000);

const quick = ['--epochs', '2', '--train-seeds', '1', '-k', '5', '--resamples', '1000'];
const WARNING = /rapm: warning: .*nsp: the 12 test rows carry no speakers .*so the gain interval is a bootstrap by row \(speakers are unknown\) and the rows are not split into seen and unseen speakers/;

describe('test rows whose speakers are unknown', () => {
  it('progressive on chunks without speakers.txt warns that the bootstrap is by row, and does not call the rows seen-speaker', async () => {
    const r = await run(['progressive', '--chunks', noSpeakers, '--out', path.join(tmp, 'prog-nsp'), ...quick]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(WARNING);
    expect(r.stdout).toMatch(/row bootstrap on 12 test pairs whose speakers are unknown \(not split into seen and unseen\)/);
    expect(r.stdout).not.toMatch(/seen-speaker/);
  }, 120_000);

  it('progressive on chunks with speakers.txt keeps the speaker-clustered interval and the seen-speaker wording, without the warning', async () => {
    const r = await run(['progressive', '--chunks', withSpeakers, '--out', path.join(tmp, 'prog-ch'), ...quick]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/carry no speakers/);
    expect(r.stdout).toMatch(/speaker-clustered, \d+ speakers on 12 seen-speaker test pairs/);
  }, 120_000);

  it('--speaker-pattern names the speakers of chunks without speakers.txt: the interval is speaker-clustered again, no warning', async () => {
    const r = await run(['progressive', '--chunks', noSpeakers, '--speaker-pattern', '^([^_]+)_', '--out', path.join(tmp, 'prog-pat'), ...quick]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/carry no speakers/);
    expect(r.stdout).toMatch(/speaker-clustered, \d+ speakers on 12 seen-speaker test pairs/);
    // The same speakers as the chunks' own speakers.txt: the same decision line.
    const ref = await run(['progressive', '--chunks', withSpeakers, '--out', path.join(tmp, 'prog-ref'), ...quick]);
    const line = (t: string) => t.split('\n').find((l) => /speaker-clustered/.test(l));
    expect(line(r.stdout)).toBe(line(ref.stdout));
    // An id the pattern does not match is a problem of its chunk, named.
    const bad = await run(['progressive', '--chunks', noSpeakers, '--speaker-pattern', '^(zz)_', '--out', path.join(tmp, 'prog-bad'), ...quick]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/has no speakers\.txt and its id .* has no speaker under --speaker-pattern/);
  }, 180_000);

  it('subsample (and the other one-dataset commands) warn the same way and do not call the rows seen speakers', async () => {
    const r = await run(['subsample', '--data', noSpeakers, '--out', path.join(tmp, 'sub-nsp'), '--sizes', '10,20', '--seeds', '1', ...quick.filter((x, i, a) => x !== '-k' && a[i - 1] !== '-k'), '-k', '3']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(WARNING);
    expect(r.stdout).toMatch(/Fusion gain at 20 pairs \(test rows whose speakers are unknown\): .*row bootstrap/);
    expect(r.stdout).not.toMatch(/seen speakers/);
  }, 120_000);

  it('train on such data labels its test set "speakers unknown", not seen speakers, in the summary and rapm.json', async () => {
    const out = path.join(tmp, 'model-nsp');
    const r = await run(['train', '--data', noSpeakers, '--out', out, ...quick]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/shipped model .*test \(speakers unknown\) fusion/);
    expect(r.stdout).not.toMatch(/seen speakers/);
    const rec = JSON.parse(fs.readFileSync(path.join(out, 'rapm.json'), 'utf8')) as { metrics: { tests: { speakersUnknown?: boolean }[] } };
    expect(rec.metrics.tests[0]!.speakersUnknown).toBe(true);
  }, 120_000);
});
