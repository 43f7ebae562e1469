import { type Batch, type Row, TributaryError } from '@tributary/core';
import type { ApplyPlan } from './apply.js';
import { copyErrorLine } from './raw.js';
import type { StreamSession } from './session.js';
import { errorText, quoteIdent } from './sql.js';
import { stageBatch } from './staging.js';
import type { OpenUnit } from './unit.js';

/**
 * The sink's error wording: a failure turned into an error that names the stream, the file and,
 * where it can be found, the line, record and column (invariant 6: fail loud).
 */

/**
 * COPY refused raw CSV (a wrong field count, mostly): csv-parse over the same bytes gives the
 * row path's error, naming file, line and column; otherwise COPY's own line is mapped to the file.
 */
export function explainCopyError(batch: Batch<Row>, error: unknown): TributaryError {
  const raw = batch.raw!;
  try {
    raw.parse();
  } catch (parseError) {
    if (parseError instanceof TributaryError) return parseError;
  }
  const file = batch.meta.source ?? batch.stream;
  const line = copyErrorLine(raw, (error as { where?: string }).where);
  return new TributaryError(
    'MALFORMED_ROW',
    `${file}${line === undefined ? '' : `:${line}`}: COPY rejected the CSV: ${errorText(error)}`,
    { cause: error, stream: batch.stream, location: { file, ...(line === undefined ? {} : { line }) } },
  );
}

/**
 * Turns a failed merge into an error naming file, line and column (invariant 6): the
 * transaction is rolled back, the batch staged again and the first value that does not cast
 * located with the control schema's try_cast.
 */
export async function explainApplyError(
  session: StreamSession,
  plan: ApplyPlan,
  batch: Batch<Row>,
  error: unknown,
): Promise<TributaryError> {
  const pgError = error as { code?: string; message?: string; column?: string };
  const source = batch.meta.source ?? batch.stream;
  const isData =
    typeof pgError.code === 'string' && (pgError.code.startsWith('22') || pgError.code === '23502');
  let found: { ord: number; col: number; col_value: string | null } | undefined;
  if (isData) {
    try {
      await session.discardTransaction(error);
      const client = await session.ensureTransaction(plan.prepareStage);
      await stageBatch(client, plan, batch);
      const located = await client.query<{ ord: number; col: number; col_value: string | null }>(
        plan.locate,
        plan.locateParams,
      );
      found = located.rows[0];
    } catch {
      // Locating is best effort; the original error below still names the file.
    } finally {
      await session.discardTransaction(error);
    }
  }
  if (!found) {
    const column = pgError.column ? `, column ${quoteIdent(pgError.column)}` : '';
    return new TributaryError(
      isData ? 'CAST_FAILED' : 'SINK_FAILED',
      `stream "${batch.stream}", ${source}${column}: ${errorText(error)}`,
      {
        cause: error,
        stream: batch.stream,
        location: { file: source, ...(pgError.column ? { column: pgError.column } : {}) },
      },
    );
  }
  const column = plan.locateColumns[found.col]!;
  // Raw staging numbers rows from 1 in COPY order; rows sent from JavaScript from 0.
  const raw = batch.raw;
  const index = raw ? Number(found.ord) - 1 : found.ord;
  const at = raw
    ? { file: source, line: raw.line(index), record: raw.firstRecord + index }
    : batch.meta.locations?.[index];
  const location = {
    file: at?.file ?? source,
    ...(at?.line === undefined ? {} : { line: at.line }),
    column,
    record: at?.record ?? index + 1,
  };
  const bad = badValue(session, column, found.col_value, {
    ...location,
    file: location.file ?? source,
  });
  return new TributaryError(
    bad.code,
    `stream "${batch.stream}": ${bad.message}${bad.code === 'CAST_FAILED' ? `: ${errorText(error)}` : ''}`,
    { cause: error, stream: batch.stream, location },
  );
}

/** What is wrong with a value `locate` / `rejectCasts` found: an empty key, or a failed cast. */
export function badValue(
  session: StreamSession,
  column: string,
  value: string | null,
  at: { file: string; line?: number; record: number },
): { code: 'BAD_KEY' | 'CAST_FAILED'; message: string } {
  const where = `${at.file}${at.line === undefined ? '' : `:${at.line}`} (row ${at.record}, column ${quoteIdent(column)})`;
  if ((session.target?.key.includes(column) ?? false) && (value === null || value === '')) {
    return { code: 'BAD_KEY', message: `empty key column ${quoteIdent(column)} at ${where}` };
  }
  const type = session.shape?.columns.get(column)?.type ?? 'text';
  const shown = value === null ? 'NULL' : JSON.stringify(value.slice(0, 80));
  return { code: 'CAST_FAILED', message: `value ${shown} is not a valid ${type} at ${where}` };
}

export function fencedError(batch: Batch<Row>, unit: OpenUnit): TributaryError {
  // Retriable: pipeline() re-runs the source from the stored position, so a Kafka member
  // that lost its partition in a rebalance rejoins the group instead of exiting.
  return new TributaryError(
    'FENCED',
    `stream "${batch.stream}": ${unit.source} was not applied: the stored position moved while it was in flight (another writer applied this range, e.g. after a rebalance); rolled back so nothing is applied twice`,
    { stream: batch.stream, location: { file: unit.source }, retriable: true },
  );
}

/**
 * What `write()` throws when a unit failed: transient failures as TRANSIENT (retriable unless
 * this sink spent the retry budget), the sink's own errors as they are, anything else as
 * SINK_FAILED naming the file.
 */
export function unitFailedError(
  batch: Batch<Row>,
  unit: OpenUnit,
  error: unknown,
  spent: boolean,
  transient: boolean,
  retries: number,
): TributaryError {
  if ((spent || transient) && !(error instanceof TributaryError)) {
    return new TributaryError(
      'TRANSIENT',
      `stream "${batch.stream}": ${errorText(error)} (gave up after ${spent ? retries : 0} retries` +
        `${unit.buffer.holdsUnit ? '' : '; unit too large to replay in process'}); the next run resumes from the checkpoint`,
      { cause: error, retriable: !spent, stream: batch.stream },
    );
  }
  if (error instanceof TributaryError) return error;
  return new TributaryError('SINK_FAILED', `stream "${batch.stream}", ${unit.source}: ${errorText(error)}`, {
    cause: error,
    stream: batch.stream,
    location: { file: unit.source },
  });
}

/** skip-row met a bad row in a unit it no longer holds: it cannot re-run it through the checked path. */
export function tooLargeToRecheckError(batch: Batch<Row>, unit: OpenUnit, error: unknown): TributaryError {
  return new TributaryError(
    'SINK_FAILED',
    `stream "${batch.stream}", ${unit.source}: ${errorText(error)}; the file is too large to re-check in process (raise replayBufferRows / replayBufferBytes, or split the file)`,
    { cause: error, stream: batch.stream, location: { file: unit.source } },
  );
}
