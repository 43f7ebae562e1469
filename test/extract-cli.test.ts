import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  cliEnv,
  freePort,
  health,
  metric,
  runTributary,
  startTributary,
  whileWatching,
} from './support/cli.js';
import { pollUntil, sourceClockPast } from './support/reliability.js';
import {
  createReadOnlyRole,
  createTestBucket,
  createTestDatabase,
  randomName,
  type TestDatabase,
} from './support/services.js';
import { listAll } from './support/tickets.js';

/**
 * Seed 001 end to end through the built `tributary` binary: a source database → extract stream
 * (PostgreSQL → S3 CSV) → load stream (S3 → DWH database), with the extract's run log on the DWH.
 */

interface Extracted {
  extracts: {
    stream: string;
    table: string;
    status: string;
    key: string | null;
    rowsExtracted: number;
    error: string | null;
  }[];
  streams: { stream: string; files: { key: string; status: string; rowsRead: number }[]; error: unknown }[];
}

function config(options: {
  sourceVar: string;
  table: string;
  prefix: string;
  mode?: string;
  columns?: string;
}): string {
  return `streams:
  - id: src/${options.table}
    source:
      postgres:
        url: \${${options.sourceVar}}
        table: public.${options.table}
        watermark: inserted_at
        key: [id]
        mode: ${options.mode ?? 'incremental'}${options.columns ? `\n        columns: ${options.columns}` : ''}
    target:
      s3:
        prefix: ${options.prefix}
        keyPattern: YYYY-MM-DDTHH-mm-ss
        timeZone: Africa/Nairobi
  - id: bronze/${options.table}
    source:
      prefix: ${options.prefix}
      keyPattern: YYYY-MM-DDTHH-mm-ss
      timeZone: Africa/Nairobi
    target:
      table: bronze.${options.table}
      key: [id]
      mode: ${options.mode === 'snapshot' ? 'snapshot' : 'upsert'}
      types: { id: bigint, amount: numeric, inserted_at: timestamptz }
`;
}

async function writeConfig(text: string): Promise<string> {
  const file = join(tmpdir(), `${randomName('extract')}.yaml`);
  await writeFile(file, text);
  return file;
}

/** One fingerprint of a table's rows, equal on both databases when the rows are. */
async function fingerprint(db: TestDatabase, table: string): Promise<{ n: number; md5: string }> {
  const found = await db.pool.query<{ n: number; md5: string }>(
    `SELECT count(*)::int AS n, md5(coalesce(string_agg(concat_ws('|', id, name, amount, inserted_at), E'\\n' ORDER BY id), '')) AS md5 FROM ${table}`,
  );
  return found.rows[0]!;
}

/** File names have second resolution: wait until the source clock passes the newest row (or now). */
async function pastNewestRow(source: TestDatabase, table: string): Promise<void> {
  const newest = await source.pool.query<{ at: Date }>(
    `SELECT coalesce(max(inserted_at), now()) AS at FROM ${table}`,
  );
  await sourceClockPast(source, newest.rows[0]!.at);
}

async function setup(rows: number) {
  const [source, dwh, s3] = await Promise.all([
    createTestDatabase(),
    createTestDatabase(),
    createTestBucket(),
  ]);
  const table = randomName('trips');
  await source.pool.query(
    `CREATE TABLE ${table} (id bigint PRIMARY KEY, name text, amount numeric, inserted_at timestamptz NOT NULL DEFAULT now())`,
  );
  await source.pool.query(
    `INSERT INTO ${table} SELECT g, 'trip ' || g, g / 100.0, now() - interval '1 hour' + g * interval '1 ms' FROM generate_series(1, $1::int) g`,
    [rows],
  );
  // The extract reads with a role that can only SELECT (manual Phase C).
  const readOnlyUrl = await createReadOnlyRole(source, [table]);
  const prefix = `dwh/exports/${table}/`;
  const env = cliEnv({
    databaseUrl: dwh.url,
    bucket: s3.bucket,
    extra: { SOURCE_DATABASE_URL: readOnlyUrl },
  });
  await pastNewestRow(source, table);
  return { source, dwh, s3, table, prefix, env };
}

async function runLog(dwh: TestDatabase, table: string) {
  const runs = await dwh.pool.query(
    `SELECT status, rows_extracted::int AS extracted, rows_loaded::int AS loaded, attempts, error_message
       FROM tributary.extract_runs WHERE table_name = $1 ORDER BY run_id`,
    [`public.${table}`],
  );
  return runs.rows;
}

describe('tributary: extract (PostgreSQL → S3) then load (S3 → PostgreSQL)', () => {
  it('100k rows exact with a read-only source role; changed and new rows arrive next run', async () => {
    const { source, dwh, s3, table, prefix, env } = await setup(100_000);
    const file = await writeConfig(config({ sourceVar: 'SOURCE_DATABASE_URL', table, prefix }));

    const dry = await runTributary(['run', '--config', file, '--json'], env);
    expect(dry.code, dry.stderr).toBe(0);
    expect((dry.json as Extracted).extracts).toMatchObject([{ status: 'planned' }]);
    expect(await listAll(s3.client, s3.bucket, prefix)).toEqual([]);

    const first = await runTributary(['run', '--config', file, '--apply', '--json'], env);
    expect(first.code, first.stderr).toBe(0);
    const report = first.json as Extracted;
    expect(report.extracts).toMatchObject([
      { stream: `src/${table}`, status: 'uploaded', rowsExtracted: 100_000, error: null },
    ]);
    expect(report.streams[0]!.files).toMatchObject([{ status: 'loaded', rowsRead: 100_000 }]);
    expect(await fingerprint(dwh, `bronze.${table}`)).toEqual(await fingerprint(source, table));
    expect(await runLog(dwh, table)).toEqual([
      { status: 'loaded', extracted: 100_000, loaded: 100_000, attempts: 1, error_message: null },
    ]);

    await source.pool.query(`UPDATE ${table} SET name = 'changed', inserted_at = now() WHERE id % 10000 = 0`);
    await source.pool.query(
      `INSERT INTO ${table} (id, name, amount) SELECT g, 'new ' || g, 1 FROM generate_series(100001, 100005) g`,
    );
    await pastNewestRow(source, table);
    const second = await runTributary(['run', '--config', file, '--apply', '--json'], env);
    expect(second.code, second.stderr).toBe(0);
    expect((second.json as Extracted).extracts).toMatchObject([{ status: 'uploaded', rowsExtracted: 15 }]);
    expect(await fingerprint(dwh, `bronze.${table}`)).toEqual(await fingerprint(source, table));
    expect((await runLog(dwh, table)).map((r) => [r.status, r.extracted, r.loaded])).toEqual([
      ['loaded', 100_000, 100_000],
      ['loaded', 15, 15],
    ]);
    // Every file loaded and archived, none left behind.
    const keys = await listAll(s3.client, s3.bucket, prefix);
    expect(keys).toHaveLength(2);
    expect(keys.every((k) => k.startsWith(`${prefix}processed/`))).toBe(true);
    const lag = await dwh.pool.query(
      'SELECT rows_loaded_last_run::int AS n FROM tributary.v_extract_lag WHERE stream = $1',
      [`src/${table}`],
    );
    expect(lag.rows).toEqual([{ n: 15 }]);
    const status = await runTributary(['status', '--config', file, '--json'], env);
    expect(status.code, status.stderr).toBe(0);
    expect((status.json as { extracts: unknown[] }).extracts).toEqual([
      {
        stream: `src/${table}`,
        watermark: expect.any(String),
        lastExtractedAt: expect.any(String),
        lastKey: keys[1]!.replace(`${prefix}processed/`, prefix),
        lastLoadedAt: expect.any(String),
        lastRun: {
          runId: expect.any(String),
          status: 'loaded',
          rowsExtracted: 15,
          rowsLoaded: 15,
          error: null,
        },
      },
    ]);
  });

  it('kill -9 between upload and watermark: the restart rewrites the same key, exact, one file', async () => {
    const { source, dwh, s3, table, prefix, env } = await setup(2_000);
    const file = await writeConfig(config({ sourceVar: 'SOURCE_DATABASE_URL', table, prefix }));
    const killed = await runTributary(['run', '--config', file, '--apply', '--json'], {
      ...env,
      TRIBUTARY_FAULT: 'pg-source:after-upload',
    });
    expect(killed.signal).toBe('SIGKILL');
    const uploaded = await listAll(s3.client, s3.bucket, prefix);
    expect(uploaded).toHaveLength(1);
    expect((await runLog(dwh, table)).map((r) => r.status)).toEqual(['extracting']);

    const restart = await runTributary(['run', '--config', file, '--apply', '--json'], env);
    expect(restart.code, restart.stderr).toBe(0);
    expect((restart.json as Extracted).extracts).toMatchObject([{ status: 'uploaded', key: uploaded[0] }]);
    expect(await fingerprint(dwh, `bronze.${table}`)).toEqual(await fingerprint(source, table));
    expect(await listAll(s3.client, s3.bucket, prefix)).toEqual([
      uploaded[0]!.replace(prefix, `${prefix}processed/`),
    ]);
    expect(await runLog(dwh, table)).toEqual([
      { status: 'loaded', extracted: 2_000, loaded: 2_000, attempts: 2, error_message: null },
    ]);
  });

  it.each(['pg-source:mid-copy', 'pg-source:after-watermark'] as const)(
    'kill -9 at %s: the restart is exact, no file twice, run log consistent',
    async (fault) => {
      const { source, dwh, s3, table, prefix, env } = await setup(2_000);
      const file = await writeConfig(config({ sourceVar: 'SOURCE_DATABASE_URL', table, prefix }));
      const killed = await runTributary(['run', '--config', file, '--apply'], {
        ...env,
        TRIBUTARY_FAULT: fault,
      });
      expect(killed.signal).toBe('SIGKILL');
      await pastNewestRow(source, table);
      const restart = await runTributary(['run', '--config', file, '--apply', '--json'], env);
      expect(restart.code, restart.stderr).toBe(0);
      expect(await fingerprint(dwh, `bronze.${table}`)).toEqual(await fingerprint(source, table));
      const runs = await runLog(dwh, table);
      // Every run ended loaded, and together they carried each row once.
      expect(runs.every((r) => r.status === 'loaded' && r.extracted === r.loaded)).toBe(true);
      expect(runs.reduce((n, r) => n + r.extracted, 0)).toBe(2_000);
      const keys = await listAll(s3.client, s3.bucket, prefix);
      expect(keys).toHaveLength(runs.length);
      expect(keys.every((k) => k.startsWith(`${prefix}processed/`))).toBe(true);
    },
  );

  it('a source query error fails that extract (exit 1) naming the table; the watermark stays', async () => {
    const { dwh, s3, table, prefix, env } = await setup(10);
    const broken = await writeConfig(
      config({
        sourceVar: 'SOURCE_DATABASE_URL',
        table,
        prefix,
        columns: '[id, { name: bad, expression: "1 / (id - id)" }]',
      }),
    );
    const failed = await runTributary(['run', '--config', broken, '--apply', '--json'], env);
    expect(failed.code).toBe(1);
    const report = failed.json as Extracted;
    expect(report.extracts[0]).toMatchObject({ status: 'failed', key: null });
    expect(report.extracts[0]!.error).toContain(`public.${table}`);
    expect(failed.stderr).toContain('division by zero');
    expect(await listAll(s3.client, s3.bucket, prefix)).toEqual([]);
    const marks = await dwh.pool.query('SELECT 1 FROM tributary.extract_watermarks');
    expect(marks.rowCount).toBe(0);
    expect((await runLog(dwh, table)).map((r) => r.status)).toEqual(['failed']);
  });

  it('snapshot mode: deletes, updates and inserts between runs; the target equals the source after each', async () => {
    const { source, dwh, table, prefix, env } = await setup(50);
    const file = await writeConfig(
      config({ sourceVar: 'SOURCE_DATABASE_URL', table, prefix, mode: 'snapshot' }),
    );
    const run = async () => {
      const done = await runTributary(['run', '--config', file, '--apply', '--json'], env);
      expect(done.code, done.stderr).toBe(0);
      expect(await fingerprint(dwh, `bronze.${table}`)).toEqual(await fingerprint(source, table));
      return done.json as Extracted;
    };
    expect((await run()).extracts).toMatchObject([{ status: 'uploaded', rowsExtracted: 50 }]);
    await source.pool.query(`DELETE FROM ${table} WHERE id % 2 = 0`);
    await source.pool.query(`UPDATE ${table} SET name = 'changed' WHERE id = 1`);
    await source.pool.query(`INSERT INTO ${table} (id, name, amount) VALUES (51, 'new', 1)`);
    await pastNewestRow(source, table);
    expect((await run()).extracts).toMatchObject([{ status: 'uploaded', rowsExtracted: 26 }]);
    await source.pool.query(`DELETE FROM ${table}`);
    await pastNewestRow(source, table); // empty: the clock passes now()
    expect((await run()).extracts).toMatchObject([{ status: 'uploaded', rowsExtracted: 0 }]);
    expect((await runLog(dwh, table)).map((r) => [r.status, r.extracted, r.loaded])).toEqual([
      ['loaded', 50, 50],
      ['loaded', 26, 26],
      ['loaded', 0, 0],
    ]);
  });

  it('--watch: a failing extract shows on /healthz and in tributary_failures_total, and recovers', async () => {
    const { source, table, prefix, env } = await setup(10);
    const file = await writeConfig(config({ sourceVar: 'SOURCE_DATABASE_URL', table, prefix }));
    const port = await freePort();
    const child = startTributary(
      ['run', '--config', file, '--apply', '--watch', '--interval', '1', '--metrics-port', String(port)],
      env,
    );
    const stream = `src/${table}`;
    const result = await whileWatching(child, async () => {
      await pollUntil(
        'the first extract uploaded',
        async () => (await health(port).catch(() => undefined))?.status === 200,
        { tries: 1200 },
      );
      // The source table disappears: every extract of it fails until it is back.
      await source.pool.query(`ALTER TABLE ${table} RENAME TO ${table}_away`);
      await pollUntil(
        '/healthz reports the extract failing',
        async () => (await health(port)).status === 503,
        {
          tries: 1200,
        },
      );
      const failing = (await health(port)).body.failing;
      expect(failing).toMatchObject([{ stream, file: `public.${table}` }]);
      expect(await metric(port, 'tributary_failures_total', stream)).toBeGreaterThanOrEqual(1);
      await source.pool.query(`ALTER TABLE ${table}_away RENAME TO ${table}`);
      await pollUntil('/healthz is ok again', async () => (await health(port)).status === 200, {
        tries: 1200,
      });
    });
    expect(result.code, result.stderr).toBe(0);
  });

  it('--watch extracts every interval and the load picks the new files up; SIGTERM exits 0', async () => {
    const { source, dwh, table, prefix, env } = await setup(100);
    const file = await writeConfig(config({ sourceVar: 'SOURCE_DATABASE_URL', table, prefix }));
    const child = startTributary(['run', '--config', file, '--apply', '--watch', '--interval', '1'], env);
    const loadedEqualsSource = async () => {
      const [a, b] = await Promise.all([
        fingerprint(dwh, `bronze.${table}`).catch(() => undefined),
        fingerprint(source, table),
      ]);
      return a !== undefined && a.md5 === b.md5;
    };
    const result = await whileWatching(child, async () => {
      await pollUntil('the first extract loaded', loadedEqualsSource, { tries: 1200 });
      await source.pool.query(`INSERT INTO ${table} (id, name, amount) VALUES (101, 'while watching', 1)`);
      await source.pool.query(`UPDATE ${table} SET name = 'changed', inserted_at = now() WHERE id = 7`);
      await pollUntil('the changes extracted and loaded', loadedEqualsSource, { tries: 1200 });
    });
    expect(result.code, result.stderr).toBe(0);
    const runs = await runLog(dwh, table);
    expect(runs.every((r) => r.status !== 'failed' && r.status !== 'extracting')).toBe(true);
    expect(runs.reduce((n, r) => n + r.extracted, 0)).toBe(102);
  });
});
