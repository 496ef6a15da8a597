import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type * as Ort from 'onnxruntime-node';
import { RapmError, RapmRangeError, RapmTypeError, describe } from '../errors.js';
import { ioError } from '../io/atomic.js';
import { checkFinite, checkInteger, checkMatrix } from '../validate.js';
import type { MlpSpec } from './layout.js';
import { META_JSON_KEYS, META_SPEC, ONNX_INPUTS, ONNX_OUTPUTS } from './onnx-export.js';
import { decodeModelOrThrow } from './onnx-proto.js';
import { assertRegularFile } from '../io/files.js';

/**
 * Inference on an exported model (or any ONNX file with the same interface:
 * inputs `en` float32 [N, enDim] and `prior` float32 [N, outDim], outputs `pred` and
 * `delta` float32 [N, outDim]) through onnxruntime-node.
 *
 * Note: onnxruntime-node's `run()` defers one tick and then runs synchronously on the
 * calling thread, so a large batch blocks the event loop for its duration.
 */
export type OnnxDevice = 'cpu' | 'cuda' | 'auto';
/** The execution provider a session actually runs on. */
export type OnnxProvider = 'cpu' | 'cuda';

export interface FusionSessionOptions {
  /** 'cpu' (default); 'cuda' fails unless the CUDA EP works; 'auto' tries CUDA, then CPU. */
  device?: OnnxDevice;
  /** Intra-op threads (ONNX Runtime's default, one per core, when absent). */
  threads?: number;
  /** Receives one-line warnings (the 'auto' fallback to CPU). */
  onWarning?: (message: string) => void;
  /** Expected last dim of `en` (1024). */
  enDim?: number;
  /** Expected last dim of `prior`, `pred` and `delta` (101). */
  outDim?: number;
  /** How messages name the model (a bundle passes its model.onnx path when loading from bytes). Default: the file name, or '<buffer>'. */
  name?: string;
}

/** How a released session or pool names its model: the file, or 'the fusion model' when built from unnamed bytes. */
export function modelLabel(source: string): string {
  return source === '<buffer>' ? 'the fusion model' : source;
}

export interface FusionRunResult {
  /** [n, outDim] */
  pred: Float32Array;
  /** [n, outDim] */
  delta: Float32Array;
}

type OrtModule = typeof Ort;
let ortModule: OrtModule | undefined;

function loadOrt(): OrtModule {
  if (!ortModule) {
    try {
      ortModule = createRequire(import.meta.url)('onnxruntime-node') as OrtModule;
    } catch (e) {
      throw new RapmError('RAPM_ONNX', `onnxruntime-node could not be loaded (${(e as Error).message}); reinstall it with npm ci`, { cause: e });
    }
  }
  return ortModule;
}

/** The folder holding onnxruntime-node's native libraries for this platform. */
export function ortBinDir(): string {
  const pkg = createRequire(import.meta.url).resolve('onnxruntime-node/package.json');
  return path.join(path.dirname(pkg), 'bin', 'napi-v6', process.platform, process.arch);
}

const CUDA_LIBS = ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so'];

const CUDA_HOWTO =
  'onnxruntime-node ships only its CPU binaries in the npm package; its install script downloads the CUDA EP ' +
  `(${CUDA_LIBS.join(', ')}) from NuGet, and rapm's .npmrc skips it. To use a GPU (Linux x64, NVIDIA driver, ` +
  'CUDA 12 and cuDNN 9 on the library path), run `ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install.js` ' +
  "(the script's --onnxruntime-node-install=cuda12 flag; see node_modules/onnxruntime-node/README.md, CUDA EP Installation), " +
  "or use device 'cpu' or 'auto'";

/** Why the CUDA EP cannot work here, if that is visible without trying (missing libraries). */
function cudaLibsMissing(): string | null {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    return `onnxruntime-node has CUDA binaries only for linux/x64, not ${process.platform}/${process.arch}`;
  }
  let dir: string;
  try {
    dir = ortBinDir();
  } catch {
    return null;
  }
  const missing = CUDA_LIBS.filter((f) => !fs.existsSync(path.join(dir, f)));
  return missing.length ? `the CUDA execution provider libraries are absent (${missing.map((f) => path.join(dir, f)).join(', ')} not found)` : null;
}

interface ValueMeta {
  name: string;
  isTensor: boolean;
  type?: string;
  shape?: readonly (number | string)[];
}

function showValues(vs: readonly ValueMeta[]): string {
  if (vs.length === 0) return 'none';
  return vs
    .map((v) => (v.isTensor ? `${v.name} ${v.type} [${(v.shape ?? []).map((d) => (d === '' || d === -1 ? '?' : String(d))).join(', ')}]` : `${v.name} (not a tensor)`))
    .join(', ');
}

/** Check one value: float32 tensor [batch, width]; returns the batch dim (a number, or null when symbolic). */
function checkValue(v: ValueMeta | undefined, width: number): { ok: boolean; batch: number | null } {
  if (!v || !v.isTensor || v.type !== 'float32' || !v.shape || v.shape.length !== 2 || v.shape[1] !== width) return { ok: false, batch: null };
  const b = v.shape[0];
  return { ok: true, batch: typeof b === 'number' && b > 0 ? b : null };
}

/** The parsed metadata_props: JSON-encoded values (listed in rapm.json_keys) and rapm.spec decoded. */
export function parseMetadataProps(props: Record<string, string>): Record<string, unknown> {
  let jsonKeys: string[] = [];
  if (props[META_JSON_KEYS] !== undefined) {
    try {
      const k = JSON.parse(props[META_JSON_KEYS]) as unknown;
      if (Array.isArray(k)) jsonKeys = k.filter((x): x is string => typeof x === 'string');
    } catch {
      /* a foreign or damaged list: values stay strings */
    }
  }
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(props)) {
    if (key === META_JSON_KEYS) continue;
    if (jsonKeys.includes(key) || key === META_SPEC) {
      try {
        out[key] = JSON.parse(value) as unknown;
        continue;
      } catch {
        /* keep the string */
      }
    }
    out[key] = value;
  }
  return out;
}

export class FusionSession {
  /** The execution provider the session runs on. */
  readonly provider: OnnxProvider;
  /** Why 'auto' fell back to CPU (null when it did not). */
  readonly fallbackReason: string | null;
  /** metadata_props as stored (strings). */
  readonly metadataProps: Readonly<Record<string, string>>;
  /** metadata_props parsed: values the exporter JSON-encoded are decoded again. */
  readonly metadata: Readonly<Record<string, unknown>>;
  /** The network spec recorded by rapm's exporter (null for a foreign model). */
  readonly spec: MlpSpec | null;
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly enDim: number;
  readonly outDim: number;
  /** A fixed batch size declared by the model, or null when the batch dim is symbolic. */
  readonly batch: number | null;
  /** The model file, options.name, or '<buffer>'. */
  readonly source: string;

  private session: Ort.InferenceSession | null;
  private readonly inflight = new Set<Promise<unknown>>();

  private constructor(
    session: Ort.InferenceSession,
    init: {
      provider: OnnxProvider;
      fallbackReason: string | null;
      props: Record<string, string>;
      enDim: number;
      outDim: number;
      batch: number | null;
      source: string;
    },
  ) {
    this.session = session;
    this.provider = init.provider;
    this.fallbackReason = init.fallbackReason;
    this.metadataProps = Object.freeze({ ...init.props });
    this.metadata = Object.freeze(parseMetadataProps(init.props));
    const spec = this.metadata[META_SPEC];
    this.spec = spec && typeof spec === 'object' ? (spec as MlpSpec) : null;
    this.inputNames = Object.freeze([...session.inputNames]);
    this.outputNames = Object.freeze([...session.outputNames]);
    this.enDim = init.enDim;
    this.outDim = init.outDim;
    this.batch = init.batch;
    this.source = init.source;
  }

  /**
   * Load `model` (a file name, or the model's bytes) and check its interface.
   * Errors: RAPM_IO (unreadable file), RAPM_FORMAT (not a protobuf ModelProto: truncated
   * or corrupt), RAPM_ONNX (ONNX Runtime refused it, the interface differs, or the CUDA
   * execution provider is unavailable for device 'cuda').
   */
  static async create(model: string | Uint8Array, options: FusionSessionOptions = {}): Promise<FusionSession> {
    if (typeof model === 'string') assertRegularFile(model, 'ONNX model');
    if (options === null || typeof options !== 'object') throw new RapmTypeError('RAPM_TYPE', `Expected an object for options but received ${describe(options)}`);
    const device = options.device ?? 'cpu';
    if (device !== 'cpu' && device !== 'cuda' && device !== 'auto') {
      throw new RapmRangeError('RAPM_INVALID_ARG', `Expected one of 'cpu', 'cuda', 'auto' for device but received ${describe(device)}`);
    }
    const threads = options.threads === undefined ? undefined : checkInteger('threads', options.threads, 1, 1024);
    const enDim = checkInteger('enDim', options.enDim ?? 1024, 1, 1 << 16);
    const outDim = checkInteger('outDim', options.outDim ?? 101, 1, 1 << 16);
    if (options.onWarning !== undefined && typeof options.onWarning !== 'function') {
      throw new RapmTypeError('RAPM_TYPE', `Expected a function for onWarning but received ${describe(options.onWarning)}`);
    }
    if (options.name !== undefined && (typeof options.name !== 'string' || options.name.length === 0)) throw new RapmTypeError('RAPM_TYPE', `Expected a non-empty string for name but received ${describe(options.name)}`);

    let bytes: Uint8Array;
    let source: string;
    if (typeof model === 'string') {
      source = options.name ?? model;
      try {
        bytes = await fs.promises.readFile(model);
      } catch (e) {
        throw ioError('read', model, e);
      }
    } else if (model instanceof Uint8Array) {
      source = options.name ?? '<buffer>';
      bytes = model;
    } else {
      throw new RapmTypeError('RAPM_TYPE', `Expected a file name or Uint8Array for model but received ${describe(model)}`);
    }
    if (bytes.length === 0) throw new RapmError('RAPM_FORMAT', `${source} is empty, not an ONNX model`);
    const proto = decodeModelOrThrow(bytes, source);
    const props: Record<string, string> = {};
    for (const e of proto.metadataProps) props[e.key] = e.value;

    const ort = loadOrt();
    const base: Ort.InferenceSession.SessionOptions = {
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
      interOpNumThreads: 1,
      ...(threads !== undefined ? { intraOpNumThreads: threads } : {}),
    };
    const open = (ep: OnnxProvider, quiet: boolean): Promise<Ort.InferenceSession> =>
      ort.InferenceSession.create(bytes, { ...base, executionProviders: [ep], ...(quiet ? { logSeverityLevel: 4 as const } : {}) });

    let session: Ort.InferenceSession | undefined;
    let provider: OnnxProvider = 'cpu';
    let fallbackReason: string | null = null;
    if (device === 'cuda' || device === 'auto') {
      const missing = cudaLibsMissing();
      let reason = missing;
      if (!missing) {
        try {
          session = await open('cuda', device === 'auto');
          provider = 'cuda';
        } catch (e) {
          reason = `ONNX Runtime could not create a CUDA session (${(e as Error).message})`;
        }
      }
      if (!session) {
        if (device === 'cuda') throw new RapmError('RAPM_ONNX', `Cannot run ${source} on device 'cuda': ${reason}. ${CUDA_HOWTO}.`);
        fallbackReason = reason;
        options.onWarning?.(`rapm: CUDA unavailable for ${path.basename(source)} (${reason}); running on CPU`);
      }
    }
    if (!session) {
      try {
        session = await open('cpu', false);
      } catch (e) {
        throw new RapmError('RAPM_ONNX', `ONNX Runtime refused ${source}: ${(e as Error).message}`, { cause: e });
      }
    }

    try {
      const ins = session.inputMetadata as readonly ValueMeta[];
      const outs = session.outputMetadata as readonly ValueMeta[];
      const en = checkValue(ins.find((v) => v.name === 'en'), enDim);
      const prior = checkValue(ins.find((v) => v.name === 'prior'), outDim);
      const want = `inputs en float32 [N, ${enDim}] and prior float32 [N, ${outDim}], outputs pred and delta float32 [N, ${outDim}]`;
      const found = `inputs ${showValues(ins)}; outputs ${showValues(outs)}`;
      const okOuts = ONNX_OUTPUTS.every((name) => checkValue(outs.find((v) => v.name === name), outDim).ok);
      if (ins.length !== ONNX_INPUTS.length || !en.ok || !prior.ok || !okOuts) {
        throw new RapmError('RAPM_ONNX', `${source} does not have the rapm fusion interface: expected ${want} but found ${found}`);
      }
      if (en.batch !== null && prior.batch !== null && en.batch !== prior.batch) {
        throw new RapmError('RAPM_ONNX', `${source} declares different batch sizes for en (${en.batch}) and prior (${prior.batch})`);
      }
      return new FusionSession(session, { provider, fallbackReason, props, enDim, outDim, batch: en.batch ?? prior.batch, source });
    } catch (e) {
      await session.release().catch(() => undefined);
      throw e;
    }
  }

  /**
   * Run `n` rows: `en` [n, enDim], `prior` [n, outDim]. Lengths, kinds and finiteness are
   * checked before ONNX Runtime is called (TypeError / RangeError with a code).
   */
  async run(en: Float32Array, prior: Float32Array): Promise<FusionRunResult> {
    if (!this.session) throw new RapmError('RAPM_STATE', `The session for ${modelLabel(this.source)} was released`);
    const n = checkMatrix('en', en, this.enDim);
    checkMatrix('prior', prior, this.outDim, n);
    if (this.batch !== null && n !== this.batch) {
      throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `Expected ${this.batch} rows (the batch size fixed by ${this.source}) but received ${n}`);
    }
    checkFinite('en', en, this.enDim);
    checkFinite('prior', prior, this.outDim);
    const ort = loadOrt();
    const feeds = {
      en: new ort.Tensor('float32', en, [n, this.enDim]),
      prior: new ort.Tensor('float32', prior, [n, this.outDim]),
    };
    const p = this.session.run(feeds, [...ONNX_OUTPUTS]);
    this.inflight.add(p);
    let out: Ort.InferenceSession.ReturnType;
    try {
      out = await p;
    } catch (e) {
      throw new RapmError('RAPM_ONNX', `ONNX Runtime failed to run ${this.source} on ${n} rows: ${(e as Error).message}`, { cause: e });
    } finally {
      this.inflight.delete(p);
    }
    const take = (name: string): Float32Array => {
      const t = out[name];
      const data = t?.data;
      if (!(data instanceof Float32Array) || data.length !== n * this.outDim) {
        throw new RapmError(
          'RAPM_ONNX',
          `${this.source} returned ${name} ${t ? `${t.type} [${t.dims.join(', ')}]` : 'nothing'}, expected float32 [${n}, ${this.outDim}]`,
        );
      }
      return data;
    };
    return { pred: take('pred'), delta: take('delta') };
  }

  /** Free the native session (after runs in flight finish). Idempotent. */
  async release(): Promise<void> {
    const s = this.session;
    if (!s) return;
    this.session = null;
    await Promise.allSettled([...this.inflight]);
    await s.release();
  }

  /** True once release() was called. */
  get released(): boolean {
    return this.session === null;
  }
}
