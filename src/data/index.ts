/** Data layer: .npy I/O, DRAL folders, packed chunks, splits, the generator, hashes. */
export {
  parseNpyHeader,
  buildNpyHeader,
  readNpy,
  readNpySync,
  readNpyHeader,
  readNpyHeaderSync,
  readNpyRows,
  readNpyInto,
  writeNpy,
  writeNpySync,
} from './npy.js';
export type { NpyArray, NpyData, NpyDtype, NpyHeader, ReadNpyOptions, WriteNpyOptions } from './npy.js';
export { loadDral, subsetDataset, formatProblems, speakerMatcher, DEFAULT_SPEAKER_PATTERN } from './dataset.js';
export type { Dataset, DataProblem, LoadDralOptions, LoadedDataset, ProblemPolicy } from './dataset.js';
export { loadChunks, iterateChunks, listChunks, writeChunk, writeChunks, chunkName, CHUNK_FORMAT, CHUNK_VERSION } from './chunks.js';
export type { Chunk, ChunkData, ChunkMeta, LoadChunksOptions } from './chunks.js';
export { loadDataset } from './load.js';
export type { LoadDatasetOptions } from './load.js';
export { officialSplit, randomSplit, speakerDisjointSplit, splitSpeakers } from './split.js';
export type { Split, SpeakerDisjointOptions } from './split.js';
export {
  generate,
  generateDataset,
  ensureDefaultData,
  readManifest,
  resolveModel,
  DEFAULT_MODEL,
  DEFAULT_SEED,
  DEFAULT_TEST_FRACTION,
  DEFAULT_SPEAKERS,
  DEFAULT_DATASET,
  GENERATOR_VERSION,
} from './generate.js';
export type {
  GeneratorModel,
  GenerateDataOptions,
  GenerateOptions,
  GenerateResult,
  GenerateFormat,
  GeneratedManifest,
  EnsureDefaultDataResult,
} from './generate.js';
export { hashDataset, hashChunks, createDatasetHasher } from './hash.js';
export type { DatasetHasher } from './hash.js';
export { ENGLISH_WINNERS, SPANISH_WINNERS, FEATURE_DIM, keyIndices, valueIndices, selectColumns } from './indices.js';
export type { KeyConfig } from './indices.js';
