import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { s3FileTarget } from '@tributary/s3-source';
import { parse } from 'csv-parse/sync';
import { beforeAll, describe, expect, it } from 'vitest';
import { sourceClockPast } from '../../../test/support/reliability.js';
import {
  createReadOnlyRole,
  createTestBucket,
  createTestDatabase,
  randomName,
  type TestBucket,
  type TestDatabase,
} from '../../../test/support/services.js';
import {
  type ExtractTableOptions,
  type ExtractTarget,
  extractTable,
  reconcileExtractRuns,
} from '../src/index.js';

/**
 * pg-source against real PostgreSQL (a source and a DWH database) and s3rver: the closed upper
 * bound from the source clock, the run log, failures that leave the watermark, geometry.
 */

let source: TestDatabase;
let dwh: TestDatabase;
let s3: TestBucket;
beforeAll(async () => {
  [source, dwh, s3] = await Promise.all([createTestDatabase(), createTestDatabase(), createTestBucket()]);
});

async function readCsv(key: string): Promise<Record<string, string>[]> {
  const object = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }));
  return parse(await object.Body!.transformToString(), { columns: true });
}

async function keysUnder(prefix: string): Promise<string[]> {
  const page = await s3.client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: prefix }));
  return (page.Contents ?? []).map((o) => o.Key!).sort();
}

function options(table: string, patch: Partial<ExtractTableOptions> = {}): ExtractTableOptions {
  return {
    stream: `src/${table}`,
    source: source.pool,
    control: dwh.pool,
    table: `public.${table}`,
    watermark: 'inserted_at',
    key: ['id'],
    target: s3FileTarget({
      client: s3.client,
      bucket: s3.bucket,
      prefix: `exports/${table}/`,
      keyPattern: 'YYYY-MM-DDTHH-mm-ss',
    }),
    ...patch,
  };
}

async function createTrips(table: string): Promise<void> {
  await source.pool.query(
    `CREATE TABLE ${table} (id integer PRIMARY KEY, name text, inserted_at timestamptz NOT NULL DEFAULT now())`,
  );
}

const nextSecond = (time: Date) => sourceClockPast(source, time);

describe('extractTable', () => {
  it('extracts past the watermark up to the source clock; later rows come next run, once', async () => {
    const table = randomName('trips');
    await createTrips(table);
    await source.pool.query(
      `INSERT INTO ${table} (id, name, inserted_at) SELECT g, 'n' || g, now() - interval '1 hour' + g * interval '1 ms' FROM generate_series(1, 500) g`,
    );
    const first = await extractTable(options(table));
    expect(first).toMatchObject({ status: 'uploaded', rows: 500, lower: null, resumed: false });
    const rows = await readCsv(first.key!);
    expect(rows.map((r) => Number(r.id))).toEqual(Array.from({ length: 500 }, (_, i) => i + 1));
    expect(Object.keys(rows[0]!)).toEqual(['id', 'name', 'inserted_at']);

    // A row committed while the file uploads, stamped after run_started_at: not in this run.
    await nextSecond(first.runStartedAt);
    await source.pool.query(`INSERT INTO ${table} (id, name) VALUES (501, 'new')`);
    await source.pool.query(`UPDATE ${table} SET name = 'changed', inserted_at = now() WHERE id = 1`);
    // The upper bound is the source clock truncated to the file name's second.
    const changed = await source.pool.query<{ at: Date }>(`SELECT max(inserted_at) AS at FROM ${table}`);
    await nextSecond(changed.rows[0]!.at);
    const base = options(table);
    const during: ExtractTarget = {
      location: base.target.location,
      bucket: s3.bucket,
      unitFor: (time) => base.target.unitFor(time),
      async write(key, body, signal) {
        await source.pool.query(
          `INSERT INTO ${table} (id, name, inserted_at) VALUES (502, 'during', now() + interval '1 second')`,
        );
        return base.target.write(key, body, signal);
      },
    };
    const second = await extractTable({ ...base, target: during });
    expect(second.lower).toBe(first.upper);
    const secondRows = await readCsv(second.key!);
    expect(secondRows.map((r) => [r.id, r.name])).toEqual([
      ['501', 'new'],
      ['1', 'changed'],
    ]);

    const inserted = await source.pool.query<{ inserted_at: Date }>(
      `SELECT inserted_at FROM ${table} WHERE id = 502`,
    );
    await nextSecond(inserted.rows[0]!.inserted_at);
    const third = await extractTable(options(table));
    expect((await readCsv(third.key!)).map((r) => r.id)).toEqual(['502']);
    expect(await keysUnder(`exports/${table}/`)).toEqual([first.key, second.key, third.key].sort());

    const runs = await dwh.pool.query(
      `SELECT status, rows_extracted::int AS rows, lower_bound IS NULL AS first FROM tributary.extract_runs WHERE stream = $1 ORDER BY run_id`,
      [`src/${table}`],
    );
    expect(runs.rows).toEqual([
      { status: 'uploaded', rows: 500, first: true },
      { status: 'uploaded', rows: 2, first: false },
      { status: 'uploaded', rows: 1, first: false },
    ]);
    const mark = await dwh.pool.query(
      'SELECT last_extracted_value, last_key FROM tributary.extract_watermarks WHERE stream = $1',
      [`src/${table}`],
    );
    expect(mark.rows[0]).toEqual({ last_extracted_value: third.upper, last_key: third.key });
  });

  it('a second run within the same file name is caught up: no second file under that key', async () => {
    const table = randomName('trips');
    await createTrips(table);
    await source.pool.query(
      `INSERT INTO ${table} (id, name, inserted_at) VALUES (1, 'a', now() - interval '1 day')`,
    );
    const target = s3FileTarget({ client: s3.client, bucket: s3.bucket, prefix: `exports/${table}/` });
    const first = await extractTable(options(table, { target }));
    expect(first.key).toMatch(/\/\d{8}_\d{4}_UTC\.csv$/);
    const again = await extractTable(options(table, { target }));
    // Same minute: caught up. A later minute: a new, empty-bodied unit. Never the same key twice.
    if (again.status === 'uploaded') expect(again.key).not.toBe(first.key);
    else expect(again).toMatchObject({ status: 'caught-up', rows: 0 });
  });

  it('a source query error records a failed run naming the table and leaves the watermark', async () => {
    const table = randomName('trips');
    await createTrips(table);
    await source.pool.query(
      `INSERT INTO ${table} (id, name, inserted_at) VALUES (1, 'a', now() - interval '1 day')`,
    );
    const ok = await extractTable(options(table));
    await nextSecond(ok.runStartedAt);
    const broken = options(table, { columns: ['id', { name: 'bad', expression: '1 / (id - id)' }] });
    const two = await source.pool.query<{ at: Date }>(
      `INSERT INTO ${table} (id, name) VALUES (2, 'b') RETURNING inserted_at AS at`,
    );
    await nextSecond(two.rows[0]!.at);
    await expect(extractTable(broken)).rejects.toThrow(new RegExp(`public\\.${table}.*division by zero`));
    const runs = await dwh.pool.query(
      'SELECT status, error_message FROM tributary.extract_runs WHERE stream = $1 ORDER BY run_id',
      [`src/${table}`],
    );
    expect(runs.rows.map((r) => r.status)).toEqual(['uploaded', 'failed']);
    expect(runs.rows[1].error_message).toContain(`public.${table}`);
    const mark = await dwh.pool.query('SELECT last_key FROM tributary.extract_watermarks WHERE stream = $1', [
      `src/${table}`,
    ]);
    expect(mark.rows[0].last_key).toBe(ok.key);
    const failures = await dwh.pool.query(
      'SELECT table_name FROM tributary.v_extract_failures WHERE stream = $1',
      [`src/${table}`],
    );
    expect(failures.rows).toEqual([{ table_name: `public.${table}` }]);
    // The failed unit's rows come with the next good run.
    const next = await extractTable(options(table));
    expect((await readCsv(next.key!)).map((r) => r.id)).toEqual(['2']);
  });

  it('safetyLag holds back rows younger than the lag (a late commit inside it is still caught)', async () => {
    const table = randomName('trips');
    await createTrips(table);
    await source.pool.query(
      `INSERT INTO ${table} (id, name, inserted_at) VALUES (1, 'old', now() - interval '1 hour'), (2, 'young', now() - interval '5 seconds')`,
    );
    const lagged = await extractTable(options(table, { safetyLagMs: 60_000 }));
    expect((await readCsv(lagged.key!)).map((r) => r.id)).toEqual(['1']);
    expect(new Date(lagged.upper!).getTime()).toBeLessThanOrEqual(lagged.runStartedAt.getTime() - 60_000);
  });

  it('parity: a file loaded with as many rows becomes loaded; with fewer, the run fails naming both counts', async () => {
    const table = randomName('trips');
    await createTrips(table);
    await source.pool.query(
      `INSERT INTO ${table} (id, name, inserted_at) VALUES (1, 'a', now() - interval '1 day'), (2, 'b', now() - interval '1 day')`,
    );
    const done = await extractTable(options(table));
    const other = randomName('trips');
    await createTrips(other);
    await source.pool.query(
      `INSERT INTO ${other} (id, name, inserted_at) VALUES (1, 'a', now() - interval '1 day')`,
    );
    const short = await extractTable(options(other));
    // What pg-sink's load log records for the two files: 2 rows read, and (a lossy load) 0.
    await dwh.pool.query(
      `INSERT INTO tributary.loads (stream, source, status, rows_read, finished_at)
       VALUES ('bronze/a', $1, 'archived', 2, now()), ('bronze/b', $2, 'loaded', 0, now())`,
      [done.key, short.key],
    );
    const runs = await reconcileExtractRuns(dwh.pool);
    expect(runs.map((r) => [r.key, r.status, r.rowsExtracted, r.rowsLoaded])).toEqual([
      [done.key, 'loaded', 2, 2],
      [short.key, 'failed', 1, 0],
    ]);
    const failure = await dwh.pool.query(
      'SELECT error_message FROM tributary.extract_runs WHERE object_key = $1',
      [short.key],
    );
    expect(failure.rows[0].error_message).toBe(
      `parity: 1 rows extracted from public.${other}, 0 loaded from ${short.key}`,
    );
    const lag = await dwh.pool.query(
      'SELECT rows_loaded_last_run::int AS n FROM tributary.v_extract_lag WHERE stream = $1',
      [`src/${table}`],
    );
    expect(lag.rows).toEqual([{ n: 2 }]);
    expect(await reconcileExtractRuns(dwh.pool)).toEqual([]);
  });

  it('an increasing id watermark: max id in the snapshot is the upper bound', async () => {
    const table = randomName('events');
    await source.pool.query(`CREATE TABLE ${table} (id bigint PRIMARY KEY, v text)`);
    // An empty table: no upper bound yet, a header-only file, the watermark still unset.
    const empty = await extractTable(options(table, { watermark: 'id' }));
    expect(empty).toMatchObject({ status: 'uploaded', rows: 0, lower: null, upper: null });
    expect(await readCsv(empty.key!)).toEqual([]);
    await nextSecond(empty.runStartedAt);
    await source.pool.query(`INSERT INTO ${table} SELECT g, 'v' || g FROM generate_series(1, 10) g`);
    const first = await extractTable(options(table, { watermark: 'id' }));
    expect(first).toMatchObject({ rows: 10, lower: null, upper: '10' });
    await nextSecond(first.runStartedAt);
    await source.pool.query(`INSERT INTO ${table} VALUES (11, 'x'), (12, 'y')`);
    const second = await extractTable(options(table, { watermark: 'id' }));
    expect(second).toMatchObject({ rows: 2, lower: '10', upper: '12' });
  });

  it('snapshot mode writes the whole table each run, deletes included', async () => {
    const table = randomName('devices');
    await source.pool.query(`CREATE TABLE ${table} (id integer PRIMARY KEY, v text)`);
    await source.pool.query(`INSERT INTO ${table} VALUES (1, 'a'), (2, 'b'), (3, 'c')`);
    const first = await extractTable(options(table, { mode: 'snapshot', watermark: undefined }));
    expect((await readCsv(first.key!)).map((r) => r.id)).toEqual(['1', '2', '3']);
    await nextSecond(first.runStartedAt);
    await source.pool.query(`DELETE FROM ${table} WHERE id = 2`);
    const second = await extractTable(options(table, { mode: 'snapshot', watermark: undefined }));
    expect((await readCsv(second.key!)).map((r) => r.id)).toEqual(['1', '3']);
  });

  it('reads with a read-only role (SELECT only) and gzips', async () => {
    const table = randomName('trips');
    await createTrips(table);
    await source.pool.query(
      `INSERT INTO ${table} (id, name, inserted_at) VALUES (1, 'a', now() - interval '1 day')`,
    );
    const pg = (await import('pg')).default;
    const readOnly = new pg.Pool({ connectionString: await createReadOnlyRole(source, [table]), max: 2 });
    readOnly.on('error', () => {}); // connections closing when the database is dropped
    try {
      const target = s3FileTarget({
        client: s3.client,
        bucket: s3.bucket,
        prefix: `exports/${table}/`,
        gzip: true,
        timeZone: 'Africa/Nairobi',
      });
      const done = await extractTable(options(table, { source: readOnly, target }));
      expect(done.key).toMatch(/_EAT\.csv\.gz$/);
      const object = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: done.key! }));
      const { gunzipSync } = await import('node:zlib');
      const text = gunzipSync(Buffer.from(await object.Body!.transformToByteArray())).toString();
      expect(text.split('\n')[0]).toBe('id,name,inserted_at');
    } finally {
      await readOnly.end();
    }
  });

  it('geometry columns as EWKT, NULL kept (skipped without PostGIS)', async (ctx) => {
    const available = await source.pool.query(`SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'`);
    if (!available.rowCount) ctx.skip();
    await source.pool.query('CREATE EXTENSION IF NOT EXISTS postgis');
    const table = randomName('places');
    await source.pool.query(`CREATE TABLE ${table} (id integer PRIMARY KEY, geom geometry)`);
    await source.pool.query(
      `INSERT INTO ${table} VALUES (1, ST_SetSRID(ST_MakePoint(36.8, -1.3), 4326)), (2, NULL)`,
    );
    const done = await extractTable(options(table, { mode: 'snapshot', watermark: undefined }));
    expect(await readCsv(done.key!)).toEqual([
      { id: '1', geom: 'SRID=4326;POINT(36.8 -1.3)' },
      { id: '2', geom: '' },
    ]);
  });
});
