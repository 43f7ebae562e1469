import { describe, expect, it } from 'vitest';
import {
  type Batch,
  filter,
  pipeline,
  type Row,
  type Sink,
  type Source,
  TributaryError,
} from '../src/index.js';
import { deferred, memorySink, memorySource } from '../src/testing/index.js';

const rows = (n: number, from = 0): Row[] => Array.from({ length: n }, (_, i) => ({ id: from + i }));

describe('pipeline()', () => {
  it('bounds read-ahead of a slow sink to maxInFlight batches', async () => {
    const units = [Array.from({ length: 20 }, (_, b) => rows(2, b * 2))];
    const source = memorySource({ units });
    const releases = Array.from({ length: 20 }, () => deferred());
    const readAheadAtWrite: number[] = [];
    const sink = memorySink({
      beforeWrite: async (_batch, index) => {
        // Let the source run as far as it can before this write completes.
        await new Promise((resolve) => setImmediate(resolve));
        readAheadAtWrite.push(source.produced.length - index);
        releases[index]?.resolve();
      },
    });
    const result = await pipeline(source, sink, { maxInFlight: 3 });
    expect(result.maxReadAhead).toBe(3);
    expect(Math.max(...readAheadAtWrite)).toBe(3);
    expect(sink.rows).toHaveLength(40);
  });

  it('with maxInFlight 1 reads the next batch only after the previous was written', async () => {
    const source = memorySource({ units: [[rows(1), rows(1), rows(1), rows(1)]] });
    const seen: number[] = [];
    const sink = memorySink({ beforeWrite: (_b, index) => void seen.push(source.produced.length - index) });
    const result = await pipeline(source, sink, { maxInFlight: 1 });
    expect(seen).toEqual([1, 1, 1, 1]);
    expect(result.maxReadAhead).toBe(1);
  });

  it('a failing sink stops the source, rolls back the open unit and never calls committed for it', async () => {
    const source = memorySource({ units: [[rows(2)], [rows(2, 2), rows(2, 4), rows(2, 6)], [rows(2, 8)]] });
    const sink = memorySink({
      beforeWrite: (batch) => {
        if (batch.position['unit'] === 1 && batch.position['batch'] === 1) throw new Error('disk full');
      },
    });
    const error = await pipeline(source, sink, { maxInFlight: 1 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TributaryError);
    expect((error as TributaryError).code).toBe('SINK_FAILED');
    expect((error as Error).message).toContain('disk full');
    expect(sink.rows.map((r) => r['id'])).toEqual([0, 1]); // unit 0 only
    expect(sink.pending).toEqual([]); // rolled back
    expect(sink.aborted).toBeDefined();
    expect(source.closed).toBe(true);
    expect(source.produced.length).toBeLessThanOrEqual(3); // stopped, never reached unit 2
    expect(source.committedBatches.map((b) => b.position)).toEqual([{ unit: 0, batch: 0 }]);
  });

  it('a failing transform stops the pipeline with TRANSFORM_FAILED and rolls back', async () => {
    const source = memorySource({ units: [[rows(1)], [rows(1, 1), rows(1, 2)]] });
    const sink = memorySink();
    const explode = (batch: import('../src/index.js').Batch) => {
      if (batch.rows[0]?.['id'] === 2) throw new Error('bad row');
      return batch;
    };
    const error = (await pipeline(source, explode, sink).catch((e: unknown) => e)) as TributaryError;
    expect(error.code).toBe('TRANSFORM_FAILED');
    expect(sink.rows.map((r) => r['id'])).toEqual([0]);
    expect(sink.aborted).toBeDefined();
    expect(source.closed).toBe(true);
    expect(source.committedBatches).toHaveLength(1);
  });

  it('abort stops cleanly: ABORTED error, open unit rolled back, source closed', async () => {
    const controller = new AbortController();
    const source = memorySource({ units: [Array.from({ length: 10 }, (_, b) => rows(1, b))] });
    const sink = memorySink({
      beforeWrite: (_batch, index) => {
        if (index === 2) controller.abort(new Error('operator pressed ctrl-c'));
      },
    });
    const error = (await pipeline(source, sink, { signal: controller.signal }).catch(
      (e: unknown) => e,
    )) as TributaryError;
    expect(error.code).toBe('ABORTED');
    expect(sink.rows).toEqual([]);
    expect(sink.aborted).toBeDefined();
    expect(source.closed).toBe(true);
    expect(source.committedBatches).toEqual([]);
  });

  it('stopSignal finishes the in-flight unit, then stops', async () => {
    const stop = new AbortController();
    const source = memorySource({
      units: [[rows(1), rows(1, 1)], [rows(1, 2), rows(1, 3), rows(1, 4)], [rows(1, 5)]],
    });
    const sink = memorySink({
      beforeWrite: (batch) => {
        if (batch.position['unit'] === 1 && batch.position['batch'] === 0) stop.abort();
      },
    });
    const result = await pipeline(source, sink, { stopSignal: stop.signal, maxInFlight: 1 });
    expect(result.stopped).toBe(true);
    expect(sink.rows.map((r) => r['id'])).toEqual([0, 1, 2, 3, 4]);
    expect(source.committedBatches.map((b) => b.position)).toEqual([
      { unit: 0, batch: 1 },
      { unit: 1, batch: 2 },
    ]);
  });

  it("resumes from the sink's checkpoint", async () => {
    const source = memorySource({ stream: 's/x', units: [[rows(1)], [rows(1, 1)], [rows(1, 2)]] });
    const sink = memorySink({ checkpoints: { 's/x': { unit: 1, batch: 0 } } });
    await pipeline(source, sink);
    expect(source.resumedFrom).toEqual({ unit: 1, batch: 0 });
    expect(sink.rows.map((r) => r['id'])).toEqual([2]);
  });

  it('calls committed only for batches the sink committed, after the commit', async () => {
    const source = memorySource({ units: [[rows(1), rows(1, 1), rows(1, 2)], [rows(1, 3)]] });
    const committedAtCall: number[] = [];
    const inner = memorySink();
    const sink: Sink = {
      ...inner,
      name: 'spy',
      write: (b) => inner.write(b),
      checkpoint: (s) => inner.checkpoint(s),
    };
    const origCommitted = source.committed!.bind(source);
    source.committed = async (batch) => {
      committedAtCall.push(inner.rows.length);
      await origCommitted(batch);
    };
    await pipeline(source, sink);
    expect(source.committedBatches.map((b) => b.position)).toEqual([
      { unit: 0, batch: 2 },
      { unit: 1, batch: 0 },
    ]);
    expect(committedAtCall).toEqual([3, 4]);
  });

  it('counts rows dropped by transforms, and whole dropped batches still commit', async () => {
    const source = memorySource({ units: [[rows(5)], [rows(3, 5)]] });
    const sink = memorySink();
    const odd = filter('odd', (row) => Number(row['id']) % 2 === 0);
    const dropUnit1 = (batch: import('../src/index.js').Batch) =>
      batch.position['unit'] === 1 ? undefined : batch;
    const result = await pipeline(source, odd, dropUnit1, sink);
    expect(sink.rows.map((r) => r['id'])).toEqual([0, 2, 4]);
    expect(result.rowsFiltered).toBe(2 + 3);
    expect(result.rowsRead).toBe(8);
    expect(result.commits).toBe(2);
    expect(source.committedBatches).toHaveLength(2);
  });

  it('rejects a pipeline without a sink before any I/O', async () => {
    const source = memorySource({ units: [] });
    await expect(pipeline(source, {} as never)).rejects.toThrow(/last stage must be a sink/);
  });
});

describe('pipeline() read context', () => {
  it("hands the source the sink's load log and the stop signal", async () => {
    const stop = new AbortController();
    const loadLog = { list: async () => [], markArchived: async () => {} };
    let seen: import('../src/index.js').ReadContext | undefined;
    const source: import('../src/index.js').Source = {
      name: 'spy',
      async *read(ctx) {
        seen = ctx;
        yield* [];
      },
    };
    const sink = { ...memorySink(), name: 'with-log', loadLog };
    await pipeline(source, sink, { stopSignal: stop.signal });
    expect(seen?.loads).toBe(loadLog);
    expect(seen?.stop).toBe(stop.signal);
  });
});

describe('pipeline() retries', () => {
  it('re-runs from the last committed checkpoint after a transient failure, applying each unit once', async () => {
    const source = memorySource({ units: [[rows(2)], [rows(2, 2), rows(2, 4)], [rows(2, 6)]] });
    let failed = false;
    const sink = memorySink({
      beforeWrite: (batch) => {
        if (!failed && batch.position['unit'] === 1 && batch.position['batch'] === 1) {
          failed = true;
          throw new TributaryError('TRANSIENT', 'connection reset', { retriable: true });
        }
      },
    });
    const events: string[] = [];
    await pipeline(source, sink, { onEvent: (e) => events.push(e.type) });
    expect(sink.rows.map((r) => r['id'])).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(events.filter((t) => t === 'retry')).toHaveLength(1);
    // The second pass resumed after unit 0 instead of reading it again.
    expect(source.resumedFrom).toEqual({ unit: 0, batch: 0 });
  });

  it('does not retry errors that are not transient, nor past the retry budget', async () => {
    const permanent = memorySink({
      beforeWrite: () => {
        throw new Error('syntax error');
      },
    });
    const events: string[] = [];
    await expect(
      pipeline(memorySource({ units: [[rows(1)]] }), permanent, { onEvent: (e) => events.push(e.type) }),
    ).rejects.toThrow(/syntax error/);
    expect(events).not.toContain('retry');
    let attempts = 0;
    const flaky = memorySink({
      beforeWrite: () => {
        attempts++;
        throw new TributaryError('TRANSIENT', 'still down', { retriable: true });
      },
    });
    await expect(pipeline(memorySource({ units: [[rows(1)]] }), flaky, { retries: 1 })).rejects.toThrow(
      /still down/,
    );
    expect(attempts).toBe(2);
  });
});

/** One source interleaving two streams' batches (a Kafka topic's partitions): a0 b0 a1 b1 …, each batch a unit. */
function interleaved(perStream: number): Source<Row> & { committedBatches: Batch<Row>[] } {
  const committedBatches: Batch<Row>[] = [];
  return {
    name: 'interleaved',
    committedBatches,
    async *read() {
      for (let i = 0; i < perStream; i++) {
        for (const stream of ['a', 'b']) {
          yield {
            stream,
            rows: [{ id: `${stream}${i}` }],
            position: { i },
            meta: { source: `${stream}${i}`, commit: true, lastOfUnit: true, rowsRead: 1, filtered: {} },
          };
        }
      }
    },
    async committed(batch) {
      committedBatches.push(batch);
    },
  };
}

describe('pipeline() with a sink whose streams write independently (concurrentStreams)', () => {
  /** A sink that logs each write's start and end; `gate(batch)` may hold a write open. */
  function laneSink(gate: (batch: Batch<Row>) => Promise<void> | undefined, concurrentStreams: boolean) {
    const log: string[] = [];
    let active = 0;
    let maxActive = 0;
    const sink: Sink = {
      name: 'lanes',
      concurrentStreams,
      checkpoint: async () => null,
      async write(batch) {
        const id = String(batch.rows[0]!['id']);
        active++;
        maxActive = Math.max(maxActive, active);
        log.push(`start ${id}`);
        try {
          await gate(batch);
        } finally {
          active--;
        }
        log.push(`end ${id}`);
        return { committed: true };
      },
      async abort() {
        log.push('abort');
      },
    };
    return { sink, log, maxActive: () => maxActive };
  }

  it("writes different streams' batches side by side, each stream's in order", async () => {
    const source = interleaved(3);
    // a's write i ends only once b's write i has started: writes that never overlap would hang here.
    const bStarted = [deferred(), deferred(), deferred()];
    const { sink, log, maxActive } = laneSink((batch) => {
      const i = Number(batch.position['i']);
      if (batch.stream === 'b') bStarted[i]!.resolve();
      return batch.stream === 'a' ? bStarted[i]!.promise : undefined;
    }, true);
    const result = await pipeline(source, sink, { maxInFlight: 2 });
    expect(result.commits).toBe(6);
    expect(maxActive()).toBe(2);
    const ofStream = (s: string) => log.filter((l) => l.includes(` ${s}`));
    expect(ofStream('a')).toEqual(['start a0', 'end a0', 'start a1', 'end a1', 'start a2', 'end a2']);
    expect(ofStream('b')).toEqual(['start b0', 'end b0', 'start b1', 'end b1', 'start b2', 'end b2']);
    expect(source.committedBatches.map((b) => b.rows[0]!['id']).sort()).toEqual([
      'a0',
      'a1',
      'a2',
      'b0',
      'b1',
      'b2',
    ]);
  });

  it('without the capability, each write waits for the one before', async () => {
    const { sink, maxActive } = laneSink(() => new Promise((resolve) => setImmediate(resolve)), false);
    const result = await pipeline(interleaved(3), sink, { maxInFlight: 2 });
    expect(result.commits).toBe(6);
    expect(maxActive()).toBe(1);
  });

  it('a failing write fails the run; the other stream’s write in flight ends before the rollback', async () => {
    const source = interleaved(3);
    const bFailed = deferred();
    const { sink, log } = laneSink((batch) => {
      const id = String(batch.rows[0]!['id']);
      if (id === 'b1') {
        bFailed.resolve();
        return Promise.reject(new Error('disk full'));
      }
      // a1 is still writing when b1 fails: it ends only after that failure.
      return id === 'a1' ? bFailed.promise : undefined;
    }, true);
    const error = (await pipeline(source, sink, { maxInFlight: 2 }).catch(
      (e: unknown) => e,
    )) as TributaryError;
    expect(error.code).toBe('SINK_FAILED');
    expect(error.message).toContain('disk full');
    expect(log.indexOf('end a1')).toBeGreaterThan(-1);
    expect(log.indexOf('end a1')).toBeLessThan(log.indexOf('abort'));
    expect(log).not.toContain('start a2');
    expect(log).not.toContain('start b2');
    expect(source.committedBatches.map((b) => b.rows[0]!['id'])).not.toContain('b1');
  });
});
