/**
 * evaluatePoint (and so runSubsample/runBias/runGap/runDropout and trainFusionModel) trained 1
 * net per point when trainSeeds was left out, while the CLI and runProgressive train 3 (the
 * setting's default): the same experiment gave different intervals from the library and the CLI.
 */
import { describe, expect, it } from 'vitest';
import { generateDataset } from '../../src/data/generate.js';
import { subsetDataset } from '../../src/data/dataset.js';
import { officialSplit } from '../../src/data/split.js';
import { buildTestSets, evaluatePoint, poolOf } from '../../src/experiments/evaluate.js';
import { nativeMlpBackend } from '../../src/fusion/native-mlp.js';
import { SETTINGS } from '../../src/settings.js';

describe('evaluatePoint trainSeeds default', () => {
  it('is the setting\'s (3), as on the CLI', async () => {
    const d = generateDataset({ pairs: 240, testPairs: 60, seed: 4, speakers: 6 });
    const sp = officialSplit(d);
    const tr = subsetDataset(d, sp.train);
    const tests = buildTestSets(subsetDataset(d, sp.test), new Set(tr.speakers ?? []));
    const p = await evaluatePoint(poolOf(tr), tests, { config: 'A', k: 5, tau: 0.04, aggregate: 'softmax', hidden: [16], dropout: 0.1, seed: 1, leaveOneOut: true, epochs: 1, patience: 1, batchSize: 32, lr: 1e-3, weightDecay: 1e-4, valFraction: 0.1, resamples: 1000, backend: nativeMlpBackend }, 1, 'test');
    expect(SETTINGS.trainSeeds.default).toBe(3);
    expect(p.seeds.length).toBe(SETTINGS.trainSeeds.default);
  });
});
