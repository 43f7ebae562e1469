import { setTimeout as sleep } from 'node:timers/promises';
import { TributaryError, toTributaryError, withStream } from './errors.js';
import type { PipelineEvent } from './types.js';

/** How a failed stream is retried while the others keep running (watch mode). */
export interface RestartPolicy {
  /** First wait after a failure. Default 1 s. */
  initialDelayMs?: number;
  /** The wait doubles after every failure in a row, up to this. Default 5 min. */
  maxDelayMs?: number;
  /** Each wait is stretched by up to this fraction at random, so streams do not retry in step. Default 0.1. */
  jitter?: number;
}

export interface RunStreamsOptions {
  /**
   * Streams running at once. One-shot runs start the next stream when one ends; watchers never
   * end, so they are all started and the bound applies to the work itself (see `ReadContext.slot`).
   * Default 4: a 2-core machine and a small pool are busy with far fewer files in flight.
   */
  concurrency?: number;
  /**
   * Restart a stream that failed, after a backoff, until `stop` or `signal` fires (seed 003:
   * "pause on error" pauses that stream, not the process). Off by default: a one-shot run
   * reports the failure and ends.
   */
  restart?: RestartPolicy | false;
  /** Graceful stop: no restart is scheduled after it fires, and a pending backoff ends. */
  stop?: AbortSignal;
  /** Hard stop. */
  signal?: AbortSignal;
  /** Called when a stream's run failed; `retryInMs` is set when it will be restarted. */
  onFailure?: (stream: string, error: TributaryError, retryInMs: number | undefined) => void;
}

export interface StreamOutcome<T> {
  stream: string;
  /** The last run's result, when it ended without throwing. */
  result?: T;
  /** The last run's failure (the stream stopped there). */
  error?: TributaryError;
  /** Runs started for this stream (1 unless it was restarted). */
  runs: number;
}

/** The wait before restart number `failures` (1-based) under `policy`. */
export function restartDelay(policy: RestartPolicy, failures: number, random = Math.random): number {
  const initial = policy.initialDelayMs ?? 1_000;
  const max = Math.max(initial, policy.maxDelayMs ?? 300_000);
  const base = Math.min(max, initial * 2 ** Math.max(0, failures - 1));
  return Math.round(base * (1 + (policy.jitter ?? 0.1) * random()));
}

/**
 * A counting semaphore: `acquire()` resolves with a release function once fewer than `limit`
 * holders remain. Used to bound the streams doing work at once.
 */
export function semaphore(limit: number): () => Promise<() => void> {
  let active = 0;
  const waiting: (() => void)[] = [];
  const release = () => {
    active--;
    const next = waiting.shift();
    if (next) {
      active++;
      next();
    }
  };
  return () => {
    if (active < limit) {
      active++;
      return Promise.resolve(onceOnly(release));
    }
    return new Promise((resolve) => waiting.push(() => resolve(onceOnly(release))));
  };
}

function onceOnly(fn: () => void): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    fn();
  };
}

/**
 * Runs one function per stream, each in its own failure domain (invariant 10): a stream that
 * throws stops only itself; the others run to their end. With `restart`, a failed stream is run
 * again after a growing backoff until the run is stopped. Resolves when every stream has ended
 * (never rejects); each outcome says how its stream ended.
 */
export async function runStreams<T>(
  streams: readonly string[],
  run: (stream: string, context: { attempt: number; signal: AbortSignal }) => Promise<T>,
  options: RunStreamsOptions = {},
): Promise<StreamOutcome<T>[]> {
  const concurrency = options.concurrency ?? 4;
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new TributaryError(
      'INVALID_OPTIONS',
      `runStreams(): concurrency must be an integer ≥ 1, got ${concurrency}`,
    );
  }
  const unique = new Set(streams);
  if (unique.size !== streams.length) {
    throw new TributaryError('INVALID_OPTIONS', 'runStreams(): a stream is listed twice');
  }
  const restart = options.restart || undefined;
  const stopped = () => options.signal?.aborted === true || options.stop?.aborted === true;
  const wake = AbortSignal.any([options.signal, options.stop].filter((s): s is AbortSignal => !!s));
  const signal = options.signal ?? new AbortController().signal;
  // Watchers never end, so a slot per stream would starve the rest: with restarts on, every
  // stream runs and the caller bounds the work inside (ReadContext.slot).
  const slot = semaphore(restart ? Number.MAX_SAFE_INTEGER : concurrency);

  const superviseStream = async (stream: string): Promise<StreamOutcome<T>> => {
    const outcome: StreamOutcome<T> = { stream, runs: 0 };
    for (let failures = 0; ; ) {
      const release = await slot();
      outcome.runs++;
      try {
        outcome.result = await run(stream, { attempt: outcome.runs, signal });
        delete outcome.error;
        return outcome;
      } catch (error) {
        const failure = toTributaryError(error, 'INTERNAL');
        outcome.error = withStream(failure, stream);
        delete outcome.result;
      } finally {
        release();
      }
      failures++;
      const retryInMs = restart && !stopped() ? restartDelay(restart, failures) : undefined;
      try {
        options.onFailure?.(stream, outcome.error, retryInMs);
      } catch {
        // A broken reporter must not stop the other streams.
      }
      if (retryInMs === undefined) return outcome;
      try {
        await sleep(retryInMs, undefined, { signal: wake });
      } catch {
        return outcome;
      }
      if (stopped()) return outcome;
    }
  };

  return Promise.all(streams.map(superviseStream));
}

/** The `stream-failed` event for a stream's failure: the failing file from the error's location. */
export function streamFailedEvent(stream: string, error: Error, retryInMs?: number): PipelineEvent {
  const file = error instanceof TributaryError ? error.location?.file : undefined;
  return {
    type: 'stream-failed',
    stream,
    error,
    ...(file ? { source: file } : {}),
    ...(retryInMs === undefined ? {} : { retryInMs }),
  };
}
