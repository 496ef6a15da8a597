/**
 * The TrainOptions doc comments state the defaults for the reader; TRAIN_DEFAULTS (the settings
 * schema) is what trainMlp uses. They disagreed (patience "10", seed "0" vs 5 and 1): every
 * "Default <number>" in the interface must equal TRAIN_DEFAULTS of its option.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { TRAIN_DEFAULTS } from '../../src/fusion/train.js';

const src = fs.readFileSync(path.resolve(import.meta.dirname, '../../src/fusion/train.ts'), 'utf8');
const body = /export interface TrainOptions \{([\s\S]*?)\n\}/.exec(src)![1]!;

describe('TrainOptions doc comments', () => {
  it('state the defaults TRAIN_DEFAULTS uses', () => {
    const stated: Record<string, number> = {};
    for (const m of body.matchAll(/\/\*\*([\s\S]*?)\*\/\s*(\w+)\?:/g)) {
      const d = /\bdefault:?\s+(-?[\d.]+(?:e-?\d+)?)\b/i.exec(m[1]!);
      if (d) stated[m[2]!] = Number(d[1]);
    }
    const defaults = TRAIN_DEFAULTS as unknown as Record<string, number>;
    expect(Object.keys(stated).sort()).toEqual(Object.keys(defaults).sort());
    for (const [k, v] of Object.entries(stated)) expect(v, k).toBe(defaults[k]);
  });
});
