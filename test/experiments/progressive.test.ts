import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateProgressiveData } from '../../src/experiments/progressive-data.js';
import { readWarm, runProgressive, writeWarm, type ProgressiveOptions, type ProgressiveResult } from '../../src/experiments/progressive.js';
import { nativeMlpBackend } from '../../src/fusion/native-mlp.js';
import { openSources } from '../../src/experiments/progressive-sources.js';

const root = path.resolve(import.meta.dirname, '../..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-prog-'));
const chunks = path.join(tmp, 'chunks');
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

// Small but real: 400 initial pairs, 3 chunks of 1,500, seen and unseen test sets.
beforeAll(async () => {
  await generateProgressiveData({ out: chunks, initialTrain: 400, seenTest: 120, unseenTest: 80, chunks: 3, chunkPairs: 1500 });
}, 120_000);

const base = (out: string, extra: Partial<ProgressiveOptions> = {}): ProgressiveOptions => ({
  chunks,
  out: path.join(tmp, out),
  k: 20,
  epochs: 4,
  patience: 2,
  resamples: 1000,
  backend: nativeMlpBackend,
  ...extra,
});

/** The numbers of a run, without timings. */
const numbers = (r: ProgressiveResult) =>
  r.steps.map((s) => ({ step: s.step, pairs: s.pairs, useful: s.useful, epochs: s.epochs, tests: s.tests.map((t) => [t.name, t.n, t.plain, t.fusion, t.gain.diff, t.gain.lo, t.gain.hi]), train: s.trainFusion }));

describe('progressive loop', () => {
  let full: ProgressiveResult;
  it('runs every chunk with --all, with seen and unseen test sets, and writes a complete report', async () => {
    full = await runProgressive(base('all', { all: true }));
    expect(full.status).toBe('complete');
    expect(full.steps.map((s) => s.pairs)).toEqual([400, 1900, 3400, 4900]);
    expect(full.steps[0]!.tests.map((t) => [t.name, t.n])).toEqual([['seen', 120], ['unseen', 80]]);
    for (const f of ['results.json', 'results.csv', 'gain.svg', 'scores.svg', 'gap.svg', 'report.md', 'state.json']) expect(fs.existsSync(path.join(tmp, 'all', f))).toBe(true);
    const saved = JSON.parse(fs.readFileSync(path.join(tmp, 'all', 'results.json'), 'utf8'));
    expect(saved.status).toBe('complete');
    expect(saved.record.dataHash).toMatch(/^sha256:/);
    expect(saved.record.seed).toBe(1);
    expect(fs.readFileSync(path.join(tmp, 'all', 'report.md'), 'utf8')).toContain(full.decision);
    // Time outside the steps' phases is recorded too: the first pass, what lies between steps, the wall.
    const rs = saved.runSeconds;
    expect(rs.firstPass).toBeGreaterThan(0);
    expect(rs.outsideSteps).toBeGreaterThanOrEqual(0);
    expect(rs.wall).toBeCloseTo(rs.firstPass + rs.outsideSteps + full.phaseSeconds.total, 6);
    expect(fs.readFileSync(path.join(tmp, 'all', 'report.md'), 'utf8')).toMatch(/\| first pass over the data[^|]*\|\s+[0-9.]+ \|/);
  }, 300_000);

  it('trains 3 seeds per step by default, warm-starts from step 2, and decides on the speaker-clustered combined interval', () => {
    for (const s of full.steps) {
      expect(s.seeds).toHaveLength(3);
      expect(new Set(s.seeds.map((x) => x.seed)).size).toBe(3);
      expect(s.warm).toBe(s.step > 1);
      for (const t of s.tests) {
        expect(t.gain.seeds).toBe(3);
        expect(t.gain.unit).toBe('speaker');
        // The combined gain is the mean of the seeds' own gains.
        expect(t.gain.diff).toBeCloseTo(t.gain.seedGains.reduce((a, b) => a + b, 0) / 3, 12);
        expect(s.seeds.map((x) => x.gains.find((g) => g.name === t.name)!.diff)).toEqual(t.gain.seedGains);
      }
      // Phase times add up to the step's time (to rounding).
      expect(s.seconds.add + s.seconds.priors + s.seconds.train + s.seconds.eval).toBeCloseTo(s.seconds.total, 6);
    }
    const seen = full.steps.at(-1)!.tests.find((t) => t.name === 'seen')!.gain;
    expect(seen.clusters).toBeGreaterThan(1);
    expect(full.decision).toContain(`, 3 training seeds, speaker-clustered, ${seen.clusters} speakers`);
    expect(full.phaseSeconds.train).toBeCloseTo(full.steps.reduce((a, s) => a + s.seconds.train, 0), 9);
    expect(full.stoppedEarly).toBeNull();
  });

  it('cold start, one seed and row intervals on request; the stop is recorded when --max-steps cuts the run', async () => {
    const r = await runProgressive(base('cold', { warmStart: false, trainSeeds: 1, clusterUnit: 'row', maxSteps: 2, all: true }));
    expect(r.steps.map((s) => [s.warm, s.seeds.length, s.tests[0]!.gain.unit, s.tests[0]!.gain.seeds])).toEqual([[false, 1, 'row', 1], [false, 1, 'row', 1]]);
    expect(r.decision).toContain('1 training seed, row bootstrap');
    expect(r.stoppedEarly).toEqual({ step: 2, pairs: 1900, reason: 'max-steps', chunksLeft: 2 });
    // Step 1 is the same net either way (fresh init, same seed 0 split); step 2 differs by the warm start.
    const warm1 = await runProgressive(base('warm1', { trainSeeds: 1, clusterUnit: 'row', maxSteps: 2, all: true }));
    expect(warm1.steps[0]!.tests[0]!.fusion).toBe(r.steps[0]!.tests[0]!.fusion);
    expect(warm1.steps[1]!.warm).toBe(true);
    expect(warm1.steps[1]!.tests[0]!.fusion).not.toBe(r.steps[1]!.tests[0]!.fusion);
    // The generated ids carry no conversation: asking for conversation clusters fails before training.
    await expect(runProgressive(base('conv', { clusterUnit: 'conversation' }))).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG', message: expect.stringMatching(/conversation/) });
    expect(fs.existsSync(path.join(tmp, 'conv', 'state.json'))).toBe(false);
  }, 300_000);

  it('stops at the first step whose gain clears the threshold with an interval above zero, after one confirming step', async () => {
    // One training seed: the stop rule does not depend on how many seeds stand behind the interval.
    // A threshold of -1 is cleared at the first step whose interval is above zero.
    const r = await runProgressive(base('stop-low', { threshold: -1, trainSeeds: 1, all: false }));
    const first = r.steps.find((s) => s.tests[0]!.gain.lo > 0);
    expect(first, 'some step has a seen-speaker interval above zero (else this test proves nothing)').toBeDefined();
    expect(r.firstUseful).toBe(first!.step);
    expect(r.decision).toMatch(new RegExp(`^At ${first!.pairs} pairs fusion becomes useful: gain [+-]`));
    // The rule fires at the first useful step; one confirming step runs after it (confirmSteps 1).
    expect(r.steps.length).toBe(Math.min(first!.step + 1, 4));
    if (first!.step < 4) {
      expect(r.stoppedEarly).toMatchObject({ step: first!.step + 1, reason: 'useful' });
      expect(r.decision).toMatch(/; (it still holds at|the rule held at)/);
      const report = fs.readFileSync(path.join(tmp, 'stop-low', 'report.md'), 'utf8');
      expect(report).toContain('**The run stopped early**');
      // Every plot marks the stop.
      for (const f of ['gain.svg', 'scores.svg', 'gap.svg']) expect(fs.readFileSync(path.join(tmp, 'stop-low', f), 'utf8')).toMatch(/class="v-line"[\s\S]*stopped: fusion useful/);
    }
    const strict = await runProgressive(base('stop-now', { threshold: -1, trainSeeds: 1, confirmSteps: 0 }));
    expect(strict.steps.length).toBe(first!.step);
    // A threshold no gain can clear runs every chunk and says so.
    const never = await runProgressive(base('stop-high', { threshold: 1, trainSeeds: 1 }));
    expect(never.steps.length).toBe(4);
    expect(never.firstUseful).toBeNull();
    expect(never.decision).toMatch(/^Fusion did not become useful up to 4900 pairs/);
    expect(never.recommendation?.use_fusion).toBe(false);
    expect(never.stoppedEarly).toBeNull();
    // The rule reads gain > threshold AND lo > 0 on the deciding set, step by step (3 seeds, combined interval).
    for (const s of full.steps) {
      const g = s.tests.find((t) => t.name === 'seen')!.gain;
      expect(s.useful).toBe(g.diff > 0.001 && g.lo > 0);
    }
  }, 300_000);

  it('refuses to overwrite a run without --resume or --overwrite, and bad options before reading data', async () => {
    await expect(runProgressive(base('all'))).rejects.toMatchObject({ code: 'RAPM_STATE' });
    await expect(runProgressive(base('x', { tau: 0 }))).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG' });
    await expect(runProgressive(base('all', { resume: true, k: 21 }))).rejects.toThrow(/other options/);
  });

  it('a run cut by --max-steps is continued by --resume, to the same numbers as an uncut run', async () => {
    const opts = { trainSeeds: 1, clusterUnit: 'row' as const, all: true };
    const uncut = await runProgressive(base('uncut', { ...opts, maxSteps: 2 }));
    const cut = await runProgressive(base('cut', { ...opts, maxSteps: 1 }));
    expect(cut.steps).toHaveLength(1);
    expect(cut.stoppedEarly).toMatchObject({ reason: 'max-steps' });
    const lines: string[] = [];
    const same = await runProgressive(base('cut', { ...opts, maxSteps: 1, resume: true, log: (l) => lines.push(l) }));
    expect(same.steps).toHaveLength(1); // the same cap: nothing more to run
    expect(lines.some((l) => /nothing left to run/.test(l))).toBe(true);
    const more = await runProgressive(base('cut', { ...opts, maxSteps: 2, resume: true }));
    expect(more.steps).toHaveLength(2);
    expect(numbers(more)).toEqual(numbers(uncut));
  }, 300_000);

  it('after kill -9, --resume ends with the same results as an uninterrupted run', async () => {
    const out = path.join(tmp, 'killed');
    const args = ['--import', 'tsx', path.join(root, 'src/progressive.ts'), '--chunks', chunks, '--out', out, '--all', '--k', '20', '--epochs', '4', '--patience', '2', '--resamples', '1000', '--quiet'];
    const child = spawn(process.execPath, args, { cwd: root, stdio: 'ignore' });
    const state = path.join(out, 'state.json');
    // Kill it as soon as one step is on disk.
    await new Promise<void>((resolve, reject) => {
      const t0 = Date.now();
      const poll = setInterval(() => {
        try {
          const s = JSON.parse(fs.readFileSync(state, 'utf8'));
          if (s.steps.length >= 1) {
            clearInterval(poll);
            child.kill('SIGKILL');
            resolve();
          }
        } catch {
          // not written yet
        }
        if (Date.now() - t0 > 90_000) {
          clearInterval(poll);
          reject(new Error('no step finished in 90 s'));
        }
      }, 10);
    });
    await new Promise((r) => child.once('exit', r));
    const killed = JSON.parse(fs.readFileSync(state, 'utf8'));
    if (!killed.complete) {
      // A half-done run never looks complete: results.json is absent or says "running".
      const results = path.join(out, 'results.json');
      if (fs.existsSync(results)) expect(JSON.parse(fs.readFileSync(results, 'utf8')).status).toBe('running');
    }
    const resumed = await runProgressive(base('killed', { all: true, resume: true }));
    expect(resumed.status).toBe('complete');
    expect(numbers(resumed)).toEqual(numbers(full));
  }, 300_000);
});

describe('warm-start files', () => {
  const dir = path.join(tmp, 'warm');
  const file = path.join(dir, 'warm-start-3.bin');
  const params = [Float32Array.from([1, -2, 3.5]), Float32Array.from([0.25, 0, -0])];
  beforeAll(() => fs.mkdirSync(dir, { recursive: true }));

  it('round-trip bit for bit; a missing file starts the nets fresh and says so', () => {
    writeWarm(file, params);
    const lines: string[] = [];
    expect(readWarm(file, 2, 3, (l) => lines.push(l))).toEqual(params);
    expect(lines).toEqual([]);
    expect(readWarm(path.join(dir, 'warm-start-9.bin'), 2, 3, (l) => lines.push(l))).toEqual([]);
    expect(lines).toEqual(['warm-start-9.bin is missing: this step\'s nets start fresh instead of warm']);
  });

  it('a damaged, truncated, reshaped or non-regular file is an error naming it, never a silent cold start', () => {
    const good = fs.readFileSync((writeWarm(file, params), file));
    const expectBad = (bytes: Buffer, why: RegExp) => {
      fs.writeFileSync(file, bytes);
      expect(() => readWarm(file, 2, 3, () => {})).toThrow(expect.objectContaining({ code: 'RAPM_FORMAT', message: expect.stringMatching(why) }));
    };
    expectBad(good.subarray(0, good.length - 1), /warm-start-3\.bin: 63 bytes, expected 64/);
    const flipped = Buffer.from(good);
    flipped[9]! ^= 0x40; // a parameter's bits: only the checksum can tell
    expectBad(flipped, /warm-start-3\.bin: its checksum does not match/);
    expect(() => readWarm((fs.writeFileSync(file, good), file), 3, 2, () => {})).toThrow(/holds 2 seeds x 3 parameters, expected 3 x 2/);
    writeWarm(file, [Float32Array.from([NaN, 1, 2]), Float32Array.from([1, 2, 3])]);
    expect(() => readWarm(file, 2, 3, () => {})).toThrow(/warm-start-3\.bin: seed 0, parameter 0 is NaN/);
    fs.rmSync(file);
    const r = spawnSync('mkfifo', [file]);
    expect(r.status).toBe(0);
    expect(() => readWarm(file, 2, 3, () => {})).toThrow(expect.objectContaining({ code: 'RAPM_IO', message: expect.stringMatching(/warm-start-3\.bin: it is a FIFO/) }));
  });
});

describe('progressive sources', () => {
  it('--on-problem skip reports the chunks it drops (it used to drop them without a word)', async () => {
    const copy = path.join(tmp, 'chunks-broken');
    fs.cpSync(chunks, copy, { recursive: true });
    const names = fs.readdirSync(copy).filter((n) => fs.existsSync(path.join(copy, n, 'ids.txt'))).sort();
    const victim = names[1]!;
    fs.truncateSync(path.join(copy, victim, 'es.npy'), 4096); // a header that promises more rows than the file holds
    const lines: string[] = [];
    const src = await openSources({ chunks: copy, onProblem: 'skip', log: (l) => lines.push(l) });
    const seen: string[] = [];
    for await (const c of src.iterate()) seen.push(c.name);
    expect(seen).not.toContain(victim);
    expect(lines.join('\n')).toMatch(new RegExp(`chunks .*chunks-broken: skipped 1 problem\\(s\\) \\(--on-problem skip\\): chunk ${victim}: `));
    await expect(openSources({ chunks: copy, log: () => {} })).rejects.toMatchObject({ code: 'RAPM_DATA' });
  }, 120_000);
});
