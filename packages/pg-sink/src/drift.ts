import { TributaryError } from '@tributary/core';
import type pg from 'pg';
import { QLIK_HEADER_PREFIX, qlikOf, type SchemaDrift } from './options.js';
import { qualifiedName, quoteIdent } from './sql.js';
import { createVersionsView, type TargetShape } from './target.js';

/**
 * Schema drift (issue 17 part 2): what a file whose columns differ from the target's means.
 * `fail` stops naming the columns; `evolve` adds new ones in the file's own transaction (so a
 * rolled-back file leaves no column behind); `freeze-extra` ignores them. Type changes are never
 * made by us: they fail naming the column and both types.
 */

export function driftPolicy(shape: TargetShape): SchemaDrift {
  return shape.target.schemaDrift ?? 'fail';
}

/** Batch columns the target does not store: not its own, not the delete flag, not Qlik headers. */
export function unknownColumns(shape: TargetShape, columns: readonly string[]): string[] {
  const { target } = shape;
  const qlik = qlikOf(target);
  const notStored = (c: string) =>
    qlik !== undefined && !qlik.keepHeaders && c.startsWith(QLIK_HEADER_PREFIX);
  return columns.filter((c) => !shape.columns.has(c) && c !== target.deletes?.column && !notStored(c));
}

/**
 * Target columns a file does not carry (it keeps the stored value on update, null on insert):
 * the ones the sink maintains itself (soft delete, valid_from, the Qlik version) are not missing.
 */
export function missingColumns(shape: TargetShape, columns: readonly string[]): string[] {
  const present = new Set(columns);
  const maintained = new Set<string>();
  if (shape.softColumn) maintained.add(shape.softColumn);
  if (shape.target.mode === 'history') maintained.add('valid_from');
  const qlikVersion = qlikOf(shape.target)?.versionColumn;
  if (qlikVersion) maintained.add(qlikVersion);
  return [...shape.columns.keys()].filter((c) => !present.has(c) && !maintained.has(c));
}

/** The type a column added under `evolve` gets: `types`, else its `columns` type, else text. */
function addedType(shape: TargetShape, column: string): string {
  const { target } = shape;
  return target.types?.[column] ?? target.columns?.find((c) => c.name === column)?.type ?? 'text';
}

export interface AddedColumn {
  column: string;
  type: string;
}

/**
 * ALTER TABLE … ADD COLUMN (nullable) for each new column, on the target and its history table,
 * and a `schema_changes` row each: all in the caller's open transaction.
 */
export async function addColumns(
  db: pg.ClientBase,
  controlSchema: string,
  shape: TargetShape,
  columns: readonly string[],
  unit: { stream: string; file: string },
): Promise<AddedColumn[]> {
  const added = columns.map((column) => ({ column, type: addedType(shape, column) }));
  const adds = added.map((a) => `ADD COLUMN IF NOT EXISTS ${quoteIdent(a.column)} ${a.type}`).join(', ');
  await db.query(`ALTER TABLE ${shape.name} ${adds}`);
  if (shape.historyName) {
    await db.query(`ALTER TABLE ${shape.historyName} ${adds}`);
    await createVersionsView(db, shape.target);
  }
  await db.query(
    `INSERT INTO ${quoteIdent(controlSchema)}.schema_changes (stream, file, table_name, column_name, change, type)
     SELECT $1, $2, $3, c, 'added', t FROM unnest($4::text[], $5::text[]) AS u(c, t)`,
    [
      unit.stream,
      unit.file,
      qualifiedName(shape.target.schema, shape.target.table),
      added.map((a) => a.column),
      added.map((a) => a.type),
    ],
  );
  return added;
}

/** Under `fail`: the stream stops at the file, naming it and the columns (invariant 6). */
export function driftError(
  stream: string,
  file: string,
  shape: TargetShape,
  columns: string[],
): TributaryError {
  return new TributaryError(
    'SCHEMA_DRIFT',
    `stream "${stream}", ${file}: column(s) ${columns.map(quoteIdent).join(', ')} not in target table ${shape.name} ` +
      `(target.schemaDrift: evolve adds them, freeze-extra ignores them)`,
    { stream, location: { file, line: 1, column: columns[0]! } },
  );
}

/**
 * Type changes are never automatic: a declared type (`types`) that differs from the table's
 * fails naming the column and both types. Compared as base types (`numeric(12,2)` is numeric).
 */
export async function checkDeclaredTypes(db: pg.ClientBase, shape: TargetShape): Promise<void> {
  const declared = Object.entries(shape.target.types ?? {}).filter(([c]) => shape.columns.has(c));
  if (!declared.length) return;
  const { rows } = await db.query<{ column: string; declared: string; stored: string }>(
    `SELECT c AS column, d::regtype::text AS declared, s::regtype::text AS stored
       FROM unnest($1::text[], $2::text[], $3::text[]) AS u(c, d, s)
      WHERE d::regtype <> s::regtype`,
    [declared.map(([c]) => c), declared.map(([, t]) => t), declared.map(([c]) => shape.columns.get(c)!.type)],
  );
  const changed = rows[0];
  if (!changed) return;
  throw new TributaryError(
    'SCHEMA_DRIFT',
    `target table ${shape.name}: column ${quoteIdent(changed.column)} is ${changed.stored} but declared ${changed.declared}: ` +
      'type changes are never made automatically (ALTER the column yourself, or change the declared type)',
  );
}

/**
 * Once per file under evolve / freeze-extra: the columns it lacks, and the ones ignored. `where`
 * names the stream and file.
 */
export function driftWarnings(where: string, shape: TargetShape, columns: readonly string[]): string[] {
  const policy = driftPolicy(shape);
  const warnings: string[] = [];
  const missing = missingColumns(shape, columns);
  if (missing.length) {
    warnings.push(
      `${where}: no column(s) ${missing.map(quoteIdent).join(', ')}: updated rows keep their stored values, inserted rows get null`,
    );
  }
  const ignored = policy === 'freeze-extra' ? unknownColumns(shape, columns) : [];
  if (ignored.length) {
    warnings.push(
      `${where}: column(s) ${ignored.map(quoteIdent).join(', ')} not in ${shape.name}: ignored (schemaDrift: freeze-extra)`,
    );
  }
  return warnings;
}
