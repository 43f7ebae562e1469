import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { cliEnv, collect, runTributary, startTributary } from './support/cli.js';
import { createTestBucket, createTestDatabase, randomName, type TestBucket } from './support/services.js';

/**
 * Issue 17 part 3 through the built `tributary` binary: `target.afterCommit` refreshes a
 * materialized view over the target after each file commits (seed 004's downstream layer).
 */

interface StreamDef {
  id: string;
  prefix: string;
  table: string;
  hook: string;
}

function config(bucketVar: string, streams: StreamDef[]): string {
  return `streams:\n${streams
    .map(
      (s) => `  - id: ${s.id}
    source:
      bucket: \${${bucketVar}}
      prefix: ${s.prefix}
      keyPattern: YYYYMMDD
    target:
      table: ${s.table}
      key: [id]
      types: { id: integer }
      afterCommit:
        sql: ${JSON.stringify(s.hook)}
        minIntervalSeconds: 0
`,
    )
    .join('')}`;
}

async function writeConfig(text: string): Promise<string> {
  const file = join(tmpdir(), `${randomName('after-commit')}.yaml`);
  await writeFile(file, text);
  return file;
}

function putter(s3: TestBucket) {
  return (key: string, body: string) =>
    s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body }));
}

const rowsFrom = (from: number, to: number) =>
  `id,amount\n${Array.from({ length: to - from + 1 }, (_, i) => `${from + i},${i}`).join('\n')}\n`;

interface StatusJson {
  streams: {
    stream: string;
    afterCommit: { hook: string; status: string; error: string | null; durationMs: number | null } | null;
  }[];
}

describe('tributary target.afterCommit', () => {
  it('refreshes a matview after each run: its count equals the table count', async () => {
    const [db, s3] = await Promise.all([createTestDatabase(), createTestBucket()]);
    const put = putter(s3);
    const root = randomName('ac');
    await db.pool.query(`CREATE SCHEMA mart; CREATE SCHEMA reporting;
      CREATE TABLE mart.trips (id integer PRIMARY KEY, amount text);
      CREATE MATERIALIZED VIEW reporting.trips_mv AS SELECT id, amount FROM mart.trips;
      CREATE UNIQUE INDEX ON reporting.trips_mv (id);`);
    const file = await writeConfig(
      config('AC_BUCKET', [
        {
          id: 'mart/trips',
          prefix: `${root}/trips/`,
          table: 'mart.trips',
          hook: 'REFRESH MATERIALIZED VIEW CONCURRENTLY reporting.trips_mv',
        },
      ]),
    );
    const env = cliEnv({ databaseUrl: db.url, bucket: 'unused', extra: { AC_BUCKET: s3.bucket } });
    const counts = async () =>
      (
        await db.pool.query<{ t: number; mv: number }>(
          'SELECT (SELECT count(*) FROM mart.trips)::int AS t, (SELECT count(*) FROM reporting.trips_mv)::int AS mv',
        )
      ).rows[0]!;

    await put(`${root}/trips/20240101.csv`, rowsFrom(1, 10));
    const first = await runTributary(['run', '--config', file, '--apply', '--json'], env);
    expect(first.code, first.stderr).toBe(0);
    expect(await counts()).toEqual({ t: 10, mv: 10 });

    await put(`${root}/trips/20240102.csv`, rowsFrom(8, 25));
    await put(`${root}/trips/20240103.csv`, rowsFrom(30, 31));
    const second = await runTributary(['run', '--config', file, '--apply', '--json'], env);
    expect(second.code, second.stderr).toBe(0);
    expect(await counts()).toEqual({ t: 27, mv: 27 });

    const runs = await db.pool.query<{ ok: boolean; stream: string; target: string; sql: string }>(
      'SELECT ok, stream, target, sql FROM tributary.after_commit ORDER BY id',
    );
    expect(runs.rows.length).toBeGreaterThanOrEqual(2);
    for (const run of runs.rows) {
      expect(run).toEqual({
        ok: true,
        stream: 'mart/trips',
        target: '"mart"."trips"',
        sql: 'REFRESH MATERIALIZED VIEW CONCURRENTLY reporting.trips_mv',
      });
    }
    const status = await runTributary(['status', '--config', file, '--json'], env);
    expect(status.code, status.stderr).toBe(0);
    expect((status.json as StatusJson).streams[0]!.afterCommit).toMatchObject({ status: 'ok', error: null });
  });

  it('two runners on different streams never run the shared refresh at the same time', async () => {
    const [db, s3] = await Promise.all([createTestDatabase(), createTestBucket()]);
    const put = putter(s3);
    const root = randomName('ac');
    await db.pool.query(`CREATE SCHEMA mart; CREATE SCHEMA probe;
      CREATE TABLE mart.a (id integer PRIMARY KEY, amount text);
      CREATE TABLE mart.b (id integer PRIMARY KEY, amount text);
      CREATE MATERIALIZED VIEW probe.all_mv AS SELECT id FROM mart.a UNION ALL SELECT id FROM mart.b;
      CREATE TABLE probe.hook_log (pid integer, alone boolean, started timestamptz, finished timestamptz);`);
    // The probe: a transaction-scoped lock no one else takes must be free at the start (so no
    // other run is inside this one), and each run spans a window (pg_sleep) in which a
    // concurrent run would overlap: its start/end interval is logged.
    const hook = `DO $$ DECLARE t0 timestamptz := clock_timestamp(); alone boolean := pg_try_advisory_xact_lock(4242); BEGIN PERFORM pg_sleep(0.2); REFRESH MATERIALIZED VIEW probe.all_mv; INSERT INTO probe.hook_log VALUES (pg_backend_pid(), alone, t0, clock_timestamp()); END $$`;
    const file = await writeConfig(
      config('AC_BUCKET', [
        { id: 'mart/a', prefix: `${root}/a/`, table: 'mart.a', hook },
        { id: 'mart/b', prefix: `${root}/b/`, table: 'mart.b', hook },
      ]),
    );
    for (const [stream, base] of [
      ['a', 0],
      ['b', 1000],
    ] as const) {
      for (let day = 1; day <= 3; day++) {
        await put(`${root}/${stream}/2024010${day}.csv`, rowsFrom(base + day * 10, base + day * 10 + 4));
      }
    }
    const env = cliEnv({ databaseUrl: db.url, bucket: 'unused', extra: { AC_BUCKET: s3.bucket } });
    const runners = ['mart/a', 'mart/b'].map((stream) =>
      collect(startTributary(['run', '--config', file, '--apply', '--stream', stream, '--json'], env)),
    );
    for (const result of await Promise.all(runners)) expect(result.code, result.stderr).toBe(0);

    const log = (
      await db.pool.query<{ pid: number; alone: boolean; started: Date; finished: Date }>(
        'SELECT pid, alone, started, finished FROM probe.hook_log ORDER BY started',
      )
    ).rows;
    const recorded = await db.pool.query<{ stream: string; ok: boolean }>(
      'SELECT DISTINCT stream, ok FROM tributary.after_commit ORDER BY stream',
    );
    // Both runners refreshed (one process each), every run succeeded…
    expect(recorded.rows).toEqual([
      { stream: 'mart/a', ok: true },
      { stream: 'mart/b', ok: true },
    ]);
    expect(new Set(log.map((l) => l.pid)).size).toBeGreaterThanOrEqual(2);
    // …and none overlapped another.
    expect(log.every((l) => l.alone)).toBe(true);
    for (let i = 1; i < log.length; i++) {
      expect(log[i]!.started.getTime()).toBeGreaterThanOrEqual(log[i - 1]!.finished.getTime());
    }
    // The last refresh ran after every commit of both runners.
    const counts = await db.pool.query<{ t: number; mv: number }>(
      'SELECT ((SELECT count(*) FROM mart.a) + (SELECT count(*) FROM mart.b))::int AS t, (SELECT count(*) FROM probe.all_mv)::int AS mv',
    );
    expect(counts.rows[0]).toEqual({ t: 30, mv: 30 });
  });

  it('a failing refresh leaves the data committed, shows in status, and runs again on the next commit', async () => {
    const [db, s3] = await Promise.all([createTestDatabase(), createTestBucket()]);
    const put = putter(s3);
    const root = randomName('ac');
    await db.pool.query('CREATE SCHEMA mart; CREATE SCHEMA reporting');
    const file = await writeConfig(
      config('AC_BUCKET', [
        {
          id: 'mart/trips',
          prefix: `${root}/trips/`,
          table: 'mart.trips',
          // The matview does not exist yet: the refresh fails.
          hook: 'REFRESH MATERIALIZED VIEW reporting.trips_mv',
        },
      ]),
    );
    const env = cliEnv({ databaseUrl: db.url, bucket: 'unused', extra: { AC_BUCKET: s3.bucket } });

    await put(`${root}/trips/20240101.csv`, rowsFrom(1, 5));
    const run = await runTributary(['run', '--config', file, '--apply', '--json'], env);
    expect(run.code, run.stderr).toBe(0);
    // Not a failed run (the data is committed), but the operator hears of it at its end.
    expect(run.stderr).toMatch(/after-commit hook failed after .*20240101\.csv.*trips_mv/);
    expect((await db.pool.query('SELECT count(*)::int AS n FROM mart.trips')).rows[0]).toEqual({ n: 5 });
    const loads = await db.pool.query(`SELECT status FROM tributary.loads WHERE stream = 'mart/trips'`);
    expect(loads.rows.map((r) => r.status)).toEqual(['archived']);

    const failed = await runTributary(['status', '--config', file, '--json'], env);
    expect(failed.code, failed.stderr).toBe(0);
    const failedRun = (failed.json as StatusJson).streams[0]!.afterCommit;
    expect(failedRun).toMatchObject({
      hook: 'REFRESH MATERIALIZED VIEW reporting.trips_mv',
      status: 'failed',
    });
    expect(failedRun!.error).toMatch(/trips_mv/);
    const text = await runTributary(['status', '--config', file], env);
    expect(text.stdout).toMatch(/after commit/);
    expect(text.stdout).toMatch(/failed/);

    // Fixed downstream: the next commit runs the hook again.
    await db.pool.query(
      'CREATE MATERIALIZED VIEW reporting.trips_mv AS SELECT id FROM mart.trips WITH NO DATA',
    );
    await put(`${root}/trips/20240102.csv`, rowsFrom(6, 7));
    const again = await runTributary(['run', '--config', file, '--apply', '--json'], env);
    expect(again.code, again.stderr).toBe(0);
    expect((await db.pool.query('SELECT count(*)::int AS n FROM reporting.trips_mv')).rows[0]).toEqual({
      n: 7,
    });
    const fixed = await runTributary(['status', '--config', file, '--json'], env);
    expect((fixed.json as StatusJson).streams[0]!.afterCommit).toMatchObject({ status: 'ok', error: null });
  });
});
