import type { CommandModule } from 'yargs';
import { ensureDefaultData } from '../../data/generate.js';
import { loadDataset } from '../../data/load.js';
import { keyIndices, valueIndices, selectColumns, type KeyConfig } from '../../data/indices.js';
import { officialSplit } from '../../data/split.js';
import { subsetDataset } from '../../data/dataset.js';
import { meanCosine } from '../../eval/cosine.js';
import { simdLevel } from '../../native/simd.js';
import { Datastore } from '../../retrieval/datastore.js';
import { publishedPlain, publishedPlainText } from '../../experiments/calibration.js';
import { progress } from '../progress.js';
import { defineCommand } from '../options.js';
import { applyThreads } from '../run.js';

/** Build a datastore from the default (generated) data and score plain retrieval on its test split. */
export const demoCommand: CommandModule = defineCommand({
  command: 'demo',
  describe: 'Build a datastore from the embedded default data and score plain retrieval (Config A and B)',
  settings: ['data', 'k', 'tau', 'threads', 'json', 'quiet'],
  overrides: { data: { help: 'Data folder; generated there if missing' } },
  handler: async (argv) => {
    applyThreads(argv.threads);
    const bar = progress('generating default data', { quiet: argv.json || argv.quiet });
    const ensured = await ensureDefaultData(argv.data, { onProgress: (d, t) => bar.update(d, t) });
    if (ensured.generated) bar.done(argv.data);
    const ds = await loadDataset(argv.data);
    const split = officialSplit(ds);
    const train = subsetDataset(ds, split.train);
    const test = subsetDataset(ds, split.test);
    const target = selectColumns(test.es, 1024, valueIndices());
    const out: Record<string, unknown> = { data: ensured.dir, train: train.n, test: test.n, k: argv.k, tau: argv.tau, simd: simdLevel(), published: publishedPlain(argv.k, argv.tau) };
    for (const config of ['A', 'B'] as KeyConfig[]) {
      const store = new Datastore({ keyIndices: keyIndices(config), valueIndices: valueIndices() });
      await store.add(train.en, train.es, train.ids);
      const t0 = performance.now();
      const r = await store.search(test.en, { k: argv.k, tau: argv.tau });
      const ms = performance.now() - t0;
      out[`config${config}`] = { cosine: meanCosine(r.prior, target, store.dv), searchMs: ms };
    }
    if (argv.json) {
      console.log(JSON.stringify(out));
    } else {
      const a = out.configA as { cosine: number; searchMs: number }, b = out.configB as { cosine: number; searchMs: number };
      console.log(`rapm demo: ${train.n} train / ${test.n} test pairs from ${ensured.dir} (${simdLevel()} kernels)`);
      console.log(`  Config A (1024-dim keys): mean cosine ${a.cosine.toFixed(4)}  search ${a.searchMs.toFixed(1)} ms`);
      console.log(`  Config B (103-dim keys):  mean cosine ${b.cosine.toFixed(4)}  search ${b.searchMs.toFixed(1)} ms`);
      console.log(`  (K=${argv.k}, tau=${argv.tau}; ${publishedPlainText(argv.k, argv.tau)})`);
    }
  },
});
