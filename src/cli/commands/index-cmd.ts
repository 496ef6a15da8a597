/**
 * `rapm index --data DIR --out models/<name>`: a retrieval-only bundle (datastore.rapm +
 * rapm.json, no model) from a dataset's official train split, for serving without fusion:
 * `rapm serve --bundle models/<name>` then serves the prior with the k, tau and aggregation
 * recorded here.
 */
import path from 'node:path';
import type { CommandModule } from 'yargs';
import { ensureDefaultData } from '../../data/generate.js';
import { keyIndices, SPANISH_WINNERS } from '../../data/indices.js';
import { loadDataset } from '../../data/load.js';
import { experimentData } from '../../experiments/sweeps.js';
import { trainingDatastore } from '../../experiments/train-model.js';
import { BUNDLE_FILES, writeBundle } from '../../serve/bundle.js';
import { defineCommand } from '../options.js';
import { progressBars } from '../progress.js';
import { applyThreads, refuseExisting } from '../run.js';

export const indexCommand: CommandModule = defineCommand({
  command: 'index',
  describe: 'Build a retrieval-only bundle (datastore.rapm + rapm.json) from a dataset, for serving without fusion',
  settings: ['data', 'out', 'overwrite', 'config', 'k', 'tau', 'aggregate', 'precision', 'threads', 'json', 'quiet'],
  overrides: {
    data: { help: 'Dataset with an official split (DRAL folder or chunks): its train rows become the datastore; the default is generated if missing' },
    out: { default: 'models/retrieval', help: 'Bundle folder to write (datastore.rapm, rapm.json); serve it with rapm serve --bundle' },
  },
  check: (a) => refuseExisting(a.out, a.overwrite, '--out'),
  handler: async (a) => {
    applyThreads(a.threads);
    const bar = progressBars(a.quiet || a.json);
    if (a.data === 'data/default') await ensureDefaultData(a.data, { onProgress: (d, t) => bar('generating default data', d, t) });
    const data = experimentData(await loadDataset(a.data, { onProgress: (d, t) => bar('loading', d, t) }), path.resolve(a.data));
    const ds = await trainingDatastore(data, { config: a.config, precision: a.precision });
    const settings = { config: a.config, keyIndices: [...keyIndices(a.config)], valueIndices: [...SPANISH_WINNERS], k: a.k, tau: a.tau, aggregate: a.aggregate, precision: a.precision };
    const written = await writeBundle(a.out, ds, { overwrite: a.overwrite, settings, data: { hash: data.hash, source: data.source } });
    if (a.json) {
      console.log(JSON.stringify({ bundle: written.dir, manifest: written.manifest }));
      return;
    }
    console.log(`wrote bundle ${a.out}: ${BUNDLE_FILES.datastore} (${ds.size} rows, Config ${a.config}, ${a.precision}), ${BUNDLE_FILES.manifest}; serve it: rapm serve --bundle ${a.out}`);
  },
});
