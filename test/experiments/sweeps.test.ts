import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generateDataset } from '../../src/data/generate.js';
import { experimentData, gridTable, runDropout, runGrid, runSubsample } from '../../src/experiments/sweeps.js';
import { nativeMlpBackend } from '../../src/fusion/native-mlp.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-sweeps-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

// 900 pairs of 12 speakers (180 test pairs): small enough for CI, with speakers to cluster on.
const data = experimentData(generateDataset({ pairs: 900, speakers: 12, testPairs: 180 }), 'generated');
const common = {
  config: 'A' as const, k: 20, tau: 0.04, aggregate: 'softmax' as const, hidden: [32, 16], dropout: 0.1, seed: 1, leaveOneOut: true,
  epochs: 3, patience: 2, batchSize: 32, lr: 1e-3, weightDecay: 1e-4, valFraction: 0.1, resamples: 1000, backend: nativeMlpBackend,
};

describe('experiments with training seeds', () => {
  it('dropout reports each setting with the spread of validation cosine across seeds', async () => {
    const out = path.join(tmp, 'dropout');
    const r = await runDropout(data, { ...common, trainSeeds: 3, out, sizes: [400], dropouts: [0, 0.3] });
    const seen = r.rows.filter((x) => x.test_set === 'seen');
    expect(seen).toHaveLength(2);
    for (const x of seen) {
      expect(x.train_seeds).toBe(3);
      expect(x.val_min as number).toBeLessThanOrEqual(x.val_fusion as number);
      expect(x.val_max as number).toBeGreaterThanOrEqual(x.val_fusion as number);
      expect(String(x.seed_gains).split(' | ')[0]!.split(' ')).toHaveLength(3);
      expect(x.seeds_never_beat_prior as number).toBeGreaterThanOrEqual(0);
      expect(x.seeds_never_beat_prior as number).toBeLessThanOrEqual(3);
    }
    const report = fs.readFileSync(path.join(out, 'report.md'), 'utf8');
    expect(report).toContain('Every setting, with the spread across training seeds');
    expect(report).toMatch(/\| +400 \| +0\.3 \|/);
    // The chart draws the seed range as a band around the mean.
    expect(fs.readFileSync(path.join(out, 'dropout.svg'), 'utf8')).toContain('class="band"');
  }, 120_000);

  it('subsample pools data samples x training seeds into one speaker-clustered interval and shows their spread', async () => {
    const out = path.join(tmp, 'subsample');
    const r = await runSubsample(data, { ...common, trainSeeds: 2, out, sizes: [300], seeds: 2 });
    // The interval's 4 runs are 2 data samples x 2 training seeds, not "4 training seeds".
    expect(r.summary).toMatch(/\], 2 data samples x 2 training seeds, speaker-clustered, \d+ speakers; the 4 runs' own gains/);
    expect(r.summary).not.toMatch(/4 training seeds/);
    const report = fs.readFileSync(path.join(out, 'report.md'), 'utf8');
    expect(report).toContain('spread of run gains [min, max]');
    // The pooled gain is the mean of the two samples' gains (each the mean of its two training seeds).
    const own = r.rows.filter((x) => x.test_set === 'seen').map((x) => x.gain as number);
    expect(own).toHaveLength(2);
    const pooled = Number(/gain ([+-]\d\.\d{4})/.exec(r.summary)![1]);
    expect(pooled).toBeCloseTo((own[0]! + own[1]!) / 2, 4);
  }, 120_000);

  it('grid writes the full K x tau x aggregation table per config and test set, best cell in bold', async () => {
    const out = path.join(tmp, 'grid');
    const r = await runGrid(data, { out, seed: 1, ks: [1, 10, 30], taus: [0.01, 0.1] });
    const report = fs.readFileSync(path.join(out, 'report.md'), 'utf8');
    for (const c of ['A', 'B']) expect(report).toContain(`Config ${c}, seen speakers: mean cosine by K, tau and aggregation`);
    const t = gridTable(r.rows, 'A', 'seen', [1, 10, 30], [0.01, 0.1]);
    const lines = t.split('\n').filter((l) => l.startsWith('|'));
    expect(lines[0]).toMatch(/\| +K \| softmax tau=0\.01 \| softmax tau=0\.1 \| uniform mean \|/);
    expect(lines).toHaveLength(2 + 3); // header, rule, one row per K
    const best = Math.max(...r.rows.filter((x) => x.config === 'A' && x.test_set === 'seen').map((x) => x.cosine as number));
    expect(t).toContain(`**${best.toFixed(4)}**`);
    expect(t.match(/\*\*/g)!.length).toBeGreaterThanOrEqual(2);
  }, 120_000);

  it('grid refuses a K above the training pairs (it was clamped and mislabelled) and repeated values', async () => {
    const n = data.pool.n;
    await expect(runGrid(data, { out: path.join(tmp, 'g2'), seed: 1, ks: [10, n + 1], taus: [0.1] })).rejects.toMatchObject({ code: 'RAPM_K_TOO_LARGE', message: expect.stringMatching(new RegExp(`--ks ${n + 1}: more than the ${n} training pairs`)) });
    await expect(runGrid(data, { out: path.join(tmp, 'g3'), seed: 1, ks: [1, 1], taus: [0.1] })).rejects.toThrow(/--ks 1,1 repeats a value/);
    await expect(runGrid(data, { out: path.join(tmp, 'g4'), seed: 1, ks: [1], taus: [0.1, 0.1] })).rejects.toThrow(/--taus 0.1,0.1 repeats a value/);
    expect(fs.existsSync(path.join(tmp, 'g2'))).toBe(false);
  });
});
