import { pipeline } from '@tributary/core';
import { memorySource } from '@tributary/core/testing';
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, randomName, type TestDatabase } from '../../../test/support/services.js';
import { pgSink } from '../src/index.js';
import { idValueTarget } from './helpers.js';

// A unit too big for pg-sink's in-memory replay (the replay caps are 0 here) whose connection is
// killed before COMMIT: pg-sink raises a retriable error and pipeline() re-runs the source from
// the last committed checkpoint, on a fresh connection. Memory stays bounded (invariant 7) and
// every row lands once (invariant 4).

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});

describe('pipeline() retry through pg-sink', () => {
  it('a connection killed before COMMIT of an unbuffered unit is re-run from the checkpoint', async () => {
    const table = randomName('retry');
    const killer = new pg.Client({ connectionString: db.url });
    await killer.connect();
    let killed = 0;
    const sink = pgSink({
      pool: db.pool,
      replayBufferRows: 0,
      replayBufferBytes: 0,
      targets: () => idValueTarget(table),
      faults: {
        // Terminate the writer's own backend while the second unit's transaction is open.
        beforeCommit: async ({ source }) => {
          if (source !== 'unit-1' || killed++ > 0) return;
          const r = await killer.query(
            `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'idle in transaction'`,
          );
          expect(r.rowCount).toBe(1);
        },
      },
    });
    const rows = (from: number, n: number) =>
      Array.from({ length: n }, (_, i) => ({ id: String(from + i), v: 'x' }));
    const source = memorySource({
      stream: 'mem/retry',
      units: [[rows(0, 3)], [rows(3, 2), rows(5, 2)], [rows(7, 1)]],
    });
    const events: string[] = [];
    try {
      await pipeline(source, sink, { onEvent: (e) => events.push(e.type) });
    } finally {
      await sink.close();
      await killer.end();
    }
    expect(killed).toBeGreaterThan(0);
    expect(events).toContain('retry');
    // The second pass resumed after unit 0 rather than from the start.
    expect(source.resumedFrom).toEqual({ unit: 0, batch: 0 });
    const result = await db.pool.query(
      `SELECT count(*)::int AS n, count(DISTINCT id)::int AS d FROM public."${table}"`,
    );
    expect(result.rows).toEqual([{ n: 8, d: 8 }]);
    const loads = await db.pool.query(
      `SELECT source, status FROM tributary.loads WHERE stream = 'mem/retry' AND status = 'loaded' ORDER BY load_id`,
    );
    expect(loads.rows.map((r) => r.source)).toEqual(['unit-0', 'unit-1', 'unit-2']);
  });
});
