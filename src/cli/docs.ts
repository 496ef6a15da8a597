import { buildCli } from './main.js';

/** Commands listed in the README's CLI reference, in order. */
export const DOC_COMMANDS = ['progressive', 'subsample', 'bias', 'gap', 'grid', 'dropout', 'train', 'index', 'serve', 'generate', 'demo'];

/** The --help text of one command, as yargs prints it (fixed width, so the README is stable). */
export async function commandHelp(command: string): Promise<string> {
  const lines: string[] = [];
  const log = console.log;
  console.log = (...a: unknown[]) => lines.push(a.join(' '));
  try {
    await buildCli([command, '--help']).wrap(100).parseAsync();
  } finally {
    console.log = log;
  }
  return lines.join('\n').replace(/\s+$/gm, '').trim();
}

/** The README section between the cli markers. */
export async function cliReference(): Promise<string> {
  const parts: string[] = [];
  for (const c of DOC_COMMANDS) parts.push(`### \`rapm ${c}\`\n\n\`\`\`text\n${await commandHelp(c)}\n\`\`\``);
  return parts.join('\n\n');
}
