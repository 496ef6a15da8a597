/**
 * The CLI side of the settings schema (src/settings.ts): yargs options and typed handler
 * arguments are built from it, and every command validates all of its options before its
 * handler runs (so before any data is read). A command accepts only the settings it lists:
 * yargs runs strict, and an unknown option is a usage error with a "did you mean" hint.
 * scripts/gen-cli-docs.ts renders the README's CLI reference from the same objects.
 */
import path from 'node:path';
import type { Argv, CommandModule, Options } from 'yargs';
import type { PointOptions } from '../experiments/evaluate.js';
import { nativeMlpBackend } from '../fusion/native-mlp.js';
import { SETTINGS, TAU_AGGREGATE_RULE, crossSettingProblem, isSettingError, type Setting, type SettingKey, type SettingValue, type SettingValues } from '../settings.js';

/** A usage error: exit code 2, message printed with a pointer to --help. */
export class CliUsageError extends Error {
  readonly code = 'RAPM_USAGE';
}

/**
 * Per-command tweaks of a listed setting: its default and help in this command; hideDefault shows
 * no `[default: ...]` (serve's --k: the bundle decides, the schema default is only the fallback).
 */
export type Overrides<K extends SettingKey> = { [P in K]?: { default?: SettingValue<P>; help?: string; demand?: boolean; hideDefault?: boolean } };

export interface CommandSpec<K extends SettingKey> {
  /** yargs command string; a positional (e.g. 'generate <out>') must be one of `settings`. */
  command: string;
  describe: string;
  /** The settings this command reads, by library key. Nothing else is accepted. */
  settings: readonly K[];
  overrides?: Overrides<K>;
  /**
   * Checks between settings (e.g. --bundle xor --datastore); throw CliUsageError. Runs before
   * `handler`. `given` holds the settings given on the command line (not defaulted).
   */
  check?: (args: SettingValues<K>, given: ReadonlySet<K>) => void;
  /** `given` holds the settings given on the command line (not defaulted). */
  handler: (args: SettingValues<K>, given: ReadonlySet<K>) => Promise<void>;
}

/** The flags each command accepts (for "did you mean" on a misspelt option). */
export const COMMAND_FLAGS = new Map<string, string[]>();
/** The settings each command accepts, by library key (tests walk them). */
export const COMMAND_SETTINGS = new Map<string, readonly SettingKey[]>();

function describeSetting(s: Setting<unknown>, help: string | undefined): string {
  const base = help ?? s.help;
  return s.kind === 'integer' || s.kind === 'number' || s.kind === 'list' ? `${base}; ${s.range}` : base;
}

/** The yargs option of one setting (with an optional per-command default/help). */
export function yargsOption(key: SettingKey, o: { default?: unknown; help?: string; demand?: boolean; hideDefault?: boolean } = {}): Options {
  const s = SETTINGS[key] as unknown as Setting<unknown>;
  const def = o.default !== undefined ? o.default : s.default;
  const describe = describeSetting(s, o.help);
  // The default is shown, not applied by yargs: resolveArgs applies it, and so knows which
  // settings were given on the command line.
  // A required flag shows no default: it has to be given (pack --out showed 'results').
  const shownDefault = def === undefined || o.demand || o.hideDefault ? {} : { defaultDescription: Array.isArray(def) ? def.join(',') : String(def) };
  const base: Options = { describe, group: `${s.group[0]!.toUpperCase()}${s.group.slice(1)}:`, ...shownDefault };
  if (o.demand) base.demandOption = true;
  switch (s.kind) {
    case 'boolean':
      return { ...base, type: 'boolean' };
    case 'choice':
      // Choices are listed in the help and checked by the schema (so the error names the flag).
      return { ...base, type: 'string', describe: `${describe} [choices: ${s.choices!.join(', ')}]`, requiresArg: true };
    case 'integer':
    case 'number':
      // No yargs type, and numbers are not parsed by yargs (cli/main.ts parse-numbers: false):
      // the text reaches the setting's parser, which reads decimal numbers only (yargs-parser
      // would turn '0x10' into 16), and its check can quote '--epochs abc' exactly.
      return { ...base, requiresArg: true };
    default:
      return { ...base, type: 'string', requiresArg: true };
  }
}

/** yargs options for a list of settings, keyed by flag. */
export function options<K extends SettingKey>(keys: readonly K[], overrides: Overrides<K> = {}): Record<string, Options> {
  const out: Record<string, Options> = {};
  for (const k of keys) out[SETTINGS[k].flag] = yargsOption(k, overrides[k]);
  return out;
}

/** Validate and type the parsed argv: every listed setting, by library key; errors name the flag. */
export function resolveArgs<K extends SettingKey>(argv: Record<string, unknown>, keys: readonly K[], overrides: Overrides<K> = {}): { args: SettingValues<K>; given: Set<K> } {
  const out: Record<string, unknown> = {};
  const given = new Set<K>();
  for (const k of keys) {
    const s = SETTINGS[k] as unknown as Setting<unknown>;
    const raw = argv[s.flag];
    if (raw !== undefined) given.add(k);
    try {
      const def = overrides[k]?.default ?? s.default;
      out[k] = raw === undefined ? (Array.isArray(def) ? [...def] : def) : s.check(raw, 'cli');
    } catch (e) {
      if (isSettingError(e)) throw new CliUsageError(e.message);
      throw e;
    }
  }
  return { args: out as SettingValues<K>, given };
}

/** A yargs command module from a spec: schema options, strict parsing, validation first. */
export function defineCommand<const K extends SettingKey>(spec: CommandSpec<K>): CommandModule {
  const name = spec.command.split(' ')[0]!;
  const positionals = [...spec.command.matchAll(/<([^>]+)>/g)].map((m) => m[1]!.replace(/\.\.$/, '')); // 'pack <inputs..>': variadic
  COMMAND_FLAGS.set(name, spec.settings.map((k) => SETTINGS[k].flag));
  COMMAND_SETTINGS.set(name, spec.settings);
  return {
    command: spec.command,
    describe: spec.describe,
    builder: (y: Argv) => {
      let b = y;
      const opts = options(spec.settings, spec.overrides);
      for (const p of positionals) {
        // A positional is required and takes no flag: no default, and its help without the
        // flag's range (pack's "(repeat the flag for more)").
        const { group: _g, requiresArg: _r, defaultDescription: _d, default: _v, describe: _h, ...rest } = opts[p]!;
        const help = (spec.overrides as Record<string, { help?: string } | undefined> | undefined)?.[p]?.help ?? (SETTINGS[p as SettingKey] as { help: string }).help;
        // default: undefined, said explicitly, keeps yargs from showing a variadic's '[default: []]'.
        b = b.positional(p, { ...(rest as object), describe: help, demandOption: true, default: undefined });
        delete opts[p];
      }
      return b.options(opts);
    },
    handler: async (argv) => {
      const { args, given } = resolveArgs(argv, spec.settings, spec.overrides);
      // The rules between settings (src/settings.ts CROSS_SETTING_RULES) whose settings this
      // command lists, before its own checks and before any data is read.
      const problem = crossSettingProblem(args as Record<string, unknown>, 'cli');
      if (problem !== null) throw new CliUsageError(problem);
      spec.check?.(args, given);
      await spec.handler(args, given);
    },
  };
}

/**
 * --tau with --aggregate mean or top1: the temperature only shapes the softmax, so an explicit
 * tau there would be accepted and ignored; refused instead (both flags named).
 */
export function refuseTauWithoutSoftmax(a: { tau?: number; aggregate?: string }, given: ReadonlySet<string>): void {
  if (!given.has('tau') || !given.has('aggregate')) return;
  const problem = crossSettingProblem({ tau: a.tau, aggregate: a.aggregate }, 'cli', [TAU_AGGREGATE_RULE]); // its one definition (src/settings.ts)
  if (problem !== null) throw new CliUsageError(problem);
}

/**
 * --seed where it seeds only --split (index and grid train nothing and sample nothing): without
 * --split the official split is used and the seed would be accepted and ignored; refused.
 */
export function refuseSeedWithoutSplit(given: ReadonlySet<string>, command: string): void {
  if (given.has('seed') && !given.has('split')) {
    throw new CliUsageError(`--seed only seeds --split in rapm ${command} (it makes no other random choice); without --split the official split is used: give --split speaker|random, or drop --seed`);
  }
}

/** "Did you mean" for misspelt flags: the library's option checks use the same matcher (src/validate.ts). */
export { closestName as closestFlag, editDistance } from '../validate.js';

/**
 * The data-selection settings as resolved, for a bundle's rapm.json: with the dataset (its hash
 * and source) they decide which rows train and which test, so the recorded metrics can be
 * reproduced. `split` null: the dataset's official split (its filelists, or split.txt), where
 * `testFraction` and `splitSeed` play no part (null). `seed` is the split's seed only with a
 * --split; the training seed is recorded as `seed` by train.
 */
export function dataSelection(a: { split?: 'speaker' | 'random'; testFraction: number; seed: number; speakerPattern?: string; onProblem: 'fail' | 'skip'; poolFrames?: 'mean'; filelists?: string }): Record<string, unknown> {
  return {
    split: a.split ?? null,
    testFraction: a.split !== undefined ? a.testFraction : null,
    splitSeed: a.split !== undefined ? a.seed : null,
    speakerPattern: a.speakerPattern ?? null,
    onProblem: a.onProblem,
    poolFrames: a.poolFrames ?? null,
    filelists: a.filelists !== undefined ? path.resolve(a.filelists) : null,
  };
}

/** The retrieval, fusion and training settings of a point as the experiments take them. */
export const POINT_SETTINGS = ['config', 'k', 'tau', 'aggregate', 'leakyPriors', 'hidden', 'dropout', 'epochs', 'patience', 'batchSize', 'lr', 'weightDecay', 'valFraction', 'seed', 'resamples', 'level', 'trainSeeds', 'clusterUnit', 'threads'] as const;
export type PointSettings = SettingValues<(typeof POINT_SETTINGS)[number]>;

/** The parsed retrieval, fusion and run options as the experiments take them. */
export function pointOptions(a: PointSettings & { quiet: boolean; json: boolean }, progress: PointOptions['progress']): PointOptions {
  const quiet = a.quiet || a.json;
  return {
    config: a.config,
    k: a.k,
    tau: a.tau,
    aggregate: a.aggregate,
    hidden: a.hidden,
    dropout: a.dropout,
    seed: a.seed,
    leaveOneOut: !a.leakyPriors,
    epochs: a.epochs,
    patience: a.patience,
    batchSize: a.batchSize,
    lr: a.lr,
    weightDecay: a.weightDecay,
    valFraction: a.valFraction,
    resamples: a.resamples,
    level: a.level,
    trainSeeds: a.trainSeeds,
    clusterUnit: a.clusterUnit,
    backend: nativeMlpBackend,
    log: quiet ? undefined : (l: string) => process.stderr.write(`${l}\n`),
    progress,
  };
}
