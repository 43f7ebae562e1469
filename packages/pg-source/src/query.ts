import { TributaryError } from '@tributary/core';
import { qualifiedName, quoteIdent } from '@tributary/pg-sink';
import type pg from 'pg';
import type { ResolvedExtract } from './options.js';

/** A source column as the catalog describes it. */
export interface SourceColumn {
  name: string;
  /** `pg_type.typname`: `timestamptz`, `int8`, `geometry`… */
  type: string;
}

/** How the watermark compares: a time (timestamps, dates) or an increasing number. */
export type WatermarkKind = 'time' | 'id';

const TIME_TYPES = new Set(['timestamptz', 'timestamp', 'date']);
// typname → the SQL name its bounds are cast to (the column's own type keeps the index usable).
const ID_TYPES: Readonly<Record<string, string>> = {
  int2: 'smallint',
  int4: 'integer',
  int8: 'bigint',
  numeric: 'numeric',
};
const SPATIAL_TYPES = new Set(['geometry', 'geography']);

/** The table's columns in order, from the catalog (readable by any role that can SELECT it). */
export async function readSourceColumns(db: pg.ClientBase, spec: ResolvedExtract): Promise<SourceColumn[]> {
  const name = qualifiedName(spec.sourceSchema, spec.sourceTable);
  const found = await db.query<SourceColumn>(
    `SELECT a.attname AS name, t.typname AS type
       FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
      WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    [name],
  );
  if (!found.rowCount) {
    throw new TributaryError(
      'SOURCE_FAILED',
      `extract ${spec.stream}: source table ${spec.table} does not exist`,
      {
        stream: spec.stream,
      },
    );
  }
  return found.rows;
}

/** The watermark column's kind and the type its bounds are cast to. */
export function watermarkKind(
  spec: ResolvedExtract,
  columns: readonly SourceColumn[],
): { kind: WatermarkKind; cast: string } {
  const column = columns.find((c) => c.name === spec.watermark);
  if (!column) throw missing(spec, 'watermark', spec.watermark ?? '');
  if (TIME_TYPES.has(column.type)) return { kind: 'time', cast: 'timestamptz' };
  const cast = ID_TYPES[column.type];
  if (cast) return { kind: 'id', cast };
  throw new TributaryError(
    'INVALID_OPTIONS',
    `extract ${spec.stream}: watermark ${spec.table}.${column.name} is ${column.type}: it must be a timestamp, date or integer/numeric id`,
    { stream: spec.stream },
  );
}

function missing(spec: ResolvedExtract, option: string, name: string): TributaryError {
  return new TributaryError(
    'SCHEMA_DRIFT',
    `extract ${spec.stream}: ${option} column ${name} is not a column of ${spec.table}`,
    {
      stream: spec.stream,
    },
  );
}

/**
 * The select list. Geometry is written as EWKT with a NULL guard, so the SRID travels inline and
 * NULL stays NULL (manual §5.6).
 */
export function selectList(spec: ResolvedExtract, columns: readonly SourceColumn[]): string {
  const byName = new Map(columns.map((c) => [c.name, c]));
  for (const key of spec.key) if (!byName.has(key)) throw missing(spec, 'key', key);
  const wanted = spec.columns ?? columns.map((c) => c.name);
  return wanted
    .map((column) => {
      if (typeof column !== 'string') return `(${column.expression}) AS ${quoteIdent(column.name)}`;
      const found = byName.get(column);
      if (!found) throw missing(spec, 'columns', column);
      const id = quoteIdent(column);
      return SPATIAL_TYPES.has(found.type)
        ? `CASE WHEN ${id} IS NULL THEN NULL ELSE ST_AsEWKT(${id}) END AS ${id}`
        : id;
    })
    .join(', ');
}

/** Bounds travel as transaction-local settings: COPY takes no parameters, values never enter SQL text. */
export const LOWER_SETTING = 'tributary.extract_lower';
export const UPPER_SETTING = 'tributary.extract_upper';

/**
 * `COPY (SELECT … WHERE wm > lower AND wm <= upper ORDER BY wm, key) TO STDOUT` — the closed
 * upper bound of manual §5.2; without a lower bound (first run) everything up to the upper one.
 * A snapshot has no bounds and is ordered by the key.
 */
export function copyStatement(
  spec: ResolvedExtract,
  select: string,
  bounds: { watermark?: { cast: string }; lower: boolean; upper: boolean },
): string {
  const from = qualifiedName(spec.sourceSchema, spec.sourceTable);
  const key = spec.key.map(quoteIdent);
  let where = '';
  let order = key;
  if (bounds.watermark) {
    const wm = quoteIdent(spec.watermark!);
    const cast = bounds.watermark.cast;
    // No upper bound: an id watermark over an empty table; nothing to read yet.
    const conditions = [bounds.upper ? `${wm} <= current_setting('${UPPER_SETTING}')::${cast}` : 'false'];
    if (bounds.lower) conditions.unshift(`${wm} > current_setting('${LOWER_SETTING}')::${cast}`);
    where = ` WHERE ${conditions.join(' AND ')}`;
    order = [wm, ...key];
  }
  return `COPY (SELECT ${select} FROM ${from}${where} ORDER BY ${order.join(', ')}) TO STDOUT (FORMAT csv, HEADER)`;
}
