import type { Readable } from 'node:stream';
import { pipeline as streamPipeline } from 'node:stream/promises';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { pipeline } from '@tributary/core';
import {
  applyRules,
  columnType,
  DEFAULT_DROP_FIELDS,
  type Environment,
  TICKET_COLUMNS,
  TIME_ZONE,
  ticketSink,
  ticketStream,
  ticketTransforms,
} from '@tributary/example-tickets';
import { s3Source } from '@tributary/s3-source';
import { parse } from 'csv-parse';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';

/**
 * The three ways of applying the inc baseline that the benchmark compares. Each leaves the same
 * table (checked once per run by `tableDigest`): the seed's rules — drop alarms and the sentinel,
 * drop the provenance fields, normalise region/raw_status, empty → NULL, last row per key wins.
 */

const TARGET_COLUMNS = TICKET_COLUMNS.filter((c) => !DEFAULT_DROP_FIELDS.includes(c));
const q = (name: string) => `"${name}"`;

export function benchEnvironment(s3: { endpoint: string; region: string }, prefix: string): Environment {
  return {
    databaseUrl: undefined,
    s3Endpoint: s3.endpoint,
    bucket: 'bench',
    prefix,
    forcePathStyle: true,
    region: s3.region,
  };
}

/** Fresh state for the library: no checkpoint or load history for tickets/<dataset>, empty table. */
export async function resetLibrary(pool: pg.Pool, dataset: 'inc' | 'crq' = 'inc'): Promise<void> {
  for (const sql of [
    `DELETE FROM tributary.checkpoints WHERE stream = 'tickets/${dataset}'`,
    `DELETE FROM tributary.loads WHERE stream = 'tickets/${dataset}'`,
    `TRUNCATE tickets.${dataset}`,
  ]) {
    await pool.query(sql).catch((error: { code?: string }) => {
      if (error.code !== '42P01' && error.code !== '3F000') throw error; // first run: nothing created yet
    });
  }
}

/** Ours: the library end to end (s3Source → ticket transforms → pgSink), archive off so runs repeat. */
export async function applyLibrary(
  client: S3Client,
  pool: pg.Pool,
  env: Environment,
): Promise<{ rowsRead: number; rowsWritten: number }> {
  const source = s3Source({
    client,
    streams: [ticketStream(env, 'inc', { lateFiles: 'error' })],
    archive: false,
  });
  const sink = ticketSink(pool, ['inc']);
  try {
    const result = await pipeline(source, ...ticketTransforms(), sink);
    return { rowsRead: result.rowsRead, rowsWritten: result.rowsWritten };
  } finally {
    await sink.close();
  }
}

/** Creates bench_floor.inc and bench_naive.inc shaped like tickets.inc (after the library made it). */
export async function prepareBaselines(pool: pg.Pool): Promise<void> {
  await pool.query(`CREATE SCHEMA IF NOT EXISTS bench_floor; CREATE SCHEMA IF NOT EXISTS bench_naive;
    CREATE TABLE IF NOT EXISTS bench_floor.inc (LIKE tickets.inc INCLUDING ALL);
    CREATE TABLE IF NOT EXISTS bench_naive.inc (LIKE tickets.inc INCLUDING ALL);
    CREATE UNLOGGED TABLE IF NOT EXISTS bench_floor.stage (${STAGE_COLUMNS})`);
}

function typedExpr(column: string): string {
  const raw = `NULLIF(s.${q(column)}, '')`;
  if (column === 'region')
    return `NULLIF(upper(regexp_replace(btrim(s.region), '[[:space:]_-]+', ' ', 'g')), '')`;
  if (column === 'raw_status')
    return `NULLIF(regexp_replace(lower(btrim(s.raw_status)), '[[:space:]-]+', '_', 'g'), '')`;
  const type = columnType(column);
  return type === 'text' ? raw : `${raw}::${type}`;
}

const nonKey = TARGET_COLUMNS.filter((c) => c !== 'ticket_id');

/**
 * The floor's two statements for a staging table `stage` of text columns (plus `ord`, the
 * record's position): COPY of the raw CSV into it, and one merge into bench_floor.inc doing the
 * seed's rules in SQL (filters, normalisation, casts, last row per key wins).
 */
export function floorSql(stage: string): { copy: string; merge: string } {
  return {
    copy: `COPY ${stage} (${TICKET_COLUMNS.map(q).join(', ')}) FROM STDIN (FORMAT csv, HEADER true)`,
    merge: `INSERT INTO bench_floor.inc AS t (${TARGET_COLUMNS.map(q).join(', ')})
SELECT DISTINCT ON (s.ticket_id) ${TARGET_COLUMNS.map(typedExpr).join(', ')}
  FROM ${stage} s
 WHERE lower(btrim(coalesce(s.is_alarm, ''))) NOT IN ('true', 't', '1', 'yes')
   AND s.ticket_id NOT LIKE 'EXPORT STOPPED%'
 ORDER BY s.ticket_id, s.ord DESC
ON CONFLICT (ticket_id) DO UPDATE SET ${nonKey.map((c) => `${q(c)} = EXCLUDED.${q(c)}`).join(', ')}
 WHERE ROW(${nonKey.map((c) => `t.${q(c)}`).join(', ')}) IS DISTINCT FROM ROW(${nonKey.map((c) => `EXCLUDED.${q(c)}`).join(', ')})`,
  };
}

/** The stage's columns: `ord` numbers the records in COPY order, every CSV column as text. */
export const STAGE_COLUMNS = `ord bigint GENERATED ALWAYS AS IDENTITY, ${TICKET_COLUMNS.map((c) => `${q(c)} text`).join(', ')}`;
const FLOOR = floorSql('bench_floor.stage');

/**
 * The floor: the object's bytes piped unparsed into COPY … (FORMAT csv) of an unlogged staging
 * table, then one INSERT … SELECT … ON CONFLICT DO UPDATE doing the same rules in SQL.
 */
export async function applyFloor(
  client: S3Client,
  pool: pg.Pool,
  bucket: string,
  key: string,
): Promise<number> {
  const db = await pool.connect();
  try {
    await db.query(`BEGIN; SET LOCAL TimeZone = '${TIME_ZONE}'; TRUNCATE bench_floor.stage`);
    const object = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    await streamPipeline(object.Body as Readable, db.query(copyFrom(FLOOR.copy)));
    const merged = await db.query(FLOOR.merge);
    await db.query('COMMIT');
    return merged.rowCount ?? 0;
  } catch (error) {
    await db.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    db.release();
  }
}

const NAIVE_UPSERT = `INSERT INTO bench_naive.inc (${TARGET_COLUMNS.map(q).join(', ')})
VALUES (${TARGET_COLUMNS.map((c, i) => `$${i + 1}${columnType(c) === 'text' ? '' : `::${columnType(c)}`}`).join(', ')})
ON CONFLICT (ticket_id) DO UPDATE SET ${nonKey.map((c) => `${q(c)} = EXCLUDED.${q(c)}`).join(', ')}`;

/** The naive way: csv-parse, the rules in JavaScript, one parameterised upsert per row (autocommit). */
export async function applyNaive(
  client: S3Client,
  pool: pg.Pool,
  bucket: string,
  key: string,
): Promise<number> {
  const db = await pool.connect();
  let applied = 0;
  try {
    await db.query(`SET TimeZone = '${TIME_ZONE}'`);
    const object = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    const parser = (object.Body as Readable).pipe(
      parse({ columns: true, bom: true, skip_empty_lines: true }),
    );
    for await (const record of parser as AsyncIterable<Record<string, string | null>>) {
      for (const c in record) if (record[c] === '') record[c] = null;
      const row = applyRules(record);
      if (!row) continue;
      await db.query(
        NAIVE_UPSERT,
        TARGET_COLUMNS.map((c) => row[c] ?? null),
      );
      applied++;
    }
    return applied;
  } finally {
    await db.query('RESET TimeZone').catch(() => undefined);
    db.release();
  }
}

/** md5 over the table's rows in key order, to check the three methods agree. */
export async function tableDigest(pool: pg.Pool, table: string): Promise<{ rows: number; md5: string }> {
  const { rows } = await pool.query<{ rows: number; md5: string }>(
    // md5 of the rows' md5s: one string of all rows passes PostgreSQL's 1 GB limit at 3.5M rows.
    `SELECT count(*)::int AS rows, md5(string_agg(md5(ROW(${TARGET_COLUMNS.map((c) => `t.${q(c)}`).join(', ')})::text), '' ORDER BY t.ticket_id)) AS md5 FROM ${table} t`,
  );
  return rows[0]!;
}
