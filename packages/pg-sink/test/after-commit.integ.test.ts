import { TributaryError } from '@tributary/core';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { pollUntil } from '../../../test/support/reliability.js';
import { randomName } from '../../../test/support/services.js';
import { type CommittedUnit, pgSink, type TargetTable } from '../src/index.js';
import { fileBatch, idValueTarget, sinkFixture } from './helpers.js';

/** Issue 17 part 3 in the library: `afterCommit` per target and `onCommitted` per sink. */

const fixture = sinkFixture();
const { makeSink } = fixture;

async function runsOf(hook: string): Promise<{ ok: boolean | null; error: string | null; source: string }[]> {
  const { rows } = await fixture
    .db()
    .pool.query('SELECT ok, error, source FROM tributary.after_commit WHERE hook = $1 ORDER BY id', [hook]);
  return rows;
}

describe('after-commit hooks (library)', () => {
  it('onCommitted runs outside the transaction, after the rows are committed, and is recorded', async () => {
    const t = idValueTarget(randomName('ac'));
    const name = randomName('hook');
    const seen: { unit: CommittedUnit; rows: number; inTransaction: boolean }[] = [];
    const sink = makeSink(t, {
      onCommitted: {
        name,
        run: async (client: pg.ClientBase, unit) => {
          const { rows } = await client.query<{ n: number; tx: boolean }>(
            // now() is the transaction start; statement_timestamp() this statement's: equal
            // outside an explicit transaction block (each statement is its own).
            `SELECT (SELECT count(*) FROM public."${t.table}")::int AS n, now() = statement_timestamp() AS tx`,
          );
          seen.push({ unit, rows: rows[0]!.n, inTransaction: !rows[0]!.tx });
        },
      },
    });
    await sink.write(
      fileBatch(t.table, 'f1.csv', [
        { id: '1', v: 'a' },
        { id: '2', v: 'b' },
      ]),
    );
    await pollUntil('the hook ran', () => seen.length === 1);
    expect(seen[0]).toEqual({
      unit: { stream: t.table, source: 'f1.csv', target: `"public"."${t.table}"` },
      rows: 2,
      inTransaction: false,
    });
    await sink.close();
    expect(await runsOf(name)).toEqual([{ ok: true, error: null, source: 'f1.csv' }]);
  });

  it('a failing hook keeps the data, is warned about and recorded, and runs again on the next commit', async () => {
    const t = idValueTarget(randomName('ac'));
    let fail = true;
    const name = randomName('hook');
    const sink = makeSink(t, {
      onCommitted: {
        name,
        run: async () => {
          if (fail) throw new Error('downstream is down');
        },
      },
    });
    const first = await sink.write(fileBatch(t.table, 'f1.csv', [{ id: '1', v: 'a' }]));
    expect(first.committed).toBe(true);
    await pollUntil('the failed run is recorded', async () => (await runsOf(name))[0]?.ok === false);
    expect((await runsOf(name))[0]!.error).toMatch(/downstream is down/);
    expect(
      (await fixture.db().pool.query(`SELECT count(*)::int AS n FROM public."${t.table}"`)).rows[0],
    ).toEqual({
      n: 1,
    });

    fail = false;
    const second = await sink.write(fileBatch(t.table, 'f2.csv', [{ id: '2', v: 'b' }]));
    // The failure of the previous run reaches the pipeline with this write (a warning event).
    expect(second.warnings?.join('\n')).toMatch(/failed after f1\.csv committed .*downstream is down/);
    await sink.close();
    expect((await runsOf(name)).map((r) => [r.source, r.ok])).toEqual([
      ['f1.csv', false],
      ['f2.csv', true],
    ]);
  });

  it('minIntervalSeconds: a commit inside the interval of the last successful run waits for its end', async () => {
    const t: TargetTable = {
      ...idValueTarget(randomName('ac')),
      afterCommit: { sql: `SELECT 1 /* ${randomName('hook')} */`, minIntervalSeconds: 2 },
    };
    const hook = t.afterCommit!.sql!;
    const sink = makeSink(t);
    await sink.migrate();
    // Another process ran the hook just now.
    const seeded = await fixture.db().pool.query<{ started_at: Date }>(
      `INSERT INTO tributary.after_commit (stream, hook, sql, started_at, finished_at, ok)
       VALUES ('other/stream', $1, $1, clock_timestamp(), clock_timestamp(), true) RETURNING started_at`,
      [hook],
    );
    await sink.write(fileBatch(t.table, 'f1.csv', [{ id: '1', v: 'a' }]));
    // A run's row is written when it starts and completed when it ends: wait for the end.
    await pollUntil(
      'the deferred run to finish',
      async () => {
        const runs = await runsOf(hook);
        return runs.length === 2 && runs.every((r) => r.ok !== null);
      },
      { tries: 200 },
    );
    const { rows } = await fixture.db().pool.query<{ ok: boolean; gap: number }>(
      `SELECT ok, extract(epoch FROM started_at - $2::timestamptz)::float8 AS gap
         FROM tributary.after_commit WHERE hook = $1 AND stream = $3`,
      [hook, seeded.rows[0]!.started_at, t.table],
    );
    // Not a timing measurement: the runner only runs once the database says the interval is over.
    expect(rows[0]!.ok).toBe(true);
    expect(rows[0]!.gap).toBeGreaterThanOrEqual(2);
  });

  it('a deferred run happens at close(): nothing committed is left unrefreshed', async () => {
    const t: TargetTable = {
      ...idValueTarget(randomName('ac')),
      afterCommit: { sql: `SELECT 1 /* ${randomName('hook')} */`, minIntervalSeconds: 3600 },
    };
    const hook = t.afterCommit!.sql!;
    const sink = makeSink(t);
    await sink.migrate();
    await fixture.db().pool.query(
      `INSERT INTO tributary.after_commit (stream, hook, sql, started_at, finished_at, ok)
       VALUES ('other/stream', $1, $1, clock_timestamp(), clock_timestamp(), true)`,
      [hook],
    );
    await sink.write(fileBatch(t.table, 'f1.csv', [{ id: '1', v: 'a' }]));
    await sink.close();
    expect((await runsOf(hook)).map((r) => [r.source, r.ok])).toEqual([
      [null, true],
      ['f1.csv', true],
    ]);
  });

  it('refuses a hook without sql or run, and a run without a name', () => {
    const t = idValueTarget(randomName('ac'));
    expect(() => pgSink({ pool: fixture.db().pool, targets: { x: { ...t, afterCommit: {} } } })).toThrow(
      /targets\.x\.afterCommit: needs exactly one of sql or run/,
    );
    expect(() =>
      pgSink({ pool: fixture.db().pool, targets: { x: t }, onCommitted: { run: async () => {} } }),
    ).toThrow(TributaryError);
  });
});
