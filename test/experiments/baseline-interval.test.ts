/**
 * The baseline MLP (rapm train --model baseline): its interval resamples --cluster-unit as the
 * fusion net's does on the same test rows, and --train-seeds (one net is trained) is refused.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate } from '../../src/data/generate.js';
import { loadExperimentData } from '../../src/cli/data-args.js';
import { pointOptions } from '../../src/cli/options.js';
import { trainBaselineModel } from '../../src/experiments/train-model.js';
import type { ExperimentData } from '../../src/experiments/sweeps.js';
import { SETTINGS, defaultsOf } from '../../src/settings.js';
import { run } from '../helpers/cli.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-baseline-'));
const dir = path.join(tmp, 'data');
let data: ExperimentData;
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
beforeAll(async () => {
  await generate({ out: dir, pairs: 400, seed: 5, speakers: 10 });
  data = await loadExperimentData({ data: dir, split: 'speaker', testFraction: 0.3, seed: 2, onProblem: 'fail', features: undefined, filelists: undefined, poolFrames: undefined, speakerPattern: undefined }, ['A']);
});

const opts = (clusterUnit: 'row' | 'speaker' | 'auto', trainSeeds = 1) => ({
  ...pointOptions({ ...defaultsOf(['config', 'k', 'tau', 'aggregate', 'leakyPriors', 'hidden', 'dropout', 'epochs', 'patience', 'batchSize', 'lr', 'weightDecay', 'valFraction', 'seed', 'resamples', 'level', 'threads']), k: 5, epochs: 1, resamples: 1000, trainSeeds, clusterUnit, quiet: true, json: false }, undefined),
  precision: SETTINGS.precision.default,
});

describe('trainBaselineModel', () => {
  it('resamples speakers (auto, as the fusion interval does) or rows, as clusterUnit says', async () => {
    const auto = await trainBaselineModel(data, opts('auto'));
    const row = await trainBaselineModel(data, opts('row'));
    const speaker = await trainBaselineModel(data, opts('speaker'));
    type T = { unit: string; lo: number; hi: number; baseline: number };
    const t = (m: Record<string, unknown>) => (m.tests as T[])[0]!;
    expect(t(auto.metrics).unit).toBe('speaker');
    expect(t(speaker.metrics)).toEqual(t(auto.metrics));
    expect(t(row.metrics).unit).toBe('row');
    // Same net, same scores; a different interval.
    expect(t(row.metrics).baseline).toBe(t(speaker.metrics).baseline);
    expect([t(row.metrics).lo, t(row.metrics).hi]).not.toEqual([t(speaker.metrics).lo, t(speaker.metrics).hi]);
  });

  it('refuses trainSeeds > 1: one net is trained', async () => {
    await expect(trainBaselineModel(data, opts('auto', 3))).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG', message: expect.stringContaining('trainSeeds 3') });
  });

  it('rapm train --model baseline --train-seeds is a usage error before any data is read', async () => {
    const missing = path.join(tmp, 'no', 'such');
    fs.writeFileSync(path.join(tmp, 'no'), 'a file');
    const r = await run(['train', '--model', 'baseline', '--data', missing, '--out', path.join(missing, 'out'), '--train-seeds', '2', '--quiet']);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/--train-seeds applies to --model fusion only/);
  });
});
