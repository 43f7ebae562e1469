import { readFile } from 'node:fs/promises';
import { changeFiles, csvChunks } from '@tributary/example-tickets';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { type CliResult, collect, runCli, startCli } from '../support/cli.js';
import { exactProblems, pollUntil, putObject, type World, world } from '../support/reliability.js';
import { randomName } from '../support/services.js';

/**
 * Concurrency and security (issue 7): several runners on one stream (one applies, the others
 * exit 3; exact result), secrets never in any output or stored error, least-privilege roles.
 */

/** Only the inc baseline in changes/ at first; the deltas are uploaded by `addDeltas`. */
async function baselineOnly(): Promise<World> {
  const w = await world();
  const { DeleteObjectCommand } = await import('@aws-sdk/client-s3');
  for (const d of changeFiles(w.files, 'inc').slice(1))
    await w.client.send(new DeleteObjectCommand({ Bucket: w.bucket, Key: d.key }));
  return w;
}

async function addDeltas(w: World): Promise<void> {
  for (const d of changeFiles(w.files, 'inc').slice(1)) await putObject(w, d.key, [...csvChunks(d)].join(''));
}

describe.concurrent('concurrency and security', () => {
  describe('several runners on one stream', () => {
    it.each([2, 3])('%i runners started together: one applies, the others exit 3; exact', async (n) => {
      const w = await baselineOnly();
      expect((await runCli(['run', '--apply'], w.env)).code).toBe(0);
      await addDeltas(w);
      // Hold SHARE on the target so the winner stays inside its first transaction (holding the
      // stream's advisory lock) while the others try: the outcome does not depend on timing.
      const holder = new pg.Client({ connectionString: w.db.url });
      await holder.connect();
      await holder.query('BEGIN; LOCK TABLE tickets.inc IN SHARE MODE');
      const runs: Promise<CliResult>[] = [];
      const exited: CliResult[] = [];
      try {
        for (let i = 0; i < n; i++) {
          const run = collect(startCli(['run', '--apply', '--json'], w.env));
          runs.push(run);
          void run.then((r) => exited.push(r));
        }
        await pollUntil(`${n - 1} runners exited`, () => exited.length >= n - 1, { tries: 1200 });
        // The winner (holding the stream's advisory lock) reaches its upsert and waits on ours.
        const waiters = async () =>
          (
            await w.db.pool.query<{ n: number }>(
              `SELECT count(*)::int AS n FROM pg_stat_activity
                WHERE application_name = 'tickets-pipeline' AND wait_event_type = 'Lock' AND datname = current_database()`,
            )
          ).rows[0]!.n;
        await pollUntil('the winner waiting on the table lock', async () => (await waiters()) >= 1);
        expect(await waiters()).toBe(1);
      } finally {
        await holder.query('ROLLBACK');
        await holder.end();
      }
      const results = await Promise.all(runs);
      const codes = results.map((r) => r.code).sort();
      expect(codes).toEqual([0, ...Array(n - 1).fill(3)]);
      for (const loser of results.filter((r) => r.code === 3))
        expect(loser.stderr).toMatch(/stream "tickets\/inc" is locked by pid \d+.*one writer per stream/);
      expect(await exactProblems(w, ['inc'])).toEqual([]);
    });
  });

  describe('secrets never reach logs, output or stored errors', () => {
    const password = 'Pw-7f3a-never-print-me';
    const awsSecret = 'aws-secret-9c1e-never-print-me';
    const awsKeyId = 'AKIAZZZZ7777QQQQ1234';
    const role = randomName('leaky').toLowerCase();
    let admin: pg.Client | undefined;

    afterAll(async () => {
      await admin?.query(`DROP ROLE IF EXISTS "${role}"`).catch(() => undefined);
      await admin?.end();
    });

    function assertClean(result: CliResult, label: string): void {
      const all = result.stdout + result.stderr;
      for (const secret of [password, awsSecret, awsKeyId])
        expect(all.includes(secret), `${label} printed a secret: ${all.slice(0, 500)}`).toBe(false);
    }

    it('password in DATABASE_URL, AWS keys, forced connection errors: never printed or stored', async () => {
      const w = await world();
      admin = new pg.Client({ connectionString: w.db.url });
      await admin.connect();
      await admin.query(`CREATE ROLE "${role}" LOGIN SUPERUSER PASSWORD '${password}'`);
      const url = new URL(w.db.url);
      url.username = role;
      url.password = password;
      const withPassword = { ...w.env, DATABASE_URL: url.toString(), LOG_LEVEL: 'debug' };

      const cases: [string, string[], NodeJS.ProcessEnv, number][] = [];
      // A bad dataset file first, so a failure with a stored error exists.
      await putObject(w, 'automations/crq/changes/2026-06-22T17-12-00.csv', 'ticket_id,nope\nCRQ1,x\n');
      cases.push([
        'successful inc + failing crq run (debug logs)',
        ['run', '--dataset', 'inc,crq', '--apply'],
        withPassword,
        1,
      ]);
      cases.push(['status', ['status', '--json'], withPassword, 0]);
      const unreachable = new URL(url);
      unreachable.port = '1';
      cases.push([
        'database unreachable',
        ['run', '--apply'],
        { ...withPassword, DATABASE_URL: unreachable.toString() },
        1,
      ]);
      const noDb = new URL(url);
      noDb.pathname = '/no_such_database';
      cases.push([
        'database missing',
        ['run', '--apply', '--json'],
        { ...withPassword, DATABASE_URL: noDb.toString() },
        1,
      ]);
      cases.push([
        'S3 rejects the AWS keys',
        ['run', '--apply', '--json'],
        { ...withPassword, AWS_ACCESS_KEY_ID: awsKeyId, AWS_SECRET_ACCESS_KEY: awsSecret },
        1,
      ]);
      cases.push([
        'S3 unreachable',
        ['run', '--dataset', 'crq', '--apply'],
        {
          ...withPassword,
          S3_ENDPOINT: 'http://127.0.0.1:1',
          AWS_ACCESS_KEY_ID: awsKeyId,
          AWS_SECRET_ACCESS_KEY: awsSecret,
        },
        1,
      ]);
      // The first case alone (it leaves a stored error), the others at once: the two S3 cases
      // take the stream locks of different datasets, the database cases never get one.
      const [first, ...rest] = cases;
      const outcomes: [(typeof cases)[number], CliResult][] = [[first!, await runCli(first![1], first![2])]];
      outcomes.push(
        ...(await Promise.all(rest.map(async (c) => [c, await runCli(c[1], c[2])] as [typeof c, CliResult]))),
      );
      for (const [[label, , , code], result] of outcomes) {
        expect(result.code, `${label}: ${result.stderr.slice(0, 500)}`).toBe(code);
        assertClean(result, label);
      }
      const stored = await w.db.pool.query<{ text: string }>(
        `SELECT coalesce(error, '') AS text FROM tributary.loads UNION ALL SELECT coalesce(error, '') FROM tributary.runs`,
      );
      expect(stored.rows.some((r) => r.text.length > 0)).toBe(true);
      for (const { text } of stored.rows)
        for (const secret of [password, awsSecret, awsKeyId]) expect(text).not.toContain(secret);
    });
  });

  describe('least privilege (docs/roles.sql with the tickets schema)', () => {
    const suffix = randomName('lp').toLowerCase();
    const roles = { owner: `owner_${suffix}`, writer: `writer_${suffix}`, ro: `ro_${suffix}` };
    let cleanup: pg.Client | undefined;

    afterAll(async () => {
      if (!cleanup) return;
      for (const r of Object.values(roles))
        await cleanup.query(`DROP OWNED BY "${r}" CASCADE`).catch(() => undefined);
      for (const r of Object.values(roles))
        await cleanup.query(`DROP ROLE IF EXISTS "${r}"`).catch(() => undefined);
      await cleanup.end();
    });

    it('the writer applies but cannot create or drop; the read-only role reads the views', async () => {
      const w = await baselineOnly();
      cleanup = new pg.Client({ connectionString: w.db.url });
      await cleanup.connect();
      const script = (await readFile(new URL('../../docs/roles.sql', import.meta.url), 'utf8'))
        .replaceAll('tributary_owner', roles.owner)
        .replaceAll('tributary_writer', roles.writer)
        .replaceAll('tributary_ro', roles.ro)
        .replaceAll('bronze', 'tickets');
      await cleanup.query(script);
      // Every connection of the binary assumes the role (PGOPTIONS is read by node-postgres).
      const as = (r: string) => ({ ...w.env, PGOPTIONS: `-c role=${r}` });

      // The owner migrates and creates tickets.inc with the baseline.
      const owner = await runCli(['run', '--apply'], as(roles.owner));
      expect(owner.code, owner.stderr).toBe(0);
      await addDeltas(w);
      // The writer applies the deltas…
      const writer = await runCli(['run', '--apply', '--json'], as(roles.writer));
      expect(writer.code, writer.stderr).toBe(0);
      expect(await exactProblems(w, ['inc'])).toEqual([]);
      // …but cannot create a missing target (crq) nor create or drop anything by hand.
      const crq = await runCli(['run', '--dataset', 'crq', '--apply'], as(roles.writer));
      expect(crq.code).toBe(1);
      expect(crq.stderr).toMatch(/dataset crq: .*permission denied/);
      const writerDb = new pg.Client({ connectionString: w.db.url, options: `-c role=${roles.writer}` });
      await writerDb.connect();
      try {
        await expect(writerDb.query('CREATE TABLE tickets.nope (id int)')).rejects.toMatchObject({
          code: '42501',
        });
        await expect(writerDb.query('DROP TABLE tickets.inc')).rejects.toMatchObject({ code: '42501' });
        await expect(writerDb.query('DROP TABLE tributary.loads')).rejects.toMatchObject({ code: '42501' });
        await expect(writerDb.query('CREATE SCHEMA nope')).rejects.toMatchObject({ code: '42501' });
      } finally {
        await writerDb.end();
      }
      const ro = new pg.Client({ connectionString: w.db.url, options: `-c role=${roles.ro}` });
      await ro.connect();
      try {
        const fresh = await ro.query(`SELECT stream FROM tributary.v_stream_freshness ORDER BY stream`);
        expect(fresh.rows.map((r) => r.stream)).toContain('tickets/inc');
        expect(
          (await ro.query('SELECT count(*)::int AS n FROM tributary.v_watermark_lag')).rows[0].n,
        ).toBeGreaterThan(0);
        // The crq failure happened before any file (creating its table): it is a failed run.
        expect((await ro.query('SELECT count(*)::int AS n FROM tributary.v_recent_failures')).rows[0].n).toBe(
          0,
        );
        const runs = await ro.query(
          `SELECT status, error FROM tributary.runs WHERE 'tickets/crq' = ANY(streams)`,
        );
        expect(runs.rows).toEqual([{ status: 'failed', error: expect.stringMatching(/permission denied/) }]);
        expect((await ro.query('SELECT count(*)::int AS n FROM tickets.inc')).rows[0].n).toBeGreaterThan(0);
        await expect(ro.query('DELETE FROM tickets.inc')).rejects.toMatchObject({ code: '42501' });
        await expect(ro.query(`UPDATE tributary.checkpoints SET source = 'x'`)).rejects.toMatchObject({
          code: '42501',
        });
      } finally {
        await ro.end();
      }
      // The read-only role cannot run the pipeline.
      const roRun = await runCli(['run', '--apply'], as(roles.ro));
      expect(roRun.code).toBe(1);
    });
  });
});
