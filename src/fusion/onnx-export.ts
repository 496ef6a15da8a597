import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import path from 'node:path';
import { RapmRangeError, RapmTypeError, describe } from '../errors.js';
import { atomicWrite, ensureDir } from '../io/atomic.js';
import { paramLayout, LAYER_NORM_EPS, type MlpSpec, type ParamLayout } from './layout.js';
import {
  AttributeType,
  OnnxDataType,
  encodeModel,
  float32LeBytes,
  type AttributeProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from './onnx-proto.js';

/**
 * ONNX export of the layout.ts networks, read straight from the parameter arena.
 *
 * Interface (both kinds, so one FusionSession serves either):
 *   inputs  en    float32 [N, enDim]    prior float32 [N, outDim]
 *   outputs pred  float32 [N, outDim]   delta float32 [N, outDim]
 * Fusion:   x = Concat(en, prior); delta = MLP(x); pred = Add(prior, delta)
 * Baseline: x = en;                    pred  = MLP(x); delta = Sub(pred, prior)
 * (the baseline uses `prior` only to form `delta`, so the interface stays one.)
 *
 * Each Linear is Gemm(x, W, b, transB=1) with W stored [out, in] as in the arena; hidden
 * layers add LayerNormalization(axis -1, epsilon 1e-5) when the spec has it, then exact
 * GELU as Div(z, sqrt 2) -> Erf -> Add 1 -> Mul z -> Mul 0.5 (the pattern ONNX Runtime
 * fuses into one Gelu kernel), or Relu. Dropout is omitted (inference).
 * Opset 17 (LayerNormalization), ir_version 8 (accepted by onnx >= 1.10 checkers).
 */
export const ONNX_OPSET = 17;
export const ONNX_IR_VERSION = 8;
export const ONNX_INPUTS = ['en', 'prior'] as const;
export const ONNX_OUTPUTS = ['pred', 'delta'] as const;
/** Name of the symbolic batch dimension. */
export const ONNX_BATCH_DIM = 'N';

/** metadata_props keys written by the exporter itself. */
export const META_KIND = 'rapm.kind';
export const META_SPEC = 'rapm.spec';
export const META_FORMAT = 'rapm.format';
/**
 * The key precision ('f32' | 'bf16' | 'int8') of the datastore whose priors the net was trained
 * on (writeBundle records it): bf16 and int8 keys change some neighbours, so the priors, so a net
 * fits only priors of its precision. The fast path is not recorded: it never changes an answer.
 */
export const META_PRECISION = 'rapm.precision';
/** JSON array of the keys whose values were JSON-encoded (all non-string values). */
export const META_JSON_KEYS = 'rapm.json_keys';
export const META_FORMAT_VERSION = '1';

/** A metadata value: strings are stored as is, everything else as JSON. */
export type OnnxMetaValue = string | number | boolean | null | readonly OnnxMetaValue[] | ArrayLike<number> | { readonly [k: string]: OnnxMetaValue };
export type OnnxMeta = Record<string, OnnxMetaValue>;

export interface OnnxExportResult {
  /** The model file written. */
  file: string;
  /** The JSON sidecar written next to it (`<name>.json`). */
  sidecar: string;
  bytes: number;
  /** sha256 (hex) of the model file, also recorded in the sidecar. */
  sha256: string;
}

/** Contents of the `<name>.json` sidecar. */
export interface OnnxSidecar {
  format: 'rapm-onnx-sidecar';
  version: 1;
  model: string;
  bytes: number;
  sha256: string;
  irVersion: number;
  opset: number;
  kind: MlpSpec['kind'];
  spec: MlpSpec;
  params: number;
  inputs: { name: string; shape: (string | number)[] }[];
  outputs: { name: string; shape: (string | number)[] }[];
  meta: Record<string, unknown>;
}

let producerVersion: string | undefined;
function rapmVersion(): string {
  if (producerVersion === undefined) {
    try {
      // src/fusion and dist/fusion are both two levels below package.json.
      producerVersion = String((createRequire(import.meta.url)('../../package.json') as { version?: unknown }).version ?? '');
    } catch {
      producerVersion = '';
    }
  }
  return producerVersion;
}

/** Throw unless `layout` is exactly paramLayout(layout.spec) and `params` fits it. */
function checkArena(layout: ParamLayout, params: Float32Array): void {
  if (!layout || typeof layout !== 'object' || !layout.spec) throw new RapmTypeError('RAPM_TYPE', `Expected a ParamLayout for layout but received ${describe(layout)}`);
  const want = paramLayout(layout.spec);
  if (want.size !== layout.size || want.inputDim !== layout.inputDim || JSON.stringify(want.layers) !== JSON.stringify(layout.layers)) {
    throw new RapmRangeError('RAPM_SHAPE_MISMATCH', 'Expected layout to be paramLayout(layout.spec) but its offsets differ');
  }
  if (!(params instanceof Float32Array)) throw new RapmTypeError('RAPM_TYPE', `Expected Float32Array for params but received ${describe(params)}`);
  if (params.length !== layout.size) {
    throw new RapmRangeError('RAPM_SHAPE_MISMATCH', `Expected params of length ${layout.size} (the layout size) but received length ${params.length}`);
  }
  for (let i = 0; i < params.length; i++) {
    const x = params[i]!;
    if (x - x !== 0) throw new RapmRangeError('RAPM_NON_FINITE', `Expected finite parameters but params[${i}] is ${String(x)}`);
  }
}

function jsonValue(key: string, v: unknown): string {
  return JSON.stringify(v, (k, x: unknown) => {
    if (typeof x === 'number' && !Number.isFinite(x)) {
      throw new RapmRangeError('RAPM_INVALID_ARG', `Expected finite numbers in meta.${key} but ${k || 'the value'} is ${String(x)}`);
    }
    if (typeof x === 'bigint') return Number(x);
    if (ArrayBuffer.isView(x) && !(x instanceof DataView)) return Array.from(x as unknown as ArrayLike<number>);
    if (x === undefined || typeof x === 'function' || typeof x === 'symbol') {
      throw new RapmTypeError('RAPM_TYPE', `Expected JSON-serialisable values in meta.${key} but ${k || 'the value'} is ${describe(x)}`);
    }
    return x;
  });
}

/** The metadata_props entries (caller keys, then rapm.*) and the typed copy for the sidecar. */
function metadataEntries(layout: ParamLayout, meta: OnnxMeta): { props: { key: string; value: string }[]; typed: Record<string, unknown> } {
  if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) throw new RapmTypeError('RAPM_TYPE', `Expected an object for meta but received ${describe(meta)}`);
  const generated: Record<string, string> = {
    [META_KIND]: layout.spec.kind,
    [META_SPEC]: JSON.stringify(layout.spec),
    [META_FORMAT]: META_FORMAT_VERSION,
  };
  const props: { key: string; value: string }[] = [];
  const typed: Record<string, unknown> = {};
  const jsonKeys: string[] = [];
  for (const [key, v] of Object.entries(meta)) {
    if (key.length === 0) throw new RapmRangeError('RAPM_INVALID_ARG', 'Expected non-empty keys in meta');
    if (key === META_JSON_KEYS) continue; // regenerated below (a re-export passes an old one back)
    const value = typeof v === 'string' ? v : jsonValue(key, v);
    if (key in generated) {
      if (generated[key] !== value) {
        throw new RapmRangeError('RAPM_INVALID_ARG', `Expected meta.${key} to be absent (rapm writes it) but it differs from the exported network: ${value.slice(0, 80)}`);
      }
      continue;
    }
    if (typeof v !== 'string') jsonKeys.push(key);
    props.push({ key, value });
    typed[key] = typeof v === 'string' ? v : JSON.parse(value);
  }
  for (const [key, value] of Object.entries(generated)) props.push({ key, value });
  props.push({ key: META_JSON_KEYS, value: JSON.stringify(jsonKeys) });
  return { props, typed };
}

function floatTensor(name: string, dims: number[], data: Float32Array): TensorProto {
  return { name, dims, dataType: OnnxDataType.FLOAT, rawData: float32LeBytes(data) };
}

function scalar(name: string, v: number): TensorProto {
  return floatTensor(name, [], new Float32Array([v]));
}

function valueInfo(name: string, width: number): ValueInfoProto {
  return { name, type: { tensorType: { elemType: OnnxDataType.FLOAT, shape: [{ dimParam: ONNX_BATCH_DIM }, { dimValue: width }] } } };
}

const attrInt = (name: string, i: number): AttributeProto => ({ name, type: AttributeType.INT, i });
const attrFloat = (name: string, f: number): AttributeProto => ({ name, type: AttributeType.FLOAT, f });

/** The ModelProto of a layout.ts network; initializers are views into `params` (no copy). */
export function buildOnnxModel(layout: ParamLayout, params: Float32Array, meta: OnnxMeta = {}): ModelProto {
  checkArena(layout, params);
  const spec = layout.spec;
  const { props } = metadataEntries(layout, meta);
  const nodes: NodeProto[] = [];
  const inits: TensorProto[] = [];
  const node = (opType: string, input: string[], output: string, attribute?: AttributeProto[]): string => {
    nodes.push({ opType, input, output: [output], name: output, ...(attribute ? { attribute } : {}) });
    return output;
  };

  const usesGelu = spec.activation === 'gelu' && layout.layers.length > 1;
  if (usesGelu) inits.push(scalar('gelu.sqrt2', Math.SQRT2), scalar('gelu.one', 1), scalar('gelu.half', 0.5));

  let x = spec.kind === 'fusion' ? node('Concat', ['en', 'prior'], 'input', [attrInt('axis', 1)]) : 'en';
  const last = layout.layers.length - 1;
  layout.layers.forEach((L, l) => {
    const w = `fc${l}.weight`, b = `fc${l}.bias`;
    inits.push(floatTensor(w, [L.out, L.in], params.subarray(L.w, L.w + L.out * L.in)), floatTensor(b, [L.out], params.subarray(L.b, L.b + L.out)));
    const outName = l < last ? `fc${l}` : spec.kind === 'fusion' ? 'delta' : 'pred';
    let z = node('Gemm', [x, w, b], outName, [attrInt('transB', 1)]);
    if (l === last) {
      x = z;
      return;
    }
    if (L.gamma >= 0) {
      const g = `ln${l}.weight`, be = `ln${l}.bias`;
      inits.push(floatTensor(g, [L.out], params.subarray(L.gamma, L.gamma + L.out)), floatTensor(be, [L.out], params.subarray(L.beta, L.beta + L.out)));
      z = node('LayerNormalization', [z, g, be], `ln${l}`, [attrInt('axis', -1), attrFloat('epsilon', LAYER_NORM_EPS)]);
    }
    if (spec.activation === 'relu') {
      x = node('Relu', [z], `act${l}`);
    } else {
      const d = node('Div', [z, 'gelu.sqrt2'], `gelu${l}.div`);
      const e = node('Erf', [d], `gelu${l}.erf`);
      const a = node('Add', [e, 'gelu.one'], `gelu${l}.add`);
      const m = node('Mul', [z, a], `gelu${l}.mul`);
      x = node('Mul', [m, 'gelu.half'], `act${l}`);
    }
  });
  if (spec.kind === 'fusion') node('Add', ['prior', 'delta'], 'pred');
  else node('Sub', ['pred', 'prior'], 'delta');

  const dims = spec.hidden.length ? `${layout.inputDim} -> ${spec.hidden.join(' -> ')} -> ${spec.outDim}` : `${layout.inputDim} -> ${spec.outDim}`;
  return {
    irVersion: ONNX_IR_VERSION,
    producerName: 'rapm',
    producerVersion: rapmVersion(),
    modelVersion: 1,
    docString:
      spec.kind === 'fusion'
        ? `rapm fusion MLP ${dims}: delta = F(concat[en, prior]), pred = prior + delta`
        : `rapm baseline MLP ${dims}: pred = F(en), delta = pred - prior (prior is used only for delta)`,
    opsetImport: [{ domain: '', version: ONNX_OPSET }],
    graph: {
      name: `rapm_${spec.kind}`,
      node: nodes,
      initializer: inits,
      input: [valueInfo('en', spec.enDim), valueInfo('prior', spec.outDim)],
      output: [valueInfo('pred', spec.outDim), valueInfo('delta', spec.outDim)],
    },
    metadataProps: props,
  };
}

/** The serialised ONNX model of a layout.ts network. */
export function encodeOnnx(layout: ParamLayout, params: Float32Array, meta: OnnxMeta = {}): Uint8Array {
  return encodeModel(buildOnnxModel(layout, params, meta));
}

/** `<dir>/<name>.json` for `<dir>/<name>.onnx` (or `<dir>/<name>` without an extension). */
export function sidecarPath(file: string): string {
  const ext = path.extname(file);
  return path.join(path.dirname(file), `${path.basename(file, ext)}.json`);
}

/**
 * Write the network as an ONNX model at `file` and a JSON sidecar at `<name>.json`.
 * `meta` (dims, index lists, K, tau, data hash, seed, validation metrics, SIMD level, ...)
 * goes into metadata_props (strings as is, other values as JSON) and into the sidecar.
 * Both files are written atomically (temporary file, fsync, rename), model first; the
 * sidecar records the model's sha256, so a stale pair is detectable.
 */
export async function exportOnnx(layout: ParamLayout, params: Float32Array, file: string, meta: OnnxMeta = {}): Promise<OnnxExportResult> {
  if (typeof file !== 'string' || file.length === 0) throw new RapmTypeError('RAPM_TYPE', `Expected a non-empty string for file but received ${describe(file)}`);
  const sidecar = sidecarPath(file);
  if (path.resolve(sidecar) === path.resolve(file)) {
    throw new RapmRangeError('RAPM_INVALID_ARG', `Expected a model file name not ending in .json but received ${describe(file)}`);
  }
  const model = buildOnnxModel(layout, params, meta);
  const bytes = encodeModel(model);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const { typed } = metadataEntries(layout, meta);
  const shape = (v: ValueInfoProto): (string | number)[] => (v.type?.tensorType?.shape ?? []).map((d) => d.dimParam ?? d.dimValue ?? '?');
  const side: OnnxSidecar = {
    format: 'rapm-onnx-sidecar',
    version: 1,
    model: path.basename(file),
    bytes: bytes.length,
    sha256,
    irVersion: ONNX_IR_VERSION,
    opset: ONNX_OPSET,
    kind: layout.spec.kind,
    spec: layout.spec,
    params: layout.size,
    inputs: model.graph!.input.map((v) => ({ name: v.name, shape: shape(v) })),
    outputs: model.graph!.output.map((v) => ({ name: v.name, shape: shape(v) })),
    meta: typed,
  };
  ensureDir(path.dirname(path.resolve(file)));
  await atomicWrite(file, async (fh) => {
    await fh.writeFile(bytes);
    await fh.sync();
  });
  await atomicWrite(sidecar, async (fh) => {
    await fh.writeFile(JSON.stringify(side, null, 2) + '\n', 'utf8');
    await fh.sync();
  });
  return { file, sidecar, bytes: bytes.length, sha256 };
}
