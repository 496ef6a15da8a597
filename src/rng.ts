import { checkInteger } from './validate.js';

/**
 * Seeded pseudo-random numbers: xoshiro128** (Blackman & Vigna) on 32-bit integer
 * arithmetic, seeded through splitmix32 from `(seed, stream)`. The same seed and stream
 * give the same sequence on every platform and Node version (only Math.imul, shifts and
 * IEEE arithmetic are involved; the normal sampler's rare slow path and its tables use
 * Math.log/exp, which V8 implements with its own fdlibm port, independent of the C library).
 *
 * Streams let independent parts of a computation (for example blocks of generated pairs)
 * draw from independent sequences, so results do not depend on the order in which the
 * parts are produced or on how output is chunked.
 */
export class Rng {
  /** xoshiro128** state; a typed array keeps the 32-bit words unboxed (object fields would box them). */
  private readonly s = new Int32Array(4);

  /** `seed`: integer in [0, 2^53); `stream`: integer in [0, 2^32). */
  constructor(seed: number, stream = 0) {
    checkInteger('seed', seed, 0, Number.MAX_SAFE_INTEGER);
    checkInteger('stream', stream, 0, 0xffffffff);
    this.reseed(seed, stream);
  }

  /**
   * Restart as `new Rng(seed, stream)` would, without allocating (hot loops that give every
   * generated row its own stream). Arguments are not validated here.
   */
  reseed(seed: number, stream: number): this {
    const lo = seed >>> 0;
    const hi = Math.floor(seed / 0x100000000) >>> 0;
    let x = (lo ^ Math.imul(hi, 0x9e3779b1) ^ Math.imul(stream + 1, 0x85ebca6b)) >>> 0;
    // Mix the stream in twice so that neighbouring streams diverge immediately.
    x = (x ^ Math.imul(stream, 0x27d4eb2f)) >>> 0;
    const next = (): number => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    const st = this.s;
    st[0] = next();
    st[1] = next();
    st[2] = next();
    st[3] = next();
    if ((st[0]! | st[1]! | st[2]! | st[3]!) === 0) st[0] = 1;
    return this;
  }

  /** Next uniform 32-bit unsigned integer. */
  nextU32(): number {
    const st = this.s;
    let s0 = st[0]!;
    let s1 = st[1]!;
    let s2 = st[2]!;
    let s3 = st[3]!;
    const r = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = rotl(s3, 11);
    st[0] = s0;
    st[1] = s1;
    st[2] = s2;
    st[3] = s3;
    return r;
  }

  /** Uniform double in (0, 1), never 0 or 1 (32 bits of resolution). */
  next(): number {
    return (this.nextU32() + 0.5) * 2.3283064365386963e-10;
  }

  /** Uniform integer in [0, n), n in [1, 2^32], without modulo bias. */
  int(n: number): number {
    if (n <= 1) return 0;
    const limit = 0x100000000 - (0x100000000 % n);
    for (;;) {
      const u = this.nextU32();
      if (u < limit) return u % n;
    }
  }

  /**
   * Standard normal deviate: the Marsaglia-Tsang ziggurat (128 layers). The layer index and
   * the magnitude come from separate bits of one 32-bit draw (Doornik's fix for the
   * correlation of the original RNOR); about 98.8% of draws take the fast path.
   */
  normal(): number {
    const u = this.nextU32();
    const i = u & 127;
    const j = (u | 0) >> 7; // signed 25-bit
    if ((j < 0 ? -j : j) < ZIG_K[i]!) return j * ZIG_W[i]!;
    return this.normalSlow(j, i);
  }

  private normalSlow(j: number, i: number): number {
    for (;;) {
      const x = j * ZIG_W[i]!;
      if (i === 0) {
        let t: number;
        let y: number;
        do {
          t = -Math.log(this.next()) / ZIG_R;
          y = -Math.log(this.next());
        } while (y + y < t * t);
        return j > 0 ? ZIG_R + t : -ZIG_R - t;
      }
      if (ZIG_F[i]! + this.next() * (ZIG_F[i - 1]! - ZIG_F[i]!) < Math.exp(-0.5 * x * x)) return x;
      const u = this.nextU32();
      i = u & 127;
      j = (u | 0) >> 7;
      if ((j < 0 ? -j : j) < ZIG_K[i]!) return j * ZIG_W[i]!;
    }
  }

  /** Fill `out` with `scale` x standard normal deviates (same values as repeated normal() calls). */
  fillNormal(out: Float32Array | Float64Array, scale = 1): Float32Array | Float64Array {
    const len = out.length;
    const st = this.s;
    // The generator state lives in locals for the hot loop (xoshiro128** inlined).
    let s0 = st[0]!;
    let s1 = st[1]!;
    let s2 = st[2]!;
    let s3 = st[3]!;
    for (let k = 0; k < len; k++) {
      const x = Math.imul(s1, 5);
      const u = Math.imul((x << 7) | (x >>> 25), 9);
      const t = s1 << 9;
      s2 ^= s0;
      s3 ^= s1;
      s1 ^= s2;
      s0 ^= s3;
      s2 ^= t;
      s3 = (s3 << 11) | (s3 >>> 21);
      const i = u & 127;
      const j = u >> 7; // signed 25-bit
      if ((j < 0 ? -j : j) < ZIG_K[i]!) {
        out[k] = j * ZIG_W[i]! * scale;
      } else {
        st[0] = s0;
        st[1] = s1;
        st[2] = s2;
        st[3] = s3;
        out[k] = this.normalSlow(j, i) * scale;
        s0 = st[0]!;
        s1 = st[1]!;
        s2 = st[2]!;
        s3 = st[3]!;
      }
    }
    st[0] = s0;
    st[1] = s1;
    st[2] = s2;
    st[3] = s3;
    return out;
  }

  /** Gamma(shape, 1) deviate, shape > 0 (Marsaglia & Tsang). */
  gamma(shape: number): number {
    if (shape < 1) return this.gamma(shape + 1) * Math.pow(this.next(), 1 / shape);
    const d = shape - 1 / 3;
    const c = 1 / Math.sqrt(9 * d);
    for (;;) {
      let x: number;
      let v: number;
      do {
        x = this.normal();
        v = 1 + c * x;
      } while (v <= 0);
      v = v * v * v;
      const u = this.next();
      if (u < 1 - 0.0331 * x * x * x * x) return d * v;
      if (Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
    }
  }

  /** Fisher-Yates shuffle in place; returns `a`. */
  shuffle<T extends { length: number; [i: number]: unknown }>(a: T): T {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = a[i];
      a[i] = a[j];
      a[j] = t;
    }
    return a;
  }

  /** A random permutation of 0..n-1. */
  permutation(n: number): Int32Array {
    const p = new Int32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    return this.shuffle(p);
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

// Ziggurat tables (Marsaglia & Tsang 2000, 128 layers), for 25-bit signed magnitudes.
const ZIG_R = 3.442619855899;
const ZIG_K = new Int32Array(128);
const ZIG_W = new Float64Array(128);
const ZIG_F = new Float64Array(128);
(() => {
  const m = 16777216; // 2^24
  const v = 9.91256303526217e-3;
  let dn = ZIG_R;
  let tn = dn;
  const q = v / Math.exp(-0.5 * dn * dn);
  ZIG_K[0] = Math.floor((dn / q) * m);
  ZIG_K[1] = 0;
  ZIG_W[0] = q / m;
  ZIG_W[127] = dn / m;
  ZIG_F[0] = 1;
  ZIG_F[127] = Math.exp(-0.5 * dn * dn);
  for (let i = 126; i >= 1; i--) {
    dn = Math.sqrt(-2 * Math.log(v / dn + Math.exp(-0.5 * dn * dn)));
    ZIG_K[i + 1] = Math.floor((dn / tn) * m);
    tn = dn;
    ZIG_F[i] = Math.exp(-0.5 * dn * dn);
    ZIG_W[i] = dn / m;
  }
})();

/**
 * mulberry32: a small 32-bit generator, uniform in [0, 1). Not the library's Rng: it is the
 * fixed sequence behind the benchmarks' data (scripts/bench-retrieval.ts, scripts/int8-accuracy.ts,
 * the fast-path tests), the test helpers and the ANN training sample, kept so their data stay
 * the same between rounds.
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n values uniform in [-1, 1) from mulberry32(seed): the benchmarks' key, value and query data. */
export function uniformSigned(n: number, seed: number): Float32Array {
  const r = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = r() * 2 - 1;
  return out;
}
