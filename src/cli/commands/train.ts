import type { CommandModule } from 'yargs';
import { ENGLISH_WINNERS, SPANISH_WINNERS, keyIndices } from '../../data/indices.js';
import { ensureDefaultData } from '../../data/generate.js';
import { BASELINE_HIDDEN, describeFusionMetrics, trainBaselineModel, trainFusionModel, trainingDatastore } from '../../experiments/train-model.js';
import type { OnnxMeta } from '../../fusion/onnx-export.js';
import { BUNDLE_FILES, checkBundleTarget, writeBundle } from '../../serve/bundle.js';
import { simdLevel } from '../../native/simd.js';
import { SETTINGS } from '../../settings.js';
import { CliUsageError, dataSelection, defineCommand, POINT_SETTINGS, pointOptions, refuseTauWithoutSoftmax } from '../options.js';
import { progressBars } from '../progress.js';
import { applyThreads, refuseExisting, warn } from '../run.js';
import { DATA_SETTINGS, checkDataArgs, dataPaths, loadExperimentData, refuseKOverTrainRows, usesDefaultData } from '../data-args.js';

/**
 * `rapm train --out models/<name>`: train the fusion net (on leave-one-out priors) or the
 * official baseline MLP on a dataset's official train split, score it on the test split, and
 * write a bundle folder (src/serve/bundle.ts): model.onnx, the datastore its priors came from,
 * and rapm.json (resolved settings, data hash, metrics with intervals, versions).
 */
export const trainCommand: CommandModule = defineCommand({
  command: 'train',
  describe: 'Train the fusion net (or the baseline MLP), score it, and write a model bundle (model.onnx, datastore.rapm, rapm.json)',
  settings: ['data', ...DATA_SETTINGS, 'trainModel', 'out', 'overwrite', ...POINT_SETTINGS, 'precision', 'fastPath', 'json', 'quiet'],
  overrides: {
    data: { help: 'Dataset with an official split (DRAL folder or chunks); the default is generated if missing' },
    out: { default: 'models/fusion', help: 'Bundle folder to write (model.onnx, datastore.rapm, rapm.json); serve it with rapm serve --bundle' },
  },
  check: (a, given) => {
    checkDataArgs(given);
    refuseTauWithoutSoftmax(a, given);
    if (a.trainModel === 'baseline') {
      // The baseline is the official 1024-500-250-125-101 ReLU MLP; fusion-only settings are refused, not ignored.
      for (const k of ['hidden', 'leakyPriors'] as const) {
        if (given.has(k)) throw new CliUsageError(`--${SETTINGS[k].flag} applies to --model fusion only (the baseline is the official 1024-500-250-125-101 MLP)`);
      }
      // One baseline net is trained (seeded by --seed): more training seeds would train nothing.
      if (given.has('trainSeeds')) throw new CliUsageError(`--train-seeds applies to --model fusion only: --model baseline trains one net, seeded by --seed`);
    }
    refuseExisting(a.out, a.overwrite, '--out');
    checkBundleTarget(a.out, a.overwrite, dataPaths(a)); // before any loading or training: what --overwrite would delete
  },
  handler: async (a) => {
    applyThreads(a.threads);
    const quiet = a.quiet || a.json;
    const bar = progressBars(quiet);
    // The embedded default is (re)generated when missing or made by another generator version.
    if (usesDefaultData(a, 'data/default')) await ensureDefaultData(a.data, { onProgress: (d, t) => bar('generating default data', d, t) });
    const data = await loadExperimentData(a, [a.config], (d, t) => bar('loading', d, t));
    refuseKOverTrainRows(a.k, data, !a.leakyPriors);
    const common = { ...pointOptions(a, bar), precision: a.precision, ...(a.trainModel === 'baseline' ? { trainSeeds: 1 } : {}) };
    const { layout, params, metrics, kind } = a.trainModel === 'fusion' ? await trainFusionModel(data, common) : await trainBaselineModel(data, common);
    // Every point setting as resolved (threads aside: it does not change the numbers), plus the bundle's own.
    // The baseline trains one net: --train-seeds (refused for it) is not recorded.
    const resolved = Object.fromEntries(POINT_SETTINGS.filter((k) => k !== 'threads' && !(k === 'trainSeeds' && kind === 'baseline')).map((k) => [k, a[k]]));
    const settings = {
      ...resolved,
      ...dataSelection(a),
      config: a.config,
      keyIndices: [...keyIndices(a.config)],
      valueIndices: [...SPANISH_WINNERS],
      k: a.k,
      tau: a.tau,
      aggregate: a.aggregate,
      precision: a.precision,
      fastPath: a.fastPath,
      model: kind,
      hidden: kind === 'fusion' ? a.hidden : BASELINE_HIDDEN,
      leaveOneOut: !a.leakyPriors,
    };
    const meta: OnnxMeta = {
      'rapm.en_dim': 1024,
      'rapm.out_dim': SPANISH_WINNERS.length,
      'rapm.key_config': a.config,
      'rapm.key_indices': a.config === 'B' ? [...ENGLISH_WINNERS] : 'all',
      'rapm.value_indices': [...SPANISH_WINNERS],
      'rapm.k': a.k,
      'rapm.tau': a.tau,
      'rapm.aggregate': a.aggregate,
      'rapm.leave_one_out': !a.leakyPriors,
      'rapm.data_hash': data.hash,
      'rapm.seed': a.seed,
      'rapm.simd_level': simdLevel(),
      'rapm.metrics': JSON.parse(JSON.stringify(metrics)) as OnnxMeta,
    };
    const ds = await trainingDatastore(data, common);
    const written = await writeBundle(a.out, ds, { overwrite: a.overwrite, model: { layout, params, meta }, kind, settings, data: { hash: data.hash, source: data.source }, metrics });
    for (const n of written.notices) warn(n);
    if (a.json) {
      console.log(JSON.stringify({ bundle: written.dir, manifest: written.manifest }));
      return;
    }
    console.log(`wrote bundle ${a.out}: ${BUNDLE_FILES.model} (${written.manifest.model!.bytes} bytes), ${BUNDLE_FILES.datastore} (${ds.size} rows, Config ${a.config}, ${a.precision}), ${BUNDLE_FILES.manifest}`);
    console.log(JSON.stringify(metrics, null, 2));
    if (kind === 'fusion') for (const line of describeFusionMetrics(metrics)) console.log(line);
    if (kind === 'fusion') console.log(`serve it: rapm serve --bundle ${a.out}`);
  },
});
