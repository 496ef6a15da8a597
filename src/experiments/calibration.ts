/**
 * The figures the generator is calibrated against: plain retrieval (eq. 1, exact search with
 * the plain-TS reference) on generated data at the published size, for the published K and
 * tau grids, Config A and B, seen and unseen test speakers; and the official baseline MLP
 * (1024-500-250-125-101, trained with the real trainer) on the same two sets.
 */
import { baselineSpec } from '../fusion/layout.js';
import { scoreRows, trainMlpOnOwnedData, type MlpBackend, type MlpData } from '../fusion/train.js';
import { Rng } from '../rng.js';
import { aggregateWeights } from '../retrieval/aggregate.js';
import { l2normalizeRows, referenceSearch } from '../retrieval/reference.js';
import type { Dataset } from '../data/dataset.js';
import { generateDataset, type GeneratorModel } from '../data/generate.js';
import { ENGLISH_WINNERS, FEATURE_DIM, SPANISH_WINNERS } from '../data/indices.js';
import { officialSplit, type Split } from '../data/split.js';

/** Published figures (reference-figures.json: R-APM system description, internal and official splits). */
export const PUBLISHED = Object.freeze({
  seen: {
    byK: { 1: 0.786, 10: 0.864, 30: 0.871, 70: 0.872, 90: 0.874 } as Record<number, number>, // tau 0.04, Config A
    byTau: { 0.01: 0.844, 0.03: 0.871, 0.04: 0.872, 0.07: 0.872, 0.1: 0.871 } as Record<number, number>, // K 70, Config A
    configB: 0.873,
    mlp: 0.8732,
  },
  unseen: { configA: 0.8286, configB: 0.8318, mlp: 0.8574 },
});

/**
 * The published plain-retrieval figures (softmax, internal seen-speaker split) for one K and tau:
 * Config A was published over K at tau 0.04 and over tau at K 70; Config B only at K 70, tau 0.04.
 * Undefined where nothing was published.
 */
export function publishedPlain(k: number, tau: number): { configA?: number; configB?: number } {
  const a = tau === 0.04 ? PUBLISHED.seen.byK[k] : k === 70 ? PUBLISHED.seen.byTau[tau] : undefined;
  const b = k === 70 && tau === 0.04 ? PUBLISHED.seen.configB : undefined;
  return { ...(a !== undefined ? { configA: a } : {}), ...(b !== undefined ? { configB: b } : {}) };
}

/** The published-figure note of `rapm demo` for the K and tau it ran: only figures for that K and tau. */
export function publishedPlainText(k: number, tau: number): string {
  const p = publishedPlain(k, tau);
  const ref = `K=70, tau=0.04: A ${PUBLISHED.seen.byK[70]!.toFixed(3)}, B ${PUBLISHED.seen.configB.toFixed(3)}`;
  if (p.configA === undefined) return `no published figure at K=${k}, tau=${tau} (published at ${ref})`;
  if (p.configB === undefined) return `published at K=${k}, tau=${tau}: A ${p.configA.toFixed(3)}, B not published (at ${ref})`;
  return `published at K=${k}, tau=${tau}: A ${p.configA.toFixed(3)}, B ${p.configB.toFixed(3)}`;
}

export const CALIBRATION_K = [1, 10, 30, 70, 90] as const;
export const CALIBRATION_TAU = [0.01, 0.03, 0.04, 0.07, 0.1] as const;

export interface RetrievalSetting {
  k: number;
  tau: number;
}

/** Mean cosine between rows of a and b ([b, d] each) . */
export function meanRowCosine(a: Float32Array /* [b, d] */, b: Float32Array /* [b, d] */, d: number): number {
  const rows = a.length / d;
  let total = 0;
  for (let r = 0; r < rows; r++) {
    let ab = 0;
    let aa = 0;
    let bb = 0;
    for (let j = 0; j < d; j++) {
      const x = a[r * d + j]!;
      const y = b[r * d + j]!;
      ab += x * y;
      aa += x * x;
      bb += y * y;
    }
    total += ab / Math.sqrt(aa * bb);
  }
  return total / rows;
}

/**
 * Plain retrieval scores (mean cosine of the 101-dim prior to the 101-dim target over the test
 * rows) for several (K, tau) settings, from one exact search at the largest K.
 */
export function retrievalScores(ds: Dataset, split: Split, keyIdx: readonly number[], settings: readonly RetrievalSetting[]): number[] {
  const d = keyIdx.length;
  const dv = SPANISH_WINNERS.length;
  const pick = (m: Float32Array, rows: Int32Array, idx: readonly number[]): Float32Array => {
    const out = new Float32Array(rows.length * idx.length);
    for (let i = 0; i < rows.length; i++) {
      const src = rows[i]! * FEATURE_DIM;
      for (let j = 0; j < idx.length; j++) out[i * idx.length + j] = m[src + idx[j]!]!;
    }
    return out;
  };
  const keys = l2normalizeRows(pick(ds.en, split.train, keyIdx), d);
  const values = pick(ds.es, split.train, SPANISH_WINNERS);
  const queries = pick(ds.en, split.test, keyIdx);
  const targets = pick(ds.es, split.test, SPANISH_WINNERS);
  const kMax = Math.max(...settings.map((s) => s.k));
  const b = split.test.length;
  const res = referenceSearch({ keys, values, n: split.train.length, d, dv, queries, k: kMax, tau: 0.04, aggregate: 'softmax' });
  return settings.map(({ k, tau }) => {
    const prior = new Float32Array(b * dv);
    const w = new Float32Array(k);
    for (let q = 0; q < b; q++) {
      aggregateWeights(res.similarities.subarray(q * kMax, q * kMax + k), tau, 'softmax', w);
      for (let i = 0; i < k; i++) {
        const r = res.neighbors[q * kMax + i]!;
        const wi = w[i]!;
        for (let j = 0; j < dv; j++) prior[q * dv + j] = prior[q * dv + j]! + wi * values[r * dv + j]!;
      }
    }
    return meanRowCosine(prior, targets, dv);
  });
}

export interface CalibrationFigures {
  seed: number;
  seen: { byK: Record<number, number>; byTau: Record<number, number>; configB: number };
  unseen: { configA: number; configB: number };
}

/** Options of the two calibration datasets (published size; the unseen one has 5 unseen test speakers). */
export function calibrationDataOptions(seed: number, model?: Partial<GeneratorModel>): { seen: Parameters<typeof generateDataset>[0]; unseen: Parameters<typeof generateDataset>[0] } {
  return {
    seen: { pairs: 2894, testPairs: 578, seed, model },
    unseen: { pairs: 2894, testPairs: 578, seed, unseenSpeakers: 5, model },
  };
}

/** Generate the seen and unseen 2.9K-pair sets for `seed` and measure every calibrated figure. */
export function measureCalibration(seed: number, model?: Partial<GeneratorModel>): CalibrationFigures {
  const opts = calibrationDataOptions(seed, model);
  const seenDs = generateDataset(opts.seen);
  const seenSplit = officialSplit(seenDs);
  const settings: RetrievalSetting[] = [
    ...CALIBRATION_K.map((k) => ({ k, tau: 0.04 })),
    ...CALIBRATION_TAU.map((tau) => ({ k: 70, tau })),
  ];
  const all = Array.from({ length: FEATURE_DIM }, (_, i) => i);
  const a = retrievalScores(seenDs, seenSplit, all, settings);
  const [bSeen] = retrievalScores(seenDs, seenSplit, ENGLISH_WINNERS, [{ k: 70, tau: 0.04 }]);
  const unseenDs = generateDataset(opts.unseen);
  const unseenSplit = officialSplit(unseenDs);
  const [aUnseen] = retrievalScores(unseenDs, unseenSplit, all, [{ k: 70, tau: 0.04 }]);
  const [bUnseen] = retrievalScores(unseenDs, unseenSplit, ENGLISH_WINNERS, [{ k: 70, tau: 0.04 }]);
  const byK: Record<number, number> = {};
  CALIBRATION_K.forEach((k, i) => (byK[k] = a[i]!));
  const byTau: Record<number, number> = {};
  CALIBRATION_TAU.forEach((t, i) => (byTau[t] = a[CALIBRATION_K.length + i]!));
  return { seed, seen: { byK, byTau, configB: bSeen! }, unseen: { configA: aUnseen!, configB: bUnseen! } };
}

/** Rows of (figure, generated, published) for a table. */
export function calibrationTable(f: CalibrationFigures): { figure: string; generated: number; published: number }[] {
  const rows: { figure: string; generated: number; published: number }[] = [];
  for (const k of CALIBRATION_K) rows.push({ figure: `seen, Config A, K=${k}, tau=0.04`, generated: f.seen.byK[k]!, published: PUBLISHED.seen.byK[k]! });
  for (const t of CALIBRATION_TAU) rows.push({ figure: `seen, Config A, K=70, tau=${t}`, generated: f.seen.byTau[t]!, published: PUBLISHED.seen.byTau[t]! });
  rows.push({ figure: 'seen, Config B, K=70, tau=0.04', generated: f.seen.configB, published: PUBLISHED.seen.configB });
  rows.push({ figure: 'unseen, Config A, K=70, tau=0.04', generated: f.unseen.configA, published: PUBLISHED.unseen.configA });
  rows.push({ figure: 'unseen, Config B, K=70, tau=0.04', generated: f.unseen.configB, published: PUBLISHED.unseen.configB });
  return rows;
}

export interface MlpCalibrationFigures {
  seed: number;
  /** Mean cosine of the baseline MLP on the seen / unseen test pairs. */
  seen: number;
  unseen: number;
  /** Best epoch of each run (early stopping). */
  bestEpoch: { seen: number; unseen: number };
  seconds: number;
}

function rowsOf(m: Float32Array, rows: ArrayLike<number>, idx: readonly number[] | null): Float32Array {
  const w = idx ? idx.length : FEATURE_DIM;
  const out = new Float32Array(rows.length * w);
  for (let i = 0; i < rows.length; i++) {
    const src = rows[i]! * FEATURE_DIM;
    if (idx) for (let j = 0; j < w; j++) out[i * w + j] = m[src + idx[j]!]!;
    else out.set(m.subarray(src, src + FEATURE_DIM), i * w);
  }
  return out;
}

/**
 * The official baseline MLP (baselineSpec: 1024-500-250-125-101, ReLU, AdamW lr 1e-3, wd 1e-4,
 * batch 32, early stopping with patience 10 on a seeded 10% validation split of the training
 * pairs, the same split as splitFitVal(n, 0.1, seed)) trained on the seen and the unseen
 * calibration sets; mean cosine on their test pairs. About 2 s per set with the native backend.
 */
export async function measureBaselineMlp(backend: MlpBackend, seed: number, model?: Partial<GeneratorModel>, trainSeed = 1): Promise<MlpCalibrationFigures> {
  const t0 = performance.now();
  const opts = calibrationDataOptions(seed, model);
  const res = { seen: 0, unseen: 0, bestEpoch: { seen: 0, unseen: 0 } };
  for (const which of ['seen', 'unseen'] as const) {
    const ds = generateDataset(opts[which]);
    const split = officialSplit(ds);
    const n = split.train.length;
    const perm = new Rng(trainSeed, 23).permutation(n);
    const nv = Math.max(1, Math.min(n - 1, Math.round(n * 0.1)));
    const part = (p: Int32Array): MlpData => {
      const rows = Array.from(p.sort(), (i) => split.train[i]!);
      return { en: rowsOf(ds.en, rows, null), prior: null, target: rowsOf(ds.es, rows, SPANISH_WINNERS) };
    };
    const fit = part(perm.slice(nv));
    const val = part(perm.slice(0, nv));
    const r = await trainMlpOnOwnedData(backend, baselineSpec(), fit, val, { seed: trainSeed, patience: 10 });
    const test: MlpData = { en: rowsOf(ds.en, split.test, null), prior: null, target: rowsOf(ds.es, split.test, SPANISH_WINNERS) };
    const cos = scoreRows(backend, r.layout, r.params, test);
    let t = 0;
    for (const c of cos) t += c;
    res[which] = t / cos.length;
    res.bestEpoch[which] = r.bestEpoch;
  }
  return { seed, ...res, seconds: (performance.now() - t0) / 1000 };
}
