// rapm public API: re-exports only.
export { RapmError, RapmRangeError, RapmTypeError, isRapmError } from './errors.js';
export type { RapmErrorCode } from './errors.js';
export { Datastore } from './retrieval/datastore.js';
export type { DatastoreOptions, KeyPrecision, SearchResult } from './retrieval/datastore.js';
export { SEARCH_DEFAULTS } from './retrieval/search-options.js';
export type { Aggregate, SearchOptions } from './retrieval/search-options.js';
export { referenceSearch } from './retrieval/reference.js';
export { simdLevel, simdLevels, setSimdLevel, concurrency, setConcurrency } from './native/simd.js';
export type { SimdLevel } from './native/simd.js';
export { rowCosines, meanCosine } from './eval/cosine.js';
export * from './data/index.js';
