import { expect } from 'vitest';
import type { SearchResult } from '../../src/retrieval/datastore.js';
import type { ReferenceSearchResult } from '../../src/retrieval/reference.js';

/** Max |a - b| / max(1, |b|) over two equal-length arrays. */
export function maxRelErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!) / Math.max(1, Math.abs(b[i]!)));
  return m;
}

/** Same neighbours (ids, order), priors and weights within `tol` relative. */
export function expectSameSearch(got: SearchResult, want: SearchResult | ReferenceSearchResult, tol: number): void {
  expect(Array.from(got.neighbors)).toEqual(Array.from(want.neighbors));
  expect(maxRelErr(got.prior, want.prior)).toBeLessThanOrEqual(tol);
  expect(maxRelErr(got.weights, want.weights)).toBeLessThanOrEqual(tol);
  expect(maxRelErr(got.similarities, want.similarities)).toBeLessThanOrEqual(tol);
}
