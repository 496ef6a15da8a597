import { RapmError } from '../errors.js';

/**
 * A minimal protobuf encoder/decoder for the ONNX messages rapm writes and reads
 * (onnx/onnx.proto, proto2 syntax). Only the fields listed in the interfaces below are
 * encoded; the decoder skips every other field, so it reads models from any toolchain.
 *
 * Wire details that matter for compatibility with onnx/protobuf:
 * - int64 fields are varints; negative values take ten bytes (two's complement).
 * - `TensorProto.dims`, `AttributeProto.ints`/`floats` are not `[packed]` in onnx.proto
 *   and are written unpacked; `TensorProto.float_data`/`int32_data`/`int64_data` are
 *   `[packed = true]` and written packed. The decoder accepts both forms for every
 *   repeated scalar, as protobuf requires.
 * - `raw_data` is little-endian (the ONNX rule), whatever the host.
 */

// ---------------------------------------------------------------------------------------------
// Messages

/** TensorProto.DataType values rapm uses. */
export const OnnxDataType = { FLOAT: 1, UINT8: 2, INT8: 3, INT32: 6, INT64: 7, STRING: 8, BOOL: 9, FLOAT16: 10, DOUBLE: 11 } as const;

/** Names of TensorProto.DataType values, for messages. */
export function dataTypeName(t: number): string {
  const names: Record<number, string> = {
    0: 'UNDEFINED', 1: 'FLOAT', 2: 'UINT8', 3: 'INT8', 4: 'UINT16', 5: 'INT16', 6: 'INT32', 7: 'INT64', 8: 'STRING',
    9: 'BOOL', 10: 'FLOAT16', 11: 'DOUBLE', 12: 'UINT32', 13: 'UINT64', 14: 'COMPLEX64', 15: 'COMPLEX128', 16: 'BFLOAT16',
  };
  return names[t] ?? `type ${t}`;
}

/** AttributeProto.AttributeType values rapm uses. */
export const AttributeType = { UNDEFINED: 0, FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, GRAPH: 5, FLOATS: 6, INTS: 7, STRINGS: 8 } as const;

export interface OperatorSetIdProto {
  domain: string; // 1
  version: number; // 2
}

export interface StringStringEntryProto {
  key: string; // 1
  value: string; // 2
}

export interface TensorProto {
  dims: number[]; // 1
  dataType: number; // 2
  floatData?: Float32Array | number[]; // 4 (packed)
  int64Data?: number[]; // 7 (packed)
  name: string; // 8
  rawData?: Uint8Array; // 9
  docString?: string; // 12
}

/** One dimension: a fixed size or a symbolic name ("N"); neither when unknown. */
export interface TensorShapeDimension {
  dimValue?: number; // 1
  dimParam?: string; // 2
}

export interface TypeProto {
  /** TypeProto.tensor_type (field 1); other kinds (sequence, map, ...) decode as undefined. */
  tensorType?: {
    elemType: number; // 1
    /** TensorShapeProto (field 2); undefined when the rank is unknown. */
    shape?: TensorShapeDimension[];
  };
}

export interface ValueInfoProto {
  name: string; // 1
  type?: TypeProto; // 2
  docString?: string; // 3
}

export interface AttributeProto {
  name: string; // 1
  type: number; // 20 (AttributeType)
  f?: number; // 2 (fixed32 float)
  i?: number; // 3
  s?: Uint8Array; // 4
  t?: TensorProto; // 5
  g?: GraphProto; // 6
  floats?: number[]; // 7
  ints?: number[]; // 8
  strings?: Uint8Array[]; // 9
}

export interface NodeProto {
  input: string[]; // 1
  output: string[]; // 2
  name?: string; // 3
  opType: string; // 4
  attribute?: AttributeProto[]; // 5
  docString?: string; // 6
  domain?: string; // 7
}

export interface GraphProto {
  node: NodeProto[]; // 1
  name: string; // 2
  initializer: TensorProto[]; // 5
  docString?: string; // 10
  input: ValueInfoProto[]; // 11
  output: ValueInfoProto[]; // 12
  valueInfo?: ValueInfoProto[]; // 13
}

export interface ModelProto {
  irVersion: number; // 1
  producerName?: string; // 2
  producerVersion?: string; // 3
  domain?: string; // 4
  modelVersion?: number; // 5
  docString?: string; // 6
  graph?: GraphProto; // 7
  opsetImport: OperatorSetIdProto[]; // 8
  metadataProps: StringStringEntryProto[]; // 14
}

// ---------------------------------------------------------------------------------------------
// Encoder

const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_I32 = 5;

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** A growable byte buffer with protobuf primitives. */
class Writer {
  private buf = new Uint8Array(256);
  private len = 0;

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  varint(v: number | bigint): void {
    let x = BigInt.asUintN(64, BigInt(v));
    if (x < 0x80n) {
      this.reserve(1);
      this.buf[this.len++] = Number(x);
      return;
    }
    this.reserve(10);
    while (x >= 0x80n) {
      this.buf[this.len++] = Number(x & 0x7fn) | 0x80;
      x >>= 7n;
    }
    this.buf[this.len++] = Number(x);
  }

  tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  int(field: number, v: number): void {
    if (!Number.isSafeInteger(v)) throw new RangeError(`protobuf field ${field}: ${v} is not a safe integer`);
    this.tag(field, WIRE_VARINT);
    this.varint(v);
  }

  float(field: number, v: number): void {
    this.tag(field, WIRE_I32);
    this.reserve(4);
    new DataView(this.buf.buffer, this.buf.byteOffset + this.len, 4).setFloat32(0, v, true);
    this.len += 4;
  }

  bytes(field: number, b: Uint8Array): void {
    this.tag(field, WIRE_LEN);
    this.varint(b.length);
    this.reserve(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }

  string(field: number, s: string): void {
    this.bytes(field, utf8.encode(s));
  }

  message(field: number, encode: (w: Writer) => void): void {
    const sub = new Writer();
    encode(sub);
    this.bytes(field, sub.finish());
  }

  finish(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }
}

function encodeOpset(w: Writer, o: OperatorSetIdProto): void {
  if (o.domain) w.string(1, o.domain);
  w.int(2, o.version);
}

function encodeEntry(w: Writer, e: StringStringEntryProto): void {
  w.string(1, e.key);
  w.string(2, e.value);
}

/** Little-endian bytes of a float32 array (a view when the host is little-endian). */
export function float32LeBytes(a: Float32Array): Uint8Array {
  if (LITTLE_ENDIAN) return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const out = new Uint8Array(a.length * 4);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < a.length; i++) dv.setFloat32(i * 4, a[i]!, true);
  return out;
}

function encodeTensor(w: Writer, t: TensorProto): void {
  for (const d of t.dims) w.int(1, d);
  w.int(2, t.dataType);
  if (t.floatData && t.floatData.length > 0) {
    // Packed floats: the body is plain little-endian fixed32 values.
    const raw = new Uint8Array(t.floatData.length * 4);
    const dv = new DataView(raw.buffer);
    for (let i = 0; i < t.floatData.length; i++) dv.setFloat32(i * 4, t.floatData[i]!, true);
    w.bytes(4, raw);
  }
  if (t.int64Data && t.int64Data.length > 0) {
    w.message(7, (p) => {
      for (const x of t.int64Data!) p.varint(x);
    });
  }
  w.string(8, t.name);
  if (t.rawData) w.bytes(9, t.rawData);
  if (t.docString) w.string(12, t.docString);
}

function encodeType(w: Writer, t: TypeProto): void {
  if (!t.tensorType) return;
  const tt = t.tensorType;
  w.message(1, (x) => {
    x.int(1, tt.elemType);
    if (tt.shape) {
      x.message(2, (s) => {
        for (const d of tt.shape!) {
          s.message(1, (dim) => {
            if (d.dimValue !== undefined) dim.int(1, d.dimValue);
            else if (d.dimParam !== undefined) dim.string(2, d.dimParam);
          });
        }
      });
    }
  });
}

function encodeValueInfo(w: Writer, v: ValueInfoProto): void {
  w.string(1, v.name);
  if (v.type) w.message(2, (t) => encodeType(t, v.type!));
  if (v.docString) w.string(3, v.docString);
}

function encodeAttribute(w: Writer, a: AttributeProto): void {
  w.string(1, a.name);
  if (a.f !== undefined) w.float(2, a.f);
  if (a.i !== undefined) w.int(3, a.i);
  if (a.s !== undefined) w.bytes(4, a.s);
  if (a.t !== undefined) w.message(5, (t) => encodeTensor(t, a.t!));
  if (a.g !== undefined) w.message(6, (g) => encodeGraph(g, a.g!));
  for (const f of a.floats ?? []) w.float(7, f);
  for (const i of a.ints ?? []) w.int(8, i);
  for (const s of a.strings ?? []) w.bytes(9, s);
  w.int(20, a.type);
}

function encodeNode(w: Writer, n: NodeProto): void {
  for (const s of n.input) w.string(1, s);
  for (const s of n.output) w.string(2, s);
  if (n.name) w.string(3, n.name);
  w.string(4, n.opType);
  for (const a of n.attribute ?? []) w.message(5, (x) => encodeAttribute(x, a));
  if (n.docString) w.string(6, n.docString);
  if (n.domain) w.string(7, n.domain);
}

function encodeGraph(w: Writer, g: GraphProto): void {
  for (const n of g.node) w.message(1, (x) => encodeNode(x, n));
  w.string(2, g.name);
  for (const t of g.initializer) w.message(5, (x) => encodeTensor(x, t));
  if (g.docString) w.string(10, g.docString);
  for (const v of g.input) w.message(11, (x) => encodeValueInfo(x, v));
  for (const v of g.output) w.message(12, (x) => encodeValueInfo(x, v));
  for (const v of g.valueInfo ?? []) w.message(13, (x) => encodeValueInfo(x, v));
}

/** Serialise a ModelProto to its protobuf bytes. */
export function encodeModel(m: ModelProto): Uint8Array {
  const w = new Writer();
  w.int(1, m.irVersion);
  if (m.producerName) w.string(2, m.producerName);
  if (m.producerVersion) w.string(3, m.producerVersion);
  if (m.domain) w.string(4, m.domain);
  if (m.modelVersion !== undefined) w.int(5, m.modelVersion);
  if (m.docString) w.string(6, m.docString);
  if (m.graph) w.message(7, (g) => encodeGraph(g, m.graph!));
  for (const o of m.opsetImport) w.message(8, (x) => encodeOpset(x, o));
  for (const e of m.metadataProps) w.message(14, (x) => encodeEntry(x, e));
  return w.finish();
}

// ---------------------------------------------------------------------------------------------
// Decoder

/** Thrown by the decoder; callers wrap it with the file name (RAPM_FORMAT). */
export class ProtoDecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtoDecodeError';
  }
}

class Reader {
  pos: number;
  constructor(
    readonly buf: Uint8Array,
    start = 0,
    readonly end = buf.length,
    readonly what = 'ModelProto',
  ) {
    this.pos = start;
  }

  done(): boolean {
    return this.pos >= this.end;
  }

  private fail(msg: string): never {
    throw new ProtoDecodeError(`${msg} in ${this.what} at byte ${this.pos}`);
  }

  varintBig(): bigint {
    let x = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) this.fail('truncated varint');
      const b = this.buf[this.pos++]!;
      x |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return x;
      shift += 7n;
    }
    this.fail('varint longer than 10 bytes');
  }

  /** A varint as a JS number: fast path for small values, exact int64 otherwise. */
  varint(): number {
    const b = this.buf[this.pos];
    if (b !== undefined && b < 0x80 && this.pos < this.end) {
      this.pos++;
      return b;
    }
    const x = BigInt.asIntN(64, this.varintBig());
    return Number(x);
  }

  fixed32Float(): number {
    if (this.pos + 4 > this.end) this.fail('truncated fixed32');
    const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 4).getFloat32(0, true);
    this.pos += 4;
    return v;
  }

  lengthDelimited(): Uint8Array {
    const n = this.varint();
    if (n < 0 || this.pos + n > this.end) this.fail(`length ${n} runs past the end (truncated?)`);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  sub(what: string): Reader {
    const n = this.varint();
    if (n < 0 || this.pos + n > this.end) this.fail(`length ${n} of ${what} runs past the end (truncated?)`);
    const r = new Reader(this.buf, this.pos, this.pos + n, what);
    this.pos += n;
    return r;
  }

  string(): string {
    const b = this.lengthDelimited();
    try {
      return utf8Decoder.decode(b);
    } catch {
      this.fail('invalid UTF-8 in a string field');
    }
  }

  /** Read one tag; returns [field, wire]. */
  tag(): [number, number] {
    const t = this.varint();
    const field = Math.floor(t / 8);
    const wire = t & 7;
    if (field === 0) this.fail('field number 0');
    return [field, wire];
  }

  skip(wire: number): void {
    switch (wire) {
      case WIRE_VARINT:
        this.varintBig();
        return;
      case WIRE_I64:
        if (this.pos + 8 > this.end) this.fail('truncated fixed64');
        this.pos += 8;
        return;
      case WIRE_LEN:
        this.lengthDelimited();
        return;
      case WIRE_I32:
        if (this.pos + 4 > this.end) this.fail('truncated fixed32');
        this.pos += 4;
        return;
      default:
        this.fail(`unsupported wire type ${wire}`);
    }
  }

  expect(wire: number, want: number, field: number): void {
    if (wire !== want) this.fail(`field ${field} has wire type ${wire}, expected ${want}`);
  }

  /** A repeated varint field, packed or not, appended to `out`. */
  repeatedVarint(wire: number, out: number[]): void {
    if (wire === WIRE_LEN) {
      const r = this.sub(this.what);
      while (!r.done()) out.push(r.varint());
    } else {
      this.expect(wire, WIRE_VARINT, 0);
      out.push(this.varint());
    }
  }

  repeatedFloat(wire: number, out: number[]): void {
    if (wire === WIRE_LEN) {
      const r = this.sub(this.what);
      while (!r.done()) out.push(r.fixed32Float());
    } else {
      this.expect(wire, WIRE_I32, 0);
      out.push(this.fixed32Float());
    }
  }
}

function decodeOpset(r: Reader): OperatorSetIdProto {
  const o: OperatorSetIdProto = { domain: '', version: 0 };
  while (!r.done()) {
    const [f, w] = r.tag();
    if (f === 1 && w === WIRE_LEN) o.domain = r.string();
    else if (f === 2 && w === WIRE_VARINT) o.version = r.varint();
    else r.skip(w);
  }
  return o;
}

function decodeEntry(r: Reader): StringStringEntryProto {
  const e: StringStringEntryProto = { key: '', value: '' };
  while (!r.done()) {
    const [f, w] = r.tag();
    if (f === 1 && w === WIRE_LEN) e.key = r.string();
    else if (f === 2 && w === WIRE_LEN) e.value = r.string();
    else r.skip(w);
  }
  return e;
}

function decodeTensor(r: Reader): TensorProto {
  const t: TensorProto = { dims: [], dataType: 0, name: '' };
  const floats: number[] = [];
  const int64s: number[] = [];
  while (!r.done()) {
    const [f, w] = r.tag();
    if (f === 1) r.repeatedVarint(w, t.dims);
    else if (f === 2 && w === WIRE_VARINT) t.dataType = r.varint();
    else if (f === 4) r.repeatedFloat(w, floats);
    else if (f === 7) r.repeatedVarint(w, int64s);
    else if (f === 8 && w === WIRE_LEN) t.name = r.string();
    else if (f === 9 && w === WIRE_LEN) t.rawData = r.lengthDelimited();
    else if (f === 12 && w === WIRE_LEN) t.docString = r.string();
    else r.skip(w);
  }
  if (floats.length) t.floatData = floats;
  if (int64s.length) t.int64Data = int64s;
  return t;
}

function decodeShape(r: Reader): TensorShapeDimension[] {
  const dims: TensorShapeDimension[] = [];
  while (!r.done()) {
    const [f, w] = r.tag();
    if (f === 1 && w === WIRE_LEN) {
      const d = r.sub('TensorShapeProto.Dimension');
      const dim: TensorShapeDimension = {};
      while (!d.done()) {
        const [g, x] = d.tag();
        if (g === 1 && x === WIRE_VARINT) dim.dimValue = d.varint();
        else if (g === 2 && x === WIRE_LEN) dim.dimParam = d.string();
        else d.skip(x);
      }
      dims.push(dim);
    } else r.skip(w);
  }
  return dims;
}

function decodeType(r: Reader): TypeProto {
  const t: TypeProto = {};
  while (!r.done()) {
    const [f, w] = r.tag();
    if (f === 1 && w === WIRE_LEN) {
      const s = r.sub('TypeProto.Tensor');
      const tt: NonNullable<TypeProto['tensorType']> = { elemType: 0 };
      while (!s.done()) {
        const [g, x] = s.tag();
        if (g === 1 && x === WIRE_VARINT) tt.elemType = s.varint();
        else if (g === 2 && x === WIRE_LEN) tt.shape = decodeShape(s.sub('TensorShapeProto'));
        else s.skip(x);
      }
      t.tensorType = tt;
    } else r.skip(w);
  }
  return t;
}

function decodeValueInfo(r: Reader): ValueInfoProto {
  const v: ValueInfoProto = { name: '' };
  while (!r.done()) {
    const [f, w] = r.tag();
    if (f === 1 && w === WIRE_LEN) v.name = r.string();
    else if (f === 2 && w === WIRE_LEN) v.type = decodeType(r.sub('TypeProto'));
    else if (f === 3 && w === WIRE_LEN) v.docString = r.string();
    else r.skip(w);
  }
  return v;
}

function decodeAttribute(r: Reader): AttributeProto {
  const a: AttributeProto = { name: '', type: AttributeType.UNDEFINED };
  const floats: number[] = [];
  const ints: number[] = [];
  const strings: Uint8Array[] = [];
  while (!r.done()) {
    const [f, w] = r.tag();
    if (f === 1 && w === WIRE_LEN) a.name = r.string();
    else if (f === 2 && w === WIRE_I32) a.f = r.fixed32Float();
    else if (f === 3 && w === WIRE_VARINT) a.i = r.varint();
    else if (f === 4 && w === WIRE_LEN) a.s = r.lengthDelimited();
    else if (f === 5 && w === WIRE_LEN) a.t = decodeTensor(r.sub('TensorProto'));
    else if (f === 6 && w === WIRE_LEN) a.g = decodeGraph(r.sub('GraphProto'));
    else if (f === 7) r.repeatedFloat(w, floats);
    else if (f === 8) r.repeatedVarint(w, ints);
    else if (f === 9 && w === WIRE_LEN) strings.push(r.lengthDelimited());
    else if (f === 20 && w === WIRE_VARINT) a.type = r.varint();
    else r.skip(w);
  }
  if (floats.length) a.floats = floats;
  if (ints.length) a.ints = ints;
  if (strings.length) a.strings = strings;
  return a;
}

function decodeNode(r: Reader): NodeProto {
  const n: NodeProto = { input: [], output: [], opType: '' };
  const attrs: AttributeProto[] = [];
  while (!r.done()) {
    const [f, w] = r.tag();
    if (f === 1 && w === WIRE_LEN) n.input.push(r.string());
    else if (f === 2 && w === WIRE_LEN) n.output.push(r.string());
    else if (f === 3 && w === WIRE_LEN) n.name = r.string();
    else if (f === 4 && w === WIRE_LEN) n.opType = r.string();
    else if (f === 5 && w === WIRE_LEN) attrs.push(decodeAttribute(r.sub('AttributeProto')));
    else if (f === 6 && w === WIRE_LEN) n.docString = r.string();
    else if (f === 7 && w === WIRE_LEN) n.domain = r.string();
    else r.skip(w);
  }
  if (attrs.length) n.attribute = attrs;
  return n;
}

function decodeGraph(r: Reader): GraphProto {
  const g: GraphProto = { node: [], name: '', initializer: [], input: [], output: [] };
  const vi: ValueInfoProto[] = [];
  while (!r.done()) {
    const [f, w] = r.tag();
    if (f === 1 && w === WIRE_LEN) g.node.push(decodeNode(r.sub('NodeProto')));
    else if (f === 2 && w === WIRE_LEN) g.name = r.string();
    else if (f === 5 && w === WIRE_LEN) g.initializer.push(decodeTensor(r.sub('TensorProto')));
    else if (f === 10 && w === WIRE_LEN) g.docString = r.string();
    else if (f === 11 && w === WIRE_LEN) g.input.push(decodeValueInfo(r.sub('ValueInfoProto')));
    else if (f === 12 && w === WIRE_LEN) g.output.push(decodeValueInfo(r.sub('ValueInfoProto')));
    else if (f === 13 && w === WIRE_LEN) vi.push(decodeValueInfo(r.sub('ValueInfoProto')));
    else r.skip(w);
  }
  if (vi.length) g.valueInfo = vi;
  return g;
}

/**
 * Parse ModelProto bytes. Tensor `rawData` are views into `bytes` (no copy).
 * Throws ProtoDecodeError on malformed or truncated input.
 */
export function decodeModel(bytes: Uint8Array): ModelProto {
  const r = new Reader(bytes);
  const m: ModelProto = { irVersion: 0, opsetImport: [], metadataProps: [] };
  while (!r.done()) {
    const [f, w] = r.tag();
    if (f === 1 && w === WIRE_VARINT) m.irVersion = r.varint();
    else if (f === 2 && w === WIRE_LEN) m.producerName = r.string();
    else if (f === 3 && w === WIRE_LEN) m.producerVersion = r.string();
    else if (f === 4 && w === WIRE_LEN) m.domain = r.string();
    else if (f === 5 && w === WIRE_VARINT) m.modelVersion = r.varint();
    else if (f === 6 && w === WIRE_LEN) m.docString = r.string();
    else if (f === 7 && w === WIRE_LEN) m.graph = decodeGraph(r.sub('GraphProto'));
    else if (f === 8 && w === WIRE_LEN) m.opsetImport.push(decodeOpset(r.sub('OperatorSetIdProto')));
    else if (f === 14 && w === WIRE_LEN) m.metadataProps.push(decodeEntry(r.sub('StringStringEntryProto')));
    else r.skip(w);
  }
  return m;
}

/** decodeModel with the error turned into RapmError('RAPM_FORMAT') naming `source`. */
export function decodeModelOrThrow(bytes: Uint8Array, source: string): ModelProto {
  try {
    const m = decodeModel(bytes);
    if (!m.graph) throw new ProtoDecodeError('no graph (field 7) in ModelProto');
    if (m.irVersion <= 0) throw new ProtoDecodeError('no ir_version (field 1) in ModelProto');
    return m;
  } catch (e) {
    if (e instanceof ProtoDecodeError) {
      throw new RapmError('RAPM_FORMAT', `${source} is not a valid ONNX model (truncated or corrupt): ${e.message}`, { cause: e });
    }
    throw e;
  }
}

/** A float32 tensor's values (raw_data or float_data), copied into a Float32Array. */
export function tensorFloats(t: TensorProto): Float32Array {
  const count = t.dims.reduce((a, b) => a * b, 1);
  if (t.dataType !== OnnxDataType.FLOAT) throw new ProtoDecodeError(`tensor ${t.name} is ${dataTypeName(t.dataType)}, not FLOAT`);
  const out = new Float32Array(count);
  if (t.rawData) {
    if (t.rawData.length !== count * 4) throw new ProtoDecodeError(`tensor ${t.name}: raw_data has ${t.rawData.length} bytes, expected ${count * 4}`);
    const dv = new DataView(t.rawData.buffer, t.rawData.byteOffset, t.rawData.byteLength);
    for (let i = 0; i < count; i++) out[i] = dv.getFloat32(i * 4, true);
  } else if (t.floatData) {
    if (t.floatData.length !== count) throw new ProtoDecodeError(`tensor ${t.name}: ${t.floatData.length} float_data values, expected ${count}`);
    out.set(t.floatData);
  } else if (count !== 0) {
    throw new ProtoDecodeError(`tensor ${t.name} has no data`);
  }
  return out;
}
