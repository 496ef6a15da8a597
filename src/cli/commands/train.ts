import path from 'node:path';
import type { CommandModule } from 'yargs';
import { ENGLISH_WINNERS, SPANISH_WINNERS } from '../../data/indices.js';
import { ensureDefaultData } from '../../data/generate.js';
import { loadDataset } from '../../data/load.js';
import { experimentData } from '../../experiments/sweeps.js';
import { trainBaselineModel, trainFusionModel } from '../../experiments/train-model.js';
import { exportOnnx, type OnnxMeta } from '../../fusion/onnx-export.js';
import { simdLevel } from '../../native/simd.js';
import { SETTINGS } from '../../settings.js';
import { CliUsageError, defineCommand, POINT_SETTINGS, pointOptions } from '../options.js';
import { progressBars } from '../progress.js';
import { applyThreads, refuseExisting } from '../run.js';

/**
 * `rapm train`: train the fusion net (on leave-one-out priors) or the official baseline MLP
 * on a dataset's official train split, score it on the test split, and export it as ONNX
 * with a JSON sidecar (dims, index lists, K, tau, data hash, seed, metrics, SIMD level).
 */
export const trainCommand: CommandModule = defineCommand({
  command: 'train',
  describe: 'Train the fusion net (or the baseline MLP), score it, and export it to ONNX',
  settings: ['data', 'trainModel', 'out', 'overwrite', ...POINT_SETTINGS, 'json', 'quiet'],
  overrides: {
    data: { help: 'Dataset with an official split (DRAL folder or chunks); the default is generated if missing' },
    out: { default: 'models/fusion.onnx', help: 'ONNX file to write (a .json sidecar is written beside it)' },
  },
  check: (a, given) => {
    if (a.trainModel === 'baseline') {
      // The baseline is the official 1024-500-250-125-101 ReLU MLP; fusion-only settings are refused, not ignored.
      for (const k of ['hidden', 'leakyPriors'] as const) {
        if (given.has(k)) throw new CliUsageError(`--${SETTINGS[k].flag} applies to --model fusion only (the baseline is the official 1024-500-250-125-101 MLP)`);
      }
    }
    refuseExisting(a.out, a.overwrite, '--out');
  },
  handler: async (a) => {
    applyThreads(a.threads);
    const quiet = a.quiet || a.json;
    const bar = progressBars(quiet);
    // The embedded default is (re)generated when missing or made by another generator version.
    if (a.data === 'data/default') await ensureDefaultData(a.data, { onProgress: (d, t) => bar('generating default data', d, t) });
    const data = experimentData(await loadDataset(a.data, { onProgress: (d, t) => bar('loading', d, t) }), path.resolve(a.data));
    const seed = a.seed;
    const common = pointOptions(a, bar);
    const { layout, params, metrics } = a.trainModel === 'fusion' ? await trainFusionModel(data, common) : await trainBaselineModel(data, common);
    const meta = {
      'rapm.en_dim': 1024,
      'rapm.out_dim': SPANISH_WINNERS.length,
      'rapm.key_config': common.config,
      'rapm.key_indices': common.config === 'B' ? [...ENGLISH_WINNERS] : 'all',
      'rapm.value_indices': [...SPANISH_WINNERS],
      'rapm.k': common.k,
      'rapm.tau': common.tau,
      'rapm.aggregate': common.aggregate,
      'rapm.leave_one_out': common.leaveOneOut,
      'rapm.data_hash': data.hash,
      'rapm.seed': seed,
      'rapm.simd_level': simdLevel(),
      'rapm.metrics': JSON.parse(JSON.stringify(metrics)) as OnnxMeta,
    };
    const written = await exportOnnx(layout, params, a.out, meta);
    if (a.json) {
      console.log(JSON.stringify({ ...written, metrics }));
      return;
    }
    console.log(`wrote ${written.file} (${written.bytes} bytes) and ${written.sidecar}`);
    console.log(JSON.stringify(metrics, null, 2));
  },
});
