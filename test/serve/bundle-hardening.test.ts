/**
 * Bundles that cannot be served, models and datastores that do not belong together, and
 * serve-time settings that would be accepted and change nothing: each refused up front with a
 * coded message naming what to change (src/serve/bundle.ts, src/cli/commands/serve.ts).
 * Also: hand-edited manifests, names in messages (batching options, released sessions), the
 * notices of a killed bundle write, and one check of a neighbour source's result.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runServe, type ServeArgs } from '../../src/cli/commands/serve.js';
import { META_PRECISION, encodeOnnx, exportOnnx } from '../../src/fusion/onnx-export.js';
import { FusionSession } from '../../src/fusion/onnx-session.js';
import { fusionSpec, initParams, paramLayout } from '../../src/fusion/layout.js';
import { faissAvailable } from '../../src/retrieval/ann.js';
import { Datastore } from '../../src/retrieval/datastore.js';
import { predictFromSource, type NeighborSource } from '../../src/retrieval/neighbor-source.js';
import { saveDatastore } from '../../src/retrieval/persist.js';
import { BUNDLE_FILES, writeBundle, type BundleSettings } from '../../src/serve/bundle.js';
import { resolveBatching } from '../../src/serve/micro-batcher.js';
import { Predictor } from '../../src/serve/predictor.js';
import { run } from '../helpers/cli.js';
import { randn } from '../helpers/random.js';
import { serving } from '../helpers/serving.js';

const keyDim = 16, dv = 3, n = 200;
const keys = randn(n * keyDim, 1), values = randn(n * dv, 2);
const ids = Array.from({ length: n }, (_, i) => `u${i}`);
const query = randn(2 * keyDim, 3);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-bundle-hardening-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const layout = paramLayout(fusionSpec({ enDim: keyDim, outDim: dv, hidden: [8] }));
const params = initParams(layout, 1);

async function store(precision: 'f32' | 'bf16' | 'int8' = 'f32'): Promise<Datastore> {
  const ds = new Datastore({ keyDim, valueDim: dv, precision, fastPath: 'off' });
  await ds.add(keys, values, ids);
  return ds;
}

let seq = 0;
/** A bundle in a fresh folder of `tmp`. */
async function bundle(o: { precision?: 'f32' | 'bf16' | 'int8'; aggregate?: 'softmax' | 'mean' | 'top1'; model?: boolean; fastPath?: BundleSettings['fastPath']; dir?: string; overwrite?: boolean } = {}) {
  const precision = o.precision ?? 'f32';
  const ds = await store(precision);
  const settings: BundleSettings = { config: 'custom', keyIndices: Array.from(ds.keyIndices), valueIndices: [0, 1, 2], k: 5, tau: 0.1, aggregate: o.aggregate ?? 'softmax', precision, ...(o.fastPath ? { fastPath: o.fastPath } : {}) };
  const dir = o.dir ?? path.join(tmp, `b${seq++}`);
  const written = await writeBundle(dir, ds, { overwrite: o.overwrite, settings, data: { hash: 'h', source: path.join(tmp, 'no-source') }, model: o.model === false ? undefined : { layout, params } });
  return { dir, written };
}

const editManifest = (dir: string, edit: (m: Record<string, any>) => void): void => {
  const file = path.join(dir, BUNDLE_FILES.manifest);
  const m = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, any>;
  edit(m);
  fs.writeFileSync(file, JSON.stringify(m));
};

const serveArgs = (args: Partial<ServeArgs>): ServeArgs => ({ port: 0, host: '127.0.0.1', maxBatch: 64, graceMs: 1000, device: 'cpu', fusionWorkers: 0, ...args }) as ServeArgs;

describe('a bundle whose settings cannot be served (precision int8 with fastPath bf16)', () => {
  it('is not written: writeBundle applies the rule between the settings that rapm index applies to its flags', async () => {
    const dir = path.join(tmp, 'int8-bf16');
    await expect(bundle({ precision: 'int8', fastPath: 'bf16', model: false, dir })).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG', message: expect.stringMatching(/^Cannot write bundle .*int8-bf16: fastPath 'bf16' needs f32 or bf16 keys/) });
    expect(fs.existsSync(dir)).toBe(false);
  });

  it('written by an older rapm, is refused on load with the way to serve it (--fast-path off), which works', async () => {
    const { dir } = await bundle({ precision: 'int8', model: false });
    editManifest(dir, (m) => (m.settings.fastPath = 'bf16'));
    await expect(Predictor.fromBundle(dir)).rejects.toMatchObject({ code: 'RAPM_FORMAT', message: expect.stringContaining('serve it with --fast-path off') });
    const r = await run(['serve', '--bundle', dir, '--port', '0']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('--fast-path off');
    const p = await Predictor.fromBundle(dir, { fastPath: 'off' });
    expect((await p.predict(query)).pred.every(Number.isFinite)).toBe(true);
  });

  it('written by an older rapm, is served with another neighbour source (the fast path is off there, so the recorded one is unused)', async () => {
    const { dir } = await bundle({ precision: 'int8', model: false });
    editManifest(dir, (m) => (m.settings.fastPath = 'bf16'));
    const exact = await store('int8');
    const source = async (): Promise<NeighborSource> => ({ name: 'other', keyDim, size: n, search: (q, k) => exact.search(q, { k }).then((r) => ({ rows: r.neighbors, similarities: r.similarities })) });
    const p = await Predictor.fromBundle(dir, { source });
    expect(p.info).toMatchObject({ fastPath: 'off', source: 'other' });
    expect(p.bundle!.overrides).toEqual({});
    expect((await p.predict(query)).pred.every(Number.isFinite)).toBe(true);
  });

  it.skipIf(!faissAvailable())('written by an older rapm, is served by rapm serve --ann', async () => {
    const { dir } = await bundle({ precision: 'int8', model: false });
    editManifest(dir, (m) => (m.settings.fastPath = 'bf16'));
    const health = await serving(serveArgs({ bundle: dir, ann: 'Flat' }), async (url) => (await fetch(url + '/health')).json());
    expect(health).toMatchObject({ fastPath: 'off', source: 'ann' });
  });

  it('rapm serve --fast-path bf16 over a bundle of int8 keys is a usage error (exit 2) naming --fast-path and the bundle\'s key precision', async () => {
    const { dir } = await bundle({ precision: 'int8', model: false });
    const r = await run(['serve', '--bundle', dir, '--fast-path', 'bf16', '--port', '0']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`--fast-path bf16 needs f32 or bf16 keys: bundle ${dir}'s int8 keys take --fast-path int8`);
    expect(r.stderr).not.toMatch(/precision|fastPath/);
    const file = path.join(tmp, 'int8.rapm');
    await saveDatastore(await store('int8'), file);
    const d = await run(['serve', '--datastore', file, '--fast-path', 'bf16', '--port', '0']);
    expect(d.code).toBe(2);
    expect(d.stderr).toContain(`--fast-path bf16 needs f32 or bf16 keys: datastore ${file}'s int8 keys take --fast-path int8`);
  });
});

describe('the key precision a model was trained with', () => {
  it('is recorded in the model by writeBundle, and a datastore of another precision is refused naming both files and both precisions', async () => {
    const { dir } = await bundle({ precision: 'bf16' });
    const model = path.join(dir, BUNDLE_FILES.model);
    const s = await FusionSession.create(model, { enDim: keyDim, outDim: dv });
    expect(s.metadata[META_PRECISION]).toBe('bf16');
    await s.release();
    const f32 = path.join(tmp, 'f32.rapm');
    await saveDatastore(await store('f32'), f32);
    await expect(runServe(serveArgs({ datastore: f32, model }), { handleSignals: false, log: () => {} })).rejects.toMatchObject({
      code: 'RAPM_DATA',
      message: expect.stringMatching(new RegExp(`^Model ${model} does not fit datastore ${f32}: the model was trained on priors from bf16 keys, the datastore holds f32 keys`)),
    });
  });

  it('a model from before it was recorded is served with a warning naming both files', async () => {
    const model = path.join(tmp, 'old.onnx');
    await exportOnnx(layout, params, model, { 'rapm.k': 5 });
    const f32 = path.join(tmp, 'f32-old.rapm');
    await saveDatastore(await store('f32'), f32);
    const lines = await serving(serveArgs({ datastore: f32, model }), async (_url, l) => l);
    expect(lines.some((l) => l.startsWith('warning: ') && l.includes(model) && l.includes(f32) && l.includes('key precision'))).toBe(true);
  });
});

describe('an explicit tau where the aggregate is not softmax (it would change nothing)', () => {
  it('is refused by Predictor.fromBundle naming tau and the bundle aggregate', async () => {
    for (const aggregate of ['mean', 'top1'] as const) {
      const { dir } = await bundle({ aggregate, model: false });
      await expect(Predictor.fromBundle(dir, { tau: 0.5 })).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG', message: expect.stringMatching(new RegExp(`^Bundle .* was trained with aggregate '${aggregate}': tau only shapes aggregate 'softmax'`)) });
      const p = await Predictor.fromBundle(dir, { tau: 0.5, aggregate: 'softmax' }); // switching to softmax makes tau count
      expect([p.aggregate, p.tau]).toEqual(['softmax', 0.5]);
    }
  });

  it('is a usage error of rapm serve (exit 2), for a bundle and for a model that records its aggregate', async () => {
    const { dir } = await bundle({ aggregate: 'mean' });
    const r = await run(['serve', '--bundle', dir, '--tau', '0.5', '--port', '0']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/bundle .* was trained with --aggregate mean: --tau only shapes --aggregate softmax/);
    const model = path.join(tmp, 'mean.onnx');
    await exportOnnx(layout, params, model, { 'rapm.aggregate': 'mean', [META_PRECISION]: 'f32' });
    const f32 = path.join(tmp, 'f32-mean.rapm');
    await saveDatastore(await store('f32'), f32);
    const m = await run(['serve', '--datastore', f32, '--model', model, '--tau', '0.5', '--port', '0', '--fusion-workers', '0']);
    expect(m.code).toBe(2);
    expect(m.stderr).toMatch(/model .*mean\.onnx was trained with --aggregate mean: --tau only shapes/);
  });
});

describe('rapm serve --bundle of a retrieval bundle', () => {
  it('refuses --device and --fusion-workers (exit 2): there is no model to run', async () => {
    const { dir } = await bundle({ model: false });
    for (const flags of [['--device', 'cuda'], ['--fusion-workers', '8']]) {
      const r = await run(['serve', '--bundle', dir, '--port', '0', ...flags]);
      expect(r.code, flags.join(' ')).toBe(2);
      expect(r.stderr).toContain(`${flags[0]} sets where the fusion model runs, but bundle ${dir} holds no model`);
    }
  });
});

describe('rapm serve --help and logged overrides', () => {
  it('shows no default where the bundle decides', async () => {
    const r = await run(['serve', '--help']);
    expect(r.code).toBe(0);
    for (const d of ['[default: 90]', '[default: 0.04]', '[default: softmax]', '[default: auto]']) expect(r.stdout).not.toContain(d);
    expect(r.stdout).toContain('default: as trained (bundle or model), else 90');
  });

  it('with --ann and no --fast-path: the datastore loads without the fast path, and nothing is logged as an override', async () => {
    const { dir } = await bundle({ model: false, fastPath: 'bf16' });
    const { lines, info } = await serving(serveArgs({ bundle: dir, ann: 'Flat' }), async (url, l) => ({ lines: l, info: (await (await fetch(`${url}/health`)).json()) as Record<string, any> }));
    expect(lines.filter((l) => l.includes('override'))).toEqual([]);
    expect(lines.some((l) => l.includes('fast path off'))).toBe(true);
    expect(JSON.stringify(info)).not.toContain('"fastPath":{"trained"');
  });
});

describe('a hand-edited manifest', () => {
  const cases: [string, (m: Record<string, any>) => void, string][] = [
    ['datastore missing', (m) => delete m.datastore, 'datastore is missing'],
    ['datastore.file null', (m) => (m.datastore.file = null), 'datastore.file is null'],
    ['model.file missing', (m) => delete m.model.file, 'model.file is missing'],
    ['settings.keyIndices missing', (m) => delete m.settings.keyIndices, 'settings.keyIndices is missing'],
    ['model.sha256 missing', (m) => delete m.model.sha256, 'model.sha256 is missing'],
    ['data missing', (m) => delete m.data, 'data is missing'],
    ['datastore.file leaving the folder', (m) => (m.datastore.file = '../elsewhere/datastore.rapm'), "datastore.file '../elsewhere/datastore.rapm' is not inside the bundle folder"],
    ['datastore.file absolute', (m) => (m.datastore.file = '/etc/passwd'), "datastore.file '/etc/passwd' is not inside the bundle folder"],
    ['model.file leaving the folder', (m) => (m.model.file = '../m.onnx'), "model.file '../m.onnx' is not inside the bundle folder"],
  ];
  for (const [name, edit, want] of cases) {
    it(`${name}: RAPM_FORMAT naming the bundle and the field`, async () => {
      const { dir } = await bundle();
      editManifest(dir, edit);
      await expect(Predictor.fromBundle(dir)).rejects.toMatchObject({ code: 'RAPM_FORMAT', message: expect.stringContaining(`${path.join(dir, BUNDLE_FILES.manifest)}: ${want}`) });
    });
  }

  it('a file inside the folder that is a symlink to one outside it is refused (symlinks resolved)', async () => {
    const { dir } = await bundle({ model: false });
    const outside = path.join(tmp, 'outside.rapm');
    fs.renameSync(path.join(dir, BUNDLE_FILES.datastore), outside);
    fs.symlinkSync(outside, path.join(dir, 'linked.rapm'));
    editManifest(dir, (m) => (m.datastore.file = 'linked.rapm'));
    await expect(Predictor.fromBundle(dir)).rejects.toMatchObject({ code: 'RAPM_FORMAT', message: expect.stringContaining("datastore.file 'linked.rapm' is not inside the bundle folder") });
  });
});

describe('names in messages', () => {
  it('batching.maxConcurrent is named as the caller passed it', () => {
    expect(() => resolveBatching({ maxConcurrent: 1.5 })).toThrow(expect.objectContaining({ code: 'RAPM_INVALID_ARG', message: expect.stringMatching(/^maxConcurrent must be /) }));
    expect(() => resolveBatching({ maxConcurrent: '2' as never })).toThrow(expect.objectContaining({ code: 'RAPM_TYPE', message: expect.stringMatching(/^maxConcurrent must be /) }));
  });

  it('a released fusion model is named by its file (a bundle\'s model.onnx), or as the fusion model when built from bytes', async () => {
    const { dir } = await bundle();
    const p = await Predictor.fromBundle(dir);
    await (p.fusion as FusionSession).release();
    await expect(p.predict(query)).rejects.toMatchObject({ code: 'RAPM_STATE', message: `The session for ${path.join(dir, BUNDLE_FILES.model)} was released` });
    const pooled = await Predictor.fromBundle(dir, { fusionWorkers: 1 });
    await (pooled.fusion as unknown as { release(): Promise<void> }).release();
    await expect(pooled.predict(query)).rejects.toMatchObject({ code: 'RAPM_STATE', message: `The fusion pool for ${path.join(dir, BUNDLE_FILES.model)} was released` });
    const s = await FusionSession.create(encodeOnnx(layout, params), { enDim: keyDim, outDim: dv });
    await s.release();
    await expect(s.run(new Float32Array(keyDim), new Float32Array(dv))).rejects.toMatchObject({ message: 'The session for the fusion model was released' });
  });
});

describe('writeBundle after a killed write', () => {
  /** The folder a swap killed between its two renames leaves: `<target>.old-<dead pid>-<hex>`, a complete bundle. */
  const movedAside = (target: string): string => {
    const old = `${target}.old-4194303-0badc0de`;
    fs.cpSync(target, old, { recursive: true });
    return old;
  };

  it('returns a notice for an old copy kept beside the bundle it replaces', async () => {
    const { dir } = await bundle({ model: false });
    const old = movedAside(dir);
    const { written } = await bundle({ model: false, dir, overwrite: true });
    expect(written.notices).toEqual([expect.stringContaining(old)]);
    expect(fs.existsSync(old)).toBe(true);
    const again = await bundle({ model: false, dir: path.join(tmp, `fresh${seq}`) });
    expect(again.written.notices).toEqual([]);
  });

  it('restores a moved-aside bundle before deciding whether the folder exists: without overwrite it is refused, not replaced', async () => {
    const { dir } = await bundle({ model: false });
    const old = movedAside(dir);
    fs.rmSync(dir, { recursive: true });
    await expect(bundle({ model: false, dir })).rejects.toMatchObject({ code: 'RAPM_IO', message: expect.stringContaining('already exists') });
    expect(fs.existsSync(path.join(dir, BUNDLE_FILES.manifest))).toBe(true);
    expect(fs.existsSync(old)).toBe(false);
  });
});

describe("a neighbour source's bad result", () => {
  const source = (result: unknown): NeighborSource => ({ name: 'bad', keyDim, size: n, search: async () => result as never });
  const cases: [string, (b: number, k: number) => unknown][] = [
    ['wrong shape', () => ({ rows: new Int32Array(1), similarities: new Float32Array(1) })],
    ['a row past the store', (b, k) => ({ rows: new Int32Array(b * k).fill(n), similarities: new Float32Array(b * k) })],
    ['a NaN similarity', (b, k) => ({ rows: new Int32Array(b * k), similarities: new Float32Array(b * k).fill(NaN) })],
  ];
  it.each(cases)('%s: RAPM_DATA from predictFromSource and from a Predictor, the same message', async (_name, result) => {
    const k = 3;
    const a = await predictFromSource(source(result(2, k)), values, query, { k }).catch((e: Error) => e);
    const ds = await store();
    const p = new Predictor(ds, { k, source: source(result(2, k)) });
    const b = await p.predict(query).catch((e: Error) => e);
    expect(a).toMatchObject({ code: 'RAPM_DATA' });
    expect(b).toMatchObject({ code: 'RAPM_DATA' });
    expect((a as Error).message.replaceAll('values', 'the datastore')).toBe((b as Error).message);
  });
});
