import yargs, { type Argv, type CommandModule } from 'yargs';
import { isRapmError } from '../errors.js';
import { codeVersion } from '../experiments/run-record.js';
import { demoCommand } from './commands/demo.js';
import { generateCommand } from './commands/generate.js';
import { indexCommand } from './commands/index-cmd.js';
import { packCommand } from './commands/pack.js';
import { experimentCommands } from './commands/experiments.js';
import { progressiveCommand } from './commands/progressive.js';
import { pgLoadCommand } from './commands/pg-load.js';
import { serveCommand } from './commands/serve.js';
import { trainCommand } from './commands/train.js';
import { closestFlag, CliUsageError, COMMAND_FLAGS } from './options.js';

export { CliUsageError } from './options.js';

const COMMANDS: CommandModule[] = [progressiveCommand, ...experimentCommands, trainCommand, indexCommand, serveCommand, pgLoadCommand, demoCommand, generateCommand, packCommand];

/** "Unknown argument(s): a, b" from yargs, with a "did you mean --x?" per misspelt option of the command. */
function withSuggestions(msg: string, argv: readonly string[]): string {
  const m = /^Unknown arguments?: (.+)$/.exec(msg);
  if (!m) return msg;
  const command = argv.find((a) => !a.startsWith('-'));
  const flags = [...(COMMAND_FLAGS.get(command ?? '') ?? []), 'help', 'version'];
  const hints = m[1]!
    .split(', ')
    .map((u) => {
      const f = closestFlag(u.replace(/^-+/, ''), flags);
      return f ? `Did you mean --${f} for ${u}?` : null;
    })
    .filter(Boolean);
  const cmd = command && COMMAND_FLAGS.has(command) ? ` (rapm ${command} does not take it; see rapm ${command} --help)` : '';
  return `${msg}.${hints.length ? ` ${hints.join(' ')}` : cmd}`;
}

/**
 * The rapm command line, built but not run: tests parse argv in-process with it.
 * `exitProcess(false)` and `fail` keep yargs from calling process.exit itself.
 */
export function buildCli(argv: readonly string[]): Argv {
  let y = yargs([...argv]).scriptName('rapm').usage('$0 <command> [options]');
  // yargs' .command() overloads cannot see that a CommandModule<{}, {}> fits every Argv; the
  // modules are built by defineCommand (typed there), so widening here is safe.
  for (const c of COMMANDS) y = y.command(c as CommandModule<object, object>);
  return y
    // One spelling per option (--batch-size, not also --batchSize): resolveArgs reads flags as defined.
    .parserConfiguration({ 'camel-case-expansion': false, 'parse-numbers': false, 'parse-positional-numbers': false })
    .demandCommand(1, 'Name a command (see --help)')
    .strict()
    .recommendCommands()
    .exitProcess(false)
    .fail((msg, err) => {
      // yargs' own parse errors (YError: a flag without its value, ...) are usage errors too.
      if (err && err.name !== 'YError') throw err;
      throw new CliUsageError(withSuggestions(msg ?? err?.message ?? 'invalid command line', argv));
    })
    .help()
    .alias('h', 'help')
    .version(codeVersion().version)
    .wrap(Math.min(100, process.stdout.columns || 100));
}

/** Run the CLI; returns the exit code. Errors end in one line naming the reason. */
export async function main(argv: readonly string[]): Promise<number> {
  try {
    await buildCli(argv).parseAsync();
    return 0;
  } catch (e) {
    const err = e as Error & { code?: string };
    if (err instanceof CliUsageError) {
      process.stderr.write(`rapm: ${err.message}\nRun 'rapm --help' for usage.\n`);
      return 2;
    }
    process.stderr.write(`rapm: ${isRapmError(err) ? `${err.message} [${err.code}]` : (err.stack ?? String(err))}\n`);
    return 1;
  }
}
