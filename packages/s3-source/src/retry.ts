import { type RetryContext, retry } from '@tributary/core';
import type { RetryOptions } from './options.js';

/**
 * Runs an S3 call (listing, copy, delete), retrying transient failures (5xx, throttling,
 * connection resets; core's `isTransient`) per the stream's policy with core's `retry`: one
 * budget, marked exhausted when spent so no outer layer retries it again.
 */
export function withRetry<T>(
  operation: (attempt: number) => Promise<T>,
  options: Required<RetryOptions>,
  context: Pick<RetryContext, 'signal' | 'onRetry'> = {},
): Promise<T> {
  return retry(operation, options, context);
}
