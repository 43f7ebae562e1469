import { setTimeout as delay } from 'node:timers/promises';
import pRetry from 'p-retry';
import { isAbortError, isTransient, markExhausted } from './errors.js';

/**
 * The one retry policy of every stage (issue 16): how many times a failed operation is tried
 * again, and how long to wait in between (exponential backoff with full jitter). A layer that
 * gives up marks the error exhausted (`markExhausted`), so no outer layer retries it again: one
 * object answering 503 costs `retries + 1` requests, not the product of every layer's tries.
 * Give S3 clients `maxAttempts: 1` (the binaries do) so the SDK's own tries do not multiply it.
 */
export interface RetryPolicy {
  /** Tries after the first one. */
  retries: number;
  /** The first wait; each next one doubles, up to `maxDelayMs`, then a random fraction is taken. */
  minDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RETRY_POLICY: Readonly<RetryPolicy> = Object.freeze({
  retries: 4,
  minDelayMs: 200,
  maxDelayMs: 10_000,
});

/** The wait before retry `attempt` (1-based): full jitter over the exponential ceiling. */
export function retryDelay(policy: RetryPolicy, attempt: number): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.minDelayMs * 2 ** Math.max(0, attempt - 1));
  return Math.max(policy.minDelayMs / 2, ceiling * Math.random());
}

export interface RetryContext {
  signal?: AbortSignal | undefined;
  /** Which failures are worth another try (default `isTransient`). */
  retryable?: ((error: unknown) => boolean) | undefined;
  /** Called before each wait (to log a warning). */
  onRetry?: ((error: unknown, attempt: number, delayMs: number) => void) | undefined;
  /** Called after a failed try, before deciding (to clean up, e.g. roll back). */
  onFailure?: ((error: unknown) => void | Promise<void>) | undefined;
}

/** Runs `operation`, trying again per the policy; a final transient failure is marked exhausted. */
export async function retry<T>(
  operation: (attempt: number) => Promise<T>,
  policy: RetryPolicy,
  context: RetryContext = {},
): Promise<T> {
  const retryable = context.retryable ?? isTransient;
  const shouldRetry = (error: unknown) => !isAbortError(error) && retryable(error);
  try {
    return await pRetry(operation, {
      retries: policy.retries,
      minTimeout: policy.minDelayMs,
      maxTimeout: policy.maxDelayMs,
      factor: 2,
      randomize: true,
      ...(context.signal ? { signal: context.signal } : {}),
      shouldRetry: ({ error }) => shouldRetry(error),
      onFailedAttempt: async ({ error, attemptNumber, retryDelay: wait, retriesLeft }) => {
        await context.onFailure?.(error);
        if (retriesLeft > 0 && shouldRetry(error)) context.onRetry?.(error, attemptNumber, wait);
      },
    });
  } catch (error) {
    if (!isAbortError(error) && retryable(error)) markExhausted(error);
    throw error;
  }
}

/**
 * `retry` for a stream of items: `open(attempt)` starts (or resumes) it; when it fails with a
 * retryable error the policy's wait follows and it is opened again. The caller's `open` decides
 * where to resume (e.g. after the records already handed out).
 */
export async function* retryIterable<T>(
  open: (attempt: number) => AsyncIterable<T>,
  policy: RetryPolicy,
  context: RetryContext = {},
): AsyncGenerator<T> {
  const retryable = context.retryable ?? isTransient;
  for (let attempt = 1; ; attempt++) {
    try {
      yield* open(attempt);
      return;
    } catch (error) {
      if (isAbortError(error) || context.signal?.aborted || !retryable(error)) throw error;
      await context.onFailure?.(error);
      if (attempt > policy.retries) throw markExhausted(error);
      const wait = retryDelay(policy, attempt);
      context.onRetry?.(error, attempt, wait);
      await delay(wait, undefined, context.signal ? { signal: context.signal } : undefined);
    }
  }
}
