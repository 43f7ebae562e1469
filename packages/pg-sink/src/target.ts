import { TributaryError } from '@tributary/core';
import type pg from 'pg';
import { qlikOf, type TargetTable } from './options.js';
import { qualifiedName, quoteIdent } from './sql.js';

export interface TargetColumn {
  name: string;
  /** `format_type()` of the column: safe to splice into SQL as a cast target. */
  type: string;
  /** pg_type.typcategory: 'S' string types are inserted without an explicit cast. */
  category: string;
  typname: string;
}

/** A target table as the catalog describes it, checked against its configuration. */
export interface TargetShape {
  target: TargetTable;
  /** `"schema"."table"` */
  name: string;
  columns: Map<string, TargetColumn>;
  /** `"schema"."table_history"` in history mode. */
  historyName: string | undefined;
  historyColumns: Set<string> | undefined;
  softColumn: string | undefined;
}

export function softColumnOf(target: TargetTable): string | undefined {
  return target.deletes?.mode === 'soft' ? (target.deletes.softColumn ?? 'deleted_at') : undefined;
}

export function historyTableOf(target: TargetTable): string {
  return `${target.table}_history`;
}

/** The view of every version of a history-mode target, current ones with valid_to null. */
export function versionsViewOf(target: TargetTable): string {
  return `${target.table}_versions`.slice(0, 63);
}

/** The function giving the version of each key valid at a time. */
export function versionAtOf(target: TargetTable): string {
  return `${target.table}_at`.slice(0, 63);
}

/**
 * Seed 003's "version valid at T": `<table>_versions` (current rows with valid_to null, then the
 * history) and `<table>_at(timestamptz)`, the version of each key valid then. Re-created after
 * `evolve` adds columns (they go to the end of both tables, so OR REPLACE can append them).
 */
export async function createVersionsView(db: pg.ClientBase, target: TargetTable): Promise<void> {
  const columns = await describeTable(db, target.schema, target.table);
  const history = await describeTable(db, target.schema, historyTableOf(target));
  // A hand-made table without valid_from has no versions to list.
  if (!columns?.has('valid_from') || !history?.has('valid_to')) return;
  // The validity first, then the row: columns added later append (CREATE OR REPLACE VIEW can).
  const list = [...columns.keys()]
    .filter((c) => c !== 'valid_to' && c !== 'valid_from' && history.has(c))
    .map(quoteIdent)
    .join(', ');
  const view = qualifiedName(target.schema, versionsViewOf(target));
  // A convenience derived from the tables: a view someone changed by hand (OR REPLACE cannot
  // drop its columns) must not stop the stream. Always inside a transaction here.
  await db.query('SAVEPOINT tributary_versions_view');
  try {
    await db.query(`CREATE OR REPLACE VIEW ${view} AS
SELECT "valid_from", NULL::timestamptz AS "valid_to", ${list} FROM ${qualifiedName(target.schema, target.table)}
UNION ALL
SELECT "valid_from", "valid_to", ${list} FROM ${qualifiedName(target.schema, historyTableOf(target))}`);
    await db.query(`CREATE OR REPLACE FUNCTION ${qualifiedName(target.schema, versionAtOf(target))}(at timestamptz)
RETURNS SETOF ${view} LANGUAGE sql STABLE AS $fn$
  SELECT * FROM ${view} WHERE "valid_from" <= at AND ("valid_to" IS NULL OR "valid_to" > at)
$fn$`);
    await db.query('RELEASE SAVEPOINT tributary_versions_view');
  } catch {
    await db.query('ROLLBACK TO SAVEPOINT tributary_versions_view');
  }
}

async function describeTable(
  db: pg.ClientBase,
  schema: string,
  table: string,
): Promise<Map<string, TargetColumn> | undefined> {
  const result = await db.query<TargetColumn & { found: boolean }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
            t.typcategory AS category, t.typname AS typname
       FROM pg_attribute a
       JOIN pg_class c ON c.oid = a.attrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_type t ON t.oid = a.atttypid
      WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
        AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
      ORDER BY a.attnum`,
    [schema, table],
  );
  if (result.rows.length === 0) return undefined;
  return new Map(result.rows.map((r) => [r.name, r]));
}

/**
 * Creates the target under a transaction-level advisory lock on its name: CREATE … IF NOT
 * EXISTS is not safe against a concurrent CREATE (two sessions both pass the check and one
 * fails on pg_namespace/pg_type's unique index), and Kafka subscribers open one session per
 * partition at once, as do streams started together.
 */
async function createTargetTableOnce(db: pg.ClientBase, target: TargetTable): Promise<void> {
  await db.query('BEGIN');
  try {
    // The schema's lock first (always in this order: no deadlock): two tables of one schema
    // created at once (two streams starting together) race on CREATE SCHEMA otherwise.
    await db.query(
      `SELECT pg_advisory_xact_lock(hashtextextended($1, 0)), pg_advisory_xact_lock(hashtextextended($2, 0))`,
      [
        `tributary:create-schema:${quoteIdent(target.schema)}`,
        `tributary:create-target:${qualifiedName(target.schema, target.table)}`,
      ],
    );
    await createTargetTable(db, target);
    await db.query('COMMIT');
  } catch (error) {
    await db.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}

/** CREATE TABLE IF NOT EXISTS from the column spec, key as PRIMARY KEY (plus history table). */
async function createTargetTable(db: pg.ClientBase, target: TargetTable): Promise<void> {
  const name = qualifiedName(target.schema, target.table);
  const columns = target.columns ?? [];
  const defs = columns.map((c) => `${quoteIdent(c.name)} ${c.type}`);
  const names = new Set(columns.map((c) => c.name));
  const soft = softColumnOf(target);
  if (soft && !names.has(soft)) defs.push(`${quoteIdent(soft)} timestamptz`);
  // Qlik: the stored version (header__timestamp of the change last applied to the row).
  const version = qlikOf(target)?.versionColumn;
  if (version && !names.has(version)) defs.push(`${quoteIdent(version)} timestamp`);
  // History mode: the current version's start, copied to history when it is replaced.
  if (target.mode === 'history' && !names.has('valid_from')) {
    defs.push(`"valid_from" timestamptz NOT NULL DEFAULT now()`);
  }
  defs.push(`PRIMARY KEY (${target.key.map(quoteIdent).join(', ')})`);
  // The target schema too (`tickets` for the example); checked first so a role without CREATE
  // on the database can still create tables in a schema that exists.
  const schemaExists = await db.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [target.schema]);
  if (!schemaExists.rowCount) await db.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(target.schema)}`);
  await db.query(`CREATE TABLE IF NOT EXISTS ${name} (\n  ${defs.join(',\n  ')}\n)`);
  if (target.mode === 'history') {
    const history = qualifiedName(target.schema, historyTableOf(target));
    await db.query(
      `CREATE TABLE IF NOT EXISTS ${history} (LIKE ${name}, "valid_to" timestamptz NOT NULL DEFAULT now())`,
    );
    await db.query(
      `CREATE INDEX IF NOT EXISTS ${quoteIdent(`${historyTableOf(target)}_key_idx`.slice(0, 63))} ON ${history} (${[
        ...target.key.map(quoteIdent),
        '"valid_to"',
      ].join(', ')})`,
    );
    await createVersionsView(db, target);
  }
}

/**
 * Describes the target and audits it (manual §5.7, fail loud): the table exists, the key
 * columns are backed by a PRIMARY KEY or UNIQUE constraint usable as an ON CONFLICT arbiter,
 * and every column the configuration names exists. With `create`, a missing table is created
 * from the column spec first.
 */
export async function prepareTarget(
  db: pg.ClientBase,
  target: TargetTable,
  create: boolean,
): Promise<TargetShape | undefined> {
  const name = qualifiedName(target.schema, target.table);
  let columns = await describeTable(db, target.schema, target.table);
  if (!columns && target.createTable) {
    if (!create) return undefined; // created on first write
    await createTargetTableOnce(db, target);
    columns = await describeTable(db, target.schema, target.table);
  } else if (columns && create && target.createTable && target.mode === 'history') {
    await createTargetTableOnce(db, target); // the history table may be the missing part
  }
  if (!columns) {
    throw new TributaryError(
      'MISSING_CONSTRAINT',
      `target table ${name} does not exist (create it, or set createTable with columns)`,
    );
  }
  const missing = (what: string, cols: string[]) => {
    const absent = cols.filter((c) => !columns.has(c));
    if (absent.length) {
      throw new TributaryError(
        'MISSING_CONSTRAINT',
        `target table ${name} has no ${what} column(s) ${absent.map(quoteIdent).join(', ')}`,
      );
    }
  };
  missing('key', target.key);
  if (target.versionColumn) missing('version', [target.versionColumn]);
  const soft = softColumnOf(target);
  if (soft) missing('soft-delete', [soft]);

  const audit = await db.query<{ ok: boolean }>(
    `SELECT EXISTS (
       SELECT 1 FROM pg_index i
        WHERE i.indrelid = $1::regclass AND i.indisunique AND i.indimmediate AND i.indisvalid
          AND i.indpred IS NULL AND i.indexprs IS NULL
          AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text)
                 FROM unnest(i.indkey::int2[]) k
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k)
            = (SELECT array_agg(x ORDER BY x) FROM unnest($2::text[]) x)
     ) AS ok`,
    [name, target.key],
  );
  if (!audit.rows[0]?.ok) {
    const cols = target.key.map(quoteIdent).join(', ');
    throw new TributaryError(
      'MISSING_CONSTRAINT',
      `target table ${name} has no PRIMARY KEY or UNIQUE constraint on (${cols}): ON CONFLICT needs one ` +
        `(manual §5.7). Fix: ALTER TABLE ${name} ADD UNIQUE (${cols});`,
    );
  }

  let historyName: string | undefined;
  let historyColumns: Set<string> | undefined;
  if (target.mode === 'history') {
    historyName = qualifiedName(target.schema, historyTableOf(target));
    const history = await describeTable(db, target.schema, historyTableOf(target));
    if (!history?.has('valid_to')) {
      throw new TributaryError(
        'MISSING_CONSTRAINT',
        `history mode needs table ${historyName} with the columns of ${name} plus valid_from and valid_to ` +
          `(createTable: true creates it)`,
      );
    }
    historyColumns = new Set(history.keys());
  }
  return { target, name, columns, historyName, historyColumns, softColumn: soft };
}
