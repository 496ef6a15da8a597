/** Stable error codes carried by every error rapm raises on purpose. */
export type RapmErrorCode =
  | 'RAPM_INVALID_ARG' // a value of the right kind but outside its allowed range
  | 'RAPM_TYPE' // a value of the wrong kind (for example a plain array instead of Float32Array)
  | 'RAPM_SHAPE_MISMATCH' // lengths or dimensions that do not agree
  | 'RAPM_NON_FINITE' // NaN or Infinity in numeric input
  | 'RAPM_ZERO_NORM' // a vector that cannot be L2-normalised
  | 'RAPM_K_TOO_LARGE' // k larger than the rows available (after exclusion)
  | 'RAPM_NATIVE_LOAD' // the native addon could not be found or loaded
  | 'RAPM_NATIVE' // an error raised inside the native addon
  | 'RAPM_IO' // a file could not be read or written
  | 'RAPM_FORMAT' // a file exists but its contents are not what they should be
  | 'RAPM_DATA' // a dataset is inconsistent (missing partners, duplicates, ...)
  | 'RAPM_ONNX' // ONNX Runtime refused a model or a run
  | 'RAPM_STATE' // an operation that is not valid in the object's current state
  | 'RAPM_BUSY'; // a bounded queue is full: retry later (HTTP 503 with Retry-After)

/**
 * The one error class of rapm. `code` is stable and meant for programs;
 * `message` names the offending values and is meant for people.
 */
export class RapmError extends Error {
  readonly code: RapmErrorCode;
  constructor(code: RapmErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RapmError';
    this.code = code;
  }
}

/** A TypeError with a rapm code: wrong kind of value. */
export class RapmTypeError extends TypeError {
  readonly code: RapmErrorCode;
  constructor(code: RapmErrorCode, message: string) {
    super(message);
    this.name = 'TypeError';
    this.code = code;
  }
}

/** A RangeError with a rapm code: right kind, wrong size or value. */
export class RapmRangeError extends RangeError {
  readonly code: RapmErrorCode;
  constructor(code: RapmErrorCode, message: string) {
    super(message);
    this.name = 'RangeError';
    this.code = code;
  }
}

/** Describe a value for an error message, sharp style: `number 0`, `string 'abc'`, `Array(3)`. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'string') return `string '${value.length > 40 ? value.slice(0, 40) + '…' : value}'`;
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') {
    return `${typeof value} ${String(value)}`;
  }
  if (ArrayBuffer.isView(value)) {
    return `${value.constructor.name}(${(value as unknown as { length?: number }).length ?? value.byteLength})`;
  }
  if (Array.isArray(value)) return `Array(${value.length})`;
  if (typeof value === 'function') return 'function';
  return `object ${Object.prototype.toString.call(value).slice(8, -1)}`;
}

/**
 * The sharp message form: "Expected <expected> for <name> of type <type> but received <actual>".
 * Wrong kind -> TypeError; right kind, bad value -> RangeError.
 */
export function invalidParam(name: string, expected: string, actual: unknown): RapmTypeError | RapmRangeError {
  const msg = `Expected ${expected} for ${name} but received ${describe(actual)}`;
  const wrongKind =
    actual === null ||
    actual === undefined ||
    (expected.includes('Float32Array') && !(actual instanceof Float32Array)) ||
    (expected.includes('Int32Array') && !(actual instanceof Int32Array)) ||
    (expected.includes('number') && typeof actual !== 'number') ||
    (expected.includes('integer') && typeof actual !== 'number') ||
    (expected.includes('string') && typeof actual !== 'string') ||
    (expected.includes('boolean') && typeof actual !== 'boolean') ||
    (expected.startsWith('array') && !Array.isArray(actual) && !ArrayBuffer.isView(actual)) ||
    (expected === 'object' && (typeof actual !== 'object' || Array.isArray(actual)));
  return wrongKind ? new RapmTypeError('RAPM_TYPE', msg) : new RapmRangeError('RAPM_INVALID_ARG', msg);
}

/** True for any error thrown on purpose by rapm (RapmError, or a Type/RangeError carrying a RAPM_ code). */
export function isRapmError(e: unknown): e is Error & { code: RapmErrorCode } {
  return e instanceof Error && typeof (e as { code?: unknown }).code === 'string' && (e as unknown as { code: string }).code.startsWith('RAPM_');
}
