import type pg from 'pg';
import { quoteIdent } from './sql.js';

export interface Migration {
  version: number;
  name: string;
  /** DDL for the control schema `s` (already quoted). Must be safe to re-run after a crash. */
  sql(s: string): string;
}

/**
 * The control schema, in order. Never edit a shipped migration: append a new one. Names follow
 * ARCHITECTURE.md "Names that are contracts"; view semantics follow the DWH manual §7.
 */
export const migrations: readonly Migration[] = [
  {
    version: 1,
    name: 'control tables',
    sql: (s) => `
CREATE TABLE IF NOT EXISTS ${s}.checkpoints (
  stream          text PRIMARY KEY,
  position        jsonb NOT NULL,
  source          text,
  watermark_key   text,
  watermark_time  timestamptz,
  updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS ${s}.runs (
  run_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  status          text NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'succeeded', 'failed', 'stopped', 'aborted')),
  started_at      timestamptz NOT NULL DEFAULT now(),
  finished_at     timestamptz,
  host            text,
  pid             integer,
  version         text,
  streams         text[],
  batches         bigint,
  rows_read       bigint,
  rows_written    bigint,
  rows_filtered   bigint,
  commits         bigint,
  error           text,
  info            jsonb
);
CREATE TABLE IF NOT EXISTS ${s}.loads (
  load_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  run_id          bigint,
  stream          text NOT NULL,
  source          text NOT NULL,
  etag            text,
  size            bigint,
  kind            text CHECK (kind IN ('baseline', 'delta')),
  status          text NOT NULL
                  CHECK (status IN ('ingesting', 'loaded', 'archived', 'late_skipped', 'failed')),
  rows_read       bigint NOT NULL DEFAULT 0,
  rows_filtered   bigint NOT NULL DEFAULT 0,
  filtered        jsonb NOT NULL DEFAULT '{}',
  rows_inserted   bigint NOT NULL DEFAULT 0,
  rows_updated    bigint NOT NULL DEFAULT 0,
  rows_deleted    bigint NOT NULL DEFAULT 0,
  rows_unchanged  bigint NOT NULL DEFAULT 0,
  batches         integer NOT NULL DEFAULT 0,
  bytes           bigint,
  position        jsonb,
  started_at      timestamptz NOT NULL DEFAULT now(),
  finished_at     timestamptz,
  archived_at     timestamptz,
  error           text
);
CREATE INDEX IF NOT EXISTS loads_stream_source_idx ON ${s}.loads (stream, source, load_id DESC);
CREATE INDEX IF NOT EXISTS loads_status_started_idx ON ${s}.loads (status, started_at DESC);

-- Tries a cast without aborting the transaction: PostgreSQL 15 has no pg_input_is_valid. Used
-- only after a failed apply, to name the file, row and column of the offending value.
CREATE OR REPLACE FUNCTION ${s}.try_cast(value text, type_name text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
  target regtype := type_name::regtype; -- rejects anything that is not a type name
BEGIN
  IF value IS NULL THEN RETURN true; END IF;
  EXECUTE format('SELECT $1::%s', target) USING value;
  RETURN true;
EXCEPTION WHEN data_exception THEN
  RETURN false;
END
$fn$;
`,
  },
  {
    version: 2,
    name: 'observability views',
    sql: (s) => `
-- Per-stream lag since the last successful load (manual §7 v_table_freshness, per stream).
CREATE OR REPLACE VIEW ${s}.v_stream_freshness AS
SELECT stream,
       max(finished_at) AS last_loaded_at,
       now() - max(finished_at) AS lag,
       count(*) FILTER (WHERE started_at > now() - interval '24 hours') AS loads_last_24h,
       coalesce(sum(rows_inserted + rows_updated + rows_deleted)
                FILTER (WHERE started_at > now() - interval '24 hours'), 0) AS rows_changed_last_24h
  FROM ${s}.loads
 WHERE status IN ('loaded', 'archived')
 GROUP BY stream;

-- Failed loads of the last 24 hours; zero rows = healthy (manual §7).
CREATE OR REPLACE VIEW ${s}.v_recent_failures AS
SELECT load_id, run_id, stream, source, etag, started_at, finished_at, error
  FROM ${s}.loads
 WHERE status = 'failed' AND started_at > now() - interval '24 hours'
 ORDER BY started_at DESC;

-- Watermark vs. load lag per stream: "nothing new arrived" (watermark_lag grows, load_lag
-- small) is told apart from "stuck" (load_lag grows) (manual §7 v_watermark_lag).
CREATE OR REPLACE VIEW ${s}.v_watermark_lag AS
SELECT c.stream,
       c.watermark_key,
       c.watermark_time,
       c.updated_at AS last_loaded_at,
       l.rows_loaded_last_run,
       now() - c.updated_at AS load_lag,
       now() - c.watermark_time AS watermark_lag
  FROM ${s}.checkpoints c
  LEFT JOIN LATERAL (
        SELECT rows_inserted + rows_updated + rows_deleted AS rows_loaded_last_run
          FROM ${s}.loads
         WHERE stream = c.stream AND status IN ('loaded', 'archived', 'late_skipped')
         ORDER BY load_id DESC
         LIMIT 1) l ON true;
`,
  },
  {
    version: 3,
    name: 'S3 LastModified in the load log',
    sql: (s) => `
-- Seed 002's cubic_loads.s3_modified: the object's LastModified beside its ETag and size.
ALTER TABLE ${s}.loads ADD COLUMN IF NOT EXISTS s3_modified timestamptz;

`,
  },
  {
    version: 4,
    name: 'Qlik snapshots',
    sql: (s) => `
-- Seed 002's cubic_table_ods_snapshots: each reload of a Qlik table (new LOAD files) is a
-- snapshot, filled in a shadow table file by file and swapped in with its last file's commit.
CREATE TABLE IF NOT EXISTS ${s}.snapshots (
  snapshot_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  stream        text NOT NULL,
  status        text NOT NULL DEFAULT 'loading' CHECK (status IN ('loading', 'complete')),
  files         text[] NOT NULL DEFAULT '{}',
  rows          bigint,
  started_at    timestamptz NOT NULL DEFAULT now(),
  completed_at  timestamptz
);
-- At most one snapshot of a stream is being filled.
CREATE UNIQUE INDEX IF NOT EXISTS snapshots_loading ON ${s}.snapshots (stream) WHERE status = 'loading';
CREATE INDEX IF NOT EXISTS snapshots_stream ON ${s}.snapshots (stream, snapshot_id);
`,
  },
  {
    version: 5,
    name: 'rejected rows',
    sql: (s) => `
-- Issue 17: rows set aside under a stream's onError policy, written in the same transaction as
-- the file's good rows, load row and checkpoint (a crash neither loses nor doubles them).
CREATE TABLE IF NOT EXISTS ${s}.rejected_rows (
  rejected_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  stream          text NOT NULL,
  source          text NOT NULL,
  etag            text,
  line            bigint,
  record          bigint,
  column_name     text,
  error_code      text NOT NULL,
  message         text NOT NULL,
  record_text     text,
  rejected_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS rejected_rows_stream_idx ON ${s}.rejected_rows (stream, rejected_at DESC);
CREATE INDEX IF NOT EXISTS rejected_rows_source_idx ON ${s}.rejected_rows (stream, source);

ALTER TABLE ${s}.loads ADD COLUMN IF NOT EXISTS rows_rejected bigint NOT NULL DEFAULT 0;
-- 'rejected': a file not applied under onError: 'skip-file' (moved to rejected/).
ALTER TABLE ${s}.loads DROP CONSTRAINT IF EXISTS loads_status_check;
ALTER TABLE ${s}.loads ADD CONSTRAINT loads_status_check
  CHECK (status IN ('ingesting', 'loaded', 'archived', 'late_skipped', 'rejected', 'failed'));

-- Rows and files rejected in the last 24 hours, per stream; zero rows = nothing set aside.
CREATE OR REPLACE VIEW ${s}.v_rejected_rows AS
SELECT stream,
       sum(rows_rejected) FILTER (WHERE status <> 'rejected') AS rows_rejected,
       count(*) FILTER (WHERE status <> 'rejected' AND rows_rejected > 0) AS files_with_rejected_rows,
       count(*) FILTER (WHERE status = 'rejected') AS files_rejected,
       max(finished_at) AS last_rejected_at
  FROM ${s}.loads
 WHERE rows_rejected > 0 AND started_at > now() - interval '24 hours'
   AND status IN ('loaded', 'archived', 'rejected')
 GROUP BY stream;
`,
  },
  {
    version: 6,
    name: 'after-commit hooks and schema changes',
    sql: (s) => `
-- Issue 17: each run of an after-commit hook (target.afterCommit, onCommitted), with its outcome.
-- A row with finished_at null is running (or its process died mid-run).
CREATE TABLE IF NOT EXISTS ${s}.after_commit (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  stream       text NOT NULL,
  source       text,
  target       text,
  hook         text NOT NULL,
  sql          text,
  started_at   timestamptz NOT NULL DEFAULT now(),
  finished_at  timestamptz,
  ok           boolean,
  error        text,
  duration_ms  bigint
);
CREATE INDEX IF NOT EXISTS after_commit_hook_idx ON ${s}.after_commit (hook, started_at DESC);
CREATE INDEX IF NOT EXISTS after_commit_stream_idx ON ${s}.after_commit (stream, id DESC);

-- Issue 17: columns added or ignored under target.schemaDrift, written in the transaction of
-- the file that brought them (a rolled-back file leaves neither the column nor its row).
CREATE TABLE IF NOT EXISTS ${s}.schema_changes (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  stream       text NOT NULL,
  file         text NOT NULL,
  table_name   text NOT NULL,
  column_name  text NOT NULL,
  change       text NOT NULL,  -- 'added' (evolve); freeze-extra changes nothing and only warns
  type         text,
  at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS schema_changes_stream_idx ON ${s}.schema_changes (stream, id DESC);
`,
  },
  {
    version: 7,
    name: 'extract control tables',
    sql: (s) => `
-- Seed 001 §4 (Phase A/E): the extract side. One watermark row per extract stream (table):
-- the closed upper bound of the last uploaded run; advanced only after its file is uploaded.
CREATE TABLE IF NOT EXISTS ${s}.extract_watermarks (
  stream                  text PRIMARY KEY,
  table_name              text NOT NULL,
  watermark_column        text,
  last_extracted_value    text,
  last_extracted_at       timestamptz,
  last_key                text,
  last_run_id             bigint,
  rows_extracted_last_run bigint,
  last_loaded_at          timestamptz,
  rows_loaded_last_run    bigint,
  updated_at              timestamptz NOT NULL DEFAULT now()
);
-- One row per extract run: extracting -> uploaded -> loaded, or failed (with the error).
-- run_started_at is the SOURCE database's now(); lower/upper are the run's (lower, upper] bounds.
CREATE TABLE IF NOT EXISTS ${s}.extract_runs (
  run_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  stream          text NOT NULL,
  table_name      text NOT NULL,
  mode            text NOT NULL CHECK (mode IN ('incremental', 'snapshot')),
  status          text NOT NULL DEFAULT 'extracting'
                  CHECK (status IN ('extracting', 'uploaded', 'loaded', 'failed')),
  run_started_at  timestamptz,
  lower_bound     text,
  upper_bound     text,
  bucket          text,
  object_key      text,
  csv_path        text,
  unit_time       timestamptz,
  rows_extracted  bigint,
  rows_loaded     bigint,
  bytes           bigint,
  attempts        integer NOT NULL DEFAULT 1,
  started_at      timestamptz NOT NULL DEFAULT now(),
  uploaded_at     timestamptz,
  run_finished_at timestamptz,
  error_message   text
);
CREATE INDEX IF NOT EXISTS extract_runs_stream_idx ON ${s}.extract_runs (stream, run_id DESC);
CREATE INDEX IF NOT EXISTS extract_runs_status_idx ON ${s}.extract_runs (status, run_started_at DESC);
CREATE INDEX IF NOT EXISTS extract_runs_object_idx ON ${s}.extract_runs (object_key);

-- Manual §7's three views for the extract side (the load side's names are taken by v2).
CREATE OR REPLACE VIEW ${s}.v_extract_freshness AS
SELECT table_name, stream,
       max(run_finished_at) AS last_loaded_at,
       now() - max(run_finished_at) AS lag,
       count(*) FILTER (WHERE run_started_at > now() - interval '24 hours') AS loads_last_24h
  FROM ${s}.extract_runs
 WHERE status = 'loaded'
 GROUP BY table_name, stream;

CREATE OR REPLACE VIEW ${s}.v_extract_failures AS
SELECT run_id, stream, table_name, run_started_at, run_finished_at, csv_path, error_message
  FROM ${s}.extract_runs
 WHERE status = 'failed' AND started_at > now() - interval '24 hours'
 ORDER BY started_at DESC;

CREATE OR REPLACE VIEW ${s}.v_extract_lag AS
SELECT stream, table_name, last_extracted_at, last_loaded_at, rows_extracted_last_run,
       rows_loaded_last_run,
       now() - last_loaded_at AS load_lag,
       now() - last_extracted_at AS extract_lag
  FROM ${s}.extract_watermarks;
`,
  },
];

// A fixed advisory key serialises concurrent migrators (two runners starting at once).
const MIGRATION_LOCK_KEY = 'tributary:migrate';

export interface MigrateOptions {
  /** Control schema, default `tributary`. */
  schema?: string;
}

/**
 * Brings the control schema up to date: one transaction, under an advisory transaction lock so
 * concurrent runners serialise, each missing migration recorded in `schema_migrations`.
 * Idempotent: a no-op on an up-to-date schema.
 */
export async function migrate(pool: pg.Pool | pg.ClientBase, options: MigrateOptions = {}): Promise<void> {
  const schema = options.schema ?? 'tributary';
  const s = quoteIdent(schema);
  const client = isPool(pool) ? await pool.connect() : undefined;
  const db: pg.ClientBase = client ?? (pool as pg.ClientBase);
  try {
    // Fast path without locks: already current.
    const exists = await db.query<{ found: boolean }>('SELECT to_regclass($1) IS NOT NULL AS found', [
      `${s}.schema_migrations`,
    ]);
    // Every known version must be there, not just the newest: migrations written on parallel
    // branches can land out of order, and a database that has 6 must still get 5.
    const current = exists.rows[0]?.found
      ? await db.query<{ version: number }>(`SELECT version FROM ${s}.schema_migrations`)
      : undefined;
    const present = new Set(current?.rows.map((r) => r.version));
    if (migrations.every((m) => present.has(m.version))) return;
    await db.query('BEGIN');
    try {
      await db.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [MIGRATION_LOCK_KEY]);
      // CREATE SCHEMA IF NOT EXISTS would still need CREATE on the database: a schema made by a
      // DBA for the owner role (docs/roles.sql) must be enough.
      const schemaExists = await db.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
      if (!schemaExists.rowCount) await db.query(`CREATE SCHEMA ${s}`);
      await db.query(`CREATE TABLE IF NOT EXISTS ${s}.schema_migrations (
        version integer PRIMARY KEY,
        name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now())`);
      const applied = await db.query<{ version: number }>(`SELECT version FROM ${s}.schema_migrations`);
      const done = new Set(applied.rows.map((r) => r.version));
      for (const migration of migrations) {
        if (done.has(migration.version)) continue;
        await db.query(migration.sql(s));
        await db.query(`INSERT INTO ${s}.schema_migrations (version, name) VALUES ($1, $2)`, [
          migration.version,
          migration.name,
        ]);
      }
      await db.query('COMMIT');
    } catch (error) {
      await db.query('ROLLBACK').catch(() => undefined);
      throw error;
    }
  } finally {
    client?.release();
  }
}

function isPool(value: unknown): value is pg.Pool {
  return typeof (value as pg.Pool).totalCount === 'number';
}
