/**
 * Train one model on a dataset's official split and score it: the fusion net (on
 * leave-one-out priors, via evaluatePoint) or the official baseline MLP (1024-500-250-125-101,
 * ReLU), compared with plain retrieval on the same test rows with a paired bootstrap
 * interval. `rapm train` is a thin layer over this.
 */
import { keyIndices, SPANISH_WINNERS } from '../data/indices.js';
import { pairedBootstrap } from '../eval/bootstrap.js';
import { mean, rowCosines } from '../eval/cosine.js';
import { baselineSpec, type ParamLayout } from '../fusion/layout.js';
import { scoreRows, trainMlp } from '../fusion/train.js';
import { Datastore } from '../retrieval/datastore.js';
import { evaluatePoint, splitFitVal, subsetMlp, type PointOptions } from './evaluate.js';
import type { ExperimentData } from './sweeps.js';

/** The official baseline's hidden widths (R-APM system description). */
export const BASELINE_HIDDEN = [500, 250, 125];

export interface TrainedModel {
  kind: 'fusion' | 'baseline';
  layout: ParamLayout;
  params: Float32Array;
  /** Validation, train and test scores; test gains carry their bootstrap interval. */
  metrics: Record<string, unknown>;
}

/** Train and score the fusion net on the pool, with the test sets of `data`. */
export async function trainFusionModel(data: ExperimentData, o: PointOptions): Promise<TrainedModel> {
  const p = await evaluatePoint(data.pool, data.tests, o, o.seed, 'fusion');
  return {
    kind: 'fusion',
    layout: p.layout!,
    params: p.params!,
    metrics: {
      val_cosine: p.valFusion,
      val_plain: p.valPlain,
      train_cosine: p.trainFusion,
      train_priors: o.leaveOneOut ? 'leave-one-out' : 'leaky (each prior includes its own target)',
      epochs: p.epochs,
      best_epoch: p.bestEpoch,
      level: o.level ?? 0.95,
      tests: p.tests.map((t) => ({ name: t.name, n: t.n, plain: t.plain, fusion: t.fusion, gain: t.gain.diff, gain_lo: t.gain.lo, gain_hi: t.gain.hi })),
    },
  };
}

/** Train and score the official baseline MLP (widths BASELINE_HIDDEN), against plain retrieval. */
export async function trainBaselineModel(data: ExperimentData, o: PointOptions): Promise<TrainedModel> {
  const dv = SPANISH_WINNERS.length;
  const all = { en: data.pool.en, prior: null, target: data.pool.values };
  const { fit, val } = splitFitVal(data.pool.n, o.valFraction, o.seed);
  const r = await trainMlp(o.backend, baselineSpec({ hidden: BASELINE_HIDDEN, dropout: o.dropout }), subsetMlp(all, fit, 1024, dv), subsetMlp(all, val, 1024, dv), {
    epochs: o.epochs,
    patience: o.patience,
    batchSize: o.batchSize,
    lr: o.lr,
    weightDecay: o.weightDecay,
    seed: o.seed,
    onStep: (d, t) => o.progress?.('baseline epoch', d, t),
    onEpoch: (e) => o.log?.(`epoch ${e.epoch} train cos ${e.trainCosine.toFixed(4)} val cos ${e.valCosine.toFixed(4)}${e.best ? ' *' : ''}`),
  });
  // Compare against plain retrieval on the same test rows.
  const ds = new Datastore({ keyIndices: keyIndices(o.config), valueDim: dv });
  await ds.add(data.pool.en, data.pool.values, data.pool.ids);
  const tests = [];
  for (const t of data.tests) {
    const plain = rowCosines((await ds.search(t.en, { k: o.k, tau: o.tau, aggregate: o.aggregate })).prior, t.target, dv);
    const mlp = scoreRows(o.backend, r.layout, r.params, { en: t.en, prior: null, target: t.target });
    const g = pairedBootstrap(plain, mlp, { resamples: o.resamples, level: o.level, seed: o.seed });
    tests.push({ name: t.name, n: t.n, plain: g.meanA, baseline: g.meanB, diff_vs_retrieval: g.diff, lo: g.lo, hi: g.hi });
  }
  const metrics = { val_cosine: r.bestValCosine, epochs: r.history.length, best_epoch: r.bestEpoch, level: o.level ?? 0.95, tests, train_cosine: mean(scoreRows(o.backend, r.layout, r.params, subsetMlp(all, fit, 1024, dv))) };
  return { kind: 'baseline', layout: r.layout, params: r.params, metrics };
}
