import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { cliEnv, collect, startTributary } from './support/cli.js';
import { BAD_ROWS, cleanRecord, REJECT_HEADER, rejectFile } from './support/rejected.js';
import { pollUntil } from './support/reliability.js';
import { createTestBucket, createTestDatabase, randomName, type TestDatabase } from './support/services.js';
import { listAll } from './support/tickets.js';

/**
 * Issue 17's rejected rows through the built `tributary` binary: `source.onError` skip-row (with
 * kill -9 mid-file), skip-file and `maxRejected`, with `run --json` and `status` counts.
 */

const STREAM = 'exports/orders';

async function setUp(source: string) {
  const [db, s3] = await Promise.all([createTestDatabase(), createTestBucket()]);
  const root = randomName('o');
  const prefix = `${root}/changes/`;
  const put = (name: string, body: string) =>
    s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `${prefix}${name}`, Body: body }));
  const file = join(tmpdir(), `${randomName('tributary')}.yaml`);
  await writeFile(
    file,
    `streams:
  - id: ${STREAM}
    source:
      prefix: ${prefix}
      keyPattern: YYYYMMDD
${source
  .split('\n')
  .map((line) => `      ${line}`)
  .join('\n')}
    target:
      table: exports.orders
      key: [id]
      types: { id: integer, amount: numeric, day: date }
`,
  );
  const env = cliEnv({ databaseUrl: db.url, bucket: s3.bucket });
  const start = (args: string[], extra: Record<string, string> = {}) =>
    startTributary([...args, '--config', file], { ...env, ...extra });
  const run = (args: string[], extra: Record<string, string> = {}) => collect(start(args, extra));
  return { db, s3, prefix, put, run, start, file, env };
}

async function counts(db: TestDatabase) {
  const q = async (sql: string) => (await db.pool.query(sql)).rows[0].n as number;
  return {
    rows: await q('SELECT count(*)::int AS n FROM exports.orders'),
    rejected: await q(`SELECT count(*)::int AS n FROM tributary.rejected_rows WHERE stream = '${STREAM}'`),
  };
}

async function rejectedRows(db: TestDatabase) {
  const result = await db.pool.query(
    `SELECT line::int, column_name AS column, error_code AS code
       FROM tributary.rejected_rows WHERE stream = $1 ORDER BY line`,
    [STREAM],
  );
  return result.rows;
}

describe('tributary source.onError', () => {
  it('skip-row: 9,995 applied and 5 set aside with lines and columns; kill -9 mid-file and re-run: still exactly 9,995 and 5', async () => {
    const { db, s3, prefix, put, run } = await setUp('onError: skip-row\nmaxRejected: 10');
    await put('20260101.csv', rejectFile());

    // Killed mid-file: the 3 malformed rows set aside in the open transaction, the good rows not yet.
    const killed = await run(['run', '--apply'], { TRIBUTARY_FAULT: 'pg-sink:after-reject' });
    expect(killed.signal).toBe('SIGKILL');
    expect(await counts(db)).toEqual({ rows: 0, rejected: 0 });
    // Killed after the merge: rows, rejected rows, load row and checkpoint written, no COMMIT.
    const beforeCommit = await run(['run', '--apply'], { TRIBUTARY_FAULT: 'pg-sink:after-upsert' });
    expect(beforeCommit.signal).toBe('SIGKILL');
    expect(await counts(db)).toEqual({ rows: 0, rejected: 0 });
    // Killed right after COMMIT, before the archive: the next run only archives.
    const committed = await run(['run', '--apply'], { TRIBUTARY_FAULT: 'pg-sink:after-commit' });
    expect(committed.signal).toBe('SIGKILL');
    expect(await counts(db)).toEqual({ rows: 9995, rejected: 5 });

    const result = await run(['run', '--apply', '--json']);
    expect(result.code, result.stderr).toBe(0);
    expect(await counts(db)).toEqual({ rows: 9995, rejected: 5 });
    expect(await rejectedRows(db)).toEqual(
      BAD_ROWS.map((b) => ({ line: b.line, column: b.column, code: b.code })),
    );
    const checkpoint = await db.pool.query('SELECT source FROM tributary.checkpoints WHERE stream = $1', [
      STREAM,
    ]);
    expect(checkpoint.rows[0].source).toBe(`${prefix}20260101.csv`);
    expect(await listAll(s3.client, s3.bucket, prefix)).toEqual([`${prefix}processed/20260101.csv`]);

    // A fresh run of a second such file reports its counts in --json.
    await put('20260102.csv', rejectFile());
    const second = await run(['run', '--apply', '--json']);
    expect(second.code, second.stderr).toBe(0);
    const report = second.json as {
      streams: {
        rowsRejected: number;
        files: { status: string; rowsRead: number; rowsRejected: number; rowsUpserted: number }[];
      }[];
    };
    expect(report.streams[0]).toMatchObject({
      rowsRejected: 5,
      files: [{ status: 'loaded', rowsRead: 10_000, rowsRejected: 5, rowsUpserted: 9995 }],
    });
    expect(await counts(db)).toEqual({ rows: 9995, rejected: 10 });

    const status = await run(['status', '--json']);
    expect(status.code, status.stderr).toBe(0);
    expect((status.json as { streams: unknown[] }).streams[0]).toMatchObject({
      stream: STREAM,
      filesLoaded: 2,
      rowsRejected: 10,
      filesRejected: 0,
      lastError: null,
    });
    const view = await db.pool.query(
      'SELECT rows_rejected::int FROM tributary.v_rejected_rows WHERE stream = $1',
      [STREAM],
    );
    expect(view.rows).toEqual([{ rows_rejected: 10 }]);
  });

  it('skip-file: nothing applied from the bad file, which goes to rejected/; later files applied; replay of the fixed file applies it', async () => {
    const { db, s3, prefix, put, run } = await setUp('onError: skip-file');
    const root = prefix.replace(/changes\/$/, '');
    await put('20260101.csv', rejectFile());
    await put('20260102.csv', `${REJECT_HEADER}\n${cleanRecord(1)}\n${cleanRecord(2)}\n`);

    const result = await run(['run', '--apply', '--json']);
    expect(result.code, result.stderr).toBe(0);
    const report = result.json as {
      streams: { rowsRejected: number; files: { key: string; status: string }[] }[];
    };
    expect(report.streams[0]!.files.map((f) => [f.key, f.status])).toEqual([
      [`${prefix}20260101.csv`, 'rejected'],
      [`${prefix}20260102.csv`, 'loaded'],
    ]);
    expect(report.streams[0]!.rowsRejected).toBe(10_000);
    expect(await counts(db)).toEqual({ rows: 2, rejected: 0 });
    expect(await listAll(s3.client, s3.bucket, root)).toEqual([
      `${prefix}processed/20260102.csv`,
      `${prefix}rejected/20260101.csv`,
    ]);
    const loads = await db.pool.query(
      'SELECT status, rows_rejected::int, error FROM tributary.loads WHERE stream = $1 ORDER BY load_id',
      [STREAM],
    );
    expect(loads.rows[0]).toMatchObject({ status: 'rejected', rows_rejected: 10_000 });
    expect(loads.rows[0].error).toContain(`${prefix}20260101.csv:101`);

    const status = await run(['status', '--json']);
    expect((status.json as { streams: unknown[] }).streams[0]).toMatchObject({
      filesRejected: 1,
      lastError: null,
      pendingFiles: 0,
    });

    // The operator fixes the file in rejected/ and replays from it.
    await s3.client.send(
      new PutObjectCommand({
        Bucket: s3.bucket,
        Key: `${prefix}rejected/20260101.csv`,
        Body: rejectFile(10_000, false),
      }),
    );
    const replay = await run(['replay', '--stream', STREAM, '--from', '20260101', '--apply', '--json']);
    expect(replay.code, replay.stderr).toBe(0);
    expect(await counts(db)).toEqual({ rows: 10_000, rejected: 0 });
  });

  it('above maxRejected: the stream stops as today, naming the file (exit 1, REJECT_LIMIT)', async () => {
    const { db, put, run, prefix } = await setUp("onError: skip-row\nmaxRejected: '0.01%'");
    await put('20260101.csv', rejectFile());
    await put('20260102.csv', `${REJECT_HEADER}\n${cleanRecord(1)}\n`);
    const result = await run(['run', '--apply', '--json']);
    expect(result.code).toBe(1);
    const report = result.json as {
      streams: { error: string | null; files: { key: string; status: string }[] }[];
    };
    expect(report.streams[0]!.error).toContain('REJECT_LIMIT');
    expect(report.streams[0]!.error).toContain(`${prefix}20260101.csv`);
    expect(report.streams[0]!.files.map((f) => f.status)).toEqual(['failed']);
    expect(await counts(db)).toEqual({ rows: 0, rejected: 0 });
    const status = await run(['status', '--json']);
    expect((status.json as { streams: unknown[] }).streams[0]).toMatchObject({
      failingFile: `${prefix}20260101.csv`,
      pendingFiles: 2,
    });
  });

  it('watch mode: the text report has a rejected column and tributary_rows_rejected_total counts the rows set aside', async () => {
    const { put, start } = await setUp('onError: skip-row');
    await put('20260101.csv', rejectFile());
    const { freePort } = await import('@tributary/pg-sink/testing');
    const port = await freePort();
    const child = start(['run', '--apply', '--watch', '--interval', '0.2', '--metrics-port', String(port)]);
    const done = collect(child);
    const scrape = async () => {
      try {
        const res = await fetch(`http://127.0.0.1:${port}/metrics`);
        return res.ok ? await res.text() : '';
      } catch {
        return '';
      }
    };
    await pollUntil('5 rejected rows in the metrics', async () =>
      /tributary_rows_rejected_total\{stream="exports\/orders"\} 5\b/.test(await scrape()),
    );
    child.kill('SIGTERM');
    const result = await done;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/rejected/);
    expect(result.stdout).toMatch(/20260101\.csv.*10000.*9995.*5/);
  });

  it('validate refuses maxRejected without skip-row, by path', async () => {
    const { run } = await setUp("onError: skip-file\nmaxRejected: '1%'");
    const refused = await run(['validate']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/streams\[0\]\.source\.maxRejected: applies to onError: 'skip-row' only/);
  });
});
