/**
 * One notion of "a refused setting" and one wording per refusal: openNeighborSource's refusals
 * of its settings are SettingErrors naming the setting (they were marked in a WeakSet of their
 * own); the search-knob refusal is one function for faiss and pgvector (ann.ts); an empty index
 * is refused in one wording, naming its factory, by every search.
 */
import { describe, expect, it } from 'vitest';
import { AnnIndex, annSearchWithValues, annSearchWithValuesSync, faissAvailable, refuseSearchKnobs, searchKnobMismatch } from '../../src/retrieval/ann.js';
import { Datastore } from '../../src/retrieval/datastore.js';
import { isSourceSettingError, openNeighborSource } from '../../src/retrieval/sources.js';
import { SettingError, isSettingError } from '../../src/settings.js';
import { randn } from '../helpers/random.js';

const ds = new Datastore({ keyDim: 4, valueDim: 2 });
ds.addSync(randn(40, 1), randn(20, 2));

async function refusal(p: Promise<unknown>): Promise<Error> {
  return p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: Error) => e,
  );
}

describe('source settings refused as SettingError', () => {
  it('names the setting refused: --nprobe without a source, a non-postgres --pg-url', async () => {
    const knob = await refusal(openNeighborSource(ds, { nprobe: 4 }));
    expect(knob).toBeInstanceOf(SettingError);
    expect(knob).toMatchObject({ code: 'RAPM_INVALID_ARG', key: 'nprobe', flag: 'nprobe', message: expect.stringMatching(/^nprobe \(--nprobe\), efSearch/) });
    expect(isSettingError(knob) && isSourceSettingError(knob)).toBe(true);
    const url = await refusal(openNeighborSource(ds, { pgUrl: 'http://db/x' }));
    expect(url).toMatchObject({ code: 'RAPM_INVALID_ARG', key: 'pgUrl', flag: 'pg-url', message: expect.stringMatching(/^Expected pgUrl \(--pg-url\) to start with postgres:\/\//) });
    expect(isSourceSettingError(url)).toBe(true);
  });

  it('a faiss factory outside the grammar names ann (--ann), not AnnIndex.create\'s factory', async () => {
    const e = await refusal(openNeighborSource(ds, { ann: 'HNSW0' }));
    expect(e).toBeInstanceOf(SettingError);
    expect(e).toMatchObject({ code: 'RAPM_INVALID_ARG', key: 'ann', message: expect.stringMatching(/^Expected a supported faiss factory for ann \(--ann\) but received string 'HNSW0': the HNSW degree M/) });
  });

  it.skipIf(!faissAvailable())('a faiss knob for another kind of index names the knob that applies', async () => {
    const e = await refusal(openNeighborSource(ds, { ann: 'HNSW8,Flat', efSearch: 8, nprobe: 4 }));
    expect(e).toMatchObject({ key: 'nprobe', message: 'nprobe (--nprobe) applies to IVF indexes only, but --ann HNSW8,Flat is an HNSW index: set efSearch (--ef-search) instead, or drop nprobe (--nprobe)' });
  });
});

describe('one wording per refusal', () => {
  it('searchKnobMismatch / refuseSearchKnobs: faiss and pgvector wordings', () => {
    expect(searchKnobMismatch('hnsw', 'efSearch', 'x')).toBeNull();
    expect(() => refuseSearchKnobs('ivf', { efSearch: 3 }, "factory 'IVF4,Flat'")).toThrow("efSearch applies to HNSW indexes only, but factory 'IVF4,Flat' is an IVF index: set nprobe instead, or drop efSearch");
    expect(searchKnobMismatch('hnsw', 'nprobe', 'table t', { knob: (k) => (k === 'nprobe' ? 'probes' : 'ef'), family: { ivf: 'IVFFlat', hnsw: 'HNSW' }, is: () => 'is searched through the HNSW index i' })).toBe(
      'probes applies to IVFFlat indexes only, but table t is searched through the HNSW index i: set ef instead, or drop probes',
    );
  });

  it.skipIf(!faissAvailable())('an empty index is refused naming its factory, by search and by annSearchWithValues', async () => {
    const index = AnnIndex.create({ d: 4, factory: 'Flat' });
    const q = randn(4, 3);
    const message = "The index 'Flat' is empty: add() rows before searching";
    expect(() => index.search(q, 1)).toThrow(message);
    expect(() => annSearchWithValuesSync(index, new Float32Array(2), q, { k: 1 })).toThrow(message);
    await expect(annSearchWithValues(index, new Float32Array(2), q, { k: 1 })).rejects.toMatchObject({ code: 'RAPM_STATE', message });
  });
});
