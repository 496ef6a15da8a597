/**
 * Every command refuses each out-of-range or irrelevant option BEFORE it reads any data:
 * the data paths point below a regular file (reading or creating them fails with RAPM_IO,
 * exit 1), so an exit 2 naming the flag proves the option check came first. A positive
 * control per command shows the same command line with valid options does reach the data.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { COMMAND_FLAGS, COMMAND_SETTINGS } from '../../src/cli/options.js';
import '../../src/cli/main.js';
import { SETTINGS, type Bounds, type SettingKey } from '../../src/settings.js';
import { run } from '../helpers/cli.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-refuse-'));
const file = path.join(tmp, 'a-file');
fs.writeFileSync(file, 'not a folder');
const missing = path.join(file, 'data'); // below a regular file: no read, no mkdir can succeed
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Minimal arguments that point every data input and output at `missing`. */
const BASE: Record<string, string[]> = {
  // --out beside --chunks, not inside it (inside is refused: the results would be read as a chunk).
  progressive: ['--chunks', missing, '--out', path.join(file, 'progressive-out')],
  subsample: ['--data', missing, '--out', path.join(missing, 'out')],
  bias: ['--data', missing, '--out', path.join(missing, 'out')],
  gap: ['--data', missing, '--out', path.join(missing, 'out')],
  grid: ['--data', missing, '--out', path.join(missing, 'out')],
  dropout: ['--data', missing, '--out', path.join(missing, 'out')],
  train: ['--data', missing, '--out', path.join(missing, 'out')],
  index: ['--data', missing, '--out', path.join(missing, 'out')],
  serve: ['--datastore', path.join(missing, 'ds.rapm'), '--port', '0'],
  'pg-load': ['--datastore', path.join(missing, 'ds.rapm'), '--pg-url', 'postgres://u@127.0.0.1:1/db'],
  demo: ['--data', missing],
  generate: [path.join(missing, 'gen')],
  pack: [path.join(missing, 'dral'), '--out', path.join(missing, 'chunks')],
};

function outside(b: Bounds): (number | string)[] {
  const out: (number | string)[] = ['abc'];
  if (b.integer) out.push(b.lo + 0.5);
  out.push(b.loOpen ? b.lo : b.integer ? b.lo - 1 : b.lo - Math.max(Math.abs(b.lo) * 1e-3, 1e-9));
  if (b.hi < Number.MAX_SAFE_INTEGER) out.push(b.hiOpen ? b.hi : b.integer ? b.hi + 1 : b.hi + Math.max(Math.abs(b.hi) * 1e-3, 1e-9));
  return out;
}

/** Bad values of a setting (empty for booleans and paths: any value is in range). */
function badValues(key: SettingKey): string[] {
  const s = SETTINGS[key];
  if (s.kind === 'choice') return ['ZZZ'];
  if (s.key === 'generatorModel') return ['[1,2]', 'not json'];
  if (!s.bounds) return [];
  const vals = outside(s.bounds).map(String);
  return s.kind === 'list' ? [...vals, `${vals[1]},x`] : vals;
}

describe('every command refuses bad options before reading data', () => {
  const commands = [...COMMAND_SETTINGS.keys()];

  it('knows every command', () => {
    expect(commands.sort()).toEqual(Object.keys(BASE).sort());
  });

  for (const cmd of Object.keys(BASE)) {
    it(`${cmd}: out-of-range values exit 2 naming the flag`, async () => {
      const keys = COMMAND_SETTINGS.get(cmd)!;
      let tried = 0;
      for (const key of keys) {
        const flag = SETTINGS[key].flag;
        for (const v of badValues(key)) {
          const r = await run([cmd, ...BASE[cmd]!, `--${flag}=${v}`]);
          expect(r.code, `${cmd} --${flag}=${v}: ${r.stderr}`).toBe(2);
          expect(r.stderr, `${cmd} --${flag}=${v}`).toContain(`--${flag}`);
          expect(r.stderr).not.toMatch(/RAPM_IO|ENOTDIR|ENOENT/);
          tried++;
        }
      }
      expect(tried).toBeGreaterThan(0);
    });

    it(`${cmd}: options of other commands are usage errors`, async () => {
      const own = new Set(COMMAND_FLAGS.get(cmd)!);
      const foreign = [...new Set([...COMMAND_FLAGS.values()].flat())].filter((f) => !own.has(f));
      expect(foreign.length).toBeGreaterThan(0);
      for (const f of foreign) {
        const r = await run([cmd, ...BASE[cmd]!, `--${f}=1`]);
        expect(r.code, `${cmd} --${f}: ${r.stderr}`).toBe(2);
        expect(r.stderr).toMatch(new RegExp(`Unknown arguments?: ${f}`));
      }
    });
  }

  it('positive control: with valid options the same command lines reach the data (exit 1)', async () => {
    for (const cmd of Object.keys(BASE).filter((c) => c !== 'generate')) {
      const r = await run([cmd, ...BASE[cmd]!]);
      expect(r.code, `${cmd}: ${r.stderr}`).toBe(1);
      expect(r.stderr).toMatch(/RAPM_IO|RAPM_FORMAT|RAPM_DATA|ENOTDIR/);
    }
  });

  it('serve refuses options that the rest of its command line would leave without effect', async () => {
    const cases: [string[], string[]][] = [
      [['--no-batching', '--max-batch-rows', '8'], ['--max-batch-rows', '--no-batching']],
      [['--no-batching', '--max-wait-us', '100'], ['--max-wait-us', '--no-batching']],
      [['--no-batching', '--max-queue-rows', '10'], ['--max-queue-rows', '--no-batching']],
      [['--no-batching', '--max-concurrent-batches', '2'], ['--max-concurrent-batches', '--no-batching']],
      [['--fast-path', 'bf16', '--ann', 'IVF64,Flat'], ['--fast-path', '--ann']],
      [['--fast-path', 'auto', '--pg-url', 'postgres://u@127.0.0.1:1/db'], ['--fast-path', '--pg-url']],
      [['--aggregate', 'mean', '--tau', '0.1'], ['--tau', '--aggregate mean']],
      [['--aggregate', 'top1', '--tau', '0.1'], ['--tau', '--aggregate top1']],
      [['--device', 'cuda'], ['--device', '--model']],
      [['--fusion-workers', '2'], ['--fusion-workers', '--model']],
    ];
    for (const [extra, flags] of cases) {
      const r = await run(['serve', ...BASE.serve!, ...extra]);
      expect(r.code, `${extra.join(' ')}: ${r.stderr}`).toBe(2);
      for (const f of flags) expect(r.stderr).toContain(f);
      expect(r.stderr).not.toMatch(/RAPM_IO|ENOTDIR|ENOENT/);
    }
    // Controls: the same flags alone, or with batching on / fast path off, reach the data.
    for (const ok of [['--max-batch-rows', '8'], ['--batching', '--max-batch-rows', '8'], ['--no-batching'], ['--fast-path', 'off', '--ann', 'IVF64,Flat'], ['--aggregate', 'softmax', '--tau', '0.1'], ['--aggregate', 'mean'], ['--model', path.join(missing, 'm.onnx'), '--device', 'cuda', '--fusion-workers', '2']]) {
      const r = await run(['serve', ...BASE.serve!, ...ok]);
      expect(r.code, `${ok.join(' ')}: ${r.stderr}`).toBe(1);
    }
    // index shares the tau check (and stops before reading its data).
    const idx = await run(['index', ...BASE.index!, '--aggregate', 'top1', '--tau', '0.2']);
    expect([idx.code, idx.stderr.includes('--tau'), /RAPM_IO|ENOTDIR/.test(idx.stderr)]).toEqual([2, true, false]);
  });

  it('--tau with a non-softmax aggregate, and --test-fraction without --split, are refused by every command taking them', async () => {
    let tried = 0;
    for (const [cmd, keys] of COMMAND_SETTINGS) {
      const has = (k: SettingKey) => keys.includes(k);
      if (has('tau') && has('aggregate')) {
        const r = await run([cmd, ...BASE[cmd]!, '--aggregate', 'mean', '--tau', '0.1']);
        expect([cmd, r.code, r.stderr.includes('--tau') && r.stderr.includes('--aggregate mean')], r.stderr).toEqual([cmd, 2, true]);
        tried++;
      }
      if (has('testFraction') && has('split') && cmd !== 'progressive') {
        const r = await run([cmd, ...BASE[cmd]!, '--test-fraction', '0.3']);
        expect([cmd, r.code, r.stderr.includes('--test-fraction') && r.stderr.includes('--split')], r.stderr).toEqual([cmd, 2, true]);
        // With --split the same value reaches the data.
        const ok = await run([cmd, ...BASE[cmd]!, '--test-fraction', '0.3', '--split', 'random']);
        expect([cmd, ok.code], ok.stderr).toEqual([cmd, 1]);
        tried++;
      }
    }
    // progressive: --split needs --initial, so the control names one.
    const p = await run(['progressive', ...BASE.progressive!, '--test-fraction', '0.3']);
    expect([p.code, p.stderr.includes('--test-fraction')]).toEqual([2, true]);
    expect(tried).toBeGreaterThanOrEqual(12);
  });

  it('generate refuses before creating its output folder', async () => {
    const out = path.join(tmp, 'gen');
    const r = await run(['generate', out, '--pairs', '1']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--pairs');
    expect(fs.existsSync(out)).toBe(false);
  });

  it('train --data <FIFO> --epochs abc is refused without opening the FIFO', async () => {
    const fifo = path.join(tmp, 'fifo');
    execFileSync('mkfifo', [fifo]);
    // A read of the FIFO would block forever (nobody writes): the child must exit on its own.
    const child = spawn(process.execPath, [path.resolve(import.meta.dirname, '../../dist/cli/bin.js'), 'train', '--data', fifo, '--epochs', 'abc'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += String(d)));
    const code = await new Promise<number | null>((resolve) => {
      const t = setTimeout(() => {
        child.kill('SIGKILL');
        resolve(null);
      }, 20_000);
      child.on('exit', (c) => {
        clearTimeout(t);
        resolve(c);
      });
    });
    expect(code).toBe(2);
    expect(stderr).toMatch(/--epochs must be an integer in \[1, 100000\], got 'abc'/);
  });

  it('the issue cases: each refused with the flag named', async () => {
    const cases: [string[], RegExp][] = [
      [['train', ...BASE.train!, '--resamples', '10'], /--resamples must be an integer in \[1000, 1000000\], got '10'/],
      [['train', ...BASE.train!, '--dropout', '0.995'], /--dropout must be a number in \[0, 0.99\], got '0.995'/],
      [['train', ...BASE.train!, '--epochs', 'abc'], /--epochs/],
      [['train', ...BASE.train!, '--lr', '1.5'], /--lr must be a number in \(0, 1\]/],
      [['train', ...BASE.train!, '--model', 'baseline', '--hidden', '256,128'], /--hidden applies to --model fusion only/],
      [['grid', ...BASE.grid!, '--hidden', '256,128'], /Unknown argument: hidden/],
      [['grid', ...BASE.grid!, '--dropout', '0.2'], /Unknown argument: dropout/],
      [['subsample', ...BASE.subsample!, '--seeds', '0'], /--seeds must be an integer in \[1, 10000\], got '0'/],
      [['progressive', ...BASE.progressive!, '--tau', '1e-46'], /--tau must be a number in \[1.1754944e-38/],
      [['progressive', ...BASE.progressive!, '--k', '0'], /--k must be an integer in \[1, 2147483647\], got '0'/],
      // Decimal text only: yargs-parser's number parsing read '0x10' as 16.
      [['progressive', ...BASE.progressive!, '--k', '0x10'], /--k must be an integer in \[1, 2147483647\], got '0x10'/],
      [['progressive', ...BASE.progressive!, '--tau', '0b1'], /--tau must be .*, got '0b1'/],
      [['progressive', ...BASE.progressive!, '--k', '5', '--k', '6'], /--k must be .*give it once/],
      [['progressive', ...BASE.progressive!, '--resume', '--overwrite'], /--resume and --overwrite/],
      [['dropout', ...BASE.dropout!, '--dropout', '0.2'], /Unknown argument: dropout/],
      [['train', ...BASE.train!, '--k'], /Not enough arguments following: k/],
      [['train', ...BASE.train!, '--k', '-5'], /--k must be an integer in \[1, 2147483647\], got '-5'/],
    ];
    for (const [argv, msg] of cases) {
      const r = await run(argv);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.stderr, argv.join(' ')).toMatch(msg);
    }
  });
});
