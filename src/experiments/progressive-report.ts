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
      train_plain_loo: s.trainPlain,
      train_fusion_loo: s.trainFusion,
      val_fusion: s.valFusion,
      epochs: s.epochs,
      best_epoch: s.bestEpoch,
      train_seconds: s.seconds.train,
      step_seconds: s.seconds.total,
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
  const gainSvg = lineChart({
      title: 'Fusion gain over plain retrieval vs datastore size',
      xLabel: 'training pairs in the datastore',
      yLabel: 'gain in mean cosine (95% CI)',
      xLog: true,
      yZeroLine: true,
      hLines: [{ y: threshold, label: `+${threshold} threshold` }],
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
      yZeroLine: true,
      series: seriesOf((t, s) => ({ y: s.trainFusion - t.fusion }), (n) => `gap, ${n} speakers`),
    }),
  );
  const cfg = r.record.config as Record<string, unknown>;
  const table = mdTable(
    ['pairs', 'test set', 'n', 'plain', 'fusion', 'gain [95% CI]', 'epochs', 'train s', 'step s'],
    r.steps.flatMap((s) => s.tests.map((t) => [s.pairs, t.name, t.n, fmtNum(t.plain), fmtNum(t.fusion), fmtInterval(t.gain.diff, t.gain.lo, t.gain.hi), `${s.bestEpoch}/${s.epochs}`, s.seconds.train.toFixed(1), s.seconds.total.toFixed(1)])),
  );
  const rec = r.recommendation;
  const doc = reportDoc({
    title: 'rapm progressive validation',
    intro: `${r.status === 'complete' ? '' : '**Running: this report is updated after every step.**\n\n'}${r.decision}.`,
    sections: [
      { heading: 'Steps', body: `${table}\n\nGain = mean cosine of retrieval + fusion minus plain retrieval, on the same test pairs; interval: paired bootstrap, ${cfg.resamples} resamples. Epochs: best/run (early stopping, patience ${cfg.patience}).` },
      { heading: 'Plots', body: `![gain](${PROGRESSIVE_FILES.gain})\n\n![scores](${PROGRESSIVE_FILES.scores})\n\n![gap](${PROGRESSIVE_FILES.gap})` },
      { heading: 'Recommendation', body: rec ? '```json\n' + JSON.stringify(rec, null, 2) + '\n```' : 'No step finished.' },
      { heading: 'Reproduce', body: `Seed ${r.record.seed}, data ${r.record.dataHash}, rapm ${r.record.version} (${r.record.commit ?? 'no git'}), ${r.record.simdLevel} kernels, ${r.record.threads} threads, Node ${r.record.node}.\n\n` + '```json\n' + JSON.stringify(cfg, null, 2) + '\n```' },
    ],
  });
  writeFileAtomicSync(f(PROGRESSIVE_FILES.report), doc);
  writeFileAtomicSync(f(PROGRESSIVE_FILES.results), JSON.stringify(r, null, 1) + '\n');
}
