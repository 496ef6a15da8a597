// AnnIndex.create checks the factory string's numbers before faiss sees them. faiss-node took
// some out-of-range numbers without a word and then killed or hung the process: 'HNSW0,Flat'
// segfaulted in add, 'HNSW1,Flat' never returned from add, 'IVF0,Flat' aborted in add (after a
// confusing "already trained" from train), 'PQ0' and 'IVF4,PQ0' divided by zero, and
// 'IVF1000000000,Flat' allocated for minutes. Each bad factory runs in a child process (create,
// then train / add / search as a caller would), so a crash or hang on old code fails its test
// instead of taking the runner down.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { AnnIndex, checkAnnFactory, faissAvailable } from '../../src/retrieval/ann.js';
import { clustered, thrown } from '../helpers/random.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const d = 32;

interface Outcome { status: number | null; signal: string | null; out: { stage: string; code?: string; message?: string } | null }

function runChild(factory: string): Promise<Outcome> {
  const body = `
const { AnnIndex } = await import('./src/retrieval/ann.ts');
const d = ${d}, n = 300;
const keys = new Float32Array(n * d).map((_, i) => Math.sin(i * 1.7));
const say = (o) => { console.log(JSON.stringify(o)); process.exit(0); };
let ix;
try { ix = AnnIndex.create({ d, factory: ${JSON.stringify(factory)} }); } catch (e) { say({ stage: 'create', code: e.code, message: e.message }); }
try { if (ix.needsTraining) ix.train(keys); ix.addSync(keys); ix.search(keys.subarray(0, d), 3); } catch (e) { say({ stage: 'use', code: e.code, message: e.message }); }
say({ stage: 'ok' });
`;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', body], { cwd: root, stdio: ['ignore', 'pipe', 'ignore'] });
    let stdout = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 25_000); // a hang (HNSW1 on old code)
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      let out: Outcome['out'] = null;
      try {
        out = JSON.parse(stdout.trim().split('\n').pop() ?? '') as Outcome['out'];
      } catch {
        out = null;
      }
      resolve({ status, signal, out });
    });
  });
}

describe.skipIf(!faissAvailable())('AnnIndex.create: factory numbers are checked before faiss sees them', { timeout: 120_000 }, () => {
  // [factory, the parameter the error names]
  const crashers: [string, RegExp][] = [
    ['HNSW0,Flat', /HNSW degree M/],
    ['HNSW1,Flat', /HNSW degree M/],
    ['IVF0,Flat', /IVF list count nlist/],
    ['PQ0', /PQ sub-quantizer count m/],
    ['IVF4,PQ0', /PQ sub-quantizer count m/],
    ['PQ4x0', /PQ bits per code nbits/],
    ['IVF4_HNSW0,Flat', /HNSW quantizer degree M/],
    ['IVF1000000000,Flat', /IVF list count nlist/],
  ];

  it('factories that crashed, hung or stalled the process are refused at create, RAPM_INVALID_ARG naming the factory and the number', async () => {
    const outcomes = await Promise.all(crashers.map(([f]) => runChild(f)));
    crashers.forEach(([factory, param], i) => {
      const o = outcomes[i]!;
      expect({ factory, status: o.status, signal: o.signal, stage: o.out?.stage, code: o.out?.code }).toEqual({
        factory,
        status: 0,
        signal: null,
        stage: 'create',
        code: 'RAPM_INVALID_ARG',
      });
      expect(o.out!.message).toContain(`'${factory}'`);
      expect(o.out!.message).toMatch(param);
    });
  });

  it('other numbers and forms: upper bounds, PQ m dividing d, fast-scan nbits, unchecked forms', () => {
    const refuse = (factory: string, re: RegExp): void => {
      const e = thrown(() => AnnIndex.create({ d, factory }));
      expect([e.code, e.name], factory).toEqual(['RAPM_INVALID_ARG', 'RangeError']);
      expect(e.message).toContain(`'${factory}'`);
      expect(e.message).toMatch(re);
    };
    refuse('HNSW257,Flat', /HNSW degree M must be in \[2, 256\]/);
    refuse('IVF1048577,Flat', /nlist must be in \[1, 1048576\]/);
    refuse('PQ7', /m must divide d = 32/);
    refuse('PQ64', /m must be in \[1, 32\]/);
    refuse('PQ4x17', /nbits must be in \[1, 16\]/);
    refuse('PQ4x8fs', /fast-scan PQ .* needs nbits = 4/);
    refuse('IVF4', /an IVF factory is 'IVF<nlist>,<code>'/);
    refuse('IDMap,Flat', /not a supported first component/); // adds failed inside faiss
    refuse('PCA0,Flat', /not a supported first component/); // searched nonsense
    refuse('IVF4,Flat,RFlat', /IVF factory/);
    refuse('IVF4,Flatx', /not a supported IVF code/);
    // The checker alone (no faiss): the same words.
    expect(() => checkAnnFactory('HNSW1', d)).toThrow(/HNSW degree M/);
  });

  it('the accepted forms at their bounds still build, train, add and search', () => {
    const keys = clustered(300, d, 5, 8, 0.3);
    for (const factory of ['Flat', 'HNSW2,Flat', 'HNSW32', 'HNSW4,SQ8', 'IVF1,Flat', 'IVF4_HNSW2,Flat', 'IVF4,SQ8', 'SQfp16', 'PQ32x1', 'PQ8x4fs', 'IVF4,PQ4x4']) {
      const ix = AnnIndex.create({ d, factory });
      if (ix.needsTraining) ix.train(keys);
      ix.addSync(keys);
      expect(ix.search(keys.subarray(0, d), 3).found[0], factory).toBe(3);
    }
  });
});
