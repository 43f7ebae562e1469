import type { PipelineEvent } from '@tributary/core';
import { TributaryError } from '@tributary/core';
import { describeError } from './output.js';

/** A stream stopped at a failure, as `/healthz` reports it. */
export interface FailingStream {
  stream: string;
  /** The file it stopped at, when known. */
  file: string | null;
  code: string;
  error: string;
  /** When it started failing (ISO time); kept across retries that fail again. */
  since: string;
  /** When the next retry starts (watch mode), if one is scheduled. */
  retryAt: string | null;
}

export interface StreamHealth {
  onEvent(event: PipelineEvent): void;
  failing(): FailingStream[];
}

/**
 * Which streams are failing right now, from the pipeline's events: a stream fails on
 * `stream-failed` and is healthy again once it commits a file or catches up (the bad file was
 * fixed, replaced or skipped).
 */
export function streamHealth(now: () => Date = () => new Date()): StreamHealth {
  const failing = new Map<string, FailingStream>();
  return {
    onEvent(event) {
      if (event.type === 'stream-failed') {
        const previous = failing.get(event.stream);
        const at = now();
        failing.set(event.stream, {
          stream: event.stream,
          file: event.source ?? null,
          code: event.error instanceof TributaryError ? event.error.code : 'INTERNAL',
          error: describeError(event.error),
          since: previous?.since ?? at.toISOString(),
          retryAt:
            event.retryInMs === undefined ? null : new Date(at.getTime() + event.retryInMs).toISOString(),
        });
      } else if (
        event.type === 'committed' ||
        event.type === 'caught-up' ||
        event.type === 'stream-recovered'
      ) {
        failing.delete(event.stream);
      }
    },
    failing: () => [...failing.values()],
  };
}
