import {
  type Batch,
  type RejectedRecord,
  type RejectPolicy,
  type Row,
  TributaryError,
} from '@tributary/core';
import type pg from 'pg';
import { redactSecrets } from './sql.js';
import { type Applied, emptyStats, type OpenUnit } from './unit.js';

/**
 * Rows set aside under a stream's `onError` policy (issue 17): the dead-letter table
 * `<schema>.rejected_rows` and the limit above which a file fails as under `abort`.
 */

/** Errors about one row's data: what `skip-row` sets aside and `skip-file` rejects a file for. */
export function isRejectable(error: unknown): error is TributaryError {
  return (
    error instanceof TributaryError &&
    (error.code === 'MALFORMED_ROW' || error.code === 'CAST_FAILED' || error.code === 'BAD_KEY')
  );
}

export interface RejectedUnit {
  stream: string;
  source: string;
  etag: string | null;
}

/**
 * Writes rejected records on the unit's open transaction: they commit or roll back with its
 * rows, load row and checkpoint (invariant 2), so a crash neither loses nor doubles them.
 */
export async function insertRejected(
  client: pg.ClientBase,
  schema: string,
  unit: RejectedUnit,
  records: readonly RejectedRecord[],
): Promise<void> {
  if (!records.length) return;
  await client.query(
    `INSERT INTO ${schema}.rejected_rows (stream, source, etag, line, record, column_name, error_code, message, record_text)
     SELECT $1, $2, $3, r.line, r.record, r.column_name, r.error_code, r.message, r.record_text
       FROM unnest($4::bigint[], $5::bigint[], $6::text[], $7::text[], $8::text[], $9::text[])
            AS r(line, record, column_name, error_code, message, record_text)`,
    [
      unit.stream,
      unit.source,
      unit.etag,
      records.map((r) => r.line ?? null),
      records.map((r) => r.record ?? null),
      records.map((r) => r.column ?? null),
      records.map((r) => r.code),
      records.map((r) => redactSecrets(r.message).slice(0, 4000)),
      records.map((r) => r.text),
    ],
  );
}

/** The error a rejected record stands for (`skip-file` rejects its file with it). */
export function rejectedRecordError(stream: string, source: string, record: RejectedRecord): TributaryError {
  return new TributaryError(
    record.code === 'MALFORMED_ROW' ? 'MALFORMED_ROW' : 'CAST_FAILED',
    record.message,
    {
      stream,
      location: {
        file: source,
        ...(record.line === undefined ? {} : { line: record.line }),
        ...(record.column === undefined ? {} : { column: record.column }),
        ...(record.record === undefined ? {} : { record: record.record }),
      },
    },
  );
}

/**
 * `REJECT_LIMIT` when a file set aside more rows than `maxRejected` allows: a count is checked
 * as rows come, a percentage once the file is complete (`final`). The file then fails as under
 * `abort`: rolled back, the stream stops naming it.
 */
export function rejectLimitError(
  policy: RejectPolicy | undefined,
  at: {
    stream: string;
    source: string;
    rejected: number;
    read: number;
    final: boolean;
    first: RejectedRecord | undefined;
  },
): TributaryError | undefined {
  const limit = policy?.maxRejected;
  if (!limit || at.rejected === 0) return undefined;
  let over: string | undefined;
  if ('count' in limit) {
    if (at.rejected > limit.count) over = `maxRejected ${limit.count}`;
  } else if (at.final && at.read > 0 && (at.rejected / at.read) * 100 > limit.percent) {
    over = `maxRejected ${limit.percent}% (${((at.rejected / at.read) * 100).toFixed(2)}% of ${at.read} rows)`;
  }
  if (!over) return undefined;
  return new TributaryError(
    'REJECT_LIMIT',
    `stream "${at.stream}", ${at.source}: ${at.rejected} rows rejected, above ${over}: the file is not applied and the stream stops (onError: skip-row)${
      at.first ? `; first: ${at.first.message}` : ''
    }`,
    { stream: at.stream, location: { file: at.source } },
  );
}

/** `rejectLimitError` for the open unit: throws when it set aside more than its policy allows. */
export function checkRejectLimit(unit: OpenUnit, stream: string, final: boolean): void {
  const error = rejectLimitError(unit.policy, {
    stream,
    source: unit.source,
    rejected: unit.stats.rejected,
    read: unit.stats.rowsRead,
    final,
    first: unit.firstRejected,
  });
  if (error) throw error;
}

/** skip-file: nothing of the unit is applied; its load row will say `rejected`, with why. */
export function rejectUnit(unit: OpenUnit, error: TributaryError): void {
  const { batches, bytes } = unit.stats;
  unit.rejectedBy = error;
  unit.stats = { ...emptyStats(), batches, bytes, rowsRead: unit.rowsSeen, rejected: unit.rowsSeen };
  unit.tally = { rows: 0, filtered: {} };
  unit.late = false;
  unit.recorded = false;
  unit.snapshotOpen = false;
}

/** A later batch of a rejected unit: read and counted, not applied. */
export function skipRejected(unit: OpenUnit, batch: Batch<Row>): void {
  const { stats } = unit;
  stats.batches++;
  stats.bytes += batch.meta.bytes ?? 0;
  stats.rowsRead += batch.meta.rowsRead;
  stats.rejected += batch.meta.rowsRead;
}

/** Adds what a batch applied to the unit's tally (under a policy); returns it unchanged. */
export function tally(unit: OpenUnit, batch: Batch<Row>, applied: Applied | undefined): Applied | undefined {
  unit.tally.rows += applied?.rows ?? batch.rows.length;
  for (const [name, count] of Object.entries(applied?.filtered ?? {}))
    unit.tally.filtered[name] = (unit.tally.filtered[name] ?? 0) + count;
  return applied;
}

/**
 * What to tell the pipeline for a write under a policy: the change in the unit's applied rows,
 * filter counts and rejected rows since the last write. A re-run of the unit (checked path,
 * or a rejected file) corrects what earlier batches reported.
 */
export function reportSinceLastWrite(unit: OpenUnit): Applied {
  const { tally, reported } = unit;
  const filtered: Record<string, number> = {};
  for (const name of new Set([...Object.keys(tally.filtered), ...Object.keys(reported.filtered)])) {
    const delta = (tally.filtered[name] ?? 0) - (reported.filtered[name] ?? 0);
    if (delta) filtered[name] = delta;
  }
  const applied = {
    rows: tally.rows - reported.rows,
    filtered,
    rejected: unit.stats.rejected - reported.rejected,
  };
  unit.reported = { rows: tally.rows, filtered: { ...tally.filtered }, rejected: unit.stats.rejected };
  return applied;
}
