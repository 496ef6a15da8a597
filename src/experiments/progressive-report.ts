import path from 'node:path';
import { writeFileAtomicSync } from '../io/atomic.js';
import { toCsv } from '../report/csv.js';
import { writePng } from '../report/png.js';
import { fmtInterval, fmtNum, mdTable, reportDoc } from '../report/markdown.js';
import { lineChart, type ChartSeries } from '../report/svg.js';
import type { ProgressiveResult } from './progressive.js';

export const PROGRESSIVE_FILES = { results: 'results.json', csv: 'results.csv', gain: 'gain.svg', scores: 'scores.svg', gap: 'gap.svg', report: 'report.md' };

/**
 * Write results.json, results.csv, the three plots and report.md. results.json is written
 * last, and says "status": "running" until the run is complete.
 */
export async function writeProgressiveReport(out: string, r: ProgressiveResult): Promise<void> {
  const f = (name: string) => path.join(out, name);
  const rows = r.steps.flatMap((s) =>
    s.tests.map((t) => ({
      step: s.step,
      chunk: s.chunk,
      pairs: s.pairs,
      test_set: t.name,
      test_pairs: t.n,
      plain: t.plain,
      fusion: t.fusion,
      gain: t.gain.diff,
      gain_lo: t.gain.lo,
      gain_hi: t.gain.hi,
      interval_unit: t.gain.unit,
      interval_clusters: t.gain.clusters,
      train_seeds: t.gain.seeds,
      seed_gains: t.gain.seedGains.map((g) => g.toFixed(6)).join(' '),
      warm_start: s.warm,
      train_plain_loo: s.trainPlain,
      train_fusion_loo: s.trainFusion,
      val_fusion: s.valFusion,
      epochs: s.epochs,
      best_epoch: s.bestEpoch,
      priors_seconds: s.seconds.priors,
      train_seconds: s.seconds.train,
      eval_seconds: s.seconds.eval,
      step_seconds: s.seconds.total,
      train_samples_per_second: Math.round(s.samplesPerSecond),
      useful: s.useful,
    })),
  );
  writeFileAtomicSync(f(PROGRESSIVE_FILES.csv), toCsv(rows));
  const names = [...new Set(r.steps.flatMap((s) => s.tests.map((t) => t.name)))];
  const seriesOf = (pick: (t: ProgressiveResult['steps'][number]['tests'][number], s: ProgressiveResult['steps'][number]) => { y: number; lo?: number; hi?: number }, label: (n: string) => string, dashed = false): ChartSeries[] =>
    names.map((n) => ({
      name: label(n),
      dashed,
      points: r.steps.flatMap((s) => {
        const t = s.tests.find((x) => x.name === n);
        return t ? [{ x: s.pairs, ...pick(t, s) }] : [];
      }),
    }));
  const threshold = Number((r.record.config as { threshold?: number }).threshold ?? 0.001);
  // Where the loop stopped before the last chunk: marked on every plot.
  const stopLines = r.stoppedEarly ? [{ x: r.stoppedEarly.pairs, label: r.stoppedEarly.reason === 'useful' ? 'stopped: fusion useful' : 'stopped: --max-steps' }] : [];
  const g0 = r.steps[0]?.tests[0]?.gain;
  const ciLabel = g0 ? `95% CI: ${g0.seeds} seed${g0.seeds === 1 ? '' : 's'}, ${g0.unit === 'row' ? 'rows' : `${g0.unit}s`}` : '95% CI';
  const gainSvg = lineChart({
      title: 'Fusion gain over plain retrieval vs datastore size',
      xLabel: 'training pairs in the datastore',
      yLabel: `gain in mean cosine (${ciLabel})`,
      xLog: true,
      yZeroLine: true,
      hLines: [{ y: threshold, label: `+${threshold} threshold` }],
      vLines: stopLines,
      series: seriesOf((t) => ({ y: t.gain.diff, lo: t.gain.lo, hi: t.gain.hi }), (n) => `${n} speakers`),
    });
  writeFileAtomicSync(f(PROGRESSIVE_FILES.gain), gainSvg);
  // PNG beside the SVG where the renderer is installed (optional dependency); skipped while running.
  if (r.status === 'complete') await writePng(f(PROGRESSIVE_FILES.gain.replace(/\.svg$/, '.png')), gainSvg);
  writeFileAtomicSync(
    f(PROGRESSIVE_FILES.scores),
    lineChart({
      title: 'Mean cosine vs datastore size',
      xLabel: 'training pairs in the datastore',
      yLabel: 'mean cosine (101 target dims)',
      xLog: true,
      vLines: stopLines,
      series: [...seriesOf((t) => ({ y: t.plain }), (n) => `plain retrieval, ${n}`, true), ...seriesOf((t) => ({ y: t.fusion }), (n) => `retrieval + fusion, ${n}`)],
    }),
  );
  writeFileAtomicSync(
    f(PROGRESSIVE_FILES.gap),
    lineChart({
      title: 'Generalisation gap of the fusion net vs datastore size',
      xLabel: 'training pairs in the datastore',
      yLabel: 'train (leave-one-out) minus test cosine',
      xLog: true,
      vLines: stopLines,
      yZeroLine: true,
      series: seriesOf((t, s) => ({ y: s.trainFusion - t.fusion }), (n) => `gap, ${n} speakers`),
    }),
  );
  const cfg = r.record.config as Record<string, unknown>;
  const table = mdTable(
    ['pairs', 'test set', 'n', 'plain', 'fusion', 'gain [95% CI]', 'seed gains', 'epochs', 'priors s', 'train s', 'eval s', 'step s'],
    r.steps.flatMap((s) =>
      s.tests.map((t) => [
        s.pairs,
        t.name,
        t.n,
        fmtNum(t.plain),
        fmtNum(t.fusion),
        fmtInterval(t.gain.diff, t.gain.lo, t.gain.hi),
        t.gain.seedGains.map((g) => fmtNum(g, 4, { sign: true })).join(' '),
        `${fmtEpochs(s)}${s.warm ? ' (warm)' : ''}`,
        s.seconds.priors.toFixed(1),
        s.seconds.train.toFixed(1),
        s.seconds.eval.toFixed(1),
        s.seconds.total.toFixed(1),
      ]),
    ),
  );
  const rec = r.recommendation;
  const ps = r.phaseSeconds;
  const rate = r.steps.length ? r.steps.reduce((a, s) => a + s.samplesPerSecond * s.seconds.train, 0) / Math.max(1e-9, ps.train) : 0;
  const timing = mdTable(
    ['phase', 'seconds', 'share'],
    [
      ['datastore add', ps.add.toFixed(1), pct(ps.add, ps.total)],
      ['prior search (leave-one-out)', ps.priors.toFixed(1), pct(ps.priors, ps.total)],
      ['training (all seeds)', ps.train.toFixed(1), pct(ps.train, ps.total)],
      ['evaluation (test search, scoring, bootstrap)', ps.eval.toFixed(1), pct(ps.eval, ps.total)],
      ['total', ps.total.toFixed(1), '100%'],
      ...(r.runSeconds
        ? [
            ['first pass over the data (test rows, speakers, data hash; this process)', r.runSeconds.firstPass.toFixed(1), ''],
            ['outside the steps (chunk reads waited for, checkpoints, reports; this process)', r.runSeconds.outsideSteps.toFixed(1), ''],
            ['wall time of this process', r.runSeconds.wall.toFixed(1), ''],
          ]
        : []),
    ],
  );
  const stopNote = r.stoppedEarly
    ? `\n\n**The run stopped early**, after step ${r.stoppedEarly.step} (${r.stoppedEarly.pairs} pairs): ${r.stoppedEarly.reason === 'useful' ? 'the stop rule held' : '--max-steps was reached'}; ${r.stoppedEarly.chunksLeft} chunk(s) were not run (--all runs them). The plots mark the stop with a dotted line.`
    : '';
  const unitText = g0 ? (g0.unit === 'row' ? 'test rows resampled as independent' : `${g0.unit}s resampled first (${g0.clusters} in the ${r.steps[0]!.tests[0]!.name} set), then rows within them`) : '';
  const doc = reportDoc({
    title: 'rapm progressive validation',
    intro: `${r.status === 'complete' ? '' : '**Running: this report is updated after every step.**\n\n'}${r.decision}.${stopNote}`,
    sections: [
      {
        heading: 'Steps',
        body: `${table}\n\nGain = mean cosine of retrieval + fusion minus plain retrieval, on the same test pairs, averaged over ${cfg.trainSeeds ?? 1} training seed(s) (each its own initialisation, shuffling and validation split; their own gains under "seed gains"). Interval: hierarchical paired bootstrap, ${cfg.resamples} resamples: seeds resampled, then ${unitText}. Epochs: best/run, mean over seeds (early stopping, patience ${cfg.patience}); "warm": started from the previous step's nets.`,
      },
      { heading: 'Where the time goes', body: `${timing}\n\nTraining ran at ${Math.round(rate).toLocaleString('en-US')} samples/s (minibatch time; validation excluded).` },
      { heading: 'Plots', body: `![gain](${PROGRESSIVE_FILES.gain})\n\n![scores](${PROGRESSIVE_FILES.scores})\n\n![gap](${PROGRESSIVE_FILES.gap})` },
      { heading: 'Recommendation', body: rec ? '```json\n' + JSON.stringify(rec, null, 2) + '\n```' : 'No step finished.' },
      { heading: 'Reproduce', body: `Seed ${r.record.seed}, data ${r.record.dataHash}, rapm ${r.record.version} (${r.record.commit ?? 'no git'}), ${r.record.simdLevel} kernels, ${r.record.threads} threads, Node ${r.record.node}.\n\n` + '```json\n' + JSON.stringify(cfg, null, 2) + '\n```' },
    ],
  });
  writeFileAtomicSync(f(PROGRESSIVE_FILES.report), doc);
  writeFileAtomicSync(f(PROGRESSIVE_FILES.results), JSON.stringify(r, null, 1) + '\n');
}

function pct(x: number, total: number): string {
  return total > 0 ? `${Math.round((100 * x) / total)}%` : '—';
}

function fmtEpochs(s: ProgressiveResult['steps'][number]): string {
  const r = (x: number) => (Number.isInteger(x) ? String(x) : x.toFixed(1));
  return `${r(s.bestEpoch)}/${r(s.epochs)}`;
}
