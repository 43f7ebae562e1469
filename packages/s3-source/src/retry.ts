import { isAbortError, isTransient } from '@tributary/core';
import pRetry from 'p-retry';
import type { RetryOptions } from './options.js';

export interface RetryContext {
  signal?: AbortSignal | undefined;
  /** Called before each retry (to log a warning). */
  onRetry?: ((error: unknown, attempt: number, delayMs: number) => void) | undefined;
}

/**
 * Runs an S3 call, retrying transient failures (5xx, throttling, connection resets; the
 * classification is core's `isTransient`) with exponential backoff and full jitter. The
 * user's S3Client already retries each request; this covers what it cannot, like a reset in
 * the middle of a response body.
 */
export function withRetry<T>(
  operation: (attempt: number) => Promise<T>,
  options: Required<RetryOptions>,
  context: RetryContext = {},
): Promise<T> {
  if (options.retries === 0) return operation(1);
  return pRetry(operation, {
    retries: options.retries,
    minTimeout: options.minDelayMs,
    maxTimeout: options.maxDelayMs,
    factor: 2,
    randomize: true,
    signal: context.signal,
    shouldRetry: ({ error }) => !isAbortError(error) && isTransient(error),
    onFailedAttempt: ({ error, attemptNumber, retryDelay, retriesLeft }) => {
      if (retriesLeft > 0 && isTransient(error)) context.onRetry?.(error, attemptNumber, retryDelay);
    },
  });
}
