import path from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { ENGLISH_WINNERS, SPANISH_WINNERS, keyIndices } from '../../data/indices.js';
import { ensureDefaultData } from '../../data/generate.js';
import { loadDataset } from '../../data/load.js';
import { pairedBootstrap } from '../../eval/bootstrap.js';
import { mean, rowCosines } from '../../eval/cosine.js';
import { evaluatePoint, splitFitVal, subsetMlp } from '../../experiments/evaluate.js';
import { experimentData } from '../../experiments/sweeps.js';
import { baselineSpec } from '../../fusion/layout.js';
import { nativeMlpBackend } from '../../fusion/native-mlp.js';
import { exportOnnx, type OnnxMeta } from '../../fusion/onnx-export.js';
import { scoreRows, trainMlp } from '../../fusion/train.js';
import { simdLevel } from '../../native/simd.js';
import { Datastore } from '../../retrieval/datastore.js';
import { fusionOptions, pointOptions, retrievalOptions, runOptions } from '../options.js';
import { progressBars } from '../progress.js';

type Args = Record<string, unknown> & { data: string; out: string; model: 'fusion' | 'baseline'; json: boolean; quiet: boolean };

/**
 * `rapm train`: train the fusion net (on leave-one-out priors) or the official baseline MLP
 * on a dataset's official train split, score it on the test split, and export it as ONNX
 * with a JSON sidecar (dims, index lists, K, tau, data hash, seed, metrics, SIMD level).
 */
export const trainCommand: CommandModule<object, Args> = {
  command: 'train',
  describe: 'Train the fusion net (or the baseline MLP), score it, and export it to ONNX',
  builder: (y: Argv) =>
    y.options({
      data: { type: 'string', default: 'data/default', describe: 'Dataset with an official split (DRAL folder or chunks); the default is generated if missing' },
      model: { choices: ['fusion', 'baseline'], default: 'fusion', describe: 'fusion: prior + F(en, prior); baseline: the official 1024-500-250-125-101 ReLU MLP' },
      out: { type: 'string', default: 'models/fusion.onnx', describe: 'ONNX file to write (a .json sidecar is written beside it)' },
      ...retrievalOptions,
      ...fusionOptions,
      ...runOptions,
    }) as never,
  handler: async (a) => {
    const quiet = a.quiet || a.json;
    const bar = progressBars(quiet);
    const log = quiet ? undefined : (l: string) => process.stderr.write(`${l}\n`);
    // The embedded default is (re)generated when missing or made by another generator version.
    if (a.data === 'data/default') await ensureDefaultData(a.data);
    const data = experimentData(await loadDataset(a.data), path.resolve(a.data));
    const seed = a.seed as number;
    const common = pointOptions(a, bar);
    let layout, params, metrics: Record<string, unknown>;
    if (a.model === 'fusion') {
      const p = await evaluatePoint(data.pool, data.tests, common, seed, 'fusion');
      layout = p.layout!;
      params = p.params!;
      metrics = {
        val_cosine: p.valFusion,
        val_plain: p.valPlain,
        train_cosine: p.trainFusion,
        train_priors: common.leaveOneOut ? 'leave-one-out' : 'leaky (each prior includes its own target)',
        epochs: p.epochs,
        best_epoch: p.bestEpoch,
        tests: p.tests.map((t) => ({ name: t.name, n: t.n, plain: t.plain, fusion: t.fusion, gain: t.gain.diff, gain_lo: t.gain.lo, gain_hi: t.gain.hi })),
      };
    } else {
      const dv = SPANISH_WINNERS.length;
      const all = { en: data.pool.en, prior: null, target: data.pool.values };
      const { fit, val } = splitFitVal(data.pool.n, common.valFraction, seed);
      const r = await trainMlp(nativeMlpBackend, baselineSpec({ hidden: a.hidden === fusionOptions.hidden.default ? [500, 250, 125] : common.hidden, dropout: common.dropout }), subsetMlp(all, fit, 1024, dv), subsetMlp(all, val, 1024, dv), {
        epochs: common.epochs,
        patience: common.patience,
        batchSize: common.batchSize,
        lr: common.lr,
        weightDecay: common.weightDecay,
        seed,
        onStep: (d, t) => bar('baseline epoch', d, t),
        onEpoch: (e) => log?.(`epoch ${e.epoch} train cos ${e.trainCosine.toFixed(4)} val cos ${e.valCosine.toFixed(4)}${e.best ? ' *' : ''}`),
      });
      layout = r.layout;
      params = r.params;
      // Compare against plain retrieval on the same test rows.
      const ds = new Datastore({ keyIndices: keyIndices(common.config), valueDim: dv });
      await ds.add(data.pool.en, data.pool.values, data.pool.ids);
      const tests = [];
      for (const t of data.tests) {
        const plain = rowCosines((await ds.search(t.en, { k: common.k, tau: common.tau, aggregate: common.aggregate })).prior, t.target, dv);
        const mlp = scoreRows(nativeMlpBackend, layout, params, { en: t.en, prior: null, target: t.target });
        const g = pairedBootstrap(plain, mlp, { resamples: common.resamples, seed });
        tests.push({ name: t.name, n: t.n, plain: g.meanA, baseline: g.meanB, diff_vs_retrieval: g.diff, lo: g.lo, hi: g.hi });
      }
      metrics = { val_cosine: r.bestValCosine, epochs: r.history.length, best_epoch: r.bestEpoch, tests, train_cosine: mean(scoreRows(nativeMlpBackend, layout, params, subsetMlp(all, fit, 1024, dv))) };
    }
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
};
