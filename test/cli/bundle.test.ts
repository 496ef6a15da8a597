/**
 * Done-when of issue 9 part 2: `rapm train --out` writes a bundle, `rapm serve --bundle` answers
 * /predict bit-for-bit equal to Predictor.fromBundle(...).predict with the trained k, tau and key
 * config, and a model/datastore pair that does not belong together is refused.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate } from '../../src/data/generate.js';
import { loadDataset } from '../../src/data/load.js';
import { ENGLISH_WINNERS, keyIndices } from '../../src/data/indices.js';
import { BUNDLE_FILES, readBundle } from '../../src/serve/bundle.js';
import { Predictor } from '../../src/serve/predictor.js';
import { meanCosine } from '../../src/eval/cosine.js';
import { experimentData } from '../../src/experiments/sweeps.js';
import { run } from '../helpers/cli.js';
import { serving } from '../helpers/serving.js';

const root = path.resolve(import.meta.dirname, '../..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-bundle-'));
const data = path.join(tmp, 'data');
const demo = path.join(tmp, 'models', 'demo');
const other = path.join(tmp, 'models', 'other');
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function post(url: string, body: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers: { 'Content-Type': 'application/octet-stream' } }, (r) => {
      const parts: Buffer[] = [];
      r.on('data', (c: Buffer) => parts.push(c)).on('end', () => (r.statusCode === 200 ? resolve(Buffer.concat(parts)) : reject(new Error(`${r.statusCode} ${Buffer.concat(parts).toString()}`))));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const serveArgs = { port: 0, host: '127.0.0.1', maxBatch: 64, graceMs: 1000, device: 'cpu' as const };

describe('model bundles', () => {
  beforeAll(async () => {
    // A learnable systematic EN->ES part (bias), so the trained fusion net moves the prior.
    await generate({ out: data, pairs: 800, seed: 3, biasStrength: 0.3 });
    // Non-default k, tau and key config, so "served as trained" is visible.
    const r = await run(['train', '--data', data, '--out', demo, '--config', 'B', '--k', '17', '--tau', '0.07', '--epochs', '4', '--resamples', '1000', '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    const r2 = await run(['index', '--data', data, '--out', other, '--config', 'A', '--fast-path', 'off', '--quiet']);
    expect(r2.code, r2.stderr).toBe(0);
  }, 300_000);

  it('train --out writes one folder: model.onnx, datastore.rapm, rapm.json with settings, data hash, metrics, versions', () => {
    expect(fs.readdirSync(demo).sort()).toEqual([BUNDLE_FILES.datastore, BUNDLE_FILES.model, BUNDLE_FILES.manifest].sort());
    // No temporary sibling left behind.
    expect(fs.readdirSync(path.dirname(demo)).sort()).toEqual(['demo', 'other']);
    const { manifest: m } = readBundle(demo);
    expect(m.kind).toBe('fusion');
    expect(m.settings).toMatchObject({ config: 'B', k: 17, tau: 0.07, aggregate: 'softmax', precision: 'f32', fastPath: 'auto', epochs: 4, seed: 1, patience: 5 });
    expect(readBundle(other).manifest.settings.fastPath).toBe('off'); // rapm index --fast-path off
    expect(m.settings.keyIndices).toEqual([...keyIndices('B')]);
    expect(m.settings.keyIndices).toHaveLength(ENGLISH_WINNERS.length);
    expect(m.data.hash).toMatch(/^sha256:/);
    expect(m.datastore.rows).toBe(m.data.rows);
    expect(m.datastore.d).toBe(ENGLISH_WINNERS.length);
    const tests = (m.metrics as { tests: { gain_lo: number; gain_hi: number }[] }).tests;
    expect(tests.length).toBeGreaterThan(0);
    for (const t of tests) expect(t.gain_lo).toBeLessThanOrEqual(t.gain_hi);
    expect(m.versions.node).toBe(process.version);
    expect(m.versions.onnxruntime).toMatch(/^\d+\.\d+\.\d+/);
    expect(['scalar', 'avx2', 'avx512', 'avx512vnni', 'avx512bf16', 'neon']).toContain(m.versions.simd);
  });

  it('refuses to replace a bundle without --overwrite, and replaces it atomically with it', async () => {
    const before = fs.readFileSync(path.join(other, BUNDLE_FILES.manifest), 'utf8');
    const r = await run(['index', '--data', data, '--out', other, '--config', 'A', '--k', '5', '--quiet']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/already exists; pass --overwrite/);
    expect(fs.readFileSync(path.join(other, BUNDLE_FILES.manifest), 'utf8')).toBe(before);
    const r2 = await run(['index', '--data', data, '--out', other, '--config', 'A', '--k', '5', '--fast-path', 'off', '--overwrite', '--quiet']);
    expect(r2.code, r2.stderr).toBe(0);
    expect(readBundle(other).manifest.settings.k).toBe(5);
    expect(fs.readdirSync(path.dirname(other)).sort()).toEqual(['demo', 'other']);
  });

  it('--overwrite replaces only a bundle: never the input data, a folder of other files, or a file; -k over the rows is refused before writing', async () => {
    const listing = (d: string) => fs.readdirSync(d).sort();
    const dataBefore = listing(data);
    const r = await run(['index', '--data', data, '--out', data, '--overwrite', '--k', '5', '--quiet']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Cannot write bundle .*: it holds the input data/);
    expect(listing(data)).toEqual(dataBefore);
    const notes = path.join(tmp, 'notes');
    fs.mkdirSync(notes);
    fs.writeFileSync(path.join(notes, 'thesis.tex'), 'keep me');
    fs.writeFileSync(path.join(notes, BUNDLE_FILES.manifest), '{}');
    const r2 = await run(['train', '--data', data, '--out', notes, '--overwrite', '--epochs', '1', '--quiet']);
    expect(r2.code).not.toBe(0);
    expect(r2.stderr).toMatch(/holds files that are not a bundle's \(thesis\.tex\); --overwrite replaces only a bundle folder/);
    expect(fs.readFileSync(path.join(notes, 'thesis.tex'), 'utf8')).toBe('keep me');
    const file = path.join(tmp, 'a-file');
    fs.writeFileSync(file, 'keep me too');
    const r3 = await run(['index', '--data', data, '--out', file, '--overwrite', '--k', '5', '--quiet']);
    expect(r3.stderr).toMatch(/a-file: it is a regular file, not a bundle folder/);
    expect(fs.readFileSync(file, 'utf8')).toBe('keep me too');
    // k larger than the training rows: refused naming -k, nothing written (the bundle would not serve).
    const big = path.join(tmp, 'big-k');
    const r4 = await run(['index', '--data', data, '--out', big, '--k', '100000', '--quiet']);
    expect(r4.code).not.toBe(0);
    expect(r4.stderr).toMatch(/-k 100000 is more than the \d+ neighbours .* can give .*; pass -k \d+ or less \[RAPM_K_TOO_LARGE\]/);
    expect(fs.existsSync(big)).toBe(false);
  });

  it('a bundle whose rapm.json records a bad k, or whose files are FIFOs, is refused naming the file, without blocking', () => {
    const bad = path.join(tmp, 'bad-k');
    fs.cpSync(other, bad, { recursive: true });
    const mf = path.join(bad, BUNDLE_FILES.manifest);
    const m = JSON.parse(fs.readFileSync(mf, 'utf8'));
    m.settings.k = -3;
    fs.writeFileSync(mf, JSON.stringify(m));
    expect(() => readBundle(bad)).toThrow(expect.objectContaining({ code: 'RAPM_FORMAT', message: expect.stringMatching(/bad-k\/rapm\.json: settings\.k: /) }));
    // FIFOs in place of each file, loaded in a child process: a read that blocks would time out.
    const fifoBundle = (name: string, from: string) => {
      const dir = path.join(tmp, `fifo-${name}`);
      fs.cpSync(from, dir, { recursive: true });
      fs.rmSync(path.join(dir, name));
      expect(spawnSync('mkfifo', [path.join(dir, name)]).status).toBe(0);
      return dir;
    };
    const dirs = [fifoBundle(BUNDLE_FILES.manifest, demo), fifoBundle(BUNDLE_FILES.model, demo), fifoBundle(BUNDLE_FILES.datastore, other)];
    const script = `
      const { Predictor } = await import(${JSON.stringify(pathToFileURL(path.join(root, 'src/serve/predictor.ts')).href)});
      const out = [];
      for (const d of ${JSON.stringify(dirs)}) {
        try { await Predictor.fromBundle(d); out.push('no error'); } catch (e) { out.push((e.code ?? '?') + ' ' + e.message); }
      }
      console.log(JSON.stringify(out));
      process.exit(0);
    `;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, encoding: 'utf8', timeout: 60_000 });
    expect(r.error, 'the loads finished (a FIFO read that blocks would time out here)').toBeUndefined();
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as string[];
    expect(out[0]).toMatch(/^RAPM_IO Cannot read bundle .*fifo-rapm\.json: rapm\.json \(.*it is a FIFO/);
    expect(out[1]).toMatch(/^RAPM_IO Cannot read bundle .*fifo-model\.onnx: model\.onnx \(.*it is a FIFO/);
    expect(out[2]).toMatch(/^RAPM_IO Cannot read datastore .*fifo-datastore\.rapm\/datastore\.rapm: it is a FIFO/);
  }, 120_000);

  it('serve --bundle answers /predict bit for bit like Predictor.fromBundle(...).predict, with the trained settings', async () => {
    const ds = await loadDataset(data);
    const b = 9;
    const en = ds.en.slice(0, b * 1024);
    // A misspelt override is refused before anything loads ({ kk: 5 } served the trained k).
    await expect(Predictor.fromBundle(demo, { kk: 5 } as never)).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG', message: expect.stringMatching(/'kk' for Predictor.fromBundle \(did you mean 'k'\?\)/) });
    const p = await Predictor.fromBundle(demo);
    expect([p.k, p.tau, p.aggregate]).toEqual([17, 0.07, 'softmax']);
    expect(p.datastore.keyIndices.length).toBe(ENGLISH_WINNERS.length);
    const want = await p.predict(en);
    await (p.fusion as unknown as { release(): Promise<void> }).release();
    await serving({ ...serveArgs, bundle: demo }, async (url, lines) => {
      const res = await post(url + '/predict', Buffer.from(en.buffer, en.byteOffset, en.byteLength));
      const bytes = b * want.dv * 4;
      expect(res.length).toBe(2 * bytes);
      expect(res.subarray(0, bytes).equals(Buffer.from(want.pred.buffer, want.pred.byteOffset, bytes))).toBe(true);
      expect(res.subarray(bytes).equals(Buffer.from(want.prior.buffer, want.prior.byteOffset, bytes))).toBe(true);
      // Fusion changes the prior, so the bit-equality above covered the model too.
      expect(Buffer.from(want.pred.buffer).equals(Buffer.from(want.prior.buffer))).toBe(false);
      const h = (await (await fetch(url + '/health')).json()) as Record<string, unknown>;
      expect(h).toMatchObject({ k: 17, tau: 0.07, fusion: true, provider: 'cpu', d: ENGLISH_WINNERS.length });
      expect(h.bundle).toMatchObject({ dir: demo, kind: 'fusion', trained: { config: 'B', k: 17, tau: 0.07 }, overrides: {} });
      expect(lines.join('\n')).not.toMatch(/override/);
    });
  }, 120_000);

  it("rapm.json's metrics are the shipped net's: a fresh evaluation of the served bundle on the test split reproduces them, and metrics.seeds holds the training seeds' spread", async () => {
    const { manifest: m } = readBundle(demo);
    type Spread = { mean: number; sd: number; min: number; max: number; values: number[] };
    const metrics = m.metrics as {
      seed: number;
      epochs: number;
      best_epoch: number;
      tests: { name: string; n: number; plain: number; fusion: number; gain: number; gain_lo: number; gain_hi: number }[];
      seeds: { n: number; seeds: number[]; epochs: Spread; best_epoch: Spread; tests: { name: string; fusion: Spread; gain: Spread }[] };
    };
    // The same test sets train scored on (official split, seen/unseen speakers).
    const ex = experimentData(await loadDataset(data), data);
    const p = await Predictor.fromBundle(demo);
    try {
      expect(metrics.tests.map((t) => t.name)).toEqual(ex.tests.map((t) => t.name));
      for (const [i, t] of ex.tests.entries()) {
        const r = await p.predict(t.en);
        const rec = metrics.tests[i]!;
        expect(rec.n).toBe(t.n);
        expect(Math.abs(meanCosine(r.pred, t.target, 101) - rec.fusion), `${t.name}: served fusion vs recorded`).toBeLessThan(1e-6);
        expect(Math.abs(meanCosine(r.prior, t.target, 101) - rec.plain), `${t.name}: served plain vs recorded`).toBeLessThan(1e-6);
        expect(rec.gain_lo).toBeLessThanOrEqual(rec.gain);
        expect(rec.gain).toBeLessThanOrEqual(rec.gain_hi);
        // The seed block: the shipped net is its first value, the mean is over every seed.
        const s = metrics.seeds.tests[i]!;
        expect(s.fusion.values).toHaveLength(3);
        expect(s.fusion.values[0]).toBe(rec.fusion);
        expect(s.fusion.mean).toBeCloseTo(s.fusion.values.reduce((a, v) => a + v, 0) / 3, 12);
        expect(s.fusion.min).toBeLessThanOrEqual(s.fusion.mean);
        expect(s.fusion.max).toBeGreaterThanOrEqual(s.fusion.mean);
      }
    } finally {
      await (p.fusion as unknown as { release(): Promise<void> }).release();
    }
    // Epochs are the shipped net's integers; the per-seed values sit under seeds.
    expect(metrics.seed).toBe(1);
    expect(Number.isInteger(metrics.epochs) && Number.isInteger(metrics.best_epoch)).toBe(true);
    expect(metrics.seeds.n).toBe(3);
    expect(metrics.seeds.seeds[0]).toBe(1);
    expect(metrics.seeds.epochs.values[0]).toBe(metrics.epochs);
    expect(metrics.seeds.best_epoch.values[0]).toBe(metrics.best_epoch);
    for (const v of [...metrics.seeds.epochs.values, ...metrics.seeds.best_epoch.values]) expect(Number.isInteger(v)).toBe(true);
  }, 120_000);

  it('a serve-time override is explicit and logged', async () => {
    await serving({ ...serveArgs, bundle: demo, k: 4 }, async (url, lines) => {
      const h = (await (await fetch(url + '/health')).json()) as { k: number; bundle: { overrides: unknown } };
      expect(h.k).toBe(4);
      expect(h.bundle.overrides).toEqual({ k: { trained: 17, serving: 4 } });
      expect(lines.join('\n')).toMatch(/override: k 17 -> 4/);
    });
  }, 60_000);

  it('a mismatched model/datastore pair is refused (serve --datastore B-model-pair and a swapped bundle)', async () => {
    const bModel = path.join(demo, BUNDLE_FILES.model);
    const aStore = path.join(other, BUNDLE_FILES.datastore);
    await expect(serving({ ...serveArgs, datastore: aStore, model: bModel }, async () => undefined)).rejects.toThrow(/does not fit datastore .*Config B.*Config A|trained on priors from 103 EN dims \(Config B\) keys, the datastore has all 1024 EN dims \(Config A\)/);
    // The matching pair is accepted by the same path.
    await serving({ ...serveArgs, datastore: path.join(demo, BUNDLE_FILES.datastore), model: bModel }, async (url) => {
      const h = (await (await fetch(url + '/health')).json()) as Record<string, unknown>;
      expect(h).toMatchObject({ k: 17, tau: 0.07, fusion: true });
    });
    // A bundle whose datastore was swapped for another one.
    const swapped = path.join(tmp, 'swapped');
    fs.cpSync(demo, swapped, { recursive: true });
    fs.copyFileSync(aStore, path.join(swapped, BUNDLE_FILES.datastore));
    await expect(Predictor.fromBundle(swapped)).rejects.toMatchObject({ code: 'RAPM_DATA' });
    // And one whose model was swapped (sha256 no longer matches rapm.json).
    const swapped2 = path.join(tmp, 'swapped2');
    fs.cpSync(demo, swapped2, { recursive: true });
    fs.writeFileSync(path.join(swapped2, BUNDLE_FILES.model), Buffer.concat([fs.readFileSync(bModel), Buffer.from([0])]));
    await expect(Predictor.fromBundle(swapped2)).rejects.toThrow(/model\.onnx is not the model rapm\.json records/);
  }, 120_000);

  it('a retrieval-only bundle (rapm index) serves the prior', async () => {
    const p = await Predictor.fromBundle(other);
    expect(p.fusion).toBeNull();
    expect(p.info).toMatchObject({ fusion: false, provider: null, k: 5, fastPath: 'off', bundle: { kind: 'retrieval', trained: { fastPath: 'off' } } });
  });

  it('npm pack lists no trained model', () => {
    // A bundle inside the repo's models/ folder must not be packed (nor committed: .gitignore).
    const inRepo = path.join(root, 'models', `pack-test-${process.pid}`);
    fs.cpSync(demo, inRepo, { recursive: true });
    try {
      const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      const files = (JSON.parse(out) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
      expect(files).toContain('models/README.md');
      expect(files.filter((f) => f.startsWith('models/') && f !== 'models/README.md')).toEqual([]);
      expect(files.filter((f) => /\.(onnx|rapm)$/.test(f))).toEqual([]);
      expect(execFileSync('git', ['check-ignore', '-q', path.join(inRepo, BUNDLE_FILES.model)], { cwd: root }).toString()).toBe('');
    } finally {
      fs.rmSync(inRepo, { recursive: true, force: true });
    }
  }, 120_000);
});
