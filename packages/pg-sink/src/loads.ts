import { type Batch, formatLocation, type Row, TributaryError } from '@tributary/core';
import type pg from 'pg';
import { errorText } from './sql.js';
import { checkpointParams, checkpointUpsertSql } from './state.js';
import type { OpenUnit } from './unit.js';

/** The load log's rows (`<schema>.loads`): one per applied, rejected, late-skipped or failed unit. */

/** The statement parts of a unit's checkpoint and load row, and whether the checkpoint is fenced. */
export interface LoadRecordSql {
  ctes: string;
  insert: string;
  values: unknown[];
  fenced: boolean;
}

/**
 * The load row and checkpoint of a unit, from its stats so far: SQL over parameters `$(first)`
 * on. The row counts of `counts` (a relation with the merge's `inserted`, `updated`,
 * `deleted`, `dropped` and `filtered`), when given, are added in SQL: the last batch's merge
 * and these writes then go in one statement. Rows, checkpoint and load row: one transaction
 * (invariant 2, manual §5.4). `s` is the quoted control schema.
 */
export function loadRecordSql(
  s: string,
  runId: string | null,
  unit: OpenUnit,
  batch: Batch<Row>,
  first: number,
  merged?: { records: number; filterNames: string[] },
): LoadRecordSql {
  const { stats } = unit;
  const watermark = unit.late ? undefined : batch.meta.watermark;
  const cp = checkpointParams(batch.stream, batch.position, {
    source: unit.source,
    watermark: watermark && typeof watermark.key === 'string' ? watermark : null,
  });
  const filteredTotal = Object.values(stats.filtered).reduce((a, b) => a + b, 0);
  // A source may say which stored position the batch continues from (`fence.after`): the
  // checkpoint then moves only if it still is that one, so a writer that lost its partition
  // in a rebalance while the batch was in flight cannot apply it twice.
  const fenced = batch.meta.fence !== undefined;
  const previous = batch.meta.fence?.after;
  const values: unknown[] = [
    ...cp,
    runId,
    unit.etag,
    unit.size,
    unit.kind,
    unit.rejectedBy ? 'rejected' : unit.late ? 'late_skipped' : 'loaded',
    stats.rowsRead,
    filteredTotal,
    JSON.stringify(stats.filtered),
    stats.inserted,
    stats.updated,
    stats.deleted,
    stats.unchanged,
    stats.batches,
    stats.bytes || null,
    unit.modified,
    stats.rejected,
    unit.rejectedBy ? errorText(unit.rejectedBy) : null,
  ];
  if (merged) values.push(merged.records, merged.filterNames);
  if (fenced) values.push(previous === null || previous === undefined ? null : JSON.stringify(previous));
  const $ = (i: number) => `$${first + i - 1}`;
  const cpSql = checkpointUpsertSql(s, fenced ? $(values.length) : undefined, first);
  const columns = `run_id, stream, source, etag, size, kind, status, rows_read, rows_filtered,
              filtered, rows_inserted, rows_updated, rows_deleted, rows_unchanged, batches, bytes, position,
              started_at, finished_at, s3_modified, rows_rejected, error`;
  if (!merged) {
    return {
      ctes: `cp AS (${cpSql} RETURNING 1)`,
      insert: `INSERT INTO ${s}.loads (${columns})
       SELECT ${$(6)}, ${$(1)}, ${$(3)}, ${$(7)}, ${$(8)}, ${$(9)}, ${$(10)}, ${$(11)}, ${$(12)}, ${$(13)}::jsonb,
              ${$(14)}, ${$(15)}, ${$(16)}, ${$(17)}, ${$(18)}, ${$(19)}, ${$(2)}::jsonb, now(), clock_timestamp(), ${$(20)}::timestamptz,
              ${$(21)}::bigint, ${$(22)}::text
         FROM cp`,
      values,
      fenced,
    };
  }
  // The batch's filter counts join the unit's by name, as in JavaScript (zeros are not added).
  const filteredSql = `(SELECT coalesce(jsonb_object_agg(f.k, f.n), '{}'::jsonb)
           FROM (SELECT k, sum(n)::int AS n
                   FROM (SELECT key AS k, value::int AS n FROM jsonb_each_text(${$(13)}::jsonb)
                         UNION ALL
                         SELECT u.k, u.n FROM unnest(${$(24)}::text[], b.filtered) AS u(k, n) WHERE u.n <> 0) x
                  GROUP BY k) f)`;
  return {
    ctes: `cp AS (${cpSql} RETURNING 1),
ld AS (
  INSERT INTO ${s}.loads (${columns})
  SELECT ${$(6)}, ${$(1)}, ${$(3)}, ${$(7)}, ${$(8)}, ${$(9)}, ${$(10)}, ${$(11)}, ${$(12)}::bigint + b.dropped, ${filteredSql},
         ${$(14)}::bigint + b.inserted, ${$(15)}::bigint + b.updated, ${$(16)}::bigint + b.deleted,
         ${$(17)}::bigint + (${$(23)}::int - b.dropped - b.inserted - b.updated - b.deleted),
         ${$(18)}, ${$(19)}, ${$(2)}::jsonb, now(), clock_timestamp(), ${$(20)}::timestamptz, ${$(21)}::bigint, ${$(22)}::text
    FROM counts b, cp
  RETURNING 1
)`,
    insert: '',
    values,
    fenced,
  };
}

/**
 * A `failed` load row, written on the pool outside any transaction (the unit's was rolled back).
 * Best effort: the failure itself is what the caller sees.
 */
export async function insertFailedLoad(
  pool: pg.Pool,
  s: string,
  runId: string | null,
  stream: string,
  source: string,
  unit: OpenUnit | undefined,
  error: unknown,
): Promise<void> {
  const location = error instanceof TributaryError ? formatLocation(error.location) : '';
  try {
    await pool.query(
      `INSERT INTO ${s}.loads (run_id, stream, source, etag, size, kind, status, rows_read, batches,
                started_at, finished_at, error, s3_modified)
         VALUES ($1, $2, $3, $4, $5, $6, 'failed', $7, $8, $9, clock_timestamp(), $10, $11)`,
      [
        runId,
        stream,
        source,
        unit?.etag ?? null,
        unit?.size ?? null,
        unit?.kind ?? null,
        unit?.stats.rowsRead ?? 0,
        unit?.stats.batches ?? 0,
        unit?.startedAt ?? new Date(),
        errorText(error) + (location && !errorText(error).includes(location) ? ` (at ${location})` : ''),
        unit?.modified ?? null,
      ],
    );
  } catch {
    // The failure itself is what the caller sees; a load log that cannot be written (schema
    // missing with migrate: false, database down) must not hide it.
  }
}
