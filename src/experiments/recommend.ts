import type { Aggregate } from '../retrieval/search-options.js';

/** The configuration to use, in the seed report's form (§9), with the cost it implies. */
export interface Recommendation {
  use_fusion: boolean;
  retrieval: { aggregation: Aggregate; top_k: number; temperature: number };
  fusion: { dropout: number; hidden_dims: number[] } | null;
  /** Why, in one sentence, from the measured gains. */
  reason: string;
  /** Training cost of the fusion net at the largest size measured (0 when not used). */
  training_seconds: number;
  /** Datastore size the recommendation was measured at. */
  pairs: number;
}

interface StepLike {
  pairs: number;
  useful: boolean;
  tests: { name: string; gain: { diff: number; lo: number; hi: number; n: number } }[];
  seconds: { train: number };
}

/**
 * Fusion is recommended at the largest measured size when its gain there exceeds the
 * threshold with an interval above zero on the deciding test set; retrieval settings are
 * the ones the run used (a grid experiment picks them).
 */
export function recommend(
  steps: readonly StepLike[],
  o: { threshold: number; decideOn: string; k: number; tau: number; aggregate: Aggregate; hidden: number[]; dropout: number },
): Recommendation {
  const last = steps[steps.length - 1]!;
  const g = last.tests.find((t) => t.name === o.decideOn)?.gain ?? last.tests[0]!.gain;
  const use = g.diff > o.threshold && g.lo > 0;
  const fmt = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(4)}`;
  const reason = use
    ? `at ${last.pairs} pairs fusion adds ${fmt(g.diff)} [${fmt(g.lo)}, ${fmt(g.hi)}] (n=${g.n}), above the +${o.threshold} threshold`
    : `at ${last.pairs} pairs fusion adds ${fmt(g.diff)} [${fmt(g.lo)}, ${fmt(g.hi)}] (n=${g.n}): ${g.lo <= 0 ? 'the interval reaches zero' : `below the +${o.threshold} threshold`}`;
  return {
    use_fusion: use,
    retrieval: { aggregation: o.aggregate, top_k: o.k, temperature: o.tau },
    fusion: use ? { dropout: o.dropout, hidden_dims: [...o.hidden] } : null,
    reason,
    training_seconds: use ? last.seconds.train : 0,
    pairs: last.pairs,
  };
}
