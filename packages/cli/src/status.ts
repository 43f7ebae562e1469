import type { S3Client } from '@aws-sdk/client-s3';
import { readState } from '@tributary/pg-sink';
import { s3Source } from '@tributary/s3-source';
import type pg from 'pg';
import { type AfterCommitStatus, readAfterCommit } from './after-commit.js';
import { CONTROL_SCHEMA, runDefinition } from './runner.js';
import type { StreamSpec } from './spec.js';

export interface StreamStatus {
  stream: string;
  watermark: string | null;
  lastLoadedAt: string | null;
  /** Seconds since the time encoded in the watermark key (freshness of the data). */
  lagSeconds: number | null;
  filesLoaded: number;
  rowsLoaded: number;
  pendingFiles: number;
  lateFiles: number;
  /** Late files skipped under `--late-files skip` (recorded `late_skipped`, moved to late/). */
  lateFilesSkipped: number;
  /** Rows set aside (onError: skip-row) in applied files, all time (`tributary.rejected_rows`). */
  rowsRejected: number;
  /** Files recorded `rejected` (onError: skip-file) and moved to rejected/. */
  filesRejected: number;
  lastError: string | null;
  /** The file the last error (a failure newer than the last success) stopped at. */
  failingFile: string | null;
  /** The latest snapshot (a Qlik reload) of the stream, or null when it never had one. */
  snapshot: SnapshotStatus | null;
  /** The latest after-commit hook run a commit of this stream started, or null. */
  afterCommit: AfterCommitStatus | null;
}

export interface SnapshotStatus {
  /** `loading`: its files are being gathered; `complete`: swapped into the table. */
  status: 'loading' | 'complete';
  files: string[];
  rows: number | null;
  startedAt: string;
  completedAt: string | null;
}

/** Per stream: control-schema facts plus a read-only listing. Changes nothing. */
export async function readStatus(
  client: S3Client,
  pool: pg.Pool,
  specs: readonly StreamSpec[],
): Promise<StreamStatus[]> {
  const out: StreamStatus[] = [];
  const found = (
    await pool.query<{ loads: boolean; snapshots: boolean; rejected: boolean; after_commit: boolean }>(
      `SELECT to_regclass($1) IS NOT NULL AS loads, to_regclass($2) IS NOT NULL AS snapshots,
              to_regclass($3) IS NOT NULL AS rejected, to_regclass($4) IS NOT NULL AS after_commit`,
      [
        `"${CONTROL_SCHEMA}".loads`,
        `"${CONTROL_SCHEMA}".snapshots`,
        `"${CONTROL_SCHEMA}".rejected_rows`,
        `"${CONTROL_SCHEMA}".after_commit`,
      ],
    )
  ).rows[0];
  const exists = found?.loads;
  for (const spec of specs) {
    const stream = spec.id;
    const status: StreamStatus = {
      stream,
      watermark: null,
      lastLoadedAt: null,
      lagSeconds: null,
      filesLoaded: 0,
      rowsLoaded: 0,
      pendingFiles: 0,
      lateFiles: 0,
      lateFilesSkipped: 0,
      rowsRejected: 0,
      filesRejected: 0,
      lastError: null,
      failingFile: null,
      snapshot: null,
      afterCommit: null,
    };
    if (exists) {
      const { rows } = await pool.query<{
        watermark_key: string | null;
        watermark_time: Date | null;
        last_loaded_at: Date | null;
        files_loaded: string;
        rows_loaded: string;
        late_skipped: string;
        last_error: string | null;
        failing_file: string | null;
      }>(
        `SELECT c.watermark_key, c.watermark_time,
                (SELECT max(finished_at) FROM "${CONTROL_SCHEMA}".loads WHERE stream = $1 AND status IN ('loaded', 'archived')) AS last_loaded_at,
                (SELECT count(DISTINCT source) FROM "${CONTROL_SCHEMA}".loads WHERE stream = $1 AND status IN ('loaded', 'archived')) AS files_loaded,
                (SELECT coalesce(sum(rows_inserted + rows_updated), 0) FROM "${CONTROL_SCHEMA}".loads WHERE stream = $1 AND status IN ('loaded', 'archived')) AS rows_loaded,
                (SELECT count(DISTINCT source) FROM "${CONTROL_SCHEMA}".loads WHERE stream = $1 AND status = 'late_skipped') AS late_skipped,
                f.error AS last_error, f.source AS failing_file
           FROM (SELECT 1) one
           LEFT JOIN "${CONTROL_SCHEMA}".checkpoints c ON c.stream = $1
           LEFT JOIN LATERAL (
             SELECT f.error, f.source FROM "${CONTROL_SCHEMA}".loads f
              WHERE f.stream = $1 AND f.status = 'failed'
                AND f.load_id > coalesce((SELECT max(load_id) FROM "${CONTROL_SCHEMA}".loads WHERE stream = $1 AND status IN ('loaded', 'archived', 'late_skipped', 'rejected')), 0)
              ORDER BY f.load_id DESC LIMIT 1) f ON true`,
        [stream],
      );
      const row = rows[0];
      if (row) {
        status.watermark = row.watermark_key;
        status.lastLoadedAt = row.last_loaded_at?.toISOString() ?? null;
        status.lagSeconds = row.watermark_time
          ? Math.round((Date.now() - row.watermark_time.getTime()) / 1000)
          : null;
        status.filesLoaded = Number(row.files_loaded);
        status.rowsLoaded = Number(row.rows_loaded);
        status.lateFilesSkipped = Number(row.late_skipped);
        status.lastError = row.last_error;
        status.failingFile = row.failing_file;
      }
    }
    if (found?.rejected) {
      // Migration 5 (issue 17): loads.rows_rejected and the 'rejected' status.
      const { rows } = await pool.query<{ rows_rejected: string; files_rejected: string }>(
        `SELECT coalesce(sum(rows_rejected) FILTER (WHERE status IN ('loaded', 'archived')), 0) AS rows_rejected,
                count(DISTINCT source) FILTER (WHERE status = 'rejected') AS files_rejected
           FROM "${CONTROL_SCHEMA}".loads WHERE stream = $1`,
        [stream],
      );
      status.rowsRejected = Number(rows[0]?.rows_rejected ?? 0);
      status.filesRejected = Number(rows[0]?.files_rejected ?? 0);
    }
    if (found?.snapshots) {
      const { rows } = await pool.query<{
        status: 'loading' | 'complete';
        files: string[];
        rows: string | null;
        started_at: Date;
        completed_at: Date | null;
      }>(
        `SELECT status, files, rows, started_at, completed_at FROM "${CONTROL_SCHEMA}".snapshots
          WHERE stream = $1 ORDER BY snapshot_id DESC LIMIT 1`,
        [stream],
      );
      const snapshot = rows[0];
      if (snapshot) {
        status.snapshot = {
          status: snapshot.status,
          files: snapshot.files,
          rows: snapshot.rows === null ? null : Number(snapshot.rows),
          startedAt: snapshot.started_at.toISOString(),
          completedAt: snapshot.completed_at?.toISOString() ?? null,
        };
      }
    }
    if (found?.after_commit) status.afterCommit = await readAfterCommit(pool, CONTROL_SCHEMA, stream);
    try {
      const state = await readState(pool, CONTROL_SCHEMA, stream);
      const source = s3Source({
        client,
        streams: [runDefinition(spec, { lateFiles: 'error' })],
        archive: false,
      });
      const [plan] = await source.plan({
        checkpoint: async () => state?.checkpoint ?? null,
        ...(state ? { loads: state.loads } : {}),
      });
      status.pendingFiles = plan?.pending.length ?? 0;
      status.lateFiles = plan?.late.length ?? 0;
      if (plan?.error && !status.lastError) status.lastError = plan.error;
    } catch (error) {
      status.lastError ??= (error as Error).message;
    }
    out.push(status);
  }
  return out;
}
