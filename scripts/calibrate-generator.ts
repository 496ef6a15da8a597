/**
 * Measure (and optionally re-fit) the generator's calibration against the published R-APM
 * figures. Usage:
 *   npx tsx scripts/calibrate-generator.ts [--seeds 1,2,3] [--model '{"esNoise":0.6}'] [--no-mlp]
 * Prints generated vs published for every figure (retrieval, and the baseline MLP trained with
 * the native backend unless --no-mlp), per seed and averaged.
 */
import { PUBLISHED, calibrationTable, measureBaselineMlp, measureCalibration } from '../src/experiments/calibration.js';
import { nativeMlpBackend } from '../src/fusion/native-mlp.js';
import { DEFAULT_SEED, type GeneratorModel } from '../src/data/generate.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const seeds = (arg('seeds') ?? String(DEFAULT_SEED)).split(',').map(Number);
const model = arg('model') ? (JSON.parse(arg('model')!) as Partial<GeneratorModel>) : undefined;
const withMlp = !process.argv.includes('--no-mlp');
const tables: ReturnType<typeof calibrationTable>[] = [];
for (const seed of seeds) {
  const t0 = performance.now();
  const rows = calibrationTable(measureCalibration(seed, model));
  if (withMlp) {
    const m = await measureBaselineMlp(nativeMlpBackend, seed, model);
    rows.push({ figure: 'seen, baseline MLP', generated: m.seen, published: PUBLISHED.seen.mlp });
    rows.push({ figure: 'unseen, baseline MLP', generated: m.unseen, published: PUBLISHED.unseen.mlp });
  }
  console.error(`seed ${seed}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  tables.push(rows);
}
const first = tables[0]!;
const header = ['figure', ...seeds.map((s) => `seed ${s}`), seeds.length > 1 ? 'mean' : null, 'published', 'diff'].filter(Boolean);
console.log(`| ${header.join(' | ')} |`);
console.log(`|${header.map(() => '---').join('|')}|`);
first.forEach((row, i) => {
  const vals = tables.map((t) => t[i]!.generated);
  const mean = vals.reduce((a, b) => a + b, 0) / vals.length;
  const cells = [row.figure, ...vals.map((v) => v.toFixed(4)), seeds.length > 1 ? mean.toFixed(4) : null, row.published.toFixed(4), (mean - row.published >= 0 ? '+' : '') + (mean - row.published).toFixed(4)];
  console.log(`| ${cells.filter((c) => c !== null).join(' | ')} |`);
});
