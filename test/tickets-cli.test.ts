import { PutObjectCommand } from '@aws-sdk/client-s3';
import { generateBucket } from '@tributary/example-tickets';
import { describe, expect, it } from 'vitest';
import { collect, runCli, startCli } from './support/cli.js';
import { world } from './support/reliability.js';
import { diffAgainstOracle, listAll } from './support/tickets.js';

interface RunJson {
  dryRun: boolean;
  streams: {
    stream: string;
    watermark: string | null;
    files: {
      key: string;
      kind: string;
      status: string;
      rowsRead: number;
      rowsFiltered: number;
      rowsUpserted: number;
    }[];
    error: string | null;
  }[];
}

describe('tickets-pipeline (real binary, s3rver, PostgreSQL)', () => {
  it('dry run plans in time order and changes nothing anywhere', async () => {
    const w = await world();
    const before = await listAll(w.client, w.bucket, '');
    const result = await runCli(['run', '--dataset', 'inc,crq', '--json'], w.env);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const json = result.json as RunJson;
    expect(json.dryRun).toBe(true);
    const inc = json.streams.find((s) => s.stream === 'tickets/inc')!;
    expect(inc.files.map((f) => [f.key.split('/').pop(), f.kind, f.status])).toEqual([
      ['2026-06-22T15-50-39.csv', 'baseline', 'planned'],
      ['2026-06-22T15-53-04.csv', 'delta', 'planned'],
      ['2026-06-22T17-10-41.csv', 'delta', 'planned'],
      ['2026-06-22T17-15-41.csv', 'delta', 'planned'],
    ]);
    expect(json.streams.find((s) => s.stream === 'tickets/crq')!.files).toHaveLength(5);
    expect(await listAll(w.client, w.bucket, '')).toEqual(before);
    const schemas = await w.db.pool.query(
      `SELECT nspname FROM pg_namespace WHERE nspname IN ('tributary', 'tickets')`,
    );
    expect(schemas.rows).toEqual([]);
  });

  it('ends once its command has finished, even with a connection a client library left open', async () => {
    // A ref'd timer loaded into the binary stands in for the socket kafkajs can leave behind
    // (a group coordinator it dropped from its pool): the process must still end, with its code.
    const w = await world();
    const holdOpen = '--import=data:text/javascript,setInterval(()=>{},1e9)';
    const env = { ...w.env, NODE_OPTIONS: `${w.env['NODE_OPTIONS'] ?? ''} ${holdOpen}`.trim() };
    const result = await runCli(['run', '--dataset', 'inc', '--apply', '--json'], env);
    expect(result.code, result.stderr).toBe(0);
    expect((result.json as RunJson).streams[0]!.error).toBeNull();
    expect(await diffAgainstOracle(w.db.pool, 'inc', w.files)).toEqual([]);
    // A failed run keeps its exit code too.
    const failed = await runCli(['run', '--apply'], {
      ...env,
      DATABASE_URL: 'postgres://postgres@127.0.0.1:1/x',
    });
    expect(failed.code).toBe(1);
  });

  it('apply equals the fold of all files, archives them, and a re-run is a no-op', async () => {
    const w = await world();
    const result = await runCli(['run', '--dataset', 'inc,crq', '--apply', '--json'], w.env);
    expect(result.code, result.stderr).toBe(0);
    const json = result.json as RunJson;
    const inc = json.streams.find((s) => s.stream === 'tickets/inc')!;
    expect(inc.error).toBeNull();
    expect(inc.watermark).toBe('automations/inc/changes/2026-06-22T17-15-41.csv');
    expect(inc.files.map((f) => f.status)).toEqual(['loaded', 'loaded', 'loaded', 'loaded']);
    expect(inc.files[0]!.kind).toBe('baseline');
    expect(inc.files[0]!.rowsFiltered).toBeGreaterThan(0); // sentinel + alarms
    expect(inc.files[0]!.rowsRead).toBe(inc.files[0]!.rowsFiltered + inc.files[0]!.rowsUpserted);
    expect(await diffAgainstOracle(w.db.pool, 'inc', w.files)).toEqual([]);
    expect(await diffAgainstOracle(w.db.pool, 'crq', w.files)).toEqual([]);

    // Archive: changes/ is empty, processed/ has every file under its full relative name.
    expect(await listAll(w.client, w.bucket, 'automations/inc/changes/')).toEqual([]);
    expect(await listAll(w.client, w.bucket, 'automations/inc/processed/')).toEqual([
      'automations/inc/processed/2026-06-22T15-50-39.csv',
      'automations/inc/processed/2026-06-22T15-53-04.csv',
      'automations/inc/processed/2026-06-22T17-10-41.csv',
      'automations/inc/processed/2026-06-22T17-15-41.csv',
    ]);
    const loads = await w.db.pool.query(
      `SELECT source, kind, status FROM tributary.loads WHERE stream = 'tickets/inc' ORDER BY source`,
    );
    expect(loads.rows.map((r) => [r.kind, r.status])).toEqual([
      ['baseline', 'archived'],
      ['delta', 'archived'],
      ['delta', 'archived'],
      ['delta', 'archived'],
    ]);

    const runs = await w.db.pool.query(
      // Datasets run concurrently: their runs start in either order.
      `SELECT streams, status, rows_read::int AS rows_read FROM tributary.runs ORDER BY streams DESC`,
    );
    expect(runs.rows).toEqual([
      {
        streams: ['tickets/inc'],
        status: 'succeeded',
        rows_read: inc.files.reduce((n, f) => n + f.rowsRead, 0),
      },
      { streams: ['tickets/crq'], status: 'succeeded', rows_read: expect.any(Number) },
    ]);

    const again = await runCli(['run', '--dataset', 'inc,crq', '--apply', '--json'], w.env);
    expect(again.code).toBe(0);
    expect((again.json as RunJson).streams.map((s) => s.files.length)).toEqual([0, 0]);
    expect(await diffAgainstOracle(w.db.pool, 'inc', w.files)).toEqual([]);

    const status = await runCli(['status', '--json'], w.env);
    expect(status.code).toBe(0);
    const inc2 = (status.json as { streams: Record<string, unknown>[] }).streams[0]!;
    expect(inc2).toMatchObject({
      stream: 'tickets/inc',
      watermark: 'automations/inc/changes/2026-06-22T17-15-41.csv',
      filesLoaded: 4,
      pendingFiles: 0,
      lateFiles: 0,
      lastError: null,
    });
  });

  it('a bad file stops its dataset at that file; the other dataset completes (exit 1)', async () => {
    const w = await world();
    // A crq delta with a renamed column: schema drift.
    await w.client.send(
      new PutObjectCommand({
        Bucket: w.bucket,
        Key: 'automations/crq/changes/2026-06-22T17-10-41.csv',
        Body: 'ticket_id,status_renamed\nCRQ1,open\n',
      }),
    );
    const result = await runCli(['run', '--dataset', 'inc,crq', '--apply', '--json'], w.env);
    expect(result.code).toBe(1);
    const json = result.json as RunJson;
    const crq = json.streams.find((s) => s.stream === 'tickets/crq')!;
    expect(crq.error).toMatch(/2026-06-22T17-10-41\.csv/);
    expect(crq.files.map((f) => [f.key.split('/').pop(), f.status])).toEqual([
      ['2026-06-22T15-50-39.csv', 'loaded'],
      ['2026-06-22T15-53-04.csv', 'loaded'],
      ['2026-06-22T17-10-41.csv', 'failed'],
    ]);
    expect(result.stderr).toMatch(/crq/);
    expect(result.stderr).toMatch(/2026-06-22T17-10-41\.csv/);
    // Later crq files were not applied and the bad file stays where it was.
    expect(await listAll(w.client, w.bucket, 'automations/crq/changes/')).toEqual([
      'automations/crq/changes/2026-06-22T17-10-41.csv',
      'automations/crq/changes/2026-06-22T17-15-41.csv',
      'automations/crq/changes/2026-06-22T18-02-10.csv',
    ]);
    expect(await diffAgainstOracle(w.db.pool, 'inc', w.files)).toEqual([]);
    const failures = await w.db.pool.query(`SELECT stream, source FROM tributary.v_recent_failures`);
    expect(failures.rows).toEqual([
      { stream: 'tickets/crq', source: 'automations/crq/changes/2026-06-22T17-10-41.csv' },
    ]);
  });

  it('late files: error by default, skip moves to late/, apply applies without moving the watermark back', async () => {
    const w = await world();
    expect((await runCli(['run', '--apply'], w.env)).code).toBe(0);
    const late = 'automations/inc/changes/2026-06-22T16-00-00.csv';
    const header = (await import('@tributary/example-tickets')).TICKET_COLUMNS.join(',');
    const body = `${header}\nINC99999999,noc,FTTH,open,Open,OPEN,,,,,,,,,Late Region,,,,,,,,,false,false,false,true,,,,2026-06-22 16:00:00,2026-06-22 16:00:00\n`;
    await w.client.send(new PutObjectCommand({ Bucket: w.bucket, Key: late, Body: body }));

    const stopped = await runCli(['run', '--apply', '--json'], w.env);
    expect(stopped.code).toBe(1);
    const s1 = (stopped.json as RunJson).streams[0]!;
    expect(s1.error).toMatch(/late/i);
    expect(s1.files).toEqual([expect.objectContaining({ key: late, status: 'late' })]);

    const skipped = await runCli(['run', '--apply', '--late-files', 'skip', '--json'], w.env);
    expect(skipped.code, skipped.stderr).toBe(0);
    expect((skipped.json as RunJson).streams[0]!.files).toEqual([
      expect.objectContaining({ key: late, status: 'skipped' }),
    ]);
    expect(await listAll(w.client, w.bucket, 'automations/inc/late/')).toEqual([
      'automations/inc/late/2026-06-22T16-00-00.csv',
    ]);
    const row = await w.db.pool.query(`SELECT 1 FROM tickets.inc WHERE ticket_id = 'INC99999999'`);
    expect(row.rowCount).toBe(0);

    const late2 = 'automations/inc/changes/2026-06-22T16-30-00.csv';
    await w.client.send(new PutObjectCommand({ Bucket: w.bucket, Key: late2, Body: body }));
    const applied = await runCli(['run', '--apply', '--late-files', 'apply', '--json'], w.env);
    expect(applied.code, applied.stderr).toBe(0);
    const s3 = (applied.json as RunJson).streams[0]!;
    expect(s3.files).toEqual([expect.objectContaining({ key: late2, status: 'loaded' })]);
    expect(s3.watermark).toBe('automations/inc/changes/2026-06-22T17-15-41.csv');
    const region = await w.db.pool.query(`SELECT region FROM tickets.inc WHERE ticket_id = 'INC99999999'`);
    expect(region.rows).toEqual([{ region: 'LATE REGION' }]);
  });

  it('exit codes: 2 for usage errors, 3 when the stream is locked', async () => {
    const w = await world();
    const unknownFlag = await runCli(['run', '--bogus'], w.env);
    expect(unknownFlag.code).toBe(2);
    expect(unknownFlag.stderr).toMatch(/--bogus/);
    const badValue = await runCli(['run', '--dataset', 'nope'], w.env);
    expect(badValue.code).toBe(2);
    expect(badValue.stderr).toMatch(/nope/);
    const badPolicy = await runCli(['run', '--late-files', 'sometimes'], w.env);
    expect(badPolicy.code).toBe(2);

    // Hold the stream's lock the way a running pipeline does, then start a second runner.
    const { ticketSink } = await import('@tributary/example-tickets');
    const holder = ticketSink(w.db.pool, ['inc']);
    await holder.checkpoint('tickets/inc');
    try {
      const locked = await runCli(['run', '--apply', '--json'], w.env);
      expect(locked.code).toBe(3);
      expect(locked.stderr).toMatch(/locked/);
    } finally {
      await holder.close();
    }
  });

  it('never prints the database password or AWS secret, even on connection errors', async () => {
    const w = await world();
    const env = { ...w.env, DATABASE_URL: 'postgres://app:Sup3rSecretPw@127.0.0.1:1/nowhere' };
    const result = await runCli(['run', '--apply', '--json'], env);
    expect(result.code).not.toBe(0);
    const all = result.stdout + result.stderr;
    expect(all).not.toContain('Sup3rSecretPw');
    expect(all).not.toContain(
      String(w.env.AWS_SECRET_ACCESS_KEY) === 'S3RVER'
        ? 'never-matches'
        : String(w.env.AWS_SECRET_ACCESS_KEY),
    );
  });

  it('kill -9 in the middle of the baseline, then a normal run: exact state', async () => {
    const w = await world({ files: generateBucket({ scale: 0.5 }) });
    const child = startCli(['run', '--apply'], { ...w.env, TRIBUTARY_FAULT: 'pg-sink:after-upsert' });
    const killed = await collect(child);
    expect(killed.signal).toBe('SIGKILL');
    const none = await w.db.pool.query(
      `SELECT count(*)::int AS n FROM tributary.loads WHERE status IN ('loaded', 'archived')`,
    );
    expect(none.rows[0].n).toBe(0);
    const result = await runCli(['run', '--apply', '--json'], w.env);
    expect(result.code, result.stderr).toBe(0);
    expect(await diffAgainstOracle(w.db.pool, 'inc', w.files)).toEqual([]);
  });

  it('replay re-applies archived files from a key onward, idempotently', async () => {
    const w = await world();
    expect((await runCli(['run', '--apply'], w.env)).code).toBe(0);
    const before = await w.db.pool.query(
      `SELECT count(*)::int AS n, max(xmin::text::bigint) AS x FROM tickets.inc`,
    );
    const dry = await runCli(
      ['replay', '--dataset', 'inc', '--from', '2026-06-22T17-10-41', '--json'],
      w.env,
    );
    expect(dry.code, dry.stderr).toBe(0);
    expect((dry.json as RunJson).streams[0]!.files.map((f) => f.key.split('/').pop())).toEqual([
      '2026-06-22T17-10-41.csv',
      '2026-06-22T17-15-41.csv',
    ]);
    const replayed = await runCli(
      ['replay', '--dataset', 'inc', '--from', '2026-06-22T17-10-41', '--apply', '--json'],
      w.env,
    );
    expect(replayed.code, replayed.stderr).toBe(0);
    expect((replayed.json as RunJson).streams[0]!.files.map((f) => f.status)).toEqual(['loaded', 'loaded']);
    // Same rows, none rewritten (the upsert skips unchanged rows), files stay in processed/.
    const after = await w.db.pool.query(
      `SELECT count(*)::int AS n, max(xmin::text::bigint) AS x FROM tickets.inc`,
    );
    expect(after.rows[0]).toEqual(before.rows[0]);
    expect(await diffAgainstOracle(w.db.pool, 'inc', w.files)).toEqual([]);
    expect(await listAll(w.client, w.bucket, 'automations/inc/processed/')).toHaveLength(4);
  });

  it('watch mode applies new files as they arrive, serves metrics and stops cleanly on SIGTERM', async () => {
    const w = await world();
    const { freePort } = await import('@tributary/pg-sink/testing');
    const port = await freePort();
    const child = startCli(
      ['run', '--apply', '--watch', '--interval', '0.2', '--metrics-port', String(port), '--json'],
      w.env,
    );
    const done = collect(child);
    const scrape = async (path: string) => {
      try {
        const res = await fetch(`http://127.0.0.1:${port}${path}`);
        return res.ok ? await res.text() : '';
      } catch {
        return '';
      }
    };
    const until = async (check: () => Promise<boolean>) => {
      for (let i = 0; i < 600; i++) {
        if (await check()) return;
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      throw new Error('condition not reached');
    };
    await until(async () => (await scrape('/healthz')) === 'ok\n');
    await until(async () =>
      /tributary_files_applied_total\{stream="tickets\/inc"\} 4/.test(await scrape('/metrics')),
    );
    // A new delta arrives while watching.
    const header = (await import('@tributary/example-tickets')).TICKET_COLUMNS.join(',');
    await w.client.send(
      new PutObjectCommand({
        Bucket: w.bucket,
        Key: 'automations/inc/changes/2026-06-22T18-00-00.csv',
        Body: `${header}\nINC77777777,noc,FTTH,open,Open,OPEN,,,,,,,,,Watched,,,,,,,,,false,false,false,true,,,,2026-06-22 18:00:00,2026-06-22 18:00:00\n`,
      }),
    );
    await until(async () =>
      /tributary_files_applied_total\{stream="tickets\/inc"\} 5/.test(await scrape('/metrics')),
    );
    expect(await scrape('/metrics')).toMatch(/tributary_pending_files\{stream="tickets\/inc"\} 0/);
    child.kill('SIGTERM');
    const result = await done;
    expect(result.code, result.stderr).toBe(0);
    const row = await w.db.pool.query(`SELECT region FROM tickets.inc WHERE ticket_id = 'INC77777777'`);
    expect(row.rows).toEqual([{ region: 'WATCHED' }]);
  });
});
