import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { JsonValue } from '@tributary/core';
import type pg from 'pg';
import { errorText } from './sql.js';

// Runs recorded in `<schema>.runs`: loads written during a run carry its id.

export interface RunInfo {
  streams?: string[];
  host?: string;
  version?: string;
  info?: { [key: string]: JsonValue };
}

/** How a run ended; a `PipelineResult` can be spread in: `{ status: 'succeeded', ...result }`. */
export interface RunOutcome {
  status: 'succeeded' | 'failed' | 'stopped' | 'aborted';
  error?: unknown;
  batches?: number;
  rowsRead?: number;
  rowsWritten?: number;
  rowsFiltered?: number;
  commits?: number;
}

// Set by scripts/bundle-bin.mjs in a bundled binary, where no package.json sits beside the code.
declare const TRIBUTARY_PG_SINK_VERSION: string | undefined;

const VERSION = (() => {
  if (typeof TRIBUTARY_PG_SINK_VERSION === 'string') return TRIBUTARY_PG_SINK_VERSION;
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
})();

/** Inserts the run's row; returns its id. `s` is the quoted control schema. */
export async function insertRun(pool: pg.Pool, s: string, info: RunInfo): Promise<string> {
  const result = await pool.query<{ run_id: string }>(
    `INSERT INTO ${s}.runs (host, pid, version, streams, info) VALUES ($1, $2, $3, $4, $5)
       RETURNING run_id::text`,
    [
      info.host ?? hostname(),
      process.pid,
      info.version ?? VERSION,
      info.streams ?? null,
      info.info === undefined ? null : JSON.stringify(info.info),
    ],
  );
  return result.rows[0]!.run_id;
}

export async function finishRunRow(
  pool: pg.Pool,
  s: string,
  runId: string,
  outcome: RunOutcome,
): Promise<void> {
  await pool.query(
    `UPDATE ${s}.runs SET status = $2, finished_at = clock_timestamp(), batches = $3, rows_read = $4,
              rows_written = $5, rows_filtered = $6, commits = $7, error = $8
        WHERE run_id = $1`,
    [
      runId,
      outcome.status,
      outcome.batches ?? null,
      outcome.rowsRead ?? null,
      outcome.rowsWritten ?? null,
      outcome.rowsFiltered ?? null,
      outcome.commits ?? null,
      outcome.error === undefined ? null : errorText(outcome.error),
    ],
  );
}
