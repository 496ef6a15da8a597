/**
 * `rapm index --data DIR --out models/<name>`: a retrieval-only bundle (datastore.rapm +
 * rapm.json, no model) from a dataset's official train split, for serving without fusion:
 * `rapm serve --bundle models/<name>` then serves the prior with the k, tau and aggregation
 * recorded here.
 */
import type { CommandModule } from 'yargs';
import { ensureDefaultData } from '../../data/generate.js';
import { keyIndices, SPANISH_WINNERS } from '../../data/indices.js';
import { trainingDatastore } from '../../experiments/train-model.js';
import { BUNDLE_FILES, checkBundleTarget, writeBundle } from '../../serve/bundle.js';
import { dataSelection, defineCommand, refuseSeedWithoutSplit, refuseTauWithoutSoftmax } from '../options.js';
import { progressBars } from '../progress.js';
import { applyThreads, refuseExisting, warn } from '../run.js';
import { DATA_SETTINGS, checkDataArgs, dataPaths, loadExperimentData, refuseKOverTrainRows, usesDefaultData } from '../data-args.js';

export const indexCommand: CommandModule = defineCommand({
  command: 'index',
  describe: 'Build a retrieval-only bundle (datastore.rapm + rapm.json) from a dataset, for serving without fusion',
  settings: ['data', ...DATA_SETTINGS, 'seed', 'out', 'overwrite', 'config', 'k', 'tau', 'aggregate', 'precision', 'fastPath', 'threads', 'json', 'quiet'],
  overrides: {
    seed: { help: 'Seed of --split (refused without it: nothing else here is random)' },
    data: { help: 'Dataset with an official split (DRAL folder or chunks): its train rows become the datastore; the default is generated if missing' },
    out: { default: 'models/retrieval', help: 'Bundle folder to write (datastore.rapm, rapm.json); serve it with rapm serve --bundle' },
  },
  check: (a, given) => {
    checkDataArgs(given);
    refuseTauWithoutSoftmax(a, given);
    refuseSeedWithoutSplit(given, 'index');
    refuseExisting(a.out, a.overwrite, '--out');
    checkBundleTarget(a.out, a.overwrite, dataPaths(a)); // before any loading or training: what --overwrite would delete
  },
  handler: async (a) => {
    applyThreads(a.threads);
    const bar = progressBars(a.quiet || a.json);
    if (usesDefaultData(a, 'data/default')) await ensureDefaultData(a.data, { onProgress: (d, t) => bar('generating default data', d, t) });
    const data = await loadExperimentData(a, [a.config], (d, t) => bar('loading', d, t));
    refuseKOverTrainRows(a.k, data, false);
    const ds = await trainingDatastore(data, { config: a.config, precision: a.precision });
    const settings = { config: a.config, keyIndices: [...keyIndices(a.config)], valueIndices: [...SPANISH_WINNERS], k: a.k, tau: a.tau, aggregate: a.aggregate, precision: a.precision, fastPath: a.fastPath, ...dataSelection(a) };
    const written = await writeBundle(a.out, ds, { overwrite: a.overwrite, settings, data: { hash: data.hash, source: data.source } });
    for (const n of written.notices) warn(n);
    if (a.json) {
      console.log(JSON.stringify({ bundle: written.dir, manifest: written.manifest }));
      return;
    }
    console.log(`wrote bundle ${a.out}: ${BUNDLE_FILES.datastore} (${ds.size} rows, Config ${a.config}, ${a.precision}), ${BUNDLE_FILES.manifest}; serve it: rapm serve --bundle ${a.out}`);
  },
});
