import type { LoadLog, PipelineEvent, ReadContext } from '@tributary/core';
import type { ResolvedOptions } from './options.js';
import { withRetry } from './retry.js';

/** An S3 request sent with the source's retry policy. */
export type Send = <T>(request: () => Promise<T>) => Promise<T>;

/**
 * What the parts of one s3Source share: its resolved options, the events of the read in
 * progress, and S3 requests retried by its one retry policy.
 */
export interface SourceRuntime {
  readonly config: ResolvedOptions;
  /** The read whose events and load log the source uses from now on. */
  attach(context: ReadContext): void;
  emit(event: PipelineEvent): void;
  /** The load log of the read in progress, when the sink keeps one. */
  loads(): LoadLog | undefined;
  sender(signal: AbortSignal | undefined, stream?: string): Send;
}

export function sourceRuntime(config: ResolvedOptions): SourceRuntime {
  let context: ReadContext | undefined;
  const emit = (event: PipelineEvent) => {
    try {
      context?.emit(event);
    } catch {
      // A broken renderer must not break a load.
    }
  };
  return {
    config,
    attach(ctx) {
      context = ctx;
    },
    emit,
    loads: () => context?.loads,
    sender: (signal, stream) => (request) =>
      withRetry(request, config.retry, {
        signal,
        onRetry: (error, attempt, delayMs) =>
          emit({
            type: 'warning',
            ...(stream ? { stream } : {}),
            message: `S3 request failed (attempt ${attempt}), retrying in ${Math.round(delayMs)} ms: ${(error as Error).message}`,
          }),
      }),
  };
}
