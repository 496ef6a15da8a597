import path from 'node:path';
import { ensureDir, writeFileAtomicSync } from '../io/atomic.js';
import type { Dataset } from '../data/dataset.js';
import { hashDataset } from '../data/hash.js';
import { FEATURE_DIM, SPANISH_WINNERS, keyIndices, valueIndices, type KeyConfig } from '../data/indices.js';
import { officialSplit, type Split } from '../data/split.js';
import { subsetDataset } from '../data/dataset.js';
import { RapmError } from '../errors.js';
import { hierarchicalBootstrap } from '../eval/bootstrap.js';
import { mean, rowCosines } from '../eval/cosine.js';
import { writePng } from '../report/png.js';
import { toCsv } from '../report/csv.js';
import { fmtInterval, fmtNum, mdTable, reportDoc } from '../report/markdown.js';
import { lineChart, type ChartSeries } from '../report/svg.js';
import { Datastore } from '../retrieval/datastore.js';
import type { Aggregate } from '../retrieval/search-options.js';
import { scoreRows } from '../fusion/train.js';
import { buildTestSets, clusterLabels, describeGain, evaluatePoint, poolOf, sampleSubset, sampleWithReplacement, type PointOptions, type PointResult, type Pool, type TestSet } from './evaluate.js';
import { finishRecord, startRecord, type RunRecord } from './run-record.js';
import { SETTINGS } from '../settings.js';

/**
 * The seed report's experiments (§6.1-6.3, §4.3) and the published Table 2/3 grid, each
 * writing results.json + results.csv + SVG (+ PNG when available) + report.md into its
 * output folder, with seed, configuration, data hash, code version, SIMD level and timings.
 */

export interface ExperimentData {
  /** Training pairs (the official train split). */
  pool: Pool;
  tests: TestSet[];
  hash: string;
  source: string;
}

/** Train/test from a dataset's official split (or `split`, e.g. chooseSplit for --split); test rows are split into seen/unseen speakers. */
export function experimentData(ds: Dataset, source: string, split: Split = officialSplit(ds)): ExperimentData {
  const train = subsetDataset(ds, split.train);
  const test = subsetDataset(ds, split.test);
  const speakers = new Set(train.speakers ?? []);
  return { pool: poolOf(train), tests: buildTestSets(test, speakers), hash: hashDataset(ds), source };
}

export interface ExperimentOutput {
  record: RunRecord;
  rows: Record<string, unknown>[];
  summary: string;
}

async function writeExperiment(out: string, name: string, record: RunRecord, rows: Record<string, unknown>[], charts: Record<string, string>, sections: { heading: string; body: string }[], summary: string): Promise<ExperimentOutput> {
  ensureDir(out);
  const done = finishRecord(record);
  for (const [file, svg] of Object.entries(charts)) {
    writeFileAtomicSync(path.join(out, file), svg);
    await writePng(path.join(out, file.replace(/\.svg$/, '.png')), svg);
  }
  writeFileAtomicSync(path.join(out, 'results.csv'), toCsv(rows));
  const figures = Object.keys(charts).map((f) => `![${f}](${f})`).join('\n\n');
  writeFileAtomicSync(
    path.join(out, 'report.md'),
    reportDoc({
      title: `rapm ${name}`,
      intro: summary,
      sections: [
        ...sections,
        ...(figures ? [{ heading: 'Plots', body: figures }] : []),
        { heading: 'Reproduce', body: `Seed ${done.seed}, data ${done.dataHash} (${done.dataSource}), rapm ${done.version} (${done.commit ?? 'no git'}), ${done.simdLevel} kernels, ${done.threads} threads, ${done.seconds?.toFixed(1)} s.\n\n` + '```json\n' + JSON.stringify(done.config, null, 2) + '\n```' },
      ],
    }),
  );
  // results.json last: its presence means the folder is complete.
  writeFileAtomicSync(path.join(out, 'results.json'), JSON.stringify({ status: 'complete', record: done, summary, rows }, null, 1) + '\n');
  return { record: done, rows, summary };
}

const sign = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(4)}`;
/**
 * `dataSelection`: how the rows were chosen (split, testFraction, split seed, speakerPattern,
 * onProblem, ...; src/cli/options.ts dataSelection), recorded in the run's config so its split can
 * be made again. The data itself is recorded by hash and source.
 */
type Common = Omit<PointOptions, 'seed'> & { seed: number; out: string; dataSelection?: Record<string, unknown> };

function configOf(o: Common, extra: Record<string, unknown>): Record<string, unknown> {
  const { backend: _b, progress: _p, log: _l, out: _o, ...rest } = o;
  return { ...rest, ...extra };
}

function pointRows(size: number, p: PointResult, extra: Record<string, unknown>): Record<string, unknown>[] {
  return p.tests.map((t) => ({ ...extra, pairs: size, test_set: t.name, test_pairs: t.n, plain: t.plain, fusion: t.fusion, gain: t.gain.diff, gain_lo: t.gain.lo, gain_hi: t.gain.hi, train_fusion_loo: p.trainFusion, train_plain_loo: p.trainPlain, val_fusion: p.valFusion, epochs: p.epochs, best_epoch: p.bestEpoch, train_seconds: p.trainSeconds }));
}

/** Seed 6.1: plain vs fusion and the gain per data size, sampling with replacement, several seeds. */
export async function runSubsample(data: ExperimentData, o: Common & { sizes: number[]; seeds: number }): Promise<ExperimentOutput> {
  refuseSubsampleSizes(o.sizes, o.k, o.leaveOneOut);
  const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? '' : 's'}`;
  const runsText = `${plural(o.seeds, 'data sample')} x ${plural(o.trainSeeds ?? SETTINGS.trainSeeds.default, 'training seed')}`;
  const record = startRecord('subsample', o.seed, configOf(o, { sizes: o.sizes, seeds: o.seeds }), { hash: data.hash, source: data.source });
  const rows: Record<string, unknown>[] = [];
  const pooled: { size: number; name: string; n: number; plain: number; fusion: number; diff: number; lo: number; hi: number; runs: number; spreadLo: number; spreadHi: number; text: string }[] = [];
  for (const size of o.sizes) {
    const perSeed: PointResult[] = [];
    for (let s = 0; s < o.seeds; s++) {
      const seed = o.seed * 100 + s;
      const sample = sampleWithReplacement(data.pool, size, seed);
      const room = leastNeighbours(sample, o.leaveOneOut);
      if (room.least < o.k) {
        throw new RapmError('RAPM_K_TOO_LARGE', `--sizes ${size} and -k ${o.k}: sample ${s + 1} (seed ${seed}, drawn with replacement) holds utterance ${room.id} ${room.copies} times, and leave-one-out priors exclude every copy, leaving ${room.least} neighbours; give larger --sizes or a smaller -k`);
      }
      const t0 = performance.now();
      const p = await evaluatePoint(sample, data.tests, { ...o, seed }, seed * 1009 + size, `size ${size} seed ${s + 1}/${o.seeds}`);
      perSeed.push(p);
      rows.push(...pointRows(size, p, { seed, seconds: (performance.now() - t0) / 1000 }));
      o.log?.(`size ${size} seed ${seed}: ${p.tests.map((t) => `${t.name} gain ${sign(t.gain.diff)} [${sign(t.gain.lo)}, ${sign(t.gain.hi)}]`).join('; ')}`);
    }
    // Every (data sample, training seed) run is one draw of the seed stage; then clusters, then rows.
    for (const t of data.tests) {
      const plain: Float64Array[] = [];
      const fusion: Float64Array[] = [];
      for (const p of perSeed) {
        const r = p.tests.find((x) => x.name === t.name)!;
        for (const f of r.fusionRowsBySeed ?? [r.fusionRows!]) {
          plain.push(r.plainRows!);
          fusion.push(f);
        }
      }
      const { unit, labels } = clusterLabels(t, o.clusterUnit ?? 'auto');
      const g = hierarchicalBootstrap(plain, fusion, labels, { resamples: o.resamples, level: o.level, seed: o.seed + size, unit });
      pooled.push({ size, name: t.name, n: t.n, plain: g.meanA, fusion: g.meanB, diff: g.diff, lo: g.lo, hi: g.hi, runs: g.seeds, spreadLo: Math.min(...g.seedGains), spreadHi: Math.max(...g.seedGains), text: describeGain(g, runsText) });
    }
  }
  const names = [...new Set(pooled.map((p) => p.name))];
  const gainChart = lineChart({
    title: 'Fusion gain vs data size (sampling with replacement)',
    xLabel: 'training pairs',
    yLabel: `gain (95% CI over ${o.seeds} samples x ${o.trainSeeds ?? SETTINGS.trainSeeds.default} training seeds)`,
    xLog: true,
    yZeroLine: true,
    hLines: [{ y: 0.001, label: '+0.001' }],
    series: names.flatMap((n): ChartSeries[] => [
      { name: `${n} speakers`, points: pooled.filter((p) => p.name === n).map((p) => ({ x: p.size, y: p.diff, lo: p.lo, hi: p.hi })) },
      { name: `${n}: range of the runs' own gains`, band: false, marker: 'none', dashed: true, points: pooled.filter((p) => p.name === n).map((p) => ({ x: p.size, y: Number.NaN, lo: p.spreadLo, hi: p.spreadHi })) },
    ]),
  });
  const scoreChart = lineChart({
    title: 'Plain retrieval and retrieval + fusion vs data size',
    xLabel: 'training pairs',
    yLabel: 'mean cosine',
    xLog: true,
    series: names.flatMap((n): ChartSeries[] => [
      { name: `plain, ${n}`, dashed: true, points: pooled.filter((p) => p.name === n).map((p) => ({ x: p.size, y: p.plain })) },
      { name: `fusion, ${n}`, points: pooled.filter((p) => p.name === n).map((p) => ({ x: p.size, y: p.fusion })) },
    ]),
  });
  const table = mdTable(['pairs', 'test set', 'n', 'plain', 'fusion', 'gain [95% CI]', 'runs', 'spread of run gains [min, max]'], pooled.map((p) => [p.size, p.name, p.n, fmtNum(p.plain), fmtNum(p.fusion), fmtInterval(p.diff, p.lo, p.hi), p.runs, `[${fmtNum(p.spreadLo, 4, { sign: true })}, ${fmtNum(p.spreadHi, 4, { sign: true })}]`]));
  const last = pooled.filter((p) => p.name === names[0]).at(-1)!;
  const who = data.tests.find((t) => t.name === names[0])?.speakersUnknown ? 'test rows whose speakers are unknown' : `${names[0]} speakers`;
  const summary = `Fusion gain at ${last.size} pairs (${who}): ${last.text}; the ${last.runs} runs' own gains from ${fmtNum(last.spreadLo, 4, { sign: true })} to ${fmtNum(last.spreadHi, 4, { sign: true })}, on ${last.n} test pairs.`;
  return writeExperiment(o.out, 'subsample (seed report 6.1)', record, rows, { 'gain.svg': gainChart, 'scores.svg': scoreChart }, [{ heading: 'Gain per size', body: `${table}\n\nSamples are drawn with replacement; leave-one-out priors exclude every copy of a query's utterance. Each run (a data sample with one training seed) has its own gain; the interval is a hierarchical paired bootstrap over the runs, then the test clusters, then rows within them. The dashed bars in the plot are the range of the runs' own gains.` }], summary);
}

/** Seed 6.2: inject ES[:, w_j] += s * EN[:, j] (j < 101) and check whether fusion learns it. */
export function injectBias(en: Float32Array, values: Float32Array, n: number, s: number): Float32Array {
  const dv = SPANISH_WINNERS.length;
  const out = values.slice();
  for (let r = 0; r < n; r++) for (let j = 0; j < dv; j++) out[r * dv + j] = out[r * dv + j]! + s * en[r * FEATURE_DIM + j]!;
  return out;
}

/**
 * Ablation: the drop in fusion test cosine when EN[:, a:b] of the fusion input is replaced
 * by its mean over the test rows (the prior is left as it is). A net that learned a mapping
 * from those columns loses accuracy without them.
 */
function ablationDrop(p: PointResult, t: TestSet, backend: PointOptions['backend'], a: number, b: number): number {
  const s = p.tests.find((x) => x.name === t.name);
  if (!p.layout || !p.params || !s?.prior) return Number.NaN;
  const en = t.en.slice();
  for (let j = a; j < b; j++) {
    let m = 0;
    for (let r = 0; r < t.n; r++) m += en[r * FEATURE_DIM + j]!;
    m /= t.n;
    for (let r = 0; r < t.n; r++) en[r * FEATURE_DIM + j] = m;
  }
  const ablated = mean(scoreRows(backend, p.layout, p.params, { en, prior: s.prior, target: t.target }));
  return s.fusion - ablated;
}

/** Mean |W| of the fusion net's first layer on input columns [a, b), relative to all EN columns. */
function firstLayerShare(p: PointResult, a: number, b: number): number {
  if (!p.layout || !p.params) return Number.NaN;
  const L = p.layout.layers[0]!;
  const col = (j: number) => {
    let s = 0;
    for (let o = 0; o < L.out; o++) s += Math.abs(p.params![L.w + o * L.in + j]!);
    return s;
  };
  let inRange = 0, all = 0;
  for (let j = 0; j < FEATURE_DIM; j++) {
    const c = col(j);
    all += c;
    if (j >= a && j < b) inRange += c;
  }
  return inRange / (b - a) / (all / FEATURE_DIM);
}

export async function runBias(data: ExperimentData, o: Common & { strengths: number[]; sizes: number[] }): Promise<ExperimentOutput> {
  const record = startRecord('bias', o.seed, configOf(o, { strengths: o.strengths, sizes: o.sizes }), { hash: data.hash, source: data.source });
  const rows: Record<string, unknown>[] = [];
  for (const size of o.sizes) {
    const base = size >= data.pool.n ? data.pool : sampleSubset(data.pool, size, o.seed);
    for (const s of o.strengths) {
      const pool: Pool = { ...base, values: injectBias(base.en, base.values, base.n, s) };
      const tests = data.tests.map((t) => ({ ...t, target: injectBias(t.en, t.target, t.n, s) }));
      const p = await evaluatePoint(pool, tests, o, o.seed * 31 + size, `size ${size} strength ${s}`);
      const share = firstLayerShare(p, 0, SPANISH_WINNERS.length);
      for (const t of tests) {
        const drop = ablationDrop(p, t, o.backend, 0, SPANISH_WINNERS.length);
        rows.push(...pointRows(base.n, { ...p, tests: p.tests.filter((x) => x.name === t.name) }, { strength: s, first_layer_share_en0_100: share, ablation_drop_en0_100: drop }));
      }
      o.log?.(`size ${base.n} s=${s}: ${p.tests.map((t) => `${t.name} gain ${sign(t.gain.diff)}`).join('; ')}; first-layer weight on EN[0:101] ${share.toFixed(2)}x the EN average`);
    }
  }
  const seen = rows.filter((r) => r.test_set === (data.tests[0]!.name));
  const chart = lineChart({
    title: 'Fusion gain vs injected bias strength',
    xLabel: 'bias strength s (ES += s * EN[:, :101])',
    yLabel: 'gain in mean cosine (95% CI)',
    yZeroLine: true,
    series: o.sizes.map((size) => ({ name: `${size} pairs`, points: seen.filter((r) => r.pairs === Math.min(size, data.pool.n)).map((r) => ({ x: r.strength as number, y: r.gain as number, lo: r.gain_lo as number, hi: r.gain_hi as number })) })),
  });
  const table = mdTable(['pairs', 'strength', 'test set', 'plain', 'fusion', 'gain [95% CI]', 'EN[0:101] weight share', 'ablation drop'], rows.map((r) => [r.pairs as number, r.strength as number, r.test_set as string, fmtNum(r.plain as number), fmtNum(r.fusion as number), fmtInterval(r.gain as number, r.gain_lo as number, r.gain_hi as number), (r.first_layer_share_en0_100 as number).toFixed(2), fmtNum(r.ablation_drop_en0_100 as number, 4, { sign: true })]));
  const strongest = seen.at(-1)!;
  const summary = `At s = ${strongest.strength} and ${strongest.pairs} pairs fusion gains ${fmtInterval(strongest.gain as number, strongest.gain_lo as number, strongest.gain_hi as number)}; replacing EN[0:101] by its mean costs the fusion net ${fmtNum(strongest.ablation_drop_en0_100 as number, 4, { sign: true })} cosine, and its first layer weighs those columns ${(strongest.first_layer_share_en0_100 as number).toFixed(2)}x the average EN column (1.00 = no preference).`;
  return writeExperiment(o.out, 'bias injection (seed report 6.2)', record, rows, { 'gain.svg': chart }, [{ heading: 'Gain and what the net learned', body: `${table}\n\nWeight share: mean |W| of the first Linear layer over input columns EN[0:101] divided by the mean over all 1024 EN columns. Ablation drop: fusion test cosine minus the same with EN[0:101] replaced by its test mean. A net that learned the injected mapping leans on those columns and loses accuracy without them; compare each strength with s = 0.` }], summary);
}

/**
 * The settings of a gain interval, which the gap experiment does not take. Its quantities are
 * descriptive curves (seed report 6.3): the gap subtracts a mean over the training rows (scored
 * with leave-one-out priors) from a mean over different rows (the test set), and no interval of
 * that difference is defined by the report or computed here, so a --level, --resamples or
 * --cluster-unit would be accepted, listed in report.md and change nothing. They are refused
 * (the CLI does not list them; the library throws), not honoured.
 */
export const GAP_REFUSED = ['resamples', 'level', 'clusterUnit'] as const;
export type GapOptions = Omit<Common, (typeof GAP_REFUSED)[number]> & { sizes: number[] };

/** Seed 6.3: train (leave-one-out), validation and test scores vs size, and the gap. */
export async function runGap(data: ExperimentData, options: GapOptions): Promise<ExperimentOutput> {
  for (const k of GAP_REFUSED) {
    if ((options as Record<string, unknown>)[k] !== undefined) throw new RapmError('RAPM_INVALID_ARG', `runGap reports no interval, so ${k} would have no effect: drop it (see GAP_REFUSED)`);
  }
  const record = startRecord('gap', options.seed, configOf(options as unknown as Common, { sizes: options.sizes }), { hash: data.hash, source: data.source });
  // evaluatePoint computes a gain interval the gap discards: the fewest resamples the setting allows.
  const o: Common & { sizes: number[] } = { ...options, resamples: SETTINGS.resamples.bounds!.lo };
  const rows: Record<string, unknown>[] = [];
  for (const size of o.sizes) {
    const pool = size >= data.pool.n ? data.pool : sampleSubset(data.pool, size, o.seed);
    const p = await evaluatePoint(pool, data.tests, o, o.seed * 17 + size, `size ${pool.n}`);
    for (const t of p.tests) rows.push({ pairs: pool.n, test_set: t.name, train_loo: p.trainFusion, val: p.valFusion, test: t.fusion, gap: p.trainFusion - t.fusion, plain_test: t.plain, epochs: p.epochs });
    o.log?.(`size ${pool.n}: train ${p.trainFusion.toFixed(4)} val ${p.valFusion.toFixed(4)} ${p.tests.map((t) => `${t.name} test ${t.fusion.toFixed(4)}`).join(' ')}`);
  }
  const names = [...new Set(rows.map((r) => r.test_set as string))];
  const chart = lineChart({
    title: 'Generalisation gap vs data size',
    xLabel: 'training pairs',
    yLabel: 'train (leave-one-out) - test cosine',
    xLog: true,
    yZeroLine: true,
    series: names.map((n) => ({ name: `${n} speakers`, points: rows.filter((r) => r.test_set === n).map((r) => ({ x: r.pairs as number, y: r.gap as number })) })),
  });
  const scores = lineChart({
    title: 'Train, validation and test cosine vs data size',
    xLabel: 'training pairs',
    yLabel: 'mean cosine (fusion)',
    xLog: true,
    series: [
      { name: 'train (leave-one-out)', points: rows.filter((r) => r.test_set === names[0]).map((r) => ({ x: r.pairs as number, y: r.train_loo as number })) },
      { name: 'validation', points: rows.filter((r) => r.test_set === names[0]).map((r) => ({ x: r.pairs as number, y: r.val as number })) },
      ...names.map((n) => ({ name: `test, ${n}`, points: rows.filter((r) => r.test_set === n).map((r) => ({ x: r.pairs as number, y: r.test as number })) })),
    ],
  });
  const table = mdTable(['pairs', 'test set', 'train (LOO)', 'val', 'test', 'gap'], rows.map((r) => [r.pairs as number, r.test_set as string, fmtNum(r.train_loo as number), fmtNum(r.val as number), fmtNum(r.test as number), fmtNum(r.gap as number, 4, { sign: true })]));
  const first = rows[0]!, last = rows.filter((r) => r.test_set === first.test_set).at(-1)!;
  const summary = `The ${first.test_set}-speaker gap goes from ${fmtNum(first.gap as number, 4, { sign: true })} at ${first.pairs} pairs to ${fmtNum(last.gap as number, 4, { sign: true })} at ${last.pairs}.`;
  return writeExperiment(o.out, 'generalisation gap (seed report 6.3)', record, rows, { 'gap.svg': chart, 'scores.svg': scores }, [{ heading: 'Scores', body: `${table}\n\nTrain scores use leave-one-out priors, so they are comparable with test scores.` }], summary);
}

/** Published Table 2/3: plain retrieval over K x tau, aggregation, Config A vs B. */
export async function runGrid(data: ExperimentData, o: { out: string; seed: number; ks: number[]; taus: number[]; configs?: KeyConfig[]; dataSelection?: Record<string, unknown>; log?: (l: string) => void }): Promise<ExperimentOutput> {
  const configs: KeyConfig[] = o.configs ?? ['A', 'B'];
  // Every K is searched as given: a K above the training pairs was clamped to them and reported
  // under its own label (K=1602 with the numbers of K=1601). Repeated values would repeat rows.
  const tooBig = o.ks.filter((k) => k > data.pool.n);
  if (tooBig.length > 0) throw new RapmError('RAPM_K_TOO_LARGE', `--ks ${tooBig.join(',')}: more than the ${data.pool.n} training pairs of ${data.source}; give K values up to ${data.pool.n}`);
  for (const [name, list] of [['--ks', o.ks], ['--taus', o.taus]] as const) {
    if (new Set(list).size !== list.length) throw new RapmError('RAPM_INVALID_ARG', `${name} ${list.join(',')} repeats a value (each would be run and reported twice)`);
  }
  const record = startRecord('grid', o.seed, { ks: o.ks, taus: o.taus, configs, ...(o.dataSelection ? { dataSelection: o.dataSelection } : {}) }, { hash: data.hash, source: data.source });
  const rows: Record<string, unknown>[] = [];
  const dv = valueIndices().length;
  for (const config of configs) {
    const ds = new Datastore({ keyIndices: keyIndices(config), valueDim: dv });
    await ds.add(data.pool.en, data.pool.values, data.pool.ids);
    for (const t of data.tests) {
      const run = async (k: number, tau: number, aggregate: Aggregate) => {
        const r = await ds.search(t.en, { k, tau, aggregate });
        rows.push({ config, test_set: t.name, aggregate, k, tau: aggregate === 'softmax' ? tau : null, cosine: mean(rowCosines(r.prior, t.target, dv)) });
      };
      for (const k of o.ks) for (const tau of o.taus) await run(k, tau, 'softmax');
      for (const k of o.ks) await run(k, 1, 'mean');
      await run(1, 1, 'top1');
    }
    o.log?.(`config ${config} done`);
  }
  const best = (config: string, name: string) => rows.filter((r) => r.config === config && r.test_set === name).reduce((a, b) => ((b.cosine as number) > (a.cosine as number) ? b : a));
  const names = data.tests.map((t) => t.name);
  const charts: Record<string, string> = {};
  for (const config of configs) {
    charts[`k-tau-${config}.svg`] = lineChart({
      title: `Config ${config}: plain retrieval vs K (${names[0]} speakers)`,
      xLabel: 'K',
      yLabel: 'mean cosine',
      xLog: true,
      series: [
        ...o.taus.map((tau) => ({ name: `softmax tau=${tau}`, points: rows.filter((r) => r.config === config && r.test_set === names[0] && r.aggregate === 'softmax' && r.tau === tau).map((r) => ({ x: r.k as number, y: r.cosine as number })) })),
        { name: 'uniform top-K mean', dashed: true, points: rows.filter((r) => r.config === config && r.test_set === names[0] && r.aggregate === 'mean').map((r) => ({ x: r.k as number, y: r.cosine as number })) },
      ],
    });
  }
  const bestRows = configs.flatMap((c) => names.map((n) => best(c, n)));
  const table = mdTable(['config', 'test set', 'best aggregation', 'K', 'tau', 'cosine'], bestRows.map((r) => [r.config as string, r.test_set as string, r.aggregate as string, r.k as number, (r.tau as number | null) ?? '—', fmtNum(r.cosine as number)]));
  const top1 = rows.filter((r) => r.aggregate === 'top1' && r.test_set === names[0]);
  const summary = `Best on ${names[0]} speakers: ${configs.map((c) => `Config ${c} ${fmtNum(best(c, names[0]!).cosine as number)} (${best(c, names[0]!).aggregate}, K=${best(c, names[0]!).k})`).join(', ')}; hard top-1: ${top1.map((r) => `${r.config} ${fmtNum(r.cosine as number)}`).join(', ')}.`;
  const full = configs.flatMap((config) => names.map((name) => ({ heading: `Config ${config}, ${name} speakers: mean cosine by K, tau and aggregation`, body: gridTable(rows, config, name, o.ks, o.taus) })));
  return writeExperiment(o.out, 'retrieval grid (published Tables 2/3)', record, rows, charts, [{ heading: 'Best settings', body: table }, ...full], summary);
}

/**
 * The full grid of one config and test set in the shape of the published Tables 2/3: a row
 * per K, a column per softmax temperature, then the uniform top-K mean; hard top-1 below.
 * The best cell is bold.
 */
export function gridTable(rows: Record<string, unknown>[], config: string, testSet: string, ks: number[], taus: number[]): string {
  const mine = rows.filter((r) => r.config === config && r.test_set === testSet);
  const best = Math.max(...mine.map((r) => r.cosine as number));
  const cell = (r: Record<string, unknown> | undefined) => (r ? ((r.cosine as number) === best ? `**${fmtNum(r.cosine as number)}**` : fmtNum(r.cosine as number)) : '—');
  const body = ks.map((k) => [
    k,
    ...taus.map((tau) => cell(mine.find((r) => r.aggregate === 'softmax' && r.k === k && r.tau === tau))),
    cell(mine.find((r) => r.aggregate === 'mean' && r.k === k)),
  ]);
  const top1 = mine.find((r) => r.aggregate === 'top1');
  const table = mdTable(['K', ...taus.map((t) => `softmax tau=${t}`), 'uniform mean'], body);
  return `${table}\n\nHard top-1 (K = 1): ${cell(top1)}. Bold: the best cell of this table.`;
}

/** Seed 4.3: the best dropout per data size (by validation cosine, mean over training seeds), with the spread across seeds. */
export async function runDropout(data: ExperimentData, o: Common & { sizes: number[]; dropouts: number[] }): Promise<ExperimentOutput> {
  const record = startRecord('dropout', o.seed, configOf(o, { sizes: o.sizes, dropouts: o.dropouts }), { hash: data.hash, source: data.source });
  const rows: Record<string, unknown>[] = [];
  for (const size of o.sizes) {
    const pool = size >= data.pool.n ? data.pool : sampleSubset(data.pool, size, o.seed);
    for (const p of o.dropouts) {
      const r = await evaluatePoint(pool, data.tests, { ...o, dropout: p }, o.seed * 13 + size, `size ${pool.n} dropout ${p}`);
      const vals = r.seeds.map((x) => x.valFusion);
      // "Never beat the prior on validation" is a per-seed outcome: count the seeds it happened to.
      const stuck = r.seeds.filter((x) => x.bestEpoch === 0).length;
      rows.push(...pointRows(pool.n, r, { dropout: p, val_min: Math.min(...vals), val_max: Math.max(...vals), val_plain: r.valPlain, seeds_never_beat_prior: stuck, train_seeds: r.seeds.length, seed_gains: r.tests.map((t) => t.gain.seedGains.map((g) => g.toFixed(6)).join(' ')).join(' | ') }));
      o.log?.(`size ${pool.n} dropout ${p}: val ${r.valFusion.toFixed(4)} [${Math.min(...vals).toFixed(4)}, ${Math.max(...vals).toFixed(4)}] ${r.tests.map((t) => `${t.name} gain ${sign(t.gain.diff)}`).join(' ')}`);
    }
  }
  const name = data.tests[0]!.name;
  const sizes = [...new Set(rows.map((r) => r.pairs as number))];
  const mine = rows.filter((r) => r.test_set === name);
  const bestBySize = sizes.map((n) => mine.filter((r) => r.pairs === n).reduce((a, b) => ((b.val_fusion as number) > (a.val_fusion as number) ? b : a)));
  const chart = lineChart({
    title: 'Fusion validation cosine vs dropout',
    xLabel: 'dropout p',
    yLabel: 'validation cosine (band: range over training seeds)',
    series: sizes.map((n) => ({ name: `${n} pairs`, points: mine.filter((r) => r.pairs === n).map((r) => ({ x: r.dropout as number, y: r.val_fusion as number, lo: r.val_min as number, hi: r.val_max as number })) })),
  });
  const full = mdTable(
    ['pairs', 'dropout', 'val cosine (mean)', 'val range over seeds', 'seeds that never beat the prior', `test gain (${name}) [95% CI]`, 'seed gains'],
    mine.map((r) => [r.pairs as number, r.dropout as number, fmtNum(r.val_fusion as number), `[${fmtNum(r.val_min as number)}, ${fmtNum(r.val_max as number)}]`, `${r.seeds_never_beat_prior as number}/${r.train_seeds as number}`, fmtInterval(r.gain as number, r.gain_lo as number, r.gain_hi as number), String(r.seed_gains).split(' | ')[0]!.split(' ').map((g) => fmtNum(Number(g), 4, { sign: true })).join(' ')]),
  );
  const table = mdTable(['pairs', 'best dropout (mean val)', 'val cosine', 'val range over seeds', `test gain (${name})`], bestBySize.map((r) => [r.pairs as number, r.dropout as number, fmtNum(r.val_fusion as number), `[${fmtNum(r.val_min as number)}, ${fmtNum(r.val_max as number)}]`, fmtInterval(r.gain as number, r.gain_lo as number, r.gain_hi as number)]));
  const summary = `Best dropout by mean validation cosine over ${o.trainSeeds ?? SETTINGS.trainSeeds.default} training seed(s): ${bestBySize.map((r) => `${r.dropout} at ${r.pairs} pairs`).join(', ')} (seed report prediction: 0.1 at 2K, 0.2-0.3 at 200K).`;
  return writeExperiment(o.out, 'dropout (seed report 4.3)', record, rows, { 'dropout.svg': chart }, [
    { heading: 'Best dropout per size', body: table },
    { heading: 'Every setting, with the spread across training seeds', body: `${full}\n\nA seed "never beat the prior" when no epoch's validation cosine exceeded the untrained net's (which is exactly plain retrieval's): its fusion net is the zero correction.` },
  ], summary);
}

/**
 * subsample's --sizes against -k, before any data is drawn: duplicates are refused (each would be
 * run and reported twice, as grid refuses a repeated --ks), and the smallest size must leave -k
 * neighbours once leave-one-out has excluded the query's own row (the library's error named
 * neither flag). Copies that sampling with replacement draws are checked per sample.
 */
export function refuseSubsampleSizes(sizes: readonly number[], k: number, leaveOneOut: boolean): void {
  if (new Set(sizes).size !== sizes.length) throw new RapmError('RAPM_INVALID_ARG', `--sizes ${sizes.join(',')} repeats a value (each would be run and reported twice)`);
  const least = Math.min(...sizes);
  const need = k + (leaveOneOut ? 1 : 0);
  if (least < need) {
    throw new RapmError('RAPM_K_TOO_LARGE', `--sizes ${sizes.join(',')} and -k ${k}: a sample of ${least} pairs gives at most ${least - (leaveOneOut ? 1 : 0)} neighbours${leaveOneOut ? " (leave-one-out priors exclude the query's own pair)" : ''}; give sizes of at least ${need} or -k ${Math.max(1, least - (leaveOneOut ? 1 : 0))} or less`);
  }
}

/** The rows a leave-one-out query of `sample` can see at least: its size less the most copies of one utterance. */
function leastNeighbours(sample: Pool, leaveOneOut: boolean): { least: number; id: string; copies: number } {
  if (!leaveOneOut) return { least: sample.n, id: '', copies: 0 };
  const count = new Map<string, number>();
  for (const id of sample.ids) count.set(id, (count.get(id) ?? 0) + 1);
  let id = '';
  let copies = 0;
  for (const [i, c] of count) if (c > copies) [id, copies] = [i, c];
  return { least: sample.n - copies, id, copies };
}

/** Sizes capped at the pool; duplicates dropped, ascending. */
export function clampSizes(sizes: number[], poolSize: number, warn?: (line: string) => void): number[] {
  const over = sizes.filter((s) => s > poolSize);
  if (over.length > 0) warn?.(`warning: sizes ${over.join(', ')} exceed the ${poolSize} training pairs; using ${poolSize} instead`);
  const out = [...new Set(sizes.map((s) => Math.min(s, poolSize)))].sort((a, b) => a - b);
  if (out.some((s) => !Number.isInteger(s) || s < 2)) throw new RapmError('RAPM_INVALID_ARG', `Expected sizes >= 2 but received ${sizes.join(',')}`);
  return out;
}


