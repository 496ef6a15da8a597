/**
 * A piscina worker holding one FusionSession (see onnx-pool.ts). The session is created
 * by the worker's first task, from workerData { model, options }; a creation error is kept and
 * returned by every task, with its code, so the pool can rethrow it as the same RapmError.
 */
import { workerData } from 'node:worker_threads';
import { FusionSession, type FusionSessionOptions } from './onnx-session.js';

export interface WorkerInit {
  model: string | Uint8Array;
  options: Omit<FusionSessionOptions, 'onWarning'>;
}

export interface WorkerError {
  code: string;
  message: string;
  name: string;
}

export type WorkerTask = { op: 'info' } | { op: 'run'; en: Float32Array; prior: Float32Array };

export type WorkerReply =
  | { error: WorkerError }
  | { info: { provider: string; fallbackReason: string | null; warnings: string[]; metadataProps: Record<string, string>; batch: number | null; inputNames: string[]; outputNames: string[] } }
  | { pred: Float32Array; delta: Float32Array };

const asError = (e: unknown): WorkerError => ({
  code: typeof (e as { code?: unknown })?.code === 'string' ? (e as { code: string }).code : 'RAPM_ONNX',
  message: e instanceof Error ? e.message : String(e),
  name: e instanceof Error ? e.name : 'Error',
});

const init = workerData as WorkerInit;
const warnings: string[] = [];
let failure: WorkerError | null = null;
// Created on the first task (no top-level await: the worker module must also load through tsx's CommonJS path).
let opened: Promise<FusionSession | null> | null = null;
const open = (): Promise<FusionSession | null> =>
  (opened ??= FusionSession.create(init.model, { ...init.options, onWarning: (m) => warnings.push(m) }).catch((e: unknown) => {
    failure = asError(e);
    return null;
  }));

export default async function task(t: WorkerTask): Promise<WorkerReply> {
  const session = await open();
  if (!session) return { error: failure ?? { code: 'RAPM_STATE', message: 'no session', name: 'Error' } };
  if (t.op === 'info') {
    return {
      info: {
        provider: session.provider,
        fallbackReason: session.fallbackReason,
        warnings,
        metadataProps: { ...session.metadataProps },
        batch: session.batch,
        inputNames: [...session.inputNames],
        outputNames: [...session.outputNames],
      },
    };
  }
  try {
    return await session.run(t.en, t.prior);
  } catch (e) {
    return { error: asError(e) };
  }
}
