import { invalidParam } from '../errors.js';
import { checkInteger } from '../validate.js';
import { loadBinding } from './binding.js';

export type SimdLevel = 'scalar' | 'avx2' | 'avx512' | 'avx512vnni' | 'avx512bf16' | 'neon';

/** The SIMD level kernels run at now (best supported, or the RAPM_SIMD override). */
export function simdLevel(): SimdLevel {
  return loadBinding().simdLevel() as SimdLevel;
}

/** Every level this CPU and build can run, best first; always ends with 'scalar'. */
export function simdLevels(): SimdLevel[] {
  return loadBinding().simdLevels() as SimdLevel[];
}

/** Switch kernels for this thread's addon instance (tests, benchmarks). */
export function setSimdLevel(level: SimdLevel): SimdLevel {
  const levels = simdLevels();
  if (!levels.includes(level)) throw invalidParam('level', `one of ${levels.join(', ')}`, level);
  return loadBinding().setSimdLevel(level) as SimdLevel;
}

/** Threads the addon splits work over (default: hardware threads, or RAPM_THREADS). */
export function concurrency(): number {
  return loadBinding().concurrency();
}

/** Set the addon's thread count; searches already running finish on the old pool. */
export function setConcurrency(threads: number): number {
  return loadBinding().setConcurrency(checkInteger('threads', threads, 1, 1024));
}
