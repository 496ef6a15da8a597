/**
 * The settings schema: every setting rapm takes, defined once. Each entry gives the CLI flag
 * (kebab-case), the library key (camelCase), its group, default, range and help, and one
 * parser/validator used by the CLI (src/cli/options.ts builds the yargs options and the typed
 * handler arguments from it), by the library's option checks (SEARCH_DEFAULTS, TRAIN_DEFAULTS,
 * PROGRESSIVE_DEFAULTS derive from it) and by the native-limit tests (test/settings.test.ts
 * calls the addon at these bounds).
 *
 * Adding a setting: add an entry to SETTINGS below (see the README of this module in
 * /work/helpers/schema-ready.md or the comment on `defineSetting`), then list its key in the
 * `settings` array of the commands that use it (src/cli/commands/*.ts).
 *
 * Defaults that used to disagree, and the one value each now has:
 * - k = 90 (was 70 for search/serve/demo, 90 for progressive/train): the published pure-retrieval
 *   sweep peaks at K = 90 (0.874 vs 0.872 at K = 70, reference-figures.json) and the seed report
 *   recommends top_k 90 at every data size.
 * - patience = 5 (was 10 in TRAIN_DEFAULTS, 5 in progressive): every experiment number in the
 *   README was produced with 5; the fusion net's validation cosine plateaus within a few epochs
 *   and 10 only doubled the training time of the experiments.
 * - seed = 1 (was 0 in TRAIN_DEFAULTS, 1 in progressive): the seed of the README's numbers, so the
 *   defaults reproduce them.
 */
import { RapmRangeError, RapmTypeError, describe as describeValue, type RapmErrorCode } from './errors.js';
import { closestName } from './validate.js';

export type SettingGroup = 'retrieval' | 'fusion' | 'training' | 'evaluation' | 'experiment' | 'run' | 'serve' | 'data';

/** Where a value came from: the CLI (errors name `--flag`) or the library (errors name `key`). */
export type SettingSource = 'cli' | 'library';

/** A setting value that is out of range or of the wrong kind. Names the flag (CLI) or the key (library). */
export class SettingError extends RapmRangeError {
  readonly flag: string;
  readonly key: string;
  constructor(code: RapmErrorCode, message: string, flag: string, key: string) {
    super(code, message);
    this.flag = flag;
    this.key = key;
  }
}

/** A library value of the wrong kind (e.g. the string '1' for k): RAPM_TYPE. */
export class SettingTypeError extends RapmTypeError {
  readonly flag: string;
  readonly key: string;
  constructor(message: string, flag: string, key: string) {
    super('RAPM_TYPE', message);
    this.flag = flag;
    this.key = key;
  }
}

/** True for the errors a setting's check throws. */
export function isSettingError(e: unknown): e is SettingError | SettingTypeError {
  return e instanceof SettingError || e instanceof SettingTypeError;
}

/** The JS type a library value of each kind must have. */
const LIBRARY_TYPE: Record<SettingSpec<unknown>['kind'], string> = { number: 'number', integer: 'number', string: 'string', boolean: 'boolean', choice: 'string', list: 'array', path: 'string' };

/** How a value reads in an error: numbers and strings as given. */
// Numeric text the number settings read: decimal only (Number() would also take '0x10' as 16,
// '0b1', '0o7'), or +-Infinity (then refused by the range, naming the value).
const NUMERIC_TEXT = /^[+-]?((\d+\.?\d*|\.\d+)(e[+-]?\d+)?|Infinity)$/i;

function shown(v: unknown): string {
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (typeof v === 'string') return `'${v.length > 60 ? v.slice(0, 60) + '…' : v}'`;
  if (Array.isArray(v)) return `${v.length} values (${v.map((x) => String(x)).join(', ')}): give it once`;
  return describeValue(v);
}

export interface Bounds {
  lo: number;
  hi: number;
  loOpen: boolean;
  hiOpen: boolean;
  integer: boolean;
}

export interface SettingSpec<T> {
  /** Library key (camelCase). */
  key: string;
  /** CLI flag without dashes (kebab-case). */
  flag: string;
  group: SettingGroup;
  /** Help text (CLI --help, README reference, docs). */
  help: string;
  /** Type tag shown in the help: number, integer, string, boolean, list, path, ... */
  kind: 'number' | 'integer' | 'string' | 'boolean' | 'choice' | 'list' | 'path';
  /** The default, or undefined for a setting that is absent unless given. */
  default: T;
  /** The allowed values (choices). */
  choices?: readonly string[];
  /** Human-readable range, e.g. "an integer in [1, 2147483647]". */
  range?: string;
  /** Numeric bounds (numbers and integers; each item of a list), for tests and docs. */
  bounds?: Bounds;
  /**
   * Parse and validate a raw value (a CLI string/number, or a library value). Throws via
   * `fail(expected)`; returns the typed value.
   */
  parse: (raw: unknown, fail: (expected: string) => never) => T;
}

export interface Setting<T> extends SettingSpec<T> {
  /** Validate `raw` for `source`; the error names `--flag` (cli) or `key` (library). */
  check(raw: unknown, source?: SettingSource): T;
}

/** Build a setting from its spec: adds `check`, which names the flag or the key in its error. */
export function defineSetting<T>(spec: SettingSpec<T>): Setting<T> {
  return {
    ...spec,
    check(raw: unknown, source: SettingSource = 'library'): T {
      const fail = (expected: string): never => {
        const name = source === 'cli' ? `--${spec.flag}` : spec.key;
        throw new SettingError('RAPM_INVALID_ARG', `${name} must be ${expected}, got ${shown(raw)}`, spec.flag, spec.key);
      };
      if (Array.isArray(raw) && spec.kind !== 'list') fail(spec.range ?? 'one value');
      if (source === 'library' && raw !== undefined && spec.key !== 'generatorModel') {
        const want = LIBRARY_TYPE[spec.kind];
        if (want === 'array' ? !Array.isArray(raw) : typeof raw !== want) {
          throw new SettingTypeError(`${spec.key} must be ${spec.range ?? `a ${want}`}, got ${describeValue(raw)}`, spec.flag, spec.key);
        }
      }
      return spec.parse(raw, fail);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Parsers. CLI values arrive as strings or numbers (yargs parses numeric text); library values
// as their own type. A parser accepts both and returns the typed value.

function toNumber(raw: unknown): number {
  if (typeof raw === 'number') return raw;
  if (typeof raw === 'string' && NUMERIC_TEXT.test(raw.trim())) return Number(raw.trim());
  return Number.NaN;
}

/** An integer in [lo, hi]. */
type NumberSpec = { range: string; bounds: Bounds; parse: (raw: unknown, fail: (e: string) => never) => number };

export function integer(lo: number, hi: number): NumberSpec {
  const range = hi >= Number.MAX_SAFE_INTEGER ? `an integer >= ${lo}` : `an integer in [${lo}, ${hi}]`;
  return {
    range,
    bounds: { lo, hi, loOpen: false, hiOpen: false, integer: true },
    parse: (raw, fail) => {
      const v = toNumber(raw);
      if (!Number.isInteger(v) || v < lo || v > hi) fail(range);
      return v;
    },
  };
}

/** A finite number in a range; `loOpen`/`hiOpen` exclude the bound. */
export function real(lo: number, hi: number, loOpen = false, hiOpen = false, label?: string): NumberSpec {
  const range =
    label ??
    (lo === -Infinity && hi === Infinity ? 'a finite number' : hi === Infinity ? `a number ${loOpen ? '>' : '>='} ${lo}` : `a number in ${loOpen ? '(' : '['}${lo}, ${hi}${hiOpen ? ')' : ']'}`);
  return {
    range,
    bounds: { lo, hi, loOpen, hiOpen, integer: false },
    parse: (raw, fail) => {
      const v = toNumber(raw);
      if (!Number.isFinite(v) || (loOpen ? v <= lo : v < lo) || (hiOpen ? v >= hi : v > hi)) fail(range);
      return v;
    },
  };
}

function choice<const C extends readonly string[]>(choices: C): { choices: C; range: string; parse: (raw: unknown, fail: (e: string) => never) => C[number] } {
  const range = `one of ${choices.join(', ')}`;
  return {
    choices,
    range,
    parse: (raw, fail) => {
      if (typeof raw !== 'string' || !choices.includes(raw)) fail(range);
      return raw as C[number];
    },
  };
}

/** A comma-separated list (CLI) or an array (library) of items each parsed by `item`. */
function list(item: NumberSpec, minLength = 1): { range: string; bounds: Bounds; parse: (raw: unknown, fail: (e: string) => never) => number[] } {
  const range = `a comma-separated list of ${minLength > 1 ? `at least ${minLength} ` : ''}values, each ${item.range}`;
  return {
    range,
    bounds: item.bounds,
    parse: (raw, fail) => {
      const parts: unknown[] = Array.isArray(raw) ? raw : typeof raw === 'number' ? [raw] : typeof raw === 'string' ? raw.split(',').map((s) => s.trim()) : [Number.NaN];
      if (parts.length < minLength) fail(range);
      return parts.map((p) => item.parse(p, () => fail(range)));
    },
  };
}

const bool = (raw: unknown, fail: (e: string) => never): boolean => {
  if (typeof raw !== 'boolean') fail('true or false');
  return raw as boolean;
};

const text = (raw: unknown, fail: (e: string) => never): string => {
  if (typeof raw === 'number') return String(raw);
  if (typeof raw !== 'string' || raw === '') fail('a non-empty string');
  return raw as string;
};

const optionalText = (raw: unknown, fail: (e: string) => never): string | undefined => (raw === undefined ? undefined : text(raw, fail));

const jsonObject = (raw: unknown, fail: (e: string) => never): Record<string, unknown> => {
  if (typeof raw === 'object' && raw !== null && !Array.isArray(raw)) return raw as Record<string, unknown>;
  try {
    const v = JSON.parse(String(raw)) as unknown;
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // fall through
  }
  return fail('a JSON object (e.g. \'{"esNoise": 0.7}\')');
};

/** One or more paths: a repeated CLI flag (yargs gives an array) or a library array. */
const paths = {
  range: 'a folder (repeat the flag for more)',
  parse: (raw: unknown, fail: (e: string) => never): string[] => {
    const v = Array.isArray(raw) ? raw : [raw];
    return v.map((x) => text(x, () => fail('a folder (repeat the flag for more)')));
  },
};

const regex = (raw: unknown, fail: (e: string) => never): string => {
  const t = text(raw, fail);
  try {
    new RegExp(t);
  } catch {
    fail('a valid regular expression');
  }
  return t;
};

const SPLITS = ['speaker', 'random'] as const;

function optional<T>(p: (raw: unknown, fail: (e: string) => never) => T): (raw: unknown, fail: (e: string) => never) => T | undefined {
  return (raw, fail) => (raw === undefined ? undefined : p(raw, fail));
}

// ---------------------------------------------------------------------------------------------
// Limits shared with the native layer (native/mlp_wrap.cpp, native/datastore_wrap.cpp); the
// native-limit test calls the addon at these bounds.

/** Largest k: the native top-K takes a signed 32-bit count. */
export const K_MAX = 2 ** 31 - 1;
/**
 * Smallest tau: FLT_MIN, the smallest normal float32. The native side stores tau as float32
 * and computes exp((sim - max) / tau) with the maximum subtracted, so every exponent is <= 0,
 * every weight is in [0, 1] and the normaliser is >= 1: the weights are finite for every tau
 * that is still a positive float32. Below FLT_MIN, tau becomes a subnormal that the
 * flush-to-zero mode of the training threads reads as 0 (and below ~1.4e-45 it rounds to 0
 * outright: 1e-46 -> 0), which turns (sim - max) / tau into 0/0 = NaN for the top neighbour.
 */
export const TAU_MIN = 1.1754943508222875e-38;
/** Largest tau: FLT_MAX (beyond it tau is +Infinity in float32). Large tau means uniform weights. */
export const TAU_MAX = 3.4028234663852886e38;
/** Dropout range of the native training step: [0, 0.99]. */
export const DROPOUT_MAX = 0.99;
/** Learning-rate range of the native AdamW step: (0, 1]. */
export const LR_MAX = 1;
/** Weight-decay range of the native AdamW step: [0, 1]. */
export const WEIGHT_DECAY_MAX = 1;
/** Largest minibatch of the native training step (kMlpMaxBatch). */
export const BATCH_MAX = 1 << 16;
/** Seeds: non-negative 32-bit integers (the native dropout seed is a uint32). */
export const SEED_MAX = 2 ** 32 - 1;

/**
 * Search knobs of the neighbour sources (serve --ann / --pg-url; src/retrieval/ann.ts,
 * src/retrieval/pgvector.ts). The sources accept different ranges, so the settings' ranges are
 * the widest any source takes and the narrower source's limit is a cross-setting rule
 * (SEARCH_KNOB_RULES below) that names the flag and the source.
 * - faiss HNSW efSearch: [1, 2^20] (ann.ts refuses more: a beam that wide is a full scan).
 * - pgvector hnsw.ef_search: [1, 1000] (pgvector's GUC range).
 * - faiss IVF nprobe: [1, nlist] of the index, known once it is open (ann.ts checks it then);
 *   statically [1, 2^31 - 1] (faiss stores it as a C int in the factory's parameter space).
 * - pgvector ivfflat.probes: [1, 32768] (pgvector's GUC range, also its largest list count).
 */
export const EF_SEARCH_MAX_FAISS = 1 << 20;
export const EF_SEARCH_MAX_PGVECTOR = 1000;
export const NPROBE_MAX_FAISS = 2 ** 31 - 1;
export const NPROBE_MAX_PGVECTOR = 32768;
/** rapm generate --format auto writes a DRAL folder up to this many pairs, chunks above (src/data/generate.ts). */
export const AUTO_DRAL_MAX_PAIRS = 20_000;

const kSpec = integer(1, K_MAX);
const tauSpec = real(TAU_MIN, TAU_MAX, false, false, 'a number in [1.1754944e-38 (FLT_MIN), 3.4028235e38 (FLT_MAX)], a normal float32 (a smaller tau rounds or flushes to 0 in float32 and gives NaN weights)');
const dropoutSpec = real(0, DROPOUT_MAX);
const hiddenWidth = integer(1, 65536);
/** Fast search paths (src/retrieval/datastore.ts FastPath) and 'auto' (resolved there against the CPU). */
export const FAST_PATHS = ['auto', 'off', 'bf16', 'int8'] as const;
const CONFIGS = ['A', 'B'] as const;
const AGGREGATE_CHOICES = ['softmax', 'mean', 'top1'] as const;
/** Key storage precisions (Datastore `precision`, `--precision`; the native code maps them 0, 1, 2). */
export const PRECISIONS = ['f32', 'bf16', 'int8'] as const;

/**
 * Every setting. The object key is the library key; `flag` is the CLI name. Per-command
 * defaults (e.g. `out`, `data`) can be overridden where a command lists the setting.
 */
export const SETTINGS = {
  // --- retrieval
  config: defineSetting({ key: 'config', flag: 'config', group: 'retrieval', kind: 'choice', default: 'A' as (typeof CONFIGS)[number], help: 'Keys: A = all 1024 EN dims, B = the 103 english_winners (values: the 101 spanish_winners)', ...choice(CONFIGS) }),
  k: defineSetting({ key: 'k', flag: 'k', group: 'retrieval', kind: 'integer', default: 90, help: 'Neighbours per query (top-K); at most the datastore rows', ...kSpec }),
  tau: defineSetting({ key: 'tau', flag: 'tau', group: 'retrieval', kind: 'number', default: 0.04, help: 'Softmax temperature (a positive normal float32, so the weights stay finite)', ...tauSpec }),
  aggregate: defineSetting({ key: 'aggregate', flag: 'aggregate', group: 'retrieval', kind: 'choice', default: 'softmax' as (typeof AGGREGATE_CHOICES)[number], help: 'How the K neighbours are blended: softmax(sim/tau), uniform mean, or the best only', ...choice(AGGREGATE_CHOICES) }),
  precision: defineSetting({ key: 'precision', flag: 'precision', group: 'retrieval', kind: 'choice', default: 'f32' as (typeof PRECISIONS)[number], help: 'Key storage: f32, bf16 (half the memory, ~3 significant digits), or int8 (a quarter: int8 codes + a per-row scale; changes some neighbours, see the README)', ...choice(PRECISIONS) }),
  leakyPriors: defineSetting({ key: 'leakyPriors', flag: 'leaky-priors', group: 'retrieval', kind: 'boolean', default: false, help: "Train on priors that include the query's own row (the reference's behaviour; for comparison only)", parse: bool }),
  fastPath: defineSetting({ key: 'fastPath', flag: 'fast-path', group: 'retrieval', kind: 'choice', default: 'auto' as (typeof FAST_PATHS)[number], help: "Faster search, the exact answers bit for bit: a first pass over a bf16 (AVX512_BF16) or int8 (AVX512_VNNI) copy of the keys, then an exact re-rank. auto: bf16 where the CPU has AVX512_BF16, else off. Without the instructions bf16 and int8 search exactly. The bf16 copy of f32 keys adds half their memory (rebuilt at load, never saved)", ...choice(FAST_PATHS) }),

  // --- fusion
  hidden: defineSetting({ key: 'hidden', flag: 'hidden', group: 'fusion', kind: 'list', default: [256, 128] as number[], help: 'Hidden layer widths, comma-separated (fusion default 256,128)', ...list(hiddenWidth) }),
  dropout: defineSetting({ key: 'dropout', flag: 'dropout', group: 'fusion', kind: 'number', default: 0.1, help: 'Dropout after each hidden layer', ...dropoutSpec }),

  // --- training
  epochs: defineSetting({ key: 'epochs', flag: 'epochs', group: 'training', kind: 'integer', default: 100, help: 'Maximum training epochs', ...integer(1, 100_000) }),
  patience: defineSetting({ key: 'patience', flag: 'patience', group: 'training', kind: 'integer', default: 5, help: 'Early stopping: epochs without a better validation cosine', ...integer(1, 100_000) }),
  batchSize: defineSetting({ key: 'batchSize', flag: 'batch-size', group: 'training', kind: 'integer', default: 32, help: 'Minibatch size', ...integer(1, BATCH_MAX) }),
  lr: defineSetting({ key: 'lr', flag: 'lr', group: 'training', kind: 'number', default: 1e-3, help: 'AdamW learning rate', ...real(0, LR_MAX, true) }),
  weightDecay: defineSetting({ key: 'weightDecay', flag: 'weight-decay', group: 'training', kind: 'number', default: 1e-4, help: 'AdamW decoupled weight decay', ...real(0, WEIGHT_DECAY_MAX) }),
  valFraction: defineSetting({ key: 'valFraction', flag: 'val-fraction', group: 'training', kind: 'number', default: 0.1, help: 'Share of training rows held out for early stopping', ...real(0, 0.5, true, true) }),
  seed: defineSetting({ key: 'seed', flag: 'seed', group: 'training', kind: 'integer', default: 1, help: 'Seed of every random choice (splits, init, shuffling, dropout, bootstrap)', ...integer(0, SEED_MAX) }),
  threads: defineSetting({ key: 'threads', flag: 'threads', group: 'training', kind: 'integer', default: undefined as number | undefined, help: 'Threads of the native kernels (default: RAPM_THREADS or one per core)', range: 'an integer in [1, 1024]', bounds: integer(1, 1024).bounds, parse: optional(integer(1, 1024).parse) }),

  trainModel: defineSetting({ key: 'trainModel', flag: 'model', group: 'training', kind: 'choice', default: 'fusion' as 'fusion' | 'baseline', help: 'fusion: prior + F(en, prior); baseline: the official 1024-500-250-125-101 ReLU MLP', ...choice(['fusion', 'baseline'] as const) }),

  // --- evaluation
  resamples: defineSetting({ key: 'resamples', flag: 'resamples', group: 'evaluation', kind: 'integer', default: 2000, help: 'Paired bootstrap resamples per interval', ...integer(1000, 1_000_000) }),
  level: defineSetting({ key: 'level', flag: 'level', group: 'evaluation', kind: 'number', default: 0.95, help: 'Confidence level of the bootstrap intervals', ...real(0, 1, true, true) }),
  threshold: defineSetting({ key: 'threshold', flag: 'threshold', group: 'evaluation', kind: 'number', default: 0.001, help: 'Fusion is useful when its gain exceeds this with an interval above zero', ...real(-1, 1) }),
  trainSeeds: defineSetting({ key: 'trainSeeds', flag: 'train-seeds', group: 'evaluation', kind: 'integer', default: 3, help: 'Fusion nets per point, each with its own init, shuffling and validation split; the gain interval covers them (1 for quick runs)', ...integer(1, 64) }),
  clusterUnit: defineSetting({ key: 'clusterUnit', flag: 'cluster-unit', group: 'evaluation', kind: 'choice', default: 'auto' as 'auto' | 'row' | 'speaker' | 'conversation', help: 'What the gain interval resamples: test rows, speakers, or conversations (ids <speaker>_<conversation>_<utt>); auto: speakers when known', ...choice(['auto', 'row', 'speaker', 'conversation'] as const) }),
  warmStart: defineSetting({ key: 'warmStart', flag: 'warm-start', group: 'training', kind: 'boolean', default: true, help: "Start each step's fusion nets from the previous step's (--warm-start false: from scratch)", parse: bool }),
  confirmSteps: defineSetting({ key: 'confirmSteps', flag: 'confirm-steps', group: 'evaluation', kind: 'integer', default: 1, help: 'Steps run after the first useful one before the loop stops (a check that the gain holds; 0: stop at once)', ...integer(0, 1000) }),
  decideOn: defineSetting({ key: 'decideOn', flag: 'decide-on', group: 'evaluation', kind: 'choice', default: 'seen' as 'seen' | 'unseen', help: 'Test set the stop rule reads (it must exist in the data)', ...choice(['seen', 'unseen'] as const) }),

  // --- run
  json: defineSetting({ key: 'json', flag: 'json', group: 'run', kind: 'boolean', default: false, help: 'Print the result as JSON on stdout (progress stays on stderr)', parse: bool }),
  quiet: defineSetting({ key: 'quiet', flag: 'quiet', group: 'run', kind: 'boolean', default: false, help: 'No progress output', parse: bool }),
  overwrite: defineSetting({ key: 'overwrite', flag: 'overwrite', group: 'run', kind: 'boolean', default: false, help: 'Replace output that already exists (refused otherwise)', parse: bool }),
  out: defineSetting({ key: 'out', flag: 'out', group: 'run', kind: 'path', default: 'results' as string, help: 'Output folder', parse: text }),
  resume: defineSetting({ key: 'resume', flag: 'resume', group: 'run', kind: 'boolean', default: false, help: 'Continue the run in --out from its last finished step', parse: bool }),
  all: defineSetting({ key: 'all', flag: 'all', group: 'run', kind: 'boolean', default: false, help: 'Run every chunk, even after fusion became useful', parse: bool }),
  maxSteps: defineSetting({ key: 'maxSteps', flag: 'max-steps', group: 'run', kind: 'integer', default: undefined as number | undefined, help: 'Stop after this many steps', range: 'an integer >= 1', bounds: integer(1, Number.MAX_SAFE_INTEGER).bounds, parse: optional(integer(1, Number.MAX_SAFE_INTEGER).parse) }),

  // --- data
  data: defineSetting({ key: 'data', flag: 'data', group: 'data', kind: 'path', default: 'data/default' as string, help: 'Dataset with an official split (DRAL folder or chunks)', parse: text }),
  chunks: defineSetting({ key: 'chunks', flag: 'chunks', group: 'data', kind: 'path', default: 'data/chunks' as string, help: 'Folder of chunk folders (name order). The default folder is generated if missing', parse: text }),
  initial: defineSetting({ key: 'initial', flag: 'initial', group: 'data', kind: 'path', default: undefined as string | undefined, help: 'The first step: a dataset in any layout (DRAL folder, a folder with features/, chunks, one chunk); its filelist test pairs join the test sets', parse: optionalText }),
  // Bring your own features (README "Bring your own features"; src/data/load.ts, src/experiments/progressive-sources.ts).
  features: defineSetting({ key: 'features', flag: 'features', group: 'data', kind: 'path', default: undefined as string | undefined, help: 'Folder of EN_/ES_<uttid>_features.npy files (the DRAL release layout), instead of --data', parse: optionalText }),
  filelists: defineSetting({ key: 'filelists', flag: 'filelists', group: 'data', kind: 'path', default: undefined as string | undefined, help: 'Folder holding train_filelist_en.txt / test_filelist_en.txt when they are not beside the feature files', parse: optionalText }),
  split: defineSetting({ key: 'split', flag: 'split', group: 'data', kind: 'choice', default: undefined as 'speaker' | 'random' | undefined, help: 'Train/test split made here (seeded by --seed, --test-fraction of the pairs): speaker-disjoint or random. Needed when there are no filelists; replaces them when given', range: 'one of speaker, random', choices: SPLITS, parse: optional(choice(SPLITS).parse) }),
  onProblem: defineSetting({ key: 'onProblem', flag: 'on-problem', group: 'data', kind: 'choice', default: 'fail' as 'fail' | 'skip', help: 'Bad files (missing partners, duplicates, wrong shapes, NaN, unreadable): fail listing all of them, or skip the affected pairs and report how many', ...choice(['fail', 'skip'] as const) }),
  poolFrames: defineSetting({ key: 'poolFrames', flag: 'pool-frames', group: 'data', kind: 'choice', default: undefined as 'mean' | undefined, help: 'Frame-level feature files (T x 1024): average the frames into one vector per utterance (refused otherwise)', range: 'mean', choices: ['mean'] as const, parse: optional(choice(['mean'] as const).parse) }),
  speakerPattern: defineSetting({ key: 'speakerPattern', flag: 'speaker-pattern', group: 'data', kind: 'string', default: undefined as string | undefined, help: 'Regular expression whose first group is the speaker in an utterance id (default: the part before the first underscore)', range: 'a regular expression', parse: optional(regex) }),
  tests: defineSetting({ key: 'tests', flag: 'test', group: 'data', kind: 'list', default: [] as string[], help: 'A test-only dataset (any layout), scored and never trained on; seen or unseen by speaker', ...paths }),
  testSeen: defineSetting({ key: 'testSeen', flag: 'test-seen', group: 'data', kind: 'list', default: [] as string[], help: 'A test-only dataset scored as the seen-speaker set', ...paths }),
  testUnseen: defineSetting({ key: 'testUnseen', flag: 'test-unseen', group: 'data', kind: 'list', default: [] as string[], help: 'A test-only dataset scored as the unseen-speaker set', ...paths }),
  allowOverlap: defineSetting({ key: 'allowOverlap', flag: 'allow-overlap', group: 'data', kind: 'boolean', default: false, help: 'Only report utterance ids shared between the initial set, the chunks and the test sets (refused otherwise)', parse: bool }),
  shuffle: defineSetting({ key: 'shuffle', flag: 'shuffle', group: 'data', kind: 'boolean', default: false, help: 'Put the pairs in a seeded random order (--seed) before cutting chunks, so every chunk spans all speakers', parse: bool }),
  inputs: defineSetting({ key: 'inputs', flag: 'inputs', group: 'data', kind: 'list', default: [] as string[], help: 'DRAL folders to pack, in order (any layout: flat, features/ + filelists, chunks)', ...paths }),

  // --- data generation (rapm generate)
  pairs: defineSetting({ key: 'pairs', flag: 'pairs', group: 'data', kind: 'integer', default: 2894, help: 'Number of pairs', ...integer(2, 2_000_000) }),
  format: defineSetting({ key: 'format', flag: 'format', group: 'data', kind: 'choice', default: 'auto' as 'dral' | 'chunks' | 'auto', help: `dral: EN_/ES_<id>_features.npy + filelists; chunks: packed en.npy/es.npy; auto: dral up to ${AUTO_DRAL_MAX_PAIRS.toLocaleString('en-US')} pairs`, ...choice(['dral', 'chunks', 'auto'] as const) }),
  speakers: defineSetting({ key: 'speakers', flag: 'speakers', group: 'data', kind: 'integer', default: 70, help: 'Training (seen) speakers', ...integer(1, 100_000) }),
  unseenSpeakers: defineSetting({ key: 'unseenSpeakers', flag: 'unseen-speakers', group: 'data', kind: 'integer', default: 0, help: 'Extra speakers that appear only in the test split', ...integer(0, 100_000) }),
  testFraction: defineSetting({ key: 'testFraction', flag: 'test-fraction', group: 'data', kind: 'number', default: 578 / 2894, help: 'Share of pairs in the test split (default: 578/2894, the published split)', ...real(0, 1, true, true) }),
  testPairs: defineSetting({ key: 'testPairs', flag: 'test-pairs', group: 'data', kind: 'integer', default: undefined as number | undefined, help: 'Exact number of test pairs (overrides --test-fraction; less than --pairs)', range: 'an integer >= 1', bounds: integer(1, 2_000_000).bounds, parse: optional(integer(1, 2_000_000).parse) }),
  chunkSize: defineSetting({ key: 'chunkSize', flag: 'chunk-size', group: 'data', kind: 'integer', default: 50_000, help: 'Rows per chunk (chunks format)', ...integer(1, 1_000_000) }),
  biasStrength: defineSetting({ key: 'biasStrength', flag: 'bias-strength', group: 'data', kind: 'number', default: 0, help: 'Synthetic bias of the seed report: ES[:, spanish_winners] += s * EN[:, :101]', ...real(-1e6, 1e6) }),
  generatorModel: defineSetting({ key: 'generatorModel', flag: 'model', group: 'data', kind: 'string', default: undefined as Record<string, unknown> | undefined, help: 'JSON object overriding generator knobs, e.g. \'{"esNoise": 0.7}\'', range: 'a JSON object', parse: optional(jsonObject) }),

  // --- experiments (sweeps)
  sizes: defineSetting({ key: 'sizes', flag: 'sizes', group: 'experiment', kind: 'list', default: [500, 1000, 2000, 4000, 8000, 16000] as number[], help: 'Training set sizes (each at most the pool size)', ...list(integer(2, Number.MAX_SAFE_INTEGER)) }),
  seeds: defineSetting({ key: 'seeds', flag: 'seeds', group: 'experiment', kind: 'integer', default: 3, help: 'Samples per size', ...integer(1, 10_000) }),
  strengths: defineSetting({ key: 'strengths', flag: 'strengths', group: 'experiment', kind: 'list', default: [0, 0.05, 0.1, 0.2] as number[], help: 'Bias strengths s', ...list(real(-1e6, 1e6)) }),
  ks: defineSetting({ key: 'ks', flag: 'ks', group: 'experiment', kind: 'list', default: [1, 10, 30, 50, 70, 90, 120] as number[], help: 'K values (each a valid --k)', ...list(kSpec) }),
  taus: defineSetting({ key: 'taus', flag: 'taus', group: 'experiment', kind: 'list', default: [0.01, 0.03, 0.04, 0.07, 0.1] as number[], help: 'Softmax temperatures (each a valid --tau)', ...list(tauSpec) }),
  dropouts: defineSetting({ key: 'dropouts', flag: 'dropouts', group: 'experiment', kind: 'list', default: [0, 0.1, 0.2, 0.3] as number[], help: 'Dropout probabilities (each a valid --dropout)', ...list(dropoutSpec) }),
  onlyConfig: defineSetting({ key: 'onlyConfig', flag: 'config', group: 'experiment', kind: 'choice', default: undefined as 'A' | 'B' | undefined, help: 'Run only this key config (default: both A and B)', range: 'one of A, B', choices: CONFIGS, parse: optional(choice(CONFIGS).parse) }),

  // --- serve
  bundle: defineSetting({ key: 'bundle', flag: 'bundle', group: 'serve', kind: 'path', default: undefined as string | undefined, help: 'Model bundle folder written by `rapm train --out` or `rapm index` (model.onnx, datastore.rapm, rapm.json)', parse: optionalText }),
  datastore: defineSetting({ key: 'datastore', flag: 'datastore', group: 'serve', kind: 'path', default: undefined as string | undefined, help: 'Datastore file (datastore.rapm of a bundle, or Datastore.save())', parse: optionalText }),
  model: defineSetting({ key: 'model', flag: 'model', group: 'serve', kind: 'path', default: undefined as string | undefined, help: 'Fusion model (.onnx); without it, predictions are the retrieval prior', parse: optionalText }),
  device: defineSetting({ key: 'device', flag: 'device', group: 'serve', kind: 'choice', default: 'cpu' as 'cpu' | 'cuda' | 'auto', help: 'Where the fusion model runs', ...choice(['cpu', 'cuda', 'auto'] as const) }),
  port: defineSetting({ key: 'port', flag: 'port', group: 'serve', kind: 'integer', default: 8080, help: 'TCP port (0: any free port)', ...integer(0, 65535) }),
  host: defineSetting({ key: 'host', flag: 'host', group: 'serve', kind: 'string', default: '127.0.0.1' as string, help: 'Address to bind (loopback by default)', parse: text }),
  maxBatch: defineSetting({ key: 'maxBatch', flag: 'max-batch', group: 'serve', kind: 'integer', default: 1024, help: 'Largest batch (rows) per request', ...integer(1, 1 << 20) }),
  maxBodyBytes: defineSetting({ key: 'maxBodyBytes', flag: 'max-body-bytes', group: 'serve', kind: 'integer', default: undefined as number | undefined, help: 'Largest request body (default: max-batch rows as JSON)', range: 'an integer in [1, 2147483647]', bounds: integer(1, 2 ** 31 - 1).bounds, parse: optional(integer(1, 2 ** 31 - 1).parse) }),
  graceMs: defineSetting({ key: 'graceMs', flag: 'grace-ms', group: 'serve', kind: 'integer', default: 10_000, help: 'On shutdown, cut connections still open after this long (ms)', ...integer(0, 3_600_000) }),
  batching: defineSetting({ key: 'batching', flag: 'batching', group: 'serve', kind: 'boolean', default: true, help: 'Micro-batch concurrent requests into one native search (results bit-identical to unbatched; --no-batching: one search per request)', parse: bool }),
  maxBatchRows: defineSetting({ key: 'maxBatchRows', flag: 'max-batch-rows', group: 'serve', kind: 'integer', default: 64, help: 'Micro-batching: most query rows per batched search', ...integer(1, 65_536) }),
  maxWaitUs: defineSetting({ key: 'maxWaitUs', flag: 'max-wait-us', group: 'serve', kind: 'integer', default: 500, help: 'Micro-batching: longest wait for company when no search runs, in microseconds (below 1000: one event-loop turn)', ...integer(0, 1_000_000) }),
  maxQueueRows: defineSetting({ key: 'maxQueueRows', flag: 'max-queue-rows', group: 'serve', kind: 'integer', default: 4096, help: 'Micro-batching: most query rows waiting; beyond it requests get 503 with Retry-After', ...integer(1, 1 << 24) }),
  maxConcurrentBatches: defineSetting({ key: 'maxConcurrentBatches', flag: 'max-concurrent-batches', group: 'serve', kind: 'integer', default: 1, help: 'Micro-batching: batched searches running at once (each already uses every native thread)', ...integer(1, 1024) }),
  maxBufferedBytes: defineSetting({ key: 'maxBufferedBytes', flag: 'max-buffered-bytes', group: 'serve', kind: 'integer', default: undefined as number | undefined, help: 'Most request-body bytes held at once across all connections; beyond it 503 with Retry-After (default: max(256 MiB, 2 x max-body-bytes))', range: 'an integer in [1, 70368744177664]', bounds: integer(1, 2 ** 46).bounds, parse: optional(integer(1, 2 ** 46).parse) }),
  retryAfterSeconds: defineSetting({ key: 'retryAfterSeconds', flag: 'retry-after-seconds', group: 'serve', kind: 'integer', default: 1, help: 'Retry-After of 503 replies (queue full, body bytes over the cap, shutting down), in seconds', ...integer(0, 86_400) }),
  headersTimeoutMs: defineSetting({ key: 'headersTimeoutMs', flag: 'headers-timeout-ms', group: 'serve', kind: 'integer', default: 10_000, help: 'Request headers must arrive within this (ms; else 408 and the connection closes)', ...integer(1, 2 ** 31 - 1) }),
  requestTimeoutMs: defineSetting({ key: 'requestTimeoutMs', flag: 'request-timeout-ms', group: 'serve', kind: 'integer', default: 30_000, help: 'The whole request (headers and body) must arrive within this (ms; else 408, the body is released)', ...integer(1, 2 ** 31 - 1) }),
  idleTimeoutMs: defineSetting({ key: 'idleTimeoutMs', flag: 'idle-timeout-ms', group: 'serve', kind: 'integer', default: 5_000, help: 'A kept-alive connection with no request is closed after this (ms)', ...integer(1, 2 ** 31 - 1) }),
  metrics: defineSetting({ key: 'metrics', flag: 'metrics', group: 'serve', kind: 'boolean', default: true, help: 'Serve GET /metrics (Prometheus text format)', parse: bool }),
  accessLog: defineSetting({ key: 'accessLog', flag: 'access-log', group: 'serve', kind: 'boolean', default: false, help: 'One JSON line per request on stderr (pino)', parse: bool }),
  fusionWorkers: defineSetting({ key: 'fusionWorkers', flag: 'fusion-workers', group: 'serve', kind: 'integer', default: 1, help: 'Worker threads running the fusion model (piscina), off the event loop; 0 runs it on the event-loop thread', ...integer(0, 256) }),

  // --- neighbour sources (approximate search, external engines)
  ann: defineSetting({ key: 'ann', flag: 'ann', group: 'serve', kind: 'string', default: undefined as string | undefined, help: "Approximate search: a faiss index factory such as 'IVF4096,Flat' or 'HNSW32,Flat' (default: exact search)", parse: optionalText }),
  annIndex: defineSetting({ key: 'annIndex', flag: 'ann-index', group: 'serve', kind: 'path', default: undefined as string | undefined, help: 'With --ann: load the faiss index from this file if it exists (built over the same datastore), else build it and save it there', parse: optionalText }),
  nprobe: defineSetting({ key: 'nprobe', flag: 'nprobe', group: 'serve', kind: 'integer', default: undefined as number | undefined, help: `IVF lists searched per query (faiss IVF: at most the index's list count; pgvector ivfflat.probes: at most ${NPROBE_MAX_PGVECTOR}); more: higher recall, slower`, range: integer(1, NPROBE_MAX_FAISS).range, bounds: integer(1, NPROBE_MAX_FAISS).bounds, parse: optional(integer(1, NPROBE_MAX_FAISS).parse) }),
  efSearch: defineSetting({ key: 'efSearch', flag: 'ef-search', group: 'serve', kind: 'integer', default: undefined as number | undefined, help: `HNSW search beam (faiss HNSW; pgvector hnsw.ef_search: at most ${EF_SEARCH_MAX_PGVECTOR}); more: higher recall, slower`, range: integer(1, EF_SEARCH_MAX_FAISS).range, bounds: integer(1, EF_SEARCH_MAX_FAISS).bounds, parse: optional(integer(1, EF_SEARCH_MAX_FAISS).parse) }),
  pgUrl: defineSetting({ key: 'pgUrl', flag: 'pg-url', group: 'serve', kind: 'string', default: undefined as string | undefined, help: 'PostgreSQL + pgvector holding the keys (postgres://user@host:5432/db); values and ids stay in --datastore', parse: optionalText }),
  pgTable: defineSetting({ key: 'pgTable', flag: 'pg-table', group: 'serve', kind: 'string', default: 'rapm_keys' as string, help: 'Table of keys in --pg-url (table or schema.table)', parse: text }),
  pgTimeoutMs: defineSetting({ key: 'pgTimeoutMs', flag: 'pg-timeout-ms', group: 'serve', kind: 'integer', default: 30_000, help: 'Longest wait for PostgreSQL (ms): connecting, and each search or table lookup; past it the request fails with RAPM_IO (library: timeoutMs)', ...integer(1, 2 ** 31 - 1) }),
  pgMode: defineSetting({ key: 'pgMode', flag: 'pg-mode', group: 'serve', kind: 'choice', default: 'exact' as 'exact' | 'index', help: "exact: full scan, equal to rapm's exact search; index: the table's HNSW/IVFFlat index answers (approximate)", ...choice(['exact', 'index'] as const) }),
  pgIndex: defineSetting({ key: 'pgIndex', flag: 'pg-index', group: 'serve', kind: 'choice', default: 'none' as 'none' | 'hnsw' | 'ivfflat', help: 'Vector index built after loading (vector_cosine_ops)', ...choice(['none', 'hnsw', 'ivfflat'] as const) }),
} as const;

export type SettingKey = keyof typeof SETTINGS;
/** The value type of a setting. */
export type SettingValue<K extends SettingKey> = (typeof SETTINGS)[K] extends Setting<infer T> ? T : never;
/** The resolved values of a list of settings, keyed by library key. */
export type SettingValues<K extends SettingKey> = { [P in K]: SettingValue<P> };

/** The defaults of some settings, keyed by library key (SEARCH_DEFAULTS etc. are built with it). */
export function defaultsOf<const K extends SettingKey>(keys: readonly K[]): SettingValues<K> {
  const out: Record<string, unknown> = {};
  for (const k of keys) {
    const d = SETTINGS[k].default as unknown;
    out[k] = Array.isArray(d) ? [...d] : d;
  }
  return out as SettingValues<K>;
}

/** Validate one library option: the default when undefined, the setting's check otherwise. */
export function checkSetting<K extends SettingKey>(key: K, value: unknown, source: SettingSource = 'library'): SettingValue<K> {
  if (!Object.hasOwn(SETTINGS, key)) {
    // A key from untyped callers (JS): named, with the closest setting, not a bare TypeError.
    const near = closestName(String(key), Object.keys(SETTINGS));
    throw new RapmRangeError('RAPM_INVALID_ARG', `Unknown setting ${typeof key === 'string' ? `'${key}'` : describeValue(key)}${near ? ` (did you mean '${near}'?)` : ''}`);
  }
  const s = SETTINGS[key] as unknown as Setting<SettingValue<K>>;
  return value === undefined ? (s.default as SettingValue<K>) : s.check(value, source);
}

// ---------------------------------------------------------------------------------------------
// Rules between settings: a value that another setting makes invalid or pointless. Each rule is
// defined once, here. The library applies it where the settings meet (new Datastore calls
// crossSettingProblem), and the CLI applies every rule whose settings a command lists to that
// command's arguments before its handler reads any data (src/cli/options.ts defineCommand), so
// a command that gains the settings gains the check.

/** How a source names a setting with a value: `--fast-path bf16` (CLI) or `fastPath 'bf16'` (library). */
export type SayValue = (key: SettingKey, value?: unknown) => string;

export function sayFor(source: SettingSource): SayValue {
  return (key, value) => {
    const name = source === 'cli' ? `--${SETTINGS[key].flag}` : key;
    if (value === undefined) return name;
    return `${name} ${source === 'cli' || typeof value !== 'string' ? String(value) : `'${value}'`}`;
  };
}

export interface CrossSettingRule {
  /** The settings it reads (by library key); the CLI applies it to the commands listing all of them. */
  keys: readonly SettingKey[];
  /** The problem (naming every setting involved), or null. Unset settings are undefined in `v`. */
  problem(v: Partial<Record<SettingKey, unknown>>, say: SayValue): string | null;
}

/** fastPath 'bf16' reads bf16 keys (stored, or a bf16 shadow of f32 keys): int8 keys have neither. */
export const FAST_PATH_PRECISION_RULE: CrossSettingRule = {
  keys: ['precision', 'fastPath'],
  problem: (v, say) =>
    v.precision === 'int8' && v.fastPath === 'bf16'
      ? `${say('fastPath', 'bf16')} needs f32 or bf16 keys: ${say('precision', 'int8')} keys take ${say('fastPath')} int8 (the VNNI first pass over the stored keys), off or auto`
      : null,
};

/**
 * tau shapes only the softmax: an explicit tau with aggregate 'mean' or 'top1' would be accepted
 * and change nothing. Not in CROSS_SETTING_RULES (the CLI fills in tau's default, so only a tau
 * the user gave may be checked): applied where that is known (options.ts refuseTauWithoutSoftmax,
 * the serve overrides of src/serve/bundle.ts).
 */
export const TAU_AGGREGATE_RULE: CrossSettingRule = {
  keys: ['tau', 'aggregate'],
  problem: (v, say) =>
    v.tau !== undefined && v.aggregate !== undefined && v.aggregate !== 'softmax'
      ? `${say('tau')} only shapes ${say('aggregate', 'softmax')}; with ${say('aggregate', v.aggregate)} it would have no effect: drop ${say('tau')}`
      : null,
};

/** pgvector's GUC ranges are narrower than faiss's: a knob past them is refused for --pg-url. */
export const SEARCH_KNOB_RULES: readonly CrossSettingRule[] = [
  {
    keys: ['efSearch', 'pgUrl'],
    problem: (v, say) =>
      v.pgUrl !== undefined && typeof v.efSearch === 'number' && v.efSearch > EF_SEARCH_MAX_PGVECTOR
        ? `${say('efSearch', v.efSearch)} is more than pgvector's hnsw.ef_search takes with ${say('pgUrl')} (at most ${EF_SEARCH_MAX_PGVECTOR}; faiss HNSW through --ann takes up to ${EF_SEARCH_MAX_FAISS})`
        : null,
  },
  {
    keys: ['nprobe', 'pgUrl'],
    problem: (v, say) =>
      v.pgUrl !== undefined && typeof v.nprobe === 'number' && v.nprobe > NPROBE_MAX_PGVECTOR
        ? `${say('nprobe', v.nprobe)} is more than pgvector's ivfflat.probes takes with ${say('pgUrl')} (at most ${NPROBE_MAX_PGVECTOR})`
        : null,
  },
];

export const CROSS_SETTING_RULES: readonly CrossSettingRule[] = [FAST_PATH_PRECISION_RULE, ...SEARCH_KNOB_RULES];

/**
 * The first problem of the rules whose settings `v` carries (every key of the rule present in `v`,
 * possibly undefined), or null. `source` chooses flag or key names.
 */
export function crossSettingProblem(v: Partial<Record<SettingKey, unknown>>, source: SettingSource = 'library', rules: readonly CrossSettingRule[] = CROSS_SETTING_RULES): string | null {
  const say = sayFor(source);
  for (const r of rules) {
    if (!r.keys.every((k) => k in v)) continue;
    const p = r.problem(v, say);
    if (p !== null) return p;
  }
  return null;
}
