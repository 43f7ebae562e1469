import { TributaryError } from './errors.js';
import type { Batch, Row, Transform } from './types.js';

/**
 * Generic row transforms. Each one that removes rows records how many under its own name in
 * `batch.meta.filtered` (invariant 5: filtered rows are counted, never silently lost), and keeps
 * `meta.locations` parallel to `rows` so later errors still name the file and line.
 */

function keepRows(batch: Batch<Row>, name: string, keep: (row: Row, index: number) => boolean): Batch<Row> {
  const rows: Row[] = [];
  const locations = batch.meta.locations ? ([] as NonNullable<typeof batch.meta.locations>) : undefined;
  batch.rows.forEach((row, index) => {
    if (keep(row, index)) {
      rows.push(row);
      const location = batch.meta.locations?.[index];
      if (locations && location) locations.push(location);
    }
  });
  const dropped = batch.rows.length - rows.length;
  return {
    ...batch,
    rows,
    meta: {
      ...batch.meta,
      ...(locations ? { locations } : {}),
      filtered: dropped
        ? { ...batch.meta.filtered, [name]: (batch.meta.filtered[name] ?? 0) + dropped }
        : batch.meta.filtered,
    },
  };
}

/** Keeps rows for which `predicate` is true; the others are counted under `name`. */
export function filter(name: string, predicate: (row: Row) => boolean): Transform {
  return (batch) => keepRows(batch, name, (row) => predicate(row));
}

/** Replaces each row with `fn(row)`. Returning `undefined` drops the row (counted as `map`). */
export function map(fn: (row: Row) => Row | undefined, name = 'map'): Transform {
  return (batch) => {
    const mapped = batch.rows.map(fn);
    const kept = keepRows(batch, name, (_row, index) => mapped[index] !== undefined);
    kept.rows = mapped.filter((row): row is Row => row !== undefined);
    return kept;
  };
}

/** Removes the named fields from every row. */
export function dropFields(fields: readonly string[]): Transform {
  const dropped = new Set(fields);
  return (batch) => ({
    ...batch,
    rows: batch.rows.map((row) => {
      // Built without the fields rather than copied then `delete`d: deleting turns every row into
      // a dictionary-mode object, which made each later stage several times slower per row.
      const copy: Row = {};
      for (const key of Object.keys(row)) {
        if (dropped.has(key)) continue;
        if (key === '__proto__')
          Object.defineProperty(copy, key, {
            value: row[key],
            enumerable: true,
            writable: true,
            configurable: true,
          });
        else copy[key] = row[key];
      }
      return copy;
    }),
  });
}

/** Renames fields: `{ old: 'new' }`. */
export function rename(mapping: Readonly<Record<string, string>>): Transform {
  const entries = Object.entries(mapping);
  return (batch) => ({
    ...batch,
    rows: batch.rows.map((row) => {
      const copy: Row = {};
      for (const [key, value] of Object.entries(row)) copy[mapping[key] ?? key] = value;
      return entries.length ? copy : row;
    }),
  });
}

export type ValueRule = Readonly<Record<string, unknown>> | ((value: unknown, row: Row) => unknown);

/**
 * Maps values of the named columns: a lookup table (exact match first, then trimmed and
 * case-insensitive) or a function. Values with no rule pass through unchanged.
 */
export function normalize(rules: Readonly<Record<string, ValueRule>>): Transform {
  const compiled = Object.entries(rules).map(([column, rule]) => {
    if (typeof rule === 'function') return { column, apply: rule };
    const folded = new Map(Object.entries(rule).map(([k, v]) => [k.trim().toLowerCase(), v]));
    const apply = (value: unknown) => {
      if (typeof value !== 'string') return value;
      if (Object.hasOwn(rule, value)) return rule[value];
      const hit = folded.get(value.trim().toLowerCase());
      return hit === undefined ? value : hit;
    };
    return { column, apply };
  });
  return (batch) => ({
    ...batch,
    rows: batch.rows.map((row) => {
      const copy = { ...row };
      for (const { column, apply } of compiled) if (column in copy) copy[column] = apply(copy[column], row);
      return copy;
    }),
  });
}

export type CastType = 'string' | 'number' | 'integer' | 'boolean' | 'date' | ((value: unknown) => unknown);

const TRUE = new Set(['true', 't', '1', 'yes', 'y']);
const FALSE = new Set(['false', 'f', '0', 'no', 'n']);

function castValue(value: unknown, type: CastType): unknown {
  if (value === null || value === undefined || value === '')
    return value === '' && type !== 'string' ? null : value;
  if (typeof type === 'function') return type(value);
  switch (type) {
    case 'string':
      return String(value);
    case 'number':
    case 'integer': {
      const n = typeof value === 'number' ? value : Number(String(value).trim());
      if (Number.isNaN(n) || (type === 'integer' && !Number.isInteger(n)))
        throw new Error(`not ${type === 'integer' ? 'an integer' : 'a number'}: ${JSON.stringify(value)}`);
      return n;
    }
    case 'boolean': {
      if (typeof value === 'boolean') return value;
      const text = String(value).trim().toLowerCase();
      if (TRUE.has(text)) return true;
      if (FALSE.has(text)) return false;
      throw new Error(`not a boolean: ${JSON.stringify(value)}`);
    }
    case 'date': {
      const d = value instanceof Date ? value : new Date(String(value));
      if (Number.isNaN(d.getTime())) throw new Error(`not a date: ${JSON.stringify(value)}`);
      return d;
    }
  }
}

/** Converts column values in JavaScript; a bad value fails with file, line and column. */
export function cast(types: Readonly<Record<string, CastType>>): Transform {
  const entries = Object.entries(types);
  return (batch) => ({
    ...batch,
    rows: batch.rows.map((row, index) => {
      const copy = { ...row };
      for (const [column, type] of entries) {
        if (!(column in copy)) continue;
        try {
          copy[column] = castValue(copy[column], type);
        } catch (error) {
          const location = { ...batch.meta.locations?.[index], column };
          throw new TributaryError(
            'CAST_FAILED',
            `${describe(batch, index)} column ${column}: ${(error as Error).message}`,
            {
              cause: error,
              stream: batch.stream,
              location,
            },
          );
        }
      }
      return copy;
    }),
  });
}

function describe(batch: Batch<Row>, index: number): string {
  const location = batch.meta.locations?.[index];
  if (location?.file) return `${location.file}${location.line ? `:${location.line}` : ''}`;
  return `${batch.meta.source ?? batch.stream} row ${index + 1}`;
}

export interface ValidateOptions {
  /** `error` (default) stops the pipeline; `drop` removes the row and counts it. */
  onInvalid?: 'error' | 'drop';
  name?: string;
}

/** `check` returns a problem description, or nothing when the row is valid. */
export function validate(check: (row: Row) => string | undefined, options: ValidateOptions = {}): Transform {
  const name = options.name ?? 'validate';
  return (batch) =>
    keepRows(batch, name, (row, index) => {
      const problem = check(row);
      if (problem === undefined) return true;
      if (options.onInvalid === 'drop') return false;
      throw new TributaryError('MALFORMED_ROW', `${describe(batch, index)}: ${problem}`, {
        stream: batch.stream,
        ...(batch.meta.locations?.[index] ? { location: batch.meta.locations[index] } : {}),
      });
    });
}

/** Composes transforms left to right into one. */
export function compose(...transforms: Transform[]): Transform {
  return async (batch) => {
    let current: Batch<Row> | undefined = batch;
    for (const t of transforms) {
      if (!current) return undefined;
      current = await t(current);
    }
    return current;
  };
}
