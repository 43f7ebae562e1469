-- Tributary roles: owner / writer / read-only (DWH manual §4 Phase A "Role model", §12).
--
-- Run once per database as a superuser or a role with CREATEROLE, e.g.
--   psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -f docs/roles.sql
-- Replace the CHANGE_ME_BEFORE_APPLY tokens in your session before applying (or set the
-- passwords afterwards with \password); never commit real passwords. Idempotent: safe to re-run.
--
--   tributary_owner   owns the control schema `tributary` and the target schema `bronze`; runs
--                     migrations (pgSink migrate / migrate()) and creates target tables.
--   tributary_writer  what the pipeline connects as: reads and writes rows, checkpoints, loads and
--                     runs, uses temporary staging tables; no DDL (run it with `migrate: false`
--                     after the owner migrated, and without `createTable`).
--   tributary_ro      dashboards and operators (Grafana): reads every table and view, writes nothing.
--
-- Rename the schemas below if you use another control schema (`schema` option) or target schema.

DO $roles$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tributary_owner') THEN
    CREATE ROLE tributary_owner LOGIN PASSWORD 'CHANGE_ME_BEFORE_APPLY';
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tributary_writer') THEN
    CREATE ROLE tributary_writer LOGIN PASSWORD 'CHANGE_ME_BEFORE_APPLY';
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tributary_ro') THEN
    CREATE ROLE tributary_ro LOGIN PASSWORD 'CHANGE_ME_BEFORE_APPLY';
  END IF;
  -- Staging tables are temporary tables: the writer (and the owner) need TEMPORARY.
  EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO tributary_owner, tributary_writer',
                 current_database());
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO tributary_ro', current_database());
END
$roles$;

CREATE SCHEMA IF NOT EXISTS tributary AUTHORIZATION tributary_owner;
CREATE SCHEMA IF NOT EXISTS bronze AUTHORIZATION tributary_owner;

-- Writer: DML only.
GRANT USAGE ON SCHEMA tributary, bronze TO tributary_writer;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA tributary, bronze TO tributary_writer;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA tributary, bronze TO tributary_writer;
ALTER DEFAULT PRIVILEGES FOR ROLE tributary_owner IN SCHEMA tributary, bronze
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO tributary_writer;
ALTER DEFAULT PRIVILEGES FOR ROLE tributary_owner IN SCHEMA tributary, bronze
  GRANT USAGE, SELECT ON SEQUENCES TO tributary_writer;

-- Read-only: tables and views (views are tables for GRANT), nothing else.
GRANT USAGE ON SCHEMA tributary, bronze TO tributary_ro;
GRANT SELECT ON ALL TABLES IN SCHEMA tributary, bronze TO tributary_ro;
ALTER DEFAULT PRIVILEGES FOR ROLE tributary_owner IN SCHEMA tributary, bronze
  GRANT SELECT ON TABLES TO tributary_ro;
-- The lock holder named in "stream X is locked by pid N" comes from pg_locks (readable by all);
-- application name and client address of other sessions need pg_read_all_stats:
-- GRANT pg_read_all_stats TO tributary_writer;
