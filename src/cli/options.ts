/**
 * Options shared by the commands, defined once: yargs reads them, and
 * scripts/gen-cli-docs.ts renders the README's CLI reference from the same objects.
 */
import type { Options } from 'yargs';
import { RapmRangeError } from '../errors.js';
import type { PointOptions } from '../experiments/evaluate.js';
import { PROGRESSIVE_DEFAULTS } from '../experiments/progressive.js';
import { CLUSTER_UNITS } from '../eval/bootstrap.js';
import { nativeMlpBackend } from '../fusion/native-mlp.js';

export const retrievalOptions = {
  config: { choices: ['A', 'B'], default: PROGRESSIVE_DEFAULTS.config, describe: 'Keys: A = all 1024 EN dims, B = the 103 english_winners' },
  k: { type: 'number', default: PROGRESSIVE_DEFAULTS.k, describe: 'Neighbours per query (top-K)' },
  tau: { type: 'number', default: PROGRESSIVE_DEFAULTS.tau, describe: 'Softmax temperature (> 0)' },
  aggregate: { choices: ['softmax', 'mean', 'top1'], default: PROGRESSIVE_DEFAULTS.aggregate, describe: 'How the K neighbours are blended' },
} satisfies Record<string, Options>;

export const fusionOptions = {
  hidden: { type: 'string', default: PROGRESSIVE_DEFAULTS.hidden.join(','), describe: 'Fusion hidden layer widths, comma-separated' },
  dropout: { type: 'number', default: PROGRESSIVE_DEFAULTS.dropout, describe: 'Fusion dropout after each hidden layer, in [0, 1)' },
  epochs: { type: 'number', default: PROGRESSIVE_DEFAULTS.epochs, describe: 'Maximum training epochs' },
  patience: { type: 'number', default: PROGRESSIVE_DEFAULTS.patience, describe: 'Early stopping: epochs without a better validation cosine' },
  'batch-size': { type: 'number', default: PROGRESSIVE_DEFAULTS.batchSize, describe: 'Minibatch size' },
  lr: { type: 'number', default: PROGRESSIVE_DEFAULTS.lr, describe: 'AdamW learning rate' },
  'weight-decay': { type: 'number', default: PROGRESSIVE_DEFAULTS.weightDecay, describe: 'AdamW decoupled weight decay' },
  'val-fraction': { type: 'number', default: PROGRESSIVE_DEFAULTS.valFraction, describe: 'Share of training rows held out for early stopping' },
  'leaky-priors': { type: 'boolean', default: false, describe: "Train on priors that include the query's own row (the reference's behaviour; for comparison only)" },
} satisfies Record<string, Options>;

export const runOptions = {
  seed: { type: 'number', default: PROGRESSIVE_DEFAULTS.seed, describe: 'Seed of every random choice (splits, init, shuffling, bootstrap)' },
  resamples: { type: 'number', default: PROGRESSIVE_DEFAULTS.resamples, describe: 'Paired bootstrap resamples per interval (>= 1000)' },
  'train-seeds': { type: 'number', default: PROGRESSIVE_DEFAULTS.trainSeeds, describe: 'Fusion nets trained per point, each with its own init, shuffling and validation split; the gain interval covers them (1 for quick runs)' },
  'cluster-unit': { choices: ['auto', ...CLUSTER_UNITS], default: PROGRESSIVE_DEFAULTS.clusterUnit, describe: 'What the gain interval resamples: test rows, speakers or conversations (auto: speakers when known)' },
  json: { type: 'boolean', default: false, describe: 'Print the result as JSON on stdout (progress stays on stderr)' },
  quiet: { type: 'boolean', default: false, describe: 'No progress output' },
} satisfies Record<string, Options>;

/** "256,128" -> [256, 128], with a clear error. */
export function parseHidden(text: string): number[] {
  const parts = String(text).split(',').map((s) => s.trim()).filter(Boolean);
  const dims = parts.map(Number);
  if (dims.length === 0 || dims.some((d) => !Number.isInteger(d) || d < 1 || d > 65536)) {
    throw new RapmRangeError('RAPM_INVALID_ARG', `Expected --hidden as comma-separated positive integers (e.g. 256,128) but received '${text}'`);
  }
  return dims;
}

/** The parsed retrieval, fusion and run options as the experiments take them. */
export function pointOptions(a: Record<string, unknown>, progress: PointOptions['progress']): PointOptions {
  const quiet = Boolean(a.quiet) || Boolean(a.json);
  return {
    config: a.config as 'A' | 'B',
    k: a.k as number,
    tau: a.tau as number,
    aggregate: a.aggregate as PointOptions['aggregate'],
    hidden: parseHidden(a.hidden as string),
    dropout: a.dropout as number,
    seed: a.seed as number,
    leaveOneOut: !(a['leaky-priors'] as boolean),
    epochs: a.epochs as number,
    patience: a.patience as number,
    batchSize: a['batch-size'] as number,
    lr: a.lr as number,
    weightDecay: a['weight-decay'] as number,
    valFraction: a['val-fraction'] as number,
    resamples: a.resamples as number,
    trainSeeds: a['train-seeds'] as number,
    clusterUnit: a['cluster-unit'] as PointOptions['clusterUnit'],
    backend: nativeMlpBackend,
    log: quiet ? undefined : (l: string) => process.stderr.write(`${l}\n`),
    progress,
  };
}
