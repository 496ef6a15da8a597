/**
 * rapm demo compared its scores with "published: A 0.872, B 0.873" (the K=70 figures) at any
 * -k and --tau. It now quotes the figure published for the K and tau it ran, or says there is none.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PUBLISHED, publishedPlain, publishedPlainText } from '../../src/experiments/calibration.js';
import { run } from '../helpers/cli.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-demo-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('demo: the published figure of the K and tau used', () => {
  it('publishedPlain reads the reference figures for that K and tau only', () => {
    expect(publishedPlain(90, 0.04)).toEqual({ configA: PUBLISHED.seen.byK[90] });
    expect(publishedPlain(70, 0.04)).toEqual({ configA: 0.872, configB: 0.873 });
    expect(publishedPlain(70, 0.1)).toEqual({ configA: PUBLISHED.seen.byTau[0.1] });
    expect(publishedPlain(50, 0.04)).toEqual({});
    expect(publishedPlainText(90, 0.04)).toBe('published at K=90, tau=0.04: A 0.874, B not published (at K=70, tau=0.04: A 0.872, B 0.873)');
    expect(publishedPlainText(50, 0.04)).toMatch(/^no published figure at K=50, tau=0.04/);
  });

  it('rapm demo at the default K prints the K=90 figure, not the K=70 one as its own', async () => {
    const r = await run(['demo', '--data', path.join(tmp, 'data'), '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('(K=90, tau=0.04; published at K=90, tau=0.04: A 0.874');
    expect(r.stdout).not.toContain('published: A 0.872, B 0.873');
  });
});
