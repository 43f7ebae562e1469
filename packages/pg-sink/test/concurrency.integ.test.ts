import { TributaryError } from '@tributary/core';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createTestDatabase, randomName, type TestDatabase } from '../../../test/support/services.js';
import { type PgSink, type PgSinkOptions, pgSink, type TargetTable } from '../src/index.js';
import { fileBatch, idValueTarget } from './helpers.js';

let db: TestDatabase;
const pools: pg.Pool[] = [];
const sinks: PgSink[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
});
afterEach(async () => {
  for (const sink of sinks.splice(0)) await sink.close().catch(() => undefined);
});
afterAll(async () => {
  for (const pool of pools) await pool.end().catch(() => undefined);
});

/** A separate pool per "process", tagged so tests can find its backends. */
function runnerPool(name: string): pg.Pool {
  const pool = new pg.Pool({ connectionString: db.url, application_name: name, max: 4 });
  pool.on('error', () => {});
  pools.push(pool);
  return pool;
}

const target = (): TargetTable => idValueTarget(randomName('t'));

function sinkFor(pool: pg.Pool, t: TargetTable, extra: Partial<PgSinkOptions> = {}): PgSink {
  const sink = pgSink({ pool, targets: () => t, ...extra });
  sinks.push(sink);
  return sink;
}

async function backendPid(applicationName: string, state?: string): Promise<number> {
  const result = await db.pool.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()
       AND ($2::text IS NULL OR state = $2) ORDER BY backend_start DESC LIMIT 1`,
    [applicationName, state ?? null],
  );
  return result.rows[0]!.pid;
}

describe('one writer per stream', () => {
  it('two runners racing on one stream: exactly one applies, the other fails fast naming the pid', async () => {
    const t = target();
    const stream = 'race/inc';
    const a = sinkFor(runnerPool('runner-a'), t);
    const b = sinkFor(runnerPool('runner-b'), t);
    const run = async (sink: PgSink, who: string) => {
      await sink.checkpoint(stream);
      await sink.write(fileBatch(stream, `${who}.csv`, [{ id: '1', v: who }]));
      return who;
    };
    const results = await Promise.allSettled([run(a, 'a'), run(b, 'b')]);
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    const winner = (won[0] as PromiseFulfilledResult<string>).value;
    const error = lost[0]!.reason as TributaryError;
    expect(error).toBeInstanceOf(TributaryError);
    expect(error.code).toBe('STREAM_LOCKED');
    const holder = await db.pool.query<{ pid: number }>(
      `SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a USING (pid)
        WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = $1`,
      [`runner-${winner}`],
    );
    const pid = holder.rows[0]!.pid;
    expect(error.message).toContain(
      `stream "${stream}" is locked by pid ${pid} (application "runner-${winner}"`,
    );
    const rows = await db.pool.query(`SELECT v FROM public."${t.table}"`);
    expect(rows.rows).toEqual([{ v: winner }]);
    const loads = await db.pool.query('SELECT source FROM tributary.loads WHERE stream = $1', [stream]);
    expect(loads.rows).toEqual([{ source: `${winner}.csv` }]);
  });

  it('waits for the lock when asked, with a timeout', async () => {
    const t = target();
    const stream = 'wait/inc';
    const holder = sinkFor(runnerPool('holder'), t);
    await holder.checkpoint(stream);
    const impatient = sinkFor(runnerPool('impatient'), t, { lock: { wait: { timeoutMs: 200 } } });
    await expect(impatient.checkpoint(stream)).rejects.toThrow(/is locked by pid \d+ .*\(waited 200 ms\)/);
    const patient = sinkFor(runnerPool('patient'), t, { lock: { wait: { timeoutMs: 60_000 } } });
    const waiting = patient.checkpoint(stream);
    await vi.waitFor(
      async () => {
        const r = await db.pool.query(
          `SELECT 1 FROM pg_stat_activity WHERE application_name = 'patient' AND wait_event_type = 'Lock'`,
        );
        expect(r.rowCount).toBe(1);
      },
      { timeout: 30_000, interval: 20 },
    );
    await holder.release(stream);
    await expect(waiting).resolves.toBeNull();
  });
});

describe('transient failures', () => {
  it('re-runs the whole unit when the writer is terminated mid-unit', async () => {
    const t = target();
    const stream = 'flaky/inc';
    const sink = sinkFor(runnerPool('writer-1'), t);
    const b1 = fileBatch(stream, 'f.csv', [{ id: '1', v: 'one' }], { commit: false, lastOfUnit: false });
    const b2 = fileBatch(stream, 'f.csv', [{ id: '2', v: 'two' }]);
    expect(await sink.write(b1)).toEqual({ committed: false });
    const pid = await backendPid('writer-1', 'idle in transaction');
    await db.pool.query('SELECT pg_terminate_backend($1)', [pid]);
    expect(await sink.write(b2)).toEqual({ committed: true });
    const rows = await db.pool.query(`SELECT id, v FROM public."${t.table}" ORDER BY id`);
    expect(rows.rows).toEqual([
      { id: 1, v: 'one' },
      { id: 2, v: 'two' },
    ]);
    const loads = await db.pool.query(
      'SELECT status, rows_read, rows_inserted, batches FROM tributary.loads WHERE stream = $1',
      [stream],
    );
    expect(loads.rows).toEqual([{ status: 'loaded', rows_read: '2', rows_inserted: '2', batches: 2 }]);
    expect(await backendPid('writer-1')).not.toBe(pid); // a new session holds the lock
  });

  it('re-runs the unit when the connection dies right before COMMIT', async () => {
    const t = target();
    const stream = 'flaky/commit';
    let killed = false;
    const sink = sinkFor(runnerPool('writer-2'), t, {
      faults: {
        beforeCommit: async () => {
          if (killed) return;
          killed = true;
          await db.pool.query('SELECT pg_terminate_backend($1)', [
            await backendPid('writer-2', 'idle in transaction'),
          ]);
        },
      },
    });
    expect(await sink.write(fileBatch(stream, 'c.csv', [{ id: '1', v: 'x' }]))).toEqual({ committed: true });
    expect(killed).toBe(true);
    const loads = await db.pool.query('SELECT status FROM tributary.loads WHERE stream = $1', [stream]);
    expect(loads.rows).toEqual([{ status: 'loaded' }]);
  });

  it('gives up after the retry budget with a TRANSIENT error no outer layer retries again', async () => {
    const t = target();
    const stream = 'flaky/budget';
    const sink = sinkFor(runnerPool('writer-3'), t, {
      retries: 0,
      faults: {
        beforeCommit: async () => {
          await db.pool.query('SELECT pg_terminate_backend($1)', [
            await backendPid('writer-3', 'idle in transaction'),
          ]);
        },
      },
    });
    const error = (await sink
      .write(fileBatch(stream, 'g.csv', [{ id: '1', v: 'x' }]))
      .catch((e) => e)) as TributaryError;
    expect(error).toMatchObject({ code: 'TRANSIENT', retriable: false, stream });
    const rows = await db.pool.query(`SELECT count(*)::int AS n FROM public."${t.table}"`);
    expect(rows.rows[0].n).toBe(0);
  });
});
