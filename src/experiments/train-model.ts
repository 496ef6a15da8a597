/**
 * Train one model on a dataset's official split and score it: the fusion net (on
 * leave-one-out priors, via evaluatePoint) or the official baseline MLP (1024-500-250-125-101,
 * ReLU), compared with plain retrieval on the same test rows with a paired bootstrap
 * interval. `rapm train` is a thin layer over this.
 */
import { keyIndices, SPANISH_WINNERS } from '../data/indices.js';
import { RapmError } from '../errors.js';
import { hierarchicalBootstrap } from '../eval/bootstrap.js';
import { mean, rowCosines } from '../eval/cosine.js';
import { baselineSpec, type ParamLayout } from '../fusion/layout.js';
import { scoreRows, trainMlpOnOwnedData } from '../fusion/train.js';
import { Datastore } from '../retrieval/datastore.js';
import { clusterLabels, evaluatePoint, splitFitVal, subsetMlp, type PointOptions, type SeedRun } from './evaluate.js';
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

/** Mean, sample standard deviation (0 for one value), min and max of per-seed values, and the values. */
export interface SeedSpread {
  mean: number;
  sd: number;
  min: number;
  max: number;
  values: number[];
}

export function seedSpread(values: number[]): SeedSpread {
  const n = values.length;
  const m = values.reduce((a, v) => a + v, 0) / n;
  const sd = n > 1 ? Math.sqrt(values.reduce((a, v) => a + (v - m) * (v - m), 0) / (n - 1)) : 0;
  return { mean: m, sd, min: Math.min(...values), max: Math.max(...values), values };
}

/**
 * Train and score the fusion net on the pool, with the test sets of `data`. Every training seed
 * trains a net, but only the first (seeded `o.seed`) is exported: `metrics` describes that net
 * alone (its validation split, its epochs, its test scores with an interval over the test rows),
 * so a fresh evaluation of the served bundle reproduces it. `metrics.seeds` holds what the
 * training seeds say together: per-seed values, their mean, sd, min and max, and the gain
 * interval over seeds and test rows.
 */
export async function trainFusionModel(data: ExperimentData, o: PointOptions): Promise<TrainedModel> {
  const p = await evaluatePoint(data.pool, data.tests, o, o.seed, 'train');
  const shipped = p.seeds[0]!;
  const level = o.level ?? 0.95;
  // A test set whose rows carry no speakers is not a seen-speaker set (evaluate.ts testPairsText).
  const unknown = (i: number) => (data.tests[i]!.speakersUnknown ? { speakersUnknown: true } : {});
  const tests = p.tests.map((t, i) => {
    // The shipped net's own gain interval: seed 0's rows alone, clustered as the seeds' interval is.
    const { unit, labels } = clusterLabels(data.tests[i]!, o.clusterUnit ?? 'auto');
    const g = hierarchicalBootstrap([t.plainRows!], [t.fusionRowsBySeed![0]!], labels, { resamples: o.resamples, level, seed: (o.seed * 7919) >>> 0, unit });
    return { name: t.name, n: t.n, ...unknown(i), plain: g.meanA, fusion: g.meanB, gain: g.diff, gain_lo: g.lo, gain_hi: g.hi };
  });
  const spread = (f: (s: SeedRun) => number) => seedSpread(p.seeds.map(f));
  return {
    kind: 'fusion',
    layout: p.layout!,
    params: p.params!,
    metrics: {
      model: `the shipped net (model.onnx): training seed 1 of ${p.seeds.length}, seeded ${shipped.seed}`,
      seed: shipped.seed,
      val_cosine: shipped.valFusion,
      val_plain: shipped.valPlain,
      train_cosine: shipped.trainFusion,
      train_priors: o.leaveOneOut ? 'leave-one-out' : 'leaky (each prior includes its own target)',
      epochs: shipped.epochs,
      best_epoch: shipped.bestEpoch,
      level,
      tests,
      seeds: {
        about: `all ${p.seeds.length} training seeds' nets (only the first is shipped): mean, sample sd, min, max and per-seed values; gain_lo/gain_hi are the interval over seeds and test rows`,
        n: p.seeds.length,
        seeds: p.seeds.map((s) => s.seed),
        val_cosine: spread((s) => s.valFusion),
        train_cosine: spread((s) => s.trainFusion),
        epochs: spread((s) => s.epochs),
        best_epoch: spread((s) => s.bestEpoch),
        tests: p.tests.map((t, i) => ({
          name: t.name,
          n: t.n,
          ...unknown(i),
          plain: t.plain,
          fusion: seedSpread(t.fusionRowsBySeed!.map((r) => mean(r))),
          gain: { ...seedSpread(t.gain.seedGains), gain_lo: t.gain.lo, gain_hi: t.gain.hi, unit: t.gain.unit },
        })),
      },
    },
  };
}

/**
 * Train and score the official baseline MLP (widths BASELINE_HIDDEN), against plain retrieval.
 * One net is trained (seeded `o.seed`): `trainSeeds` above 1 is refused, since nothing would
 * train the other seeds. The interval resamples `clusterUnit` as the fusion net's does.
 */
export async function trainBaselineModel(data: ExperimentData, o: PointOptions): Promise<TrainedModel> {
  if (o.trainSeeds !== undefined && o.trainSeeds !== 1) {
    throw new RapmError('RAPM_INVALID_ARG', `trainSeeds ${o.trainSeeds}: the baseline trains one net (seeded by seed); trainSeeds applies to the fusion model only`);
  }
  const dv = SPANISH_WINNERS.length;
  const all = { en: data.pool.en, prior: null, target: data.pool.values };
  const { fit, val } = splitFitVal(data.pool.n, o.valFraction, o.seed);
  let epochsDone = 0;
  const r = await trainMlpOnOwnedData(o.backend, baselineSpec({ hidden: BASELINE_HIDDEN, dropout: o.dropout }), subsetMlp(all, fit, 1024, dv), subsetMlp(all, val, 1024, dv), {
    epochs: o.epochs,
    patience: o.patience,
    batchSize: o.batchSize,
    lr: o.lr,
    weightDecay: o.weightDecay,
    seed: o.seed,
    onStep: (d, t) => o.progress?.(`train: baseline training (<= ${o.epochs} epochs)`, epochsDone * t + d, o.epochs * t),
    onEpoch: (e) => (epochsDone = e.epoch, o.log?.(`epoch ${e.epoch} train cos ${e.trainCosine.toFixed(4)} val cos ${e.valCosine.toFixed(4)}${e.best ? ' *' : ''}`)),
  });
  o.progress?.(`train: baseline training (<= ${o.epochs} epochs)`, 1, 1);
  // Compare against plain retrieval on the same test rows.
  const ds = new Datastore({ keyIndices: keyIndices(o.config), valueDim: dv, precision: o.precision });
  await ds.add(data.pool.en, data.pool.values, data.pool.ids);
  const tests = [];
  for (const t of data.tests) {
    const plain = rowCosines((await ds.search(t.en, { k: o.k, tau: o.tau, aggregate: o.aggregate })).prior, t.target, dv);
    const mlp = scoreRows(o.backend, r.layout, r.params, { en: t.en, prior: null, target: t.target });
    // Resampled as the fusion net's interval on the same test rows is (clusterUnit: speakers when
    // known), so the two models' intervals are comparable; a row bootstrap is too narrow when a
    // speaker's rows are correlated.
    const { unit, labels } = clusterLabels(t, o.clusterUnit ?? 'auto');
    const g = hierarchicalBootstrap([plain], [mlp], labels, { resamples: o.resamples, level: o.level, seed: o.seed, unit });
    tests.push({ name: t.name, n: t.n, plain: g.meanA, baseline: g.meanB, diff_vs_retrieval: g.diff, lo: g.lo, hi: g.hi, unit: g.unit });
  }
  const metrics = { val_cosine: r.bestValCosine, epochs: r.history.length, best_epoch: r.bestEpoch, level: o.level ?? 0.95, tests, train_cosine: mean(scoreRows(o.backend, r.layout, r.params, subsetMlp(all, fit, 1024, dv))) };
  return { kind: 'baseline', layout: r.layout, params: r.params, metrics };
}

/**
 * The datastore the priors of `trainFusionModel` came from, rebuilt: the same pool rows in the
 * same order, the same key columns and precision (so a bundle serves what was trained).
 */
export async function trainingDatastore(data: ExperimentData, o: Pick<PointOptions, 'config' | 'precision'>): Promise<Datastore> {
  const ds = new Datastore({ keyIndices: keyIndices(o.config), valueDim: data.pool.values.length / data.pool.n, precision: o.precision });
  await ds.add(data.pool.en, data.pool.values, data.pool.ids);
  return ds;
}

/**
 * The human summary of trainFusionModel's metrics: one line for the shipped net, one for the
 * training seeds together, each saying which it is.
 */
export function describeFusionMetrics(m: Record<string, unknown>): string[] {
  const f4 = (x: number) => x.toFixed(4);
  const s4 = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(4)}`;
  type Shipped = { name: string; speakersUnknown?: boolean; plain: number; fusion: number; gain: number; gain_lo: number; gain_hi: number };
  type Seeds = { n: number; epochs: SeedSpread; best_epoch: SeedSpread; tests: { name: string; speakersUnknown?: boolean; fusion: SeedSpread; gain: SeedSpread & { gain_lo: number; gain_hi: number } }[] };
  const tests = m.tests as Shipped[];
  const seeds = m.seeds as Seeds;
  const label = (t: { name: string; speakersUnknown?: boolean }) => (t.speakersUnknown ? 'test (speakers unknown)' : `${t.name} speakers`);
  const shipped = tests.map((t) => `${label(t)} fusion ${f4(t.fusion)} vs plain ${f4(t.plain)}, gain ${s4(t.gain)} [${s4(t.gain_lo)}, ${s4(t.gain_hi)}]`).join('; ');
  const all = seeds.tests.map((t) => `${label(t)} fusion ${f4(t.fusion.mean)} ± ${f4(t.fusion.sd)}, gain ${s4(t.gain.mean)} ± ${f4(t.gain.sd)} [${s4(t.gain.gain_lo)}, ${s4(t.gain.gain_hi)}]`).join('; ');
  return [
    `shipped model (model.onnx = ${String(m.model).replace(/^the shipped net \(model\.onnx\): /, '')}; "metrics"): ${shipped}; ${m.epochs as number} epochs, best ${m.best_epoch as number}`,
    `all ${seeds.n} training seeds (mean ± sd, not the shipped model alone; "metrics.seeds"): ${all}; epochs ${seeds.epochs.mean.toFixed(2)} ± ${seeds.epochs.sd.toFixed(2)}, best ${seeds.best_epoch.mean.toFixed(2)} ± ${seeds.best_epoch.sd.toFixed(2)}`,
  ];
}
