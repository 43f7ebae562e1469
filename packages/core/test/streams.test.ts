import { describe, expect, it } from 'vitest';
import {
  type Batch,
  type PipelineEvent,
  pipeline,
  type ReadContext,
  type Row,
  restartDelay,
  runStreams,
  type Source,
  semaphore,
  TributaryError,
} from '../src/index.js';
import { deferred, type MemorySource, memorySink, memorySource } from '../src/testing/index.js';

/** Several memory sources behind one multi-stream source that pipeline() can narrow. */
function multiSource(parts: Record<string, Source<Row>>, watching = false): Source<Row> {
  return {
    name: 'multi',
    streams: Object.keys(parts),
    watching,
    only: (stream) => parts[stream]!,
    read: () => {
      throw new Error('read() of the multi-stream source must not be called when isolating');
    },
  };
}

const units = (stream: string, count: number): Row[][][] =>
  Array.from({ length: count }, (_, u) => [[{ stream, id: `${stream}-${u}` }]]);

describe('pipeline() over several streams', () => {
  it('a failing stream stops at its failing unit while the others apply everything', async () => {
    const a = memorySource({ stream: 'test/a', units: units('a', 4) });
    const b = memorySource({ stream: 'test/b', units: units('b', 4) });
    const sink = memorySink();
    const events: PipelineEvent[] = [];
    const error = await pipeline(
      multiSource({ 'test/a': a, 'test/b': b }),
      (batch) => {
        if (batch.rows.some((r) => r['id'] === 'a-2')) {
          throw new TributaryError('MALFORMED_ROW', 'bad row', { location: { file: 'unit-2', line: 3 } });
        }
        return batch;
      },
      sink,
      { onEvent: (e) => events.push(e) },
    ).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(TributaryError);
    expect((error as TributaryError).stream).toBe('test/a');
    expect((error as TributaryError).location?.file).toBe('unit-2');
    expect(sink.rows.map((r) => r['id']).sort()).toEqual(['a-0', 'a-1', 'b-0', 'b-1', 'b-2', 'b-3']);
    expect(await sink.checkpoint('test/a')).toEqual({ unit: 1, batch: 0 });
    const failed = events.filter((e) => e.type === 'stream-failed');
    expect(failed).toMatchObject([{ stream: 'test/a', source: 'unit-2' }]);
    expect(failed[0]).not.toHaveProperty('retryInMs');
  });

  it('several failed streams make one error naming each', async () => {
    const a = memorySource({ stream: 'test/a', units: units('a', 2) });
    const b = memorySource({ stream: 'test/b', units: units('b', 2) });
    const c = memorySource({ stream: 'test/c', units: units('c', 2) });
    const sink = memorySink();
    const error = (await pipeline(
      multiSource({ 'test/a': a, 'test/b': b, 'test/c': c }),
      (batch) => {
        if (batch.rows.some((r) => r['id'] === 'a-1' || r['id'] === 'c-0')) throw new Error('cast failed');
        return batch;
      },
      sink,
    ).catch((e: unknown) => e)) as TributaryError;
    expect(error.code).toBe('STREAMS_FAILED');
    expect(error.message).toContain('test/a');
    expect(error.message).toContain('test/c');
    expect((error.cause as AggregateError).errors).toHaveLength(2);
    expect(sink.rows.map((r) => r['id']).sort()).toEqual(['a-0', 'b-0', 'b-1']);
  });

  it('isolate: false keeps one chain (a source without only() is never split)', async () => {
    const a = memorySource({ stream: 'test/a', units: units('a', 1) });
    const source: MemorySource = a;
    const sink = memorySink();
    await pipeline(source, sink, { isolate: false });
    expect(sink.rows).toHaveLength(1);
  });

  it('a watching stream that fails is restarted with backoff and reported recovered', async () => {
    const stop = new AbortController();
    let attempts = 0;
    const recovered = deferred();
    // Stream a fails on its first read, then applies one unit and waits for the stop.
    const flaky: Source<Row> = {
      name: 'flaky',
      async *read(ctx: ReadContext): AsyncGenerator<Batch<Row>> {
        attempts++;
        if (attempts === 1)
          throw new TributaryError('MALFORMED_ROW', 'bad file', { location: { file: 'f1' } });
        yield {
          stream: 'test/a',
          rows: [{ id: 'a-fixed' }],
          position: { n: attempts },
          meta: { source: 'f1', commit: true, lastOfUnit: true, rowsRead: 1, filtered: {} },
        };
        await new Promise<void>((resolve) => ctx.stop?.addEventListener('abort', () => resolve()));
      },
    };
    const steady: Source<Row> = {
      name: 'steady',
      async *read(ctx: ReadContext): AsyncGenerator<Batch<Row>> {
        yield {
          stream: 'test/b',
          rows: [{ id: 'b-0' }],
          position: { n: 0 },
          meta: { source: 'g1', commit: true, lastOfUnit: true, rowsRead: 1, filtered: {} },
        };
        await new Promise<void>((resolve) => ctx.stop?.addEventListener('abort', () => resolve()));
      },
    };
    const events: PipelineEvent[] = [];
    const sink = memorySink();
    const run = pipeline(multiSource({ 'test/a': flaky, 'test/b': steady }, true), sink, {
      stopSignal: stop.signal,
      restart: { initialDelayMs: 1, maxDelayMs: 1 },
      onEvent: (e) => {
        events.push(e);
        if (e.type === 'stream-recovered') recovered.resolve();
      },
    });
    await recovered.promise;
    stop.abort();
    const result = await run;
    expect(result.commits).toBe(2);
    expect(attempts).toBe(2);
    expect(sink.rows.map((r) => r['id']).sort()).toEqual(['a-fixed', 'b-0']);
    const failed = events.find((e) => e.type === 'stream-failed');
    expect(failed).toMatchObject({ stream: 'test/a', source: 'f1', retryInMs: 1 });
  });
});

describe('runStreams()', () => {
  it('runs at most `concurrency` one-shot streams at once', async () => {
    let active = 0;
    let peak = 0;
    const gates = Array.from({ length: 5 }, () => deferred());
    const run = runStreams(
      ['s0', 's1', 's2', 's3', 's4'],
      async (stream) => {
        active++;
        peak = Math.max(peak, active);
        await gates[Number(stream.slice(1))]!.promise;
        active--;
        return stream;
      },
      { concurrency: 2 },
    );
    for (const gate of gates) {
      await Promise.resolve();
      gate.resolve();
    }
    const outcomes = await run;
    expect(peak).toBeLessThanOrEqual(2);
    expect(outcomes.map((o) => o.result)).toEqual(['s0', 's1', 's2', 's3', 's4']);
  });

  it('reports a failure without restart and keeps the other results', async () => {
    const failures: string[] = [];
    const outcomes = await runStreams(
      ['ok', 'bad'],
      async (stream) => {
        if (stream === 'bad') throw new Error('boom');
        return 1;
      },
      { onFailure: (stream, error, retryInMs) => failures.push(`${stream}:${error.message}:${retryInMs}`) },
    );
    expect(failures).toEqual(['bad:boom:undefined']);
    expect(outcomes[0]).toMatchObject({ stream: 'ok', result: 1, runs: 1 });
    expect(outcomes[1]?.error?.stream).toBe('bad');
  });

  it('the restart backoff doubles up to its cap, with bounded jitter', () => {
    const policy = { initialDelayMs: 100, maxDelayMs: 1000, jitter: 0.5 };
    expect([1, 2, 3, 4, 5, 6].map((n) => restartDelay(policy, n, () => 0))).toEqual([
      100, 200, 400, 800, 1000, 1000,
    ]);
    expect(restartDelay(policy, 1, () => 1)).toBe(150);
  });

  it('semaphore() hands out at most `limit` slots and a release is idempotent', async () => {
    const acquire = semaphore(1);
    const first = await acquire();
    let second = false;
    const waiting = acquire().then((release) => {
      second = true;
      return release;
    });
    await Promise.resolve();
    expect(second).toBe(false);
    first();
    first();
    const release = await waiting;
    expect(second).toBe(true);
    release();
  });
});
