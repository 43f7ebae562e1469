import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, randomName, type TestDatabase } from '../../../test/support/services.js';
import { type PgSink, pgSink } from '../src/index.js';
import { fileBatch, idValueTarget } from './helpers.js';

// Regression (issue 7, reliability suite): two Kafka group members applied the same offsets
// after a rebalance while a batch was in flight. A batch that names the stored position it
// continues from (`meta.fence.after`) commits only while that is still the stored one.

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});

function member(table: string): PgSink {
  return pgSink({
    pool: db.pool,
    lock: { enabled: false }, // Kafka group membership, not an advisory lock, picks the writer
    targets: () => idValueTarget(table),
  });
}

const at = (offset: string) => ({ topic: 't', partition: 0, offset });

describe('fencing (meta.fence.after)', () => {
  it('a batch whose previous position is no longer the stored one rolls back; the next one applies', async () => {
    const table = randomName('fence');
    const stream = 'kafka/g/t/0';
    const a = member(table);
    const b = member(table);
    try {
      await expect(
        a.write(fileBatch(stream, 't/0/0-1', [{ id: '1', v: 'a' }], { fence: { after: null } }, at('1'))),
      ).resolves.toEqual({ committed: true });
      // The stale member applies the same range again, from the same starting point.
      const stale = await b
        .write(fileBatch(stream, 't/0/0-1', [{ id: '1', v: 'stale' }], { fence: { after: null } }, at('1')))
        .catch((e: unknown) => e);
      expect(stale).toMatchObject({ code: 'FENCED', retriable: true, stream });
      expect((stale as Error).message).toMatch(/stored position moved while it was in flight/);
      const rows = await db.pool.query(`SELECT id, v FROM public."${table}"`);
      expect(rows.rows).toEqual([{ id: 1, v: 'a' }]);
      // Continuing from the stored position applies.
      await expect(
        b.write(fileBatch(stream, 't/0/2-2', [{ id: '2', v: 'b' }], { fence: { after: at('1') } }, at('2'))),
      ).resolves.toEqual({ committed: true });
      const loads = await db.pool.query(
        `SELECT source, status FROM tributary.loads WHERE stream = $1 AND status = 'loaded' ORDER BY load_id`,
        [stream],
      );
      expect(loads.rows).toEqual([
        { source: 't/0/0-1', status: 'loaded' },
        { source: 't/0/2-2', status: 'loaded' },
      ]);
    } finally {
      await a.close();
      await b.close();
    }
  });

  // Regression (CI, 2026-12-02): a fenced member's session had lost its connection; the
  // subscriber's fetch and idle check then read the checkpoint at once, each connected, one
  // client stayed checked out, and the process hung in pool.end() after its work was done.
  it('after a fenced write, concurrent checkpoint reads share one connection, one query at a time; close() returns it', async () => {
    const table = randomName('fence');
    const stream = `kafka/g/${table}/0`; // the first test's stream has a stored position
    const pool = new pg.Pool({ connectionString: db.url, max: 10 });
    // The file's database is dropped WITH (FORCE) after it: a connection still closing then gets
    // "terminating connection due to administrator command", which must not crash the worker.
    pool.on('error', () => {});
    const a = member(table);
    const b = pgSink({ pool, lock: { enabled: false }, targets: () => idValueTarget(table) });
    try {
      await a.write(fileBatch(stream, 't/0/0-1', [{ id: '1', v: 'a' }], { fence: { after: null } }, at('1')));
      const stale = await b
        .write(fileBatch(stream, 't/0/0-1', [{ id: '1', v: 'stale' }], { fence: { after: null } }, at('1')))
        .catch((e: unknown) => e);
      expect(stale).toMatchObject({ code: 'FENCED' });
      // One query at a time on the session's client: pg warns (and pg 9 throws) otherwise.
      const warnings: string[] = [];
      const onWarning = (warning: Error) => warnings.push(warning.message);
      process.on('warning', onWarning);
      const reads = await Promise.all([b.checkpoint(stream), b.checkpoint(stream), b.checkpoint(stream)]);
      // Warnings are emitted on the next tick.
      await new Promise((resolve) => setImmediate(resolve));
      process.off('warning', onWarning);
      expect(reads).toEqual([at('1'), at('1'), at('1')]);
      expect(warnings.filter((w) => w.includes('already executing a query'))).toEqual([]);
      await b.close();
      expect(pool.totalCount - pool.idleCount).toBe(0); // nothing left checked out
    } finally {
      await a.close();
      await b.close();
      // With a client still checked out, pool.end() would wait forever: fail on the assertion.
      if (pool.totalCount === pool.idleCount) await pool.end();
    }
  });
});
