import { quoteIdent } from '@tributary/pg-sink';
import type pg from 'pg';
import type { ExtractMode } from './options.js';

/**
 * The extract's control rows on the DWH side (manual §4): `extract_watermarks` (one per stream)
 * and `extract_runs` (extracting → uploaded → loaded, or failed). Values are parameters only.
 */

export interface ExtractState {
  /** The closed upper bound of the last uploaded run, as text (a timestamp or an id). */
  lastValue: string | null;
  /** The instant of the last uploaded unit (its file name's time). */
  lastAt: Date | null;
  /** A run that crashed before its watermark moved: resumed with the same bounds and key. */
  open: UnitRun | undefined;
}

/** One run's unit: its file and its (lower, upper] bounds. */
export interface UnitRun {
  runId: string;
  key: string;
  lower: string | null;
  upper: string | null;
  unitTime: Date;
}

export async function readExtractState(
  db: pg.ClientBase,
  schema: string,
  stream: string,
): Promise<ExtractState> {
  const s = quoteIdent(schema);
  const wm = await db.query<{ last_extracted_value: string | null; last_extracted_at: Date | null }>(
    `SELECT last_extracted_value, last_extracted_at FROM ${s}.extract_watermarks WHERE stream = $1`,
    [stream],
  );
  const open = await db.query<{
    run_id: string;
    object_key: string;
    lower_bound: string | null;
    upper_bound: string | null;
    unit_time: Date;
  }>(
    `SELECT run_id, object_key, lower_bound, upper_bound, unit_time
       FROM ${s}.extract_runs
      WHERE stream = $1 AND status = 'extracting'
      ORDER BY run_id DESC LIMIT 1`,
    [stream],
  );
  const run = open.rows[0];
  return {
    lastValue: wm.rows[0]?.last_extracted_value ?? null,
    lastAt: wm.rows[0]?.last_extracted_at ?? null,
    open: run
      ? {
          runId: run.run_id,
          key: run.object_key,
          lower: run.lower_bound,
          upper: run.upper_bound,
          unitTime: run.unit_time,
        }
      : undefined,
  };
}

export interface NewRun {
  stream: string;
  table: string;
  mode: ExtractMode;
  runStartedAt: Date;
  lower: string | null;
  upper: string | null;
  bucket: string | undefined;
  key: string;
  csvPath: string;
  unitTime: Date;
}

/** Records the run before anything is read, with its unit: a crash after this resumes it. */
export async function insertRun(db: pg.ClientBase, schema: string, run: NewRun): Promise<string> {
  const s = quoteIdent(schema);
  const inserted = await db.query<{ run_id: string }>(
    `INSERT INTO ${s}.extract_runs
       (stream, table_name, mode, status, run_started_at, lower_bound, upper_bound, bucket, object_key, csv_path, unit_time)
     VALUES ($1, $2, $3, 'extracting', $4, $5, $6, $7, $8, $9, $10)
     RETURNING run_id`,
    [
      run.stream,
      run.table,
      run.mode,
      run.runStartedAt,
      run.lower,
      run.upper,
      run.bucket ?? null,
      run.key,
      run.csvPath,
      run.unitTime,
    ],
  );
  return inserted.rows[0]!.run_id;
}

export async function countAttempt(db: pg.ClientBase, schema: string, runId: string): Promise<void> {
  await db.query(`UPDATE ${quoteIdent(schema)}.extract_runs SET attempts = attempts + 1 WHERE run_id = $1`, [
    runId,
  ]);
}

export interface Uploaded {
  stream: string;
  table: string;
  watermarkColumn: string | undefined;
  run: UnitRun;
  rows: number;
  bytes: number;
}

/**
 * The file is complete in S3: the run becomes `uploaded` and the watermark moves to its upper
 * bound, in one transaction (never before the upload: manual Phase E steps 6–7).
 */
export async function markUploaded(db: pg.ClientBase, schema: string, done: Uploaded): Promise<void> {
  const s = quoteIdent(schema);
  await db.query('BEGIN');
  try {
    await db.query(
      `UPDATE ${s}.extract_runs
          SET status = 'uploaded', rows_extracted = $2, bytes = $3, uploaded_at = now(), error_message = NULL
        WHERE run_id = $1`,
      [done.run.runId, done.rows, done.bytes],
    );
    await db.query(
      `INSERT INTO ${s}.extract_watermarks AS w
         (stream, table_name, watermark_column, last_extracted_value, last_extracted_at, last_key,
          last_run_id, rows_extracted_last_run, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
       ON CONFLICT (stream) DO UPDATE SET
         table_name = EXCLUDED.table_name, watermark_column = EXCLUDED.watermark_column,
         last_extracted_value = EXCLUDED.last_extracted_value,
         last_extracted_at = EXCLUDED.last_extracted_at, last_key = EXCLUDED.last_key,
         last_run_id = EXCLUDED.last_run_id, rows_extracted_last_run = EXCLUDED.rows_extracted_last_run,
         updated_at = now()`,
      [
        done.stream,
        done.table,
        done.watermarkColumn ?? null,
        done.run.upper,
        done.run.unitTime,
        done.run.key,
        done.run.runId,
        done.rows,
      ],
    );
    await db.query('COMMIT');
  } catch (error) {
    await db.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}

/** A failed run names its table; the watermark is not touched. */
export async function markFailed(
  db: pg.ClientBase,
  schema: string,
  failure: { runId: string | undefined; stream: string; table: string; mode: ExtractMode; error: string },
): Promise<void> {
  const s = quoteIdent(schema);
  if (failure.runId) {
    await db.query(
      `UPDATE ${s}.extract_runs SET status = 'failed', run_finished_at = now(), error_message = $2
        WHERE run_id = $1`,
      [failure.runId, failure.error],
    );
    return;
  }
  await db.query(
    `INSERT INTO ${s}.extract_runs (stream, table_name, mode, status, run_finished_at, error_message)
     VALUES ($1, $2, $3, 'failed', now(), $4)`,
    [failure.stream, failure.table, failure.mode, failure.error],
  );
}

export interface ReconciledRun {
  runId: string;
  stream: string;
  key: string;
  status: 'loaded' | 'failed';
  rowsExtracted: number;
  rowsLoaded: number;
}

/**
 * Uploaded runs whose file the load has committed become `loaded` — or `failed` when the rows
 * read by the load differ from the rows extracted (the manual's parity check: a divergence is a
 * failure, not a warning). The watermark row gets the load time and count.
 */
export async function reconcileExtractRuns(
  db: pg.Pool | pg.ClientBase,
  options: { schema?: string } = {},
): Promise<ReconciledRun[]> {
  const s = quoteIdent(options.schema ?? 'tributary');
  const result = await db.query<{
    run_id: string;
    stream: string;
    object_key: string;
    status: 'loaded' | 'failed';
    rows_extracted: string;
    rows_loaded: string;
  }>(
    `WITH done AS (
       SELECT r.run_id, l.rows_read, l.finished_at
         FROM ${s}.extract_runs r
         JOIN LATERAL (SELECT rows_read, finished_at FROM ${s}.loads
                        WHERE source = r.object_key AND status IN ('loaded', 'archived')
                        ORDER BY load_id DESC LIMIT 1) l ON true
        WHERE r.status = 'uploaded'),
     runs AS (
       UPDATE ${s}.extract_runs r
          SET status = CASE WHEN d.rows_read = r.rows_extracted THEN 'loaded' ELSE 'failed' END,
              rows_loaded = d.rows_read,
              run_finished_at = d.finished_at,
              error_message = CASE WHEN d.rows_read = r.rows_extracted THEN NULL
                ELSE format('parity: %s rows extracted from %s, %s loaded from %s',
                            r.rows_extracted, r.table_name, d.rows_read, r.object_key) END
         FROM done d
        WHERE r.run_id = d.run_id
       RETURNING r.run_id, r.stream, r.object_key, r.status, r.rows_extracted, r.rows_loaded, r.run_finished_at),
     marks AS (
       UPDATE ${s}.extract_watermarks w
          SET last_loaded_at = runs.run_finished_at, rows_loaded_last_run = runs.rows_loaded
         FROM runs
        WHERE w.stream = runs.stream AND w.last_run_id = runs.run_id AND runs.status = 'loaded')
     SELECT run_id, stream, object_key, status, rows_extracted, rows_loaded FROM runs ORDER BY run_id`,
  );
  return result.rows.map((r) => ({
    runId: r.run_id,
    stream: r.stream,
    key: r.object_key,
    status: r.status,
    rowsExtracted: Number(r.rows_extracted),
    rowsLoaded: Number(r.rows_loaded),
  }));
}

export interface ExtractStatus {
  stream: string;
  /** The last uploaded run's upper bound (the watermark), or null before the first. */
  watermark: string | null;
  lastExtractedAt: string | null;
  lastKey: string | null;
  lastLoadedAt: string | null;
  /** The newest run: its status, counts and error. */
  lastRun: {
    runId: string;
    status: 'extracting' | 'uploaded' | 'loaded' | 'failed';
    rowsExtracted: number | null;
    rowsLoaded: number | null;
    error: string | null;
  } | null;
}

/** The extract control rows of these streams (read-only; empty facts before the first run). */
export async function readExtractStatus(
  db: pg.Pool | pg.ClientBase,
  streams: readonly string[],
  options: { schema?: string } = {},
): Promise<ExtractStatus[]> {
  const schema = options.schema ?? 'tributary';
  const s = quoteIdent(schema);
  const exists = await db.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [
    `${s}.extract_runs`,
  ]);
  if (!exists.rows[0]?.ok) {
    return streams.map((stream) => ({
      stream,
      watermark: null,
      lastExtractedAt: null,
      lastKey: null,
      lastLoadedAt: null,
      lastRun: null,
    }));
  }
  const found = await db.query<{
    stream: string;
    last_extracted_value: string | null;
    last_extracted_at: Date | null;
    last_key: string | null;
    last_loaded_at: Date | null;
    run_id: string | null;
    status: NonNullable<ExtractStatus['lastRun']>['status'] | null;
    rows_extracted: string | null;
    rows_loaded: string | null;
    error_message: string | null;
  }>(
    `SELECT s.stream, w.last_extracted_value, w.last_extracted_at, w.last_key, w.last_loaded_at,
            r.run_id, r.status, r.rows_extracted, r.rows_loaded, r.error_message
       FROM unnest($1::text[]) AS s(stream)
       LEFT JOIN ${s}.extract_watermarks w ON w.stream = s.stream
       LEFT JOIN LATERAL (SELECT * FROM ${s}.extract_runs r WHERE r.stream = s.stream
                           ORDER BY run_id DESC LIMIT 1) r ON true`,
    [streams],
  );
  const iso = (d: Date | null) => (d ? d.toISOString() : null);
  const count = (n: string | null) => (n === null ? null : Number(n));
  return found.rows.map((row) => ({
    stream: row.stream,
    watermark: row.last_extracted_value,
    lastExtractedAt: iso(row.last_extracted_at),
    lastKey: row.last_key,
    lastLoadedAt: iso(row.last_loaded_at),
    lastRun:
      row.run_id && row.status
        ? {
            runId: row.run_id,
            status: row.status,
            rowsExtracted: count(row.rows_extracted),
            rowsLoaded: count(row.rows_loaded),
            error: row.error_message,
          }
        : null,
  }));
}
