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
    const current = exists.rows[0]?.found
      ? await db.query<{ version: number | null }>(
          `SELECT max(version) AS version FROM ${s}.schema_migrations`,
        )
      : undefined;
    const latest = migrations.at(-1)!.version;
    if ((current?.rows[0]?.version ?? 0) >= latest) return;
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
