import { quoteIdent } from '@tributary/pg-sink';
import type pg from 'pg';

export interface AfterCommitStatus {
  hook: string;
  /** `running` (no outcome yet), `ok`, or `failed` (retried on the stream's next commit). */
  status: 'running' | 'ok' | 'failed';
  source: string | null;
  startedAt: string;
  finishedAt: string | null;
  durationMs: number | null;
  error: string | null;
}

/** The latest after-commit hook run a commit of `stream` started (tributary.after_commit), or null. */
export async function readAfterCommit(
  pool: pg.Pool,
  schema: string,
  stream: string,
): Promise<AfterCommitStatus | null> {
  const { rows } = await pool.query<{
    hook: string;
    ok: boolean | null;
    source: string | null;
    started_at: Date;
    finished_at: Date | null;
    duration_ms: string | null;
    error: string | null;
  }>(
    `SELECT hook, ok, source, started_at, finished_at, duration_ms, error FROM ${quoteIdent(schema)}.after_commit
      WHERE stream = $1 ORDER BY id DESC LIMIT 1`,
    [stream],
  );
  const run = rows[0];
  if (!run) return null;
  return {
    hook: run.hook,
    status: run.ok === null ? 'running' : run.ok ? 'ok' : 'failed',
    source: run.source,
    startedAt: run.started_at.toISOString(),
    finishedAt: run.finished_at?.toISOString() ?? null,
    durationMs: run.duration_ms === null ? null : Number(run.duration_ms),
    error: run.error,
  };
}
