import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { packageRoot } from '../native/binding.js';
import { concurrency, simdLevel } from '../native/simd.js';

/** What every results file records, so that a run can be reproduced and compared. */
export interface RunRecord {
  tool: 'rapm';
  experiment: string;
  version: string;
  /** git commit of the code (with "-dirty" when the tree had changes), or null outside a checkout. */
  commit: string | null;
  startedAt: string;
  finishedAt?: string;
  seconds?: number;
  seed: number;
  config: Record<string, unknown>;
  dataHash: string | null;
  dataSource: string | null;
  simdLevel: string;
  threads: number;
  node: string;
  platform: string;
  cpu: string;
}

let cachedVersion: { version: string; commit: string | null } | undefined;

export function codeVersion(): { version: string; commit: string | null } {
  if (cachedVersion) return cachedVersion;
  let version = 'unknown';
  try {
    version = (JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    // a packaged install without package.json beside dist: keep 'unknown'
  }
  let commit: string | null = null;
  try {
    const opts = { cwd: packageRoot, stdio: ['ignore', 'pipe', 'ignore'] as ['ignore', 'pipe', 'ignore'], encoding: 'utf8' as const, timeout: 5000 };
    commit = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], opts).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], opts).trim();
    if (dirty) commit += '-dirty';
  } catch {
    commit = null;
  }
  cachedVersion = { version, commit };
  return cachedVersion;
}

export function startRecord(experiment: string, seed: number, config: Record<string, unknown>, data: { hash: string | null; source: string | null }): RunRecord {
  const { version, commit } = codeVersion();
  return {
    tool: 'rapm',
    experiment,
    version,
    commit,
    startedAt: new Date().toISOString(),
    seed,
    config,
    dataHash: data.hash,
    dataSource: data.source,
    simdLevel: simdLevel(),
    threads: concurrency(),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpu: os.cpus()[0]?.model ?? 'unknown',
  };
}

export function finishRecord(r: RunRecord): RunRecord {
  const end = new Date();
  return { ...r, finishedAt: end.toISOString(), seconds: (end.getTime() - new Date(r.startedAt).getTime()) / 1000 };
}
