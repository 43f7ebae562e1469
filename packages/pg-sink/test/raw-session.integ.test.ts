import { TributaryError } from '@tributary/core';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, randomName, type TestDatabase } from '../../../test/support/services.js';
import { pgSink, type TargetTable } from '../src/index.js';
import { rawBatch } from './helpers.js';

// One sink session applies file after file: the staging table is created once and reused, the
// time zone is set once per connection, the merge and the unit's checkpoint + load row go in one
// statement. These tests fail if any of that leaks between files or miscounts.

let db: TestDatabase;
let pool: pg.Pool;
beforeAll(async () => {
  db = await createTestDatabase();
  // A small pool of its own: every connection the sink gave back can be looked at afterwards.
  pool = new pg.Pool({ connectionString: db.url, max: 3 });
  // Connections still closing when the file's database is dropped must not crash the worker.
  pool.on('error', () => {});
});
afterAll(async () => {
  await pool?.end();
});

const header = ['id', 'title', 'amount', 'updated_at'];
function target(): TargetTable {
  return {
    schema: 'public',
    table: randomName('raw'),
    key: ['id'],
    columns: [
      { name: 'id', type: 'integer' },
      { name: 'title', type: 'text' },
      { name: 'amount', type: 'numeric' },
      { name: 'updated_at', type: 'timestamptz' },
    ],
    createTable: true,
    timeZone: 'Africa/Nairobi',
  };
}
const skipAlarms = [{ op: 'skip-rows' as const, name: 'alarm', when: { column: 'title', oneOf: ['ALARM'] } }];

async function loadRows(stream: string) {
  const result = await pool.query(
    `SELECT source, status, rows_read, rows_filtered, filtered, rows_inserted, rows_updated, rows_deleted,
            rows_unchanged, batches
       FROM tributary.loads WHERE stream = $1 ORDER BY load_id`,
    [stream],
  );
  return result.rows;
}

describe('raw files through one session', () => {
  it('counts, filters and records each file exactly; a bad value in a later file names its own line', async () => {
    const t = target();
    const stream = t.table;
    const sink = pgSink({ pool, targets: { [stream]: t } });
    try {
      const first = await sink.write(
        rawBatch(stream, 'f1.csv', header, ['1,a,1,2024-01-01 00:00:00', '2,ALARM,2,', '3,c,3,'], {
          steps: skipAlarms,
        }),
      );
      expect(first).toEqual({ committed: true, rows: 2, filtered: { alarm: 1 } });
      const second = await sink.write(
        rawBatch(stream, 'f2.csv', header, ['1,a,1,2024-01-01 00:00:00', '3,cc,3,', '4,d,4,', '5,ALARM,5,'], {
          steps: skipAlarms,
        }),
      );
      expect(second).toEqual({ committed: true, rows: 3, filtered: { alarm: 1 } });
      expect(await loadRows(stream)).toEqual([
        expect.objectContaining({
          source: 'f1.csv',
          status: 'loaded',
          rows_read: '3',
          rows_filtered: '1',
          filtered: { alarm: 1 },
          rows_inserted: '2',
          rows_updated: '0',
          rows_unchanged: '0',
          batches: 1,
        }),
        expect.objectContaining({
          source: 'f2.csv',
          rows_read: '4',
          rows_filtered: '1',
          filtered: { alarm: 1 },
          rows_inserted: '1',
          rows_updated: '1',
          rows_unchanged: '1',
        }),
      ]);
      const checkpoint = await sink.checkpoint(stream);
      expect(checkpoint?.['key']).toBe('f2.csv');
      // Read in the target's zone in every transaction of the session, not only the first.
      const stored = await pool.query(`SELECT id, updated_at FROM public."${stream}" ORDER BY id`);
      expect(stored.rows.map((r) => [r.id, r.updated_at?.toISOString() ?? null])).toEqual([
        [1, '2023-12-31T21:00:00.000Z'],
        [3, null],
        [4, null],
      ]);

      // The staging numbering goes on across files; the error still names this file's line.
      const error = (await sink
        .write(rawBatch(stream, 'f3.csv', header, ['6,e,6,', '7,f,12x5,']))
        .catch((e: unknown) => e)) as TributaryError;
      expect(error).toBeInstanceOf(TributaryError);
      expect(error.code).toBe('CAST_FAILED');
      expect(error.location).toEqual({ file: 'f3.csv', line: 3, column: 'amount', record: 2 });
      expect((await sink.checkpoint(stream))?.['key']).toBe('f2.csv');
    } finally {
      await sink.close();
    }
    // The session's time zone does not stay on the pooled connection it gave back.
    const clients = await Promise.all([pool.connect(), pool.connect(), pool.connect()]);
    try {
      for (const client of clients) {
        const zone = await client.query<{ TimeZone: string }>('SHOW TimeZone');
        expect(zone.rows[0]!.TimeZone).not.toBe('Africa/Nairobi');
      }
    } finally {
      for (const client of clients) client.release();
    }
  });

  it('stages each batch of a multi-batch file alone, and records the unit once', async () => {
    const t = target();
    const stream = t.table;
    const sink = pgSink({ pool, targets: { [stream]: t } });
    try {
      const b1 = rawBatch(stream, 'big.csv', header, ['1,a,1,', '2,b,2,'], {
        meta: { commit: false, lastOfUnit: false },
      });
      const b2 = rawBatch(stream, 'big.csv', header, ['2,bb,2,', '3,c,3,'], { firstRecord: 3 });
      expect(await sink.write(b1)).toEqual({ committed: false, rows: 2, filtered: {} });
      expect(await sink.write(b2)).toEqual({ committed: true, rows: 2, filtered: {} });
      const [load] = await loadRows(stream);
      expect(load).toMatchObject({ rows_read: '4', batches: 2, rows_unchanged: '0', rows_filtered: '0' });
      expect(Number(load.rows_inserted) + Number(load.rows_updated)).toBe(4);
      const stored = await pool.query(`SELECT id, title FROM public."${stream}" ORDER BY id`);
      expect(stored.rows).toEqual([
        { id: 1, title: 'a' },
        { id: 2, title: 'bb' },
        { id: 3, title: 'c' },
      ]);
    } finally {
      await sink.close();
    }
  });
});
