import { type Batch, pipeline, type Row, type Source, TributaryError } from '@tributary/core';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, randomName, type TestDatabase } from '../../../test/support/services.js';
import { type PgSink, pgCheckpointStore, pgSink, readState, type TargetTable } from '../src/index.js';
import { fileBatch, idValueTarget } from './helpers.js';

let db: TestDatabase;
const sinks: PgSink[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
});
afterEach(async () => {
  for (const sink of sinks.splice(0)) await sink.close().catch(() => undefined);
});

const target = (): TargetTable => idValueTarget(randomName('t'), 'n', 'integer');

function arraySource(batches: Batch<Row>[], failAfter?: Error): Source<Row> {
  return {
    name: 'array',
    async *read() {
      yield* batches;
      if (failAfter) throw failAfter;
    },
  };
}

describe('pipeline + observability views', () => {
  it('records runs, loads and failures; the §7 views report them', async () => {
    const schema = randomName('ctl');
    const t = target();
    const stream = 'tickets/inc';
    const sink = pgSink({ pool: db.pool, schema, targets: { [stream]: t } });
    sinks.push(sink);
    const runId = await sink.startRun({ streams: [stream] });
    const good = [
      fileBatch(stream, 'k/1.csv', [{ id: '1', n: '1' }], {
        watermark: { key: 'k/1.csv', time: '2024-01-01T00:00:00Z' },
      }),
      fileBatch(
        stream,
        'k/2.csv',
        [
          { id: '2', n: '2' },
          { id: '3', n: '3' },
        ],
        {
          watermark: { key: 'k/2.csv', time: '2024-01-02T00:00:00Z' },
        },
      ),
    ];
    const bad = fileBatch(stream, 'k/3.csv', [{ id: '4', n: 'four' }]);
    const error = await pipeline(arraySource([...good, bad]), sink).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TributaryError);
    expect((error as TributaryError).code).toBe('CAST_FAILED');
    await sink.finishRun(runId, { status: 'failed', error, batches: 3 });

    const runs = await db.pool.query(`SELECT status, error, host, version FROM "${schema}".runs`);
    expect(runs.rows).toEqual([
      expect.objectContaining({ status: 'failed', error: expect.stringContaining('k/3.csv:2') }),
    ]);
    const loads = await db.pool.query(
      `SELECT run_id::text, source, status FROM "${schema}".loads ORDER BY load_id`,
    );
    expect(loads.rows).toEqual([
      { run_id: runId, source: 'k/1.csv', status: 'loaded' },
      { run_id: runId, source: 'k/2.csv', status: 'loaded' },
      { run_id: runId, source: 'k/3.csv', status: 'failed' },
    ]);

    const freshness = await db.pool.query(`SELECT * FROM "${schema}".v_stream_freshness`);
    expect(freshness.rows).toEqual([
      expect.objectContaining({
        stream,
        loads_last_24h: '2',
        rows_changed_last_24h: '3',
        last_loaded_at: expect.any(Date),
      }),
    ]);
    const failures = await db.pool.query(`SELECT * FROM "${schema}".v_recent_failures`);
    expect(failures.rows).toEqual([
      expect.objectContaining({
        stream,
        source: 'k/3.csv',
        run_id: runId,
        error: expect.stringMatching(
          /CAST_FAILED: .*"four" is not a valid integer at k\/3.csv:2 \(row 1, column "n"\)/,
        ),
      }),
    ]);
    const lag = await db.pool.query(`SELECT * FROM "${schema}".v_watermark_lag`);
    expect(lag.rows).toEqual([
      expect.objectContaining({
        stream,
        watermark_key: 'k/2.csv',
        watermark_time: new Date('2024-01-02T00:00:00Z'),
        rows_loaded_last_run: '2',
      }),
    ]);
  });

  it('a source failure before the sink saw the file is recorded from the error', async () => {
    const schema = randomName('ctl');
    const t = target();
    const stream = 'tickets/crq';
    const sink = pgSink({ pool: db.pool, schema, targets: { [stream]: t } });
    sinks.push(sink);
    const failure = new TributaryError('SCHEMA_DRIFT', 'header changed: missing column n', {
      stream,
      location: { file: 'k/9.csv', line: 1 },
    });
    // Regression: the source fails while the sink may still be writing k/8.csv; abort() must
    // wait for that write (it leaked a pooled client and hung pool.end()).
    await expect(
      pipeline(arraySource([fileBatch(stream, 'k/8.csv', [{ id: '1', n: '1' }])], failure), sink),
    ).rejects.toThrow(/header changed/);
    const state = await readState(db.pool, schema, stream);
    const failed = state?.records.find((l) => l.source === 'k/9.csv');
    expect(await state?.loads.list(stream)).toEqual(state?.records);
    await expect(state?.loads.markArchived(stream, 'k/9.csv')).rejects.toThrow(/read-only/);
    expect(failed).toMatchObject({
      status: 'failed',
      error: expect.stringContaining('SCHEMA_DRIFT: header changed'),
    });
    expect(failed?.error).toContain('k/9.csv:1');
  });
});

describe('pgCheckpointStore', () => {
  it('saves inside the caller transaction, and reads null without migrating when asked', async () => {
    const schema = randomName('ctl');
    const readOnly = pgCheckpointStore({ pool: db.pool, schema, migrate: false });
    expect(await readOnly.checkpoint('kafka/x')).toBeNull();
    const store = pgCheckpointStore({ pool: db.pool, schema });
    expect(await store.checkpoint('kafka/x')).toBeNull();
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await store.save('kafka/x', { topic: 't', partition: 0, offset: '41' }, client);
      await client.query('ROLLBACK');
      expect(await store.checkpoint('kafka/x')).toBeNull();
      await client.query('BEGIN');
      await store.save('kafka/x', { topic: 't', partition: 0, offset: '42' }, client);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    expect(await readOnly.checkpoint('kafka/x')).toEqual({ topic: 't', partition: 0, offset: '42' });
  });

  it('a sink with migrate: false has no side effect beyond the lock', async () => {
    const schema = randomName('ctl');
    const t = target();
    const sink = pgSink({ pool: db.pool, schema, migrate: false, targets: () => t });
    sinks.push(sink);
    await expect(sink.checkpoint('s/x')).rejects.toThrow(/control schema .* is not set up: run migrate\(\)/);
    const created = await db.pool.query(
      `SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = $1)::int AS schemas,
              (SELECT count(*) FROM pg_class WHERE relname = $2)::int AS tables`,
      [schema, t.table],
    );
    expect(created.rows[0]).toEqual({ schemas: 0, tables: 0 });
  });
});

describe('checkpoint-only streams', () => {
  it('a null target records checkpoint and load log from empty batches, and rejects rows', async () => {
    const schema = randomName('ctl');
    const sink = pgSink({ pool: db.pool, schema, targets: () => null, lock: { enabled: false } });
    sinks.push(sink);
    const stream = 'tickets/inc';
    expect(await sink.checkpoint(stream)).toBeNull();
    const published = fileBatch(stream, 'k/1.csv', [], { rowsRead: 5 }, { key: 'k/1.csv', row: 5 });
    expect(await sink.write(published)).toEqual({ committed: true });
    expect(await sink.checkpoint(stream)).toEqual({ key: 'k/1.csv', row: 5 });
    expect(await sink.loadLog.list(stream)).toEqual([
      expect.objectContaining({ source: 'k/1.csv', status: 'loaded' }),
    ]);
    const locks = await db.pool.query(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`);
    expect(locks.rows[0].n).toBe(0); // lock.enabled: false
    await expect(sink.write(fileBatch(stream, 'k/2.csv', [{ id: '1' }]))).rejects.toThrow(
      /has no target table/,
    );
  });
});
