import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as Ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { baselineSpec, fusionSpec, initParams, paramLayout, type ParamLayout } from '../../src/fusion/layout.js';
import { erf, forwardMlp, gelu } from '../../src/fusion/forward-ts.js';
import { buildOnnxModel, encodeOnnx, exportOnnx, sidecarPath, type OnnxSidecar } from '../../src/fusion/onnx-export.js';
import { decodeModel, encodeModel, tensorFloats, type ModelProto } from '../../src/fusion/onnx-proto.js';
import { FusionSession, ortBinDir } from '../../src/fusion/onnx-session.js';
import { maxRelErr } from '../helpers/compare.js';
import { randn } from '../helpers/random.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const FIXTURES = path.join(ROOT, 'test/fixtures/onnx');
const CHECK = path.join(ROOT, 'scripts/check-onnx.sh');
const ort = createRequire(import.meta.url)('onnxruntime-node') as typeof Ort;
const TOL = 1e-5;

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-onnx-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** initParams, then a non-zero last layer and non-trivial LayerNorm gamma/beta. */
function randomParams(layout: ParamLayout, seed: number): Float32Array {
  const p = initParams(layout, seed);
  const last = layout.layers[layout.layers.length - 1]!;
  const r = randn(last.in * last.out + last.out, seed + 1);
  const s = 1 / Math.sqrt(last.in);
  for (let i = 0; i < r.length; i++) p[last.w + i] = r[i]! * s; // W then b: contiguous
  for (const L of layout.layers) {
    if (L.gamma < 0) continue;
    const g = randn(2 * L.out, seed + 2 + L.out);
    for (let i = 0; i < L.out; i++) {
      p[L.gamma + i] = 1 + 0.2 * g[i]!;
      p[L.beta + i] = 0.1 * g[L.out + i]!;
    }
  }
  return p;
}

function inputs(n: number, seed: number): { en: Float32Array; prior: Float32Array } {
  const en = randn(n * 1024, seed);
  const prior = randn(n * 101, seed + 100);
  for (let i = 0; i < prior.length; i++) prior[i]! *= 0.3;
  return { en, prior };
}

async function caught(p: Promise<unknown> | (() => unknown)): Promise<Error & { code?: string }> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected an error');
}

const fusion = paramLayout(fusionSpec());
const baseline = paramLayout(baselineSpec());
const fusionParams = randomParams(fusion, 11);
const baselineParams = randomParams(baseline, 12);

describe('forward-ts', () => {
  it('erf matches reference values to 1e-14', () => {
    const ref: [number, number][] = [
      [0, 0],
      [0.1, 0.1124629160182849],
      [0.5, 0.5204998778130465],
      [1, 0.8427007929497149],
      [-1.5, -0.9661051464753108],
      [2, 0.9953222650189527],
      [2.9, 0.9999589021219005],
      [3, 0.9999779095030014],
      [3.5, 0.9999992569016276],
      [4, 0.9999999845827421],
      [-5, -0.9999999999984626],
      [7, 1],
    ];
    for (const [x, y] of ref) expect(Math.abs(erf(x) - y), `erf(${x})`).toBeLessThan(1e-14);
    expect(gelu(1)).toBeCloseTo(0.8413447460685429, 14);
    expect(gelu(-3)).toBeCloseTo(-0.00404969409489031, 14);
  });

  it('the fusion net with its zero last layer predicts the prior', () => {
    const p = initParams(fusion, 3);
    const { en, prior } = inputs(4, 5);
    const out = forwardMlp(fusion, p, en, prior);
    expect(Array.from(out.pred)).toEqual(Array.from(prior));
    expect(out.delta.every((x) => x === 0)).toBe(true);
  });

  it('checks its arguments', async () => {
    const { en, prior } = inputs(2, 5);
    expect((await caught(() => forwardMlp(fusion, fusionParams, en.subarray(1), prior))).code).toBe('RAPM_SHAPE_MISMATCH');
    expect((await caught(() => forwardMlp(fusion, fusionParams.subarray(1), en, prior))).code).toBe('RAPM_SHAPE_MISMATCH');
  });
});

describe('onnx-proto', () => {
  it('round-trips an exported model and keeps the arena values bit-exact', () => {
    const model = buildOnnxModel(fusion, fusionParams, { K: 8 });
    const bytes = encodeModel(model);
    const back = decodeModel(bytes);
    expect(back.irVersion).toBe(8);
    expect(back.opsetImport).toEqual([{ domain: '', version: 17 }]);
    expect(back.graph!.input.map((v) => v.name)).toEqual(['en', 'prior']);
    expect(back.graph!.output.map((v) => v.name)).toEqual(['pred', 'delta']);
    expect(back.graph!.input[0]!.type!.tensorType!.shape).toEqual([{ dimParam: 'N' }, { dimValue: 1024 }]);
    expect(back.graph!.node.map((n) => n.opType)).toEqual(model.graph!.node.map((n) => n.opType));
    const ln = back.graph!.node.find((n) => n.opType === 'LayerNormalization')!;
    expect(ln.attribute!.find((a) => a.name === 'epsilon')!.f).toBeCloseTo(1e-5, 12);
    expect(ln.attribute!.find((a) => a.name === 'axis')!.i).toBe(-1);
    const gemm = back.graph!.node.find((n) => n.opType === 'Gemm')!;
    expect(gemm.attribute).toEqual([{ name: 'transB', type: 2, i: 1 }]);
    for (const [l, L] of fusion.layers.entries()) {
      const w = back.graph!.initializer.find((t) => t.name === `fc${l}.weight`)!;
      expect(w.dims).toEqual([L.out, L.in]);
      expect(Buffer.from(tensorFloats(w).buffer).equals(Buffer.from(fusionParams.slice(L.w, L.w + L.in * L.out).buffer))).toBe(true);
    }
    expect(Buffer.from(encodeModel(back)).equals(Buffer.from(bytes))).toBe(true);
  });

  it('decodes a model written by onnx.helper (unpacked dims, packed float_data)', () => {
    const m = decodeModel(fs.readFileSync(path.join(FIXTURES, 'tiny-fusion.onnx')));
    expect(m.irVersion).toBe(7);
    const w2 = m.graph!.initializer.find((t) => t.name === 'w2')!;
    expect(w2.dims).toEqual([8, 101]);
    expect(w2.rawData).toBeUndefined();
    expect(tensorFloats(w2).length).toBe(808);
    expect(tensorFloats(m.graph!.initializer.find((t) => t.name === 'w1')!).length).toBe(8192);
  });

  it('encodes negative and large int64 values as protobuf does', () => {
    const m: ModelProto = { irVersion: 8, opsetImport: [], metadataProps: [], modelVersion: -1 };
    const bytes = encodeModel(m);
    // field 5 varint -1: ten bytes ff..ff 01
    expect(Array.from(bytes.subarray(2))).toEqual([0x28, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    expect(decodeModel(bytes).modelVersion).toBe(-1);
    expect(decodeModel(encodeModel({ ...m, modelVersion: 2 ** 40 + 3 })).modelVersion).toBe(2 ** 40 + 3);
  });
});

describe('exportOnnx + FusionSession', () => {
  let fusionFile: string, baselineFile: string;
  const meta = {
    dims: { en: 1024, out: 101 },
    valueIdx: new Int32Array([3, 1, 4, 1, 5]),
    keyIdx: [2, 7, 1],
    K: 16,
    tau: 0.05,
    dataHash: 'sha256:abc123',
    seed: 42,
    metrics: { valCosine: 0.8123, epochs: 37 },
    simd: 'avx2',
    numericString: '123',
    leaky: false,
    none: null,
  };

  beforeAll(async () => {
    fusionFile = path.join(dir, 'fusion.onnx');
    baselineFile = path.join(dir, 'models', 'baseline.onnx');
    await exportOnnx(fusion, fusionParams, fusionFile, meta);
    await exportOnnx(baseline, baselineParams, baselineFile, { kind: 'baseline' });
  });

  for (const which of ['fusion', 'baseline'] as const) {
    for (const n of [1, 1024]) {
      it(`${which}: ORT matches forward-ts within ${TOL} at batch ${n}`, async () => {
        const [layout, params, file] = which === 'fusion' ? [fusion, fusionParams, fusionFile] : [baseline, baselineParams, baselineFile];
        const s = await FusionSession.create(file, { device: 'cpu', threads: 2 });
        try {
          expect(s.provider).toBe('cpu');
          expect(s.inputNames).toEqual(['en', 'prior']);
          expect(s.outputNames).toEqual(['pred', 'delta']);
          expect(s.spec).toEqual(layout.spec);
          const { en, prior } = inputs(n, 1000 + n);
          const got = await s.run(en, prior);
          const want = forwardMlp(layout, params, en, prior);
          expect(got.pred.length).toBe(n * 101);
          expect(maxRelErr(got.pred, want.pred)).toBeLessThanOrEqual(TOL);
          expect(maxRelErr(got.delta, want.delta)).toBeLessThanOrEqual(TOL);
          // a non-trivial net: delta is far from zero
          expect(Math.max(...Array.from(want.delta, Math.abs))).toBeGreaterThan(0.05);
        } finally {
          await s.release();
        }
      });
    }
  }

  it('accepts Float32Array views with an offset', async () => {
    const s = await FusionSession.create(fusionFile, { threads: 2 });
    const { en, prior } = inputs(3, 77);
    const bigEn = new Float32Array(en.length + 5);
    bigEn.set(en, 5);
    const bigPrior = new Float32Array(prior.length + 3);
    bigPrior.set(prior, 3);
    const a = await s.run(bigEn.subarray(5), bigPrior.subarray(3));
    const b = await s.run(en, prior);
    expect(Array.from(a.pred)).toEqual(Array.from(b.pred));
    await s.release();
  });

  it('round-trips metadata through metadata_props and the sidecar', async () => {
    const s = await FusionSession.create(fusionFile);
    const plain = JSON.parse(JSON.stringify({ ...meta, valueIdx: Array.from(meta.valueIdx) })) as Record<string, unknown>;
    for (const [k, v] of Object.entries(plain)) expect(s.metadata[k], k).toEqual(v);
    expect(s.metadata['numericString']).toBe('123'); // a string stays a string
    expect(s.metadataProps['dataHash']).toBe('sha256:abc123'); // strings stored as is
    expect(s.metadataProps['tau']).toBe('0.05');
    expect(s.metadataProps['valueIdx']).toBe('[3,1,4,1,5]');
    expect(s.metadata['rapm.kind']).toBe('fusion');
    expect(s.metadata['rapm.spec']).toEqual(fusion.spec);
    await s.release();

    const side = JSON.parse(fs.readFileSync(sidecarPath(fusionFile), 'utf8')) as OnnxSidecar;
    expect(sidecarPath(fusionFile)).toBe(path.join(dir, 'fusion.json'));
    const bytes = fs.readFileSync(fusionFile);
    expect(side.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect(side.bytes).toBe(bytes.length);
    expect(side.meta).toEqual(plain);
    expect(side.spec).toEqual(fusion.spec);
    expect(side.params).toBe(fusion.size);
    expect(side.inputs).toEqual([
      { name: 'en', shape: ['N', 1024] },
      { name: 'prior', shape: ['N', 101] },
    ]);
  });

  it('writes atomically: no temporary files, a failed export leaves the old model', async () => {
    const f = path.join(dir, 'atomic', 'm.onnx');
    await exportOnnx(fusion, fusionParams, f, { v: 1 });
    const before = fs.readFileSync(f);
    const bad = fusionParams.slice();
    bad[123] = NaN;
    const e = await caught(exportOnnx(fusion, bad, f, { v: 2 }));
    expect(e.code).toBe('RAPM_NON_FINITE');
    expect(e.message).toContain('params[123]');
    expect(fs.readFileSync(f).equals(before)).toBe(true);
    await exportOnnx(fusion, fusionParams, f, { v: 3 });
    expect(fs.readdirSync(path.dirname(f)).sort()).toEqual(['m.json', 'm.onnx']);
    expect(JSON.parse(fs.readFileSync(sidecarPath(f), 'utf8')).meta).toEqual({ v: 3 });
  });

  it('refuses bad export arguments', async () => {
    const f = path.join(dir, 'bad.onnx');
    expect((await caught(exportOnnx(fusion, fusionParams.subarray(1), f, {}))).code).toBe('RAPM_SHAPE_MISMATCH');
    expect((await caught(exportOnnx({ ...fusion, size: fusion.size - 1 }, fusionParams.subarray(1), f, {}))).code).toBe('RAPM_SHAPE_MISMATCH');
    expect((await caught(exportOnnx(fusion, fusionParams, f, { tau: NaN }))).code).toBe('RAPM_INVALID_ARG');
    expect((await caught(exportOnnx(fusion, fusionParams, f, { 'rapm.kind': 'baseline' }))).code).toBe('RAPM_INVALID_ARG');
    expect((await caught(exportOnnx(fusion, fusionParams, path.join(dir, 'x.json'), {}))).code).toBe('RAPM_INVALID_ARG');
    expect(fs.existsSync(f)).toBe(false);
  });

  describe('refuses other interfaces with RAPM_ONNX naming what it found', () => {
    const write = (name: string, m: ModelProto): string => {
      const f = path.join(dir, name);
      fs.writeFileSync(f, encodeModel(m));
      return f;
    };

    it('other input names', async () => {
      const m = buildOnnxModel(fusion, fusionParams);
      m.graph!.input[0]!.name = 'x';
      for (const node of m.graph!.node) node.input = node.input.map((s) => (s === 'en' ? 'x' : s));
      const e = await caught(FusionSession.create(write('renamed.onnx', m)));
      expect(e).toBeInstanceOf(Error);
      expect(e.code).toBe('RAPM_ONNX');
      expect(e.message).toContain('renamed.onnx');
      expect(e.message).toContain('x float32 [N, 1024]');
      expect(e.message).toContain('expected inputs en float32 [N, 1024]');
    });

    it('other output names', async () => {
      const m = buildOnnxModel(baseline, baselineParams);
      m.graph!.output[1]!.name = 'residual';
      for (const node of m.graph!.node) node.output = node.output.map((s) => (s === 'delta' ? 'residual' : s));
      const e = await caught(FusionSession.create(write('outputs.onnx', m)));
      expect(e.code).toBe('RAPM_ONNX');
      expect(e.message).toContain('outputs pred float32 [N, 101], residual float32 [N, 101]');
    });

    it('other shapes', async () => {
      const small = paramLayout(fusionSpec({ enDim: 512, hidden: [16] }));
      const f = path.join(dir, 'en512.onnx');
      await exportOnnx(small, randomParams(small, 5), f, {});
      const e = await caught(FusionSession.create(f));
      expect(e.code).toBe('RAPM_ONNX');
      expect(e.message).toContain('en float32 [N, 512]');
      // the same model loads when the caller expects 512
      const s = await FusionSession.create(f, { enDim: 512 });
      const en = randn(2 * 512, 1), prior = randn(2 * 101, 2);
      const want = forwardMlp(small, randomParams(small, 5), en, prior);
      expect(maxRelErr((await s.run(en, prior)).pred, want.pred)).toBeLessThanOrEqual(TOL);
      await s.release();
    });

    it('a fixed batch size is enforced in run()', async () => {
      const m = buildOnnxModel(fusion, fusionParams);
      for (const v of [...m.graph!.input, ...m.graph!.output]) v.type!.tensorType!.shape![0] = { dimValue: 2 };
      const s = await FusionSession.create(write('batch2.onnx', m));
      expect(s.batch).toBe(2);
      const ok = inputs(2, 9);
      expect((await s.run(ok.en, ok.prior)).pred.length).toBe(202);
      const bad = inputs(3, 9);
      const e = await caught(s.run(bad.en, bad.prior));
      expect(e).toBeInstanceOf(RangeError);
      expect(e.code).toBe('RAPM_SHAPE_MISMATCH');
      await s.release();
    });
  });

  it('a truncated or corrupt file is a RapmError naming the file, never a crash', async () => {
    const bytes = fs.readFileSync(fusionFile);
    const cuts = [1, 7, 100, 5000, Math.floor(bytes.length / 2), bytes.length - 300, bytes.length - 1];
    for (const cut of cuts) {
      const f = path.join(dir, `trunc-${cut}.onnx`);
      fs.writeFileSync(f, bytes.subarray(0, cut));
      const e = await caught(FusionSession.create(f));
      expect(['RAPM_FORMAT', 'RAPM_ONNX'], `cut at ${cut}: ${e.message}`).toContain(e.code);
      expect(e.message).toContain(f);
    }
    const junk = path.join(dir, 'junk.onnx');
    fs.writeFileSync(junk, Buffer.from(randn(1000, 3).buffer));
    expect(['RAPM_FORMAT', 'RAPM_ONNX']).toContain((await caught(FusionSession.create(junk))).code);
    const empty = path.join(dir, 'empty.onnx');
    fs.writeFileSync(empty, '');
    expect((await caught(FusionSession.create(empty))).code).toBe('RAPM_FORMAT');
    const missing = await caught(FusionSession.create(path.join(dir, 'nope.onnx')));
    expect(missing.code).toBe('RAPM_IO');
    expect(missing.message).toContain('nope.onnx');
  });

  it('checks run() inputs before calling ONNX Runtime', async () => {
    const s = await FusionSession.create(fusionFile);
    const spy = vi.spyOn((ort.InferenceSession as unknown as { prototype: Ort.InferenceSession }).prototype, 'run');
    try {
      const { en, prior } = inputs(2, 4);
      const cases: [() => Promise<unknown>, string, ErrorConstructor][] = [
        [() => s.run(Array.from(en) as unknown as Float32Array, prior), 'RAPM_TYPE', TypeError],
        [() => s.run(en.subarray(1), prior), 'RAPM_SHAPE_MISMATCH', RangeError],
        [() => s.run(en, prior.subarray(101)), 'RAPM_SHAPE_MISMATCH', RangeError],
        [() => s.run(new Float32Array(0), new Float32Array(0)), 'RAPM_SHAPE_MISMATCH', RangeError],
      ];
      const nan = en.slice();
      nan[1030] = NaN;
      cases.push([() => s.run(nan, prior), 'RAPM_NON_FINITE', RangeError]);
      const inf = prior.slice();
      inf[5] = -Infinity;
      cases.push([() => s.run(en, inf), 'RAPM_NON_FINITE', RangeError]);
      for (const [fn, code, cls] of cases) {
        const e = await caught(fn);
        expect(e.code).toBe(code);
        expect(e).toBeInstanceOf(cls);
      }
      expect((await caught(() => s.run(nan, prior))).message).toContain('row 1, column 6');
      expect(spy).not.toHaveBeenCalled();
      await s.run(en, prior);
      expect(spy).toHaveBeenCalledTimes(1);
    } finally {
      spy.mockRestore();
      await s.release();
    }
    await s.release(); // idempotent
    expect((await caught(s.run(new Float32Array(1024), new Float32Array(101)))).code).toBe('RAPM_STATE');
  });

  it('refuses bad options', async () => {
    expect((await caught(FusionSession.create(fusionFile, { device: 'gpu' as 'cpu' }))).code).toBe('RAPM_INVALID_ARG');
    expect((await caught(FusionSession.create(fusionFile, { threads: 0 }))).code).toBe('RAPM_INVALID_ARG');
    expect((await caught(FusionSession.create(42 as unknown as string))).code).toBe('RAPM_TYPE');
  });

  const cudaPresent = process.platform === 'linux' && fs.existsSync(path.join(ortBinDir(), 'libonnxruntime_providers_cuda.so'));

  it.runIf(!cudaPresent)("'cuda' without the CUDA EP libraries is a clear RAPM_ONNX error", async () => {
    const e = await caught(FusionSession.create(fusionFile, { device: 'cuda' }));
    expect(e.code).toBe('RAPM_ONNX');
    expect(e.message).toContain("device 'cuda'");
    expect(e.message).toContain('libonnxruntime_providers_cuda.so');
    expect(e.message).toContain('--onnxruntime-node-install=cuda12');
    expect(e.message).toContain('CUDA 12');
    // and ONNX Runtime itself indeed refuses (what the check above anticipates)
    await expect(ort.InferenceSession.create(fusionFile, { executionProviders: ['cuda'], logSeverityLevel: 4 })).rejects.toThrow(/shared library|CUDA/i);
  });

  it.runIf(!cudaPresent)("'auto' falls back to CPU, reports it, and runs", async () => {
    const warnings: string[] = [];
    const s = await FusionSession.create(fusionFile, { device: 'auto', threads: 2, onWarning: (m) => warnings.push(m) });
    expect(s.provider).toBe('cpu');
    expect(s.fallbackReason).toMatch(/CUDA execution provider libraries are absent/);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).not.toContain('\n');
    expect(warnings[0]).toMatch(/running on CPU/);
    const { en, prior } = inputs(2, 8);
    expect(maxRelErr((await s.run(en, prior)).pred, forwardMlp(fusion, fusionParams, en, prior).pred)).toBeLessThanOrEqual(TOL);
    await s.release();
    const quiet = await FusionSession.create(fusionFile, { device: 'cpu' });
    expect(quiet.fallbackReason).toBeNull();
    await quiet.release();
  });

  it.runIf(cudaPresent)("'cuda' with the EP libraries present either runs or fails clearly", async () => {
    try {
      const s = await FusionSession.create(fusionFile, { device: 'cuda' });
      expect(s.provider).toBe('cuda');
      await s.release();
    } catch (e) {
      expect((e as { code?: string }).code).toBe('RAPM_ONNX');
      expect((e as Error).message).toContain('CUDA');
    }
  });

  it('the ONNX checker (python3-onnx, full_check) accepts the exported models', () => {
    const probe = spawnSync('bash', [CHECK, '--probe'], { encoding: 'utf8' });
    if (probe.status !== 0) {
      expect.fail(
        'python3 cannot import onnx, so the ONNX checker cannot run: install it with `apt-get install python3-onnx` ' +
          `(Debian; as root, after apt-get update). Probe said: ${probe.stderr.trim()}`,
      );
    }
    const files = [fusionFile, baselineFile, path.join(FIXTURES, 'tiny-fusion.onnx')];
    const r = spawnSync('bash', [CHECK, ...files], { encoding: 'utf8', env: { ...process.env, RAPM_NO_APT: '1' } });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(3);
    expect(r.stdout).toContain('ir_version 8, opset ai.onnx:17');
    // and it is a real check: a truncated model fails it
    const cut = path.join(dir, 'checker-trunc.onnx');
    fs.writeFileSync(cut, fs.readFileSync(fusionFile).subarray(0, 4000));
    const bad = spawnSync('bash', [CHECK, cut], { encoding: 'utf8', env: { ...process.env, RAPM_NO_APT: '1' } });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('FAIL');
  });
});

describe('a model from another toolchain (onnx.helper fixture)', () => {
  it('loads through FusionSession and matches its numpy outputs', async () => {
    const want = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'tiny-fusion.json'), 'utf8')) as {
      rows: number;
      en: number[];
      prior: number[];
      pred: number[];
      delta: number[];
      metadata: Record<string, string>;
    };
    const s = await FusionSession.create(path.join(FIXTURES, 'tiny-fusion.onnx'), { threads: 2 });
    expect(s.spec).toBeNull();
    expect(s.metadata).toEqual(want.metadata);
    const got = await s.run(Float32Array.from(want.en), Float32Array.from(want.prior));
    expect(got.pred.length).toBe(want.rows * 101);
    expect(maxRelErr(got.pred, want.pred)).toBeLessThanOrEqual(TOL);
    expect(maxRelErr(got.delta, want.delta)).toBeLessThanOrEqual(TOL);
    await s.release();
  });

  it('is small enough to commit', () => {
    for (const f of fs.readdirSync(FIXTURES)) expect(fs.statSync(path.join(FIXTURES, f)).size, f).toBeLessThan(100 * 1024);
  });

  it('can also be loaded from bytes', async () => {
    const s = await FusionSession.create(encodeOnnx(fusion, fusionParams));
    expect(s.source).toBe('<buffer>');
    expect(s.metadata['rapm.kind']).toBe('fusion');
    await s.release();
  });
});
