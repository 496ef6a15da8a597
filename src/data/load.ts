import fs from 'node:fs';
import path from 'node:path';
import { ioError } from '../io/atomic.js';
import { listChunks, loadChunks, type LoadChunksOptions } from './chunks.js';
import { loadDral, type LoadDralOptions, type LoadedDataset } from './dataset.js';

export type LoadDatasetOptions = LoadDralOptions & LoadChunksOptions;

/**
 * Load a folder in whichever layout it has: packed chunks (sub-folders holding meta.json)
 * or a DRAL feature folder.
 */
export async function loadDataset(dir: string, options: LoadDatasetOptions = {}): Promise<LoadedDataset> {
  if (!fs.existsSync(dir)) throw ioError('open dataset folder', dir, Object.assign(new Error('no such folder'), { code: 'ENOENT' }));
  const isChunks = listChunks(dir).some((name) => fs.existsSync(path.join(dir, name, 'meta.json')));
  return isChunks ? loadChunks(dir, options) : loadDral(dir, options);
}
