import { describe, expect, it } from 'vitest';
import { isExhausted, isTransient, retry, retryDelay, retryIterable, TributaryError } from '../src/index.js';

const fast = { retries: 3, minDelayMs: 1, maxDelayMs: 2 };
const transient = () => Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });

describe('one retry policy', () => {
  it('tries retries + 1 times, then marks the error exhausted so no outer layer retries it', async () => {
    let tries = 0;
    const error = await retry(async () => {
      tries++;
      throw transient();
    }, fast).catch((e) => e);
    expect(tries).toBe(4);
    expect(isExhausted(error)).toBe(true);
    expect(isTransient(error)).toBe(false);
    // Wrapped by an outer layer, the cause chain still says "spent".
    expect(isTransient(new TributaryError('SINK_FAILED', 'x', { cause: error, retriable: true }))).toBe(
      false,
    );
  });

  it('does not retry a permanent error, and does not mark it', async () => {
    let tries = 0;
    const error = await retry(async () => {
      tries++;
      throw new TributaryError('MALFORMED_ROW', 'bad row');
    }, fast).catch((e) => e);
    expect(tries).toBe(1);
    expect(isExhausted(error)).toBe(false);
  });

  it('an outer retry sees an inner exhausted error as permanent: attempts add up, never multiply', async () => {
    let calls = 0;
    await retry(
      () =>
        retry(async () => {
          calls++;
          throw transient();
        }, fast),
      fast,
    ).catch(() => undefined);
    expect(calls).toBe(4);
  });

  it('retryIterable re-opens a failed stream, resuming where the caller says', async () => {
    const seen: number[] = [];
    let opens = 0;
    async function* open() {
      opens++;
      for (let i = seen.length; i < 5; i++) {
        if (opens === 1 && i === 2) throw transient();
        yield i;
      }
    }
    for await (const n of retryIterable(open, fast)) seen.push(n);
    expect(seen).toEqual([0, 1, 2, 3, 4]);
    expect(opens).toBe(2);
  });

  it('retryIterable gives up after the budget with an exhausted error', async () => {
    let opens = 0;
    async function* open(): AsyncGenerator<number> {
      opens++;
      yield* [];
      throw transient();
    }
    const error = await (async () => {
      for await (const _ of retryIterable(open, fast));
    })().catch((e) => e);
    expect(opens).toBe(4);
    expect(isExhausted(error)).toBe(true);
  });

  it('waits grow exponentially to the ceiling, with jitter', () => {
    const policy = { retries: 10, minDelayMs: 100, maxDelayMs: 1000 };
    for (let attempt = 1; attempt <= 10; attempt++) {
      const wait = retryDelay(policy, attempt);
      expect(wait).toBeGreaterThanOrEqual(50);
      expect(wait).toBeLessThanOrEqual(Math.min(1000, 100 * 2 ** (attempt - 1)));
    }
  });
});
