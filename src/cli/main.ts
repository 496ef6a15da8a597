import yargs, { type Argv } from 'yargs';
import { isRapmError } from '../errors.js';
import { demoCommand } from './commands/demo.js';
import { generateCommand } from './commands/generate.js';
import { experimentCommands } from './commands/experiments.js';
import { progressiveCommand } from './commands/progressive.js';
import { serveCommand } from './commands/serve.js';
import { trainCommand } from './commands/train.js';

/**
 * The rapm command line, built but not run: tests parse argv in-process with it.
 * `exitProcess(false)` and `fail` keep yargs from calling process.exit itself.
 */
export function buildCli(argv: readonly string[]): Argv {
  return yargs([...argv])
    .scriptName('rapm')
    .usage('$0 <command> [options]')
    .command(progressiveCommand as never)
    .command(experimentCommands as never)
    .command(trainCommand as never)
    .command(serveCommand as never)
    .command(demoCommand as never)
    .command(generateCommand as never)
    .demandCommand(1, 'Name a command (see --help)')
    .strict()
    .recommendCommands()
    .exitProcess(false)
    .fail((msg, err) => {
      throw err ?? new CliUsageError(msg);
    })
    .help()
    .version(false)
    .wrap(Math.min(100, process.stdout.columns || 100));
}

export class CliUsageError extends Error {
  readonly code = 'RAPM_USAGE';
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
