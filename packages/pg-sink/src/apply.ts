import { TributaryError } from '@tributary/core';
import { unknownColumns } from './drift.js';
import { QLIK_OPER, QLIK_SEQ, QLIK_TIMESTAMP, qlikOf } from './options.js';
import { quoteIdent } from './sql.js';
import type { TargetShape } from './target.js';

/**
 * What the staging table holds and how each batch column is computed from it. Rows staged from
 * JavaScript map column `i` to `s.c<i>`; raw CSV (pass-through) stages the file's columns and
 * computes the batch columns with the declarative steps compiled to SQL (`compileRaw`).
 */
export interface StageInput {
  /** Number of text columns in the staging table (`c0` …). */
  stageColumns: number;
  /** Batch column → SQL text expression over the staging row `s`. */
  expressions: ReadonlyMap<string, string>;
  /** Row filters in order; `drops` is a SQL boolean that is never null. */
  filters: ReadonlyArray<{ name: string; drops: string }>;
  /** Parameters `$1…` used by expressions and filters, and their SQL types. */
  params: readonly unknown[];
  paramTypes: readonly string[];
  /** Raw CSV staging: COPY in CSV format, `ord` numbered by the server from 1. */
  csv?: { emptyAsNull: boolean };
}

/** Statements for one (target, batch column list); built once and cached per stream. */
export interface ApplyPlan {
  /** Batch column names. */
  columns: string[];
  /** Names of the filters whose counts the merge returns (`filtered`, in this order). */
  filterNames: string[];
  /** CREATE TEMP TABLE IF NOT EXISTS + TRUNCATE, one round trip. */
  prepareStage: string;
  /** The staging table (`pg_temp.…`). */
  stage: string;
  /**
   * CREATE TEMP TABLE IF NOT EXISTS alone. The table is `ON COMMIT DELETE ROWS`: every
   * transaction starts with it empty (a rolled-back one leaves no visible row either), so a
   * session creates it once and only a second batch in the same transaction clears it first.
   */
  createStage: string;
  /** TRUNCATE of the staging table, for a batch that follows another in the same transaction. */
  clearStage: string;
  copy: string;
  merge: string;
  /** `merge` in two parts: its `WITH …` CTEs, and the SELECT of the counts over `merged`. */
  mergeWith: string;
  mergeCounts: string;
  mergeParams: unknown[];
  /** Finds the first row/column whose value does not cast (after a failed merge). */
  locate: string;
  locateParams: unknown[];
  /** Column names in `locate`'s `col` numbering. */
  locateColumns: string[];
  /**
   * A `RejectPolicy`'s slow path: deletes every staged row with a value that does not cast (or
   * an empty key) and returns them (`ord0`: 0-based in the batch, `col`, `col_value`), in file
   * order. Same parameters as `locate`.
   */
  rejectCasts: string;
}

export interface ApplyCounts {
  inserted: number;
  updated: number;
  deleted: number;
}

// Types whose values have no equality operator: compared as text in the "row differs" test.
const COMPARE_AS_TEXT = new Set(['json', 'xml', 'point', 'line', 'lseg', 'box', 'path', 'polygon', 'circle']);
const DELETE_FLAG = '__tributary_delete';
const VALID_TO = '__tributary_valid_to';

/** The union of the rows' keys, in first-seen order. */
export function batchColumns(rows: readonly Record<string, unknown>[]): string[] {
  const seen = new Set<string>();
  for (const row of rows) for (const key in row) if (!seen.has(key)) seen.add(key);
  return [...seen];
}

/** Staging for rows sent from JavaScript: batch column `i` is `s.c<i>`. */
export function rowStage(columns: readonly string[]): StageInput {
  return {
    stageColumns: columns.length,
    expressions: new Map(columns.map((c, i) => [c, `s.c${i}`])),
    filters: [],
    params: [],
    paramTypes: [],
  };
}

export function planApply(
  shape: TargetShape,
  columns: string[],
  controlSchema: string,
  input: StageInput = rowStage(columns),
  /** `ignore`: columns the target lacks are left out (schemaDrift freeze-extra). */
  extraColumns: 'fail' | 'ignore' = 'fail',
): ApplyPlan {
  const { target } = shape;
  const mode = target.mode ?? 'upsert';
  const deleteColumn = target.deletes?.column;
  // Qlik: the change-table `header__` columns steer the apply and are not stored (unless kept).
  const qlik = qlikOf(target);
  const unknown = extraColumns === 'ignore' ? [] : unknownColumns(shape, columns);
  if (unknown.length) {
    throw new TributaryError(
      'SCHEMA_DRIFT',
      `batch columns not in target table ${shape.name}: ${unknown.map(quoteIdent).join(', ')}`,
    );
  }
  const missingKeys = target.key.filter((k) => !columns.includes(k));
  if (missingKeys.length) {
    throw new TributaryError(
      'BAD_KEY',
      `batch has no key column(s) ${missingKeys.map(quoteIdent).join(', ')}`,
    );
  }
  const expressions = new Map(input.expressions);
  // The version column of a Qlik target holds the change's header__timestamp (LOAD files,
  // which have none, leave it as it is).
  let effective = columns;
  const qlikVersion = qlik?.versionColumn;
  if (qlikVersion && qlikVersion !== QLIK_TIMESTAMP && expressions.has(QLIK_TIMESTAMP)) {
    expressions.set(qlikVersion, expressions.get(QLIK_TIMESTAMP)!);
    effective = [...columns.filter((c) => c !== qlikVersion), qlikVersion];
  }
  const expr = (c: string) => expressions.get(c)!;
  const filters = [...input.filters];
  if (qlik && expressions.has(QLIK_OPER)) {
    // Before-images are not changes: counted as filtered, never applied.
    filters.push({ name: 'qlik_before_image', drops: `coalesce(${expr(QLIK_OPER)} = 'B', false)` });
  }
  const stageNames = Array.from({ length: input.stageColumns }, (_, i) => `c${i}`);
  const textColumns = stageNames.map((c) => `${c} text`).join(', ');
  let stage: string;
  let createStage: string;
  let prepareStage: string;
  let copy: string;
  if (input.csv) {
    // The server numbers the rows in COPY (file) order. The numbering goes on across batches
    // (no RESTART IDENTITY per batch): only its order counts, and `locate` numbers from 1.
    stage = `pg_temp.tributary_csv_${input.stageColumns}`;
    createStage = `CREATE TEMP TABLE IF NOT EXISTS ${stage} (ord bigint GENERATED ALWAYS AS IDENTITY, ${textColumns}) ON COMMIT DELETE ROWS`;
    prepareStage = `${createStage}; TRUNCATE ${stage} RESTART IDENTITY`;
    // Empty fields: NULL for every column (emptyAsNull), else '' like csv-parse gives them.
    const empties = input.csv.emptyAsNull ? 'FORCE_NULL' : 'FORCE_NOT_NULL';
    copy = `COPY ${stage} (${stageNames.join(', ')}) FROM STDIN WITH (FORMAT csv, ${empties} (${stageNames.join(', ')}))`;
  } else {
    stage = `pg_temp.tributary_stage_${input.stageColumns}`;
    createStage = `CREATE TEMP TABLE IF NOT EXISTS ${stage} (ord integer, ${textColumns}) ON COMMIT DELETE ROWS`;
    prepareStage = `${createStage}; TRUNCATE ${stage}`;
    copy = `COPY ${stage} (ord, ${stageNames.join(', ')}) FROM STDIN`;
  }
  const keep = filters.length ? filters.map((f) => `NOT ${f.drops}`).join(' AND ') : '';
  // Every step parameter typed up front: a step whose column a later step dropped leaves its
  // parameters unused, and PostgreSQL cannot infer the type of an unused parameter.
  const typedParams = input.paramTypes.length
    ? `params AS (SELECT ${input.paramTypes.map((t, i) => `$${i + 1}::${t}`).join(', ')})`
    : '';

  const applied = effective.filter((c) => shape.columns.has(c) && !(c === shape.softColumn));
  const typed = (c: string) => {
    const col = shape.columns.get(c)!;
    const raw = expr(c);
    // Empty CSV fields are NULL for every non-string type.
    return col.category === 'S' ? raw : `NULLIF(${raw}, '')::${col.type}`;
  };
  const q = quoteIdent;
  const keys = target.key;
  const params: unknown[] = [...input.params];
  const hasDeletes = deleteColumn !== undefined && input.expressions.has(deleteColumn);
  let deleteExpr = 'false';
  if (hasDeletes) {
    params.push(target.deletes!.values);
    deleteExpr = `coalesce(${expr(deleteColumn!)} = ANY($${params.length}::text[]), false)`;
  }
  const keyExprs = keys.map(typed).join(', ');
  // Qlik: the last change by header__change_seq wins (digits compared as numbers: by length,
  // then text), then file order.
  const seqOrder =
    qlik && expressions.has(QLIK_SEQ)
      ? `length(${expr(QLIK_SEQ)}) DESC NULLS LAST, ${expr(QLIK_SEQ)} DESC NULLS LAST, `
      : '';
  // Last occurrence of a key in file order wins: ON CONFLICT may touch a row only once.
  const src = `src AS (
  SELECT DISTINCT ON (${keyExprs}) ${applied.map((c) => `${typed(c)} AS ${q(c)}`).join(', ')}, ${deleteExpr} AS ${DELETE_FLAG}
    FROM ${stage} s${keep ? `\n   WHERE ${keep}` : ''}
   ORDER BY ${keyExprs}, ${seqOrder}s.ord DESC
)`;
  const soft = shape.softColumn;
  const hardDeletes = hasDeletes && target.deletes!.mode === 'hard';
  const softDeletes = hasDeletes && soft !== undefined;
  // A Qlik LOAD file (no header__timestamp) is the snapshot itself: it is not version-guarded.
  const versionColumn =
    target.versionColumn && (!qlik || applied.includes(target.versionColumn))
      ? target.versionColumn
      : undefined;
  const history = mode === 'history';
  const maintainValidFrom = history && shape.columns.has('valid_from') && !columns.includes('valid_from');
  // Seed 003: a version starts when the source says it changed (a date/time version column),
  // else when it was loaded; the version it replaces ends there.
  const sourceTime =
    maintainValidFrom &&
    versionColumn &&
    applied.includes(versionColumn) &&
    shape.columns.get(versionColumn)?.category === 'D'
      ? (alias: string) => `coalesce(${alias}.${quoteIdent(versionColumn)}::timestamptz, now())`
      : undefined;
  const validFrom = sourceTime ?? (() => 'now()');

  const nonKey = applied.filter((c) => !keys.includes(c));
  const cmp = (alias: string, c: string) => {
    const typname = shape.columns.get(c)!.typname;
    return COMPARE_AS_TEXT.has(typname) ? `${alias}.${q(c)}::text` : `${alias}.${q(c)}`;
  };
  // "Row differs" between the stored row `t` and an incoming one (`EXCLUDED` or `src`).
  const differs = (incoming: 'EXCLUDED' | 'src') => {
    const parts: string[] = [];
    if (nonKey.length) {
      parts.push(
        `ROW(${nonKey.map((c) => cmp('t', c)).join(', ')}) IS DISTINCT FROM ROW(${nonKey.map((c) => cmp(incoming, c)).join(', ')})`,
      );
    }
    if (softDeletes) {
      const incomingLive = incoming === 'EXCLUDED' ? `EXCLUDED.${q(soft)} IS NULL` : `NOT src.${DELETE_FLAG}`;
      parts.push(`(t.${q(soft)} IS NULL) IS DISTINCT FROM (${incomingLive})`);
    }
    return parts.length ? `(${parts.join(' OR ')})` : 'false';
  };
  // Version guard: a row never regresses to an older version (late files are safe to apply).
  const guard = (incoming: 'EXCLUDED' | 'src') =>
    versionColumn
      ? ` AND (t.${q(versionColumn)} IS NULL OR ${incoming}.${q(versionColumn)} >= t.${q(versionColumn)})`
      : '';
  const keyJoin = keys.map((k) => `t.${q(k)} = src.${q(k)}`).join(' AND ');

  const ctes = [src];
  const insertCols = [...applied];
  const insertExprs = applied.map((c) => `src.${q(c)}`);
  if (softDeletes) {
    insertCols.push(soft);
    insertExprs.push(`CASE WHEN src.${DELETE_FLAG} THEN now() END`);
  }
  if (maintainValidFrom) {
    insertCols.push('valid_from');
    insertExprs.push(validFrom('src'));
  }
  if (history) {
    // The replaced (or deleted) version goes to <table>_history, read before this statement
    // changes anything: every CTE sees the same snapshot (seed 003).
    const tableCols = [...shape.columns.keys()].filter(
      (c) => shape.historyColumns!.has(c) && c !== 'valid_to',
    );
    const replaced = hardDeletes
      ? `(src.${DELETE_FLAG}${guard('src')}) OR (NOT src.${DELETE_FLAG} AND ${differs('src')}${guard('src')})`
      : `${differs('src')}${guard('src')}`;
    ctes.push(`old AS (
  SELECT ${tableCols.map((c) => `t.${q(c)}`).join(', ')}, ${validFrom('src')} AS ${VALID_TO}
    FROM ${shape.name} t JOIN src ON ${keyJoin}
   WHERE ${replaced}
)`);
    ctes.push(`hist AS (
  INSERT INTO ${shape.historyName} (${tableCols.map(q).join(', ')}, "valid_to")
  SELECT ${tableCols.map((c) => `old.${q(c)}`).join(', ')}, old.${VALID_TO} FROM old
)`);
  }
  if (hardDeletes) {
    ctes.push(`deleted AS (
  DELETE FROM ${shape.name} t USING src WHERE src.${DELETE_FLAG} AND ${keyJoin}${guard('src')} RETURNING 1
)`);
  }
  const insertWhere = hardDeletes ? ` WHERE NOT src.${DELETE_FLAG}` : '';
  let conflict: string;
  if (mode === 'insert-ignore') {
    conflict = 'DO NOTHING';
  } else {
    const sets = nonKey.map((c) => `${q(c)} = EXCLUDED.${q(c)}`);
    if (softDeletes) {
      // A replayed delete keeps the original deletion time.
      sets.push(
        `${q(soft)} = CASE WHEN EXCLUDED.${q(soft)} IS NULL THEN NULL ELSE coalesce(t.${q(soft)}, EXCLUDED.${q(soft)}) END`,
      );
    }
    if (maintainValidFrom) sets.push(`"valid_from" = EXCLUDED."valid_from"`);
    conflict = sets.length
      ? `DO UPDATE SET ${sets.join(', ')} WHERE ${differs('EXCLUDED')}${guard('EXCLUDED')}`
      : 'DO NOTHING';
  }
  ctes.push(`merged AS (
  INSERT INTO ${shape.name} AS t (${insertCols.map(q).join(', ')})
  SELECT ${insertExprs.join(', ')} FROM src${insertWhere}
  ON CONFLICT (${keys.map(q).join(', ')}) ${conflict}
  RETURNING (t.xmax = 0) AS inserted, ${softDeletes ? `(t.${q(soft)} IS NOT NULL)` : 'false'} AS deleted
)`);
  // Rows each filter dropped, counted the way the filters run: in order, each over what the
  // earlier ones kept.
  const filterCounts = filters.map((f, i) => {
    const earlier = filters
      .slice(0, i)
      .map((e) => `NOT ${e.drops} AND `)
      .join('');
    return `count(*) FILTER (WHERE ${earlier}${f.drops})`;
  });
  const filtered = filterCounts.length
    ? `(SELECT ARRAY[${filterCounts.join(', ')}]::int[] FROM ${stage} s)`
    : `'{}'::int[]`;
  const mergeWith = `WITH ${typedParams ? `${typedParams},\n` : ''}${ctes.join(',\n')}`;
  const mergeCounts = `SELECT count(*) FILTER (WHERE inserted)::int AS inserted,
       count(*) FILTER (WHERE NOT inserted AND NOT deleted)::int AS updated,
       (count(*) FILTER (WHERE NOT inserted AND deleted)${hardDeletes ? ' + (SELECT count(*) FROM deleted)' : ''})::int AS deleted,
       ${filtered} AS filtered
  FROM merged`;
  const merge = `${mergeWith}\n${mergeCounts}`;

  // Locating a bad value: keys must be present, typed columns must cast. try_cast lives in the
  // control schema (PostgreSQL 15 has no pg_input_is_valid).
  const locateColumns: string[] = [];
  const locateParams: unknown[] = [...input.params];
  const checks: string[] = [];
  for (const c of effective) {
    const col = shape.columns.get(c);
    if (!col) continue;
    const raw = expr(c);
    const conditions: string[] = [];
    if (keys.includes(c)) conditions.push(`${raw} IS NULL OR ${raw} = ''`);
    if (col.category !== 'S') {
      locateParams.push(col.type);
      conditions.push(
        `NOT ${quoteIdent(controlSchema)}.try_cast(NULLIF(${raw}, ''), $${locateParams.length})`,
      );
    }
    if (!conditions.length) continue;
    locateColumns.push(c);
    checks.push(`(${locateColumns.length - 1}, ${raw}, ${conditions.join(' OR ')})`);
  }
  // No ORDER BY: a seq scan of the freshly filled staging table returns rows in COPY (file)
  // order, and LIMIT 1 then stops at the first bad value instead of trying every cast.
  // Raw staging: `ord` keeps counting across batches of a session, so it is made relative to
  // the batch's first row (1-based, as the error path expects).
  const ord = input.csv ? `s.ord - (SELECT min(ord) - 1 FROM ${stage})` : 's.ord';
  // The first bad column of each bad row (a row is set aside once).
  const rejectCasts = checks.length
    ? `WITH ${typedParams ? `${typedParams}, ` : ''}bad AS (
  SELECT DISTINCT ON (s.ord) s.ord, ${ord}${input.csv ? ' - 1' : ''} AS ord0, v.col, v.col_value FROM ${stage} s
  CROSS JOIN LATERAL (VALUES ${checks.join(', ')}) v(col, col_value, bad) WHERE v.bad${keep ? ` AND ${keep}` : ''}
   ORDER BY s.ord, v.col
), gone AS (DELETE FROM ${stage} s USING bad WHERE s.ord = bad.ord)
SELECT ord0::int AS ord0, col, col_value FROM bad ORDER BY ord0`
    : `${typedParams ? `WITH ${typedParams} ` : ''}SELECT NULL::int AS ord0, NULL::int AS col, NULL::text AS col_value WHERE false`;
  const locate = checks.length
    ? `${typedParams ? `WITH ${typedParams} ` : ''}SELECT ${ord} AS ord, v.col, v.col_value FROM ${stage} s
  CROSS JOIN LATERAL (VALUES ${checks.join(', ')}) v(col, col_value, bad) WHERE v.bad${keep ? ` AND ${keep}` : ''} LIMIT 1`
    : `${typedParams ? `WITH ${typedParams} ` : ''}SELECT NULL::int AS ord, NULL::int AS col, NULL::text AS col_value WHERE false`;
  return {
    columns,
    filterNames: filters.map((f) => f.name),
    prepareStage,
    stage,
    createStage,
    clearStage: `TRUNCATE ${stage}`,
    copy,
    merge,
    mergeWith,
    mergeCounts,
    mergeParams: params,
    locate,
    locateParams,
    locateColumns,
    rejectCasts,
  };
}
