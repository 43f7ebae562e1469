import { TributaryError } from './errors.js';
import type { Batch, Condition, Row, RowStep, TextRule, Transform } from './types.js';

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

/**
 * A transform that JavaScript and SQL run identically. On a raw (unparsed) batch it only records
 * its step, for a sink that accepts raw batches to run in SQL (pg-sink compiles the steps into
 * its merge); on rows it runs `rows`.
 */
export interface DeclarativeTransform extends Transform {
  readonly step: RowStep;
}

export function isDeclarative(transform: unknown): transform is DeclarativeTransform {
  return typeof transform === 'function' && 'step' in transform;
}

function declarative(step: RowStep): DeclarativeTransform {
  const onRows = stepTransform(step);
  const transform = (batch: Batch<Row>) =>
    batch.raw ? { ...batch, raw: { ...batch.raw, steps: [...batch.raw.steps, step] } } : onRows(batch);
  return Object.assign(transform, { step }) as DeclarativeTransform;
}

/** The JavaScript implementation of one declarative step. */
function stepTransform(step: RowStep): (batch: Batch<Row>) => Batch<Row> {
  switch (step.op) {
    case 'skip-rows': {
      const matches = conditionMatcher(step.when);
      return (batch) => keepRows(batch, step.name, (row) => !matches(row));
    }
    case 'drop-fields':
      return dropFieldsOnRows(step.fields);
    case 'rename':
      return renameOnRows(step.mapping);
    case 'text': {
      const rules = Object.entries(step.rules).map(([column, rule]) => ({ column, apply: textRule(rule) }));
      return (batch) => ({
        ...batch,
        rows: batch.rows.map((row) => {
          const copy = { ...row };
          for (const { column, apply } of rules) if (column in copy) copy[column] = apply(copy[column]);
          return copy;
        }),
      });
    }
  }
}

/**
 * Parses a raw batch into rows and runs the declarative steps it carries, so that a stage that
 * needs rows sees exactly what it would have seen without the pass-through path.
 */
export function materialize(batch: Batch<Row>): Batch<Row> {
  const { raw, ...rest } = batch;
  if (!raw) return batch;
  let out: Batch<Row>;
  if (batch.meta.onError && raw.parseChecked) {
    // Under a reject policy, malformed records travel on to the sink's dead-letter table.
    const { rows, locations, rejected } = raw.parseChecked();
    const meta = { ...batch.meta, locations };
    if (rejected.length) meta.rejected = [...(batch.meta.rejected ?? []), ...rejected];
    out = { ...rest, rows, meta };
  } else {
    const { rows, locations } = raw.parse();
    out = { ...rest, rows, meta: { ...batch.meta, locations } };
  }
  for (const step of raw.steps) out = stepTransform(step)(out);
  return out;
}

/** The characters `trim` removes, in JavaScript and in SQL alike. */
export const ASCII_WHITESPACE = ' \t\n\r\f\v';

/** A regular expression character class of `chars`, written the same for JavaScript and PostgreSQL. */
export function charClass(chars: string): string {
  if (!chars.length) throw new TributaryError('INVALID_OPTIONS', 'collapse.chars must not be empty');
  let body = '';
  for (const c of chars) {
    const code = c.codePointAt(0)!;
    if (code > 0xffff) throw new TributaryError('INVALID_OPTIONS', 'collapse.chars must be BMP characters');
    body += `\\u${code.toString(16).padStart(4, '0')}`;
  }
  return `[${body}]+`;
}

// Case folding of ASCII letters only, in JavaScript and in SQL (`lower(x COLLATE "C")`): the
// same on every database, whatever its ctype, and the same on both paths.
const ASCII_LOWER = /[a-z]+/g;
const ASCII_UPPER = /[A-Z]+/g;
// Pure-ASCII text (nearly all of it) takes the built-in case mapping, which agrees there.
const NON_ASCII = /[\u0080-\uffff]/;
export function asciiUpper(text: string): string {
  if (!NON_ASCII.test(text)) return text.toUpperCase();
  return text.replace(ASCII_LOWER, (run) => run.toUpperCase());
}
export function asciiLower(text: string): string {
  if (!NON_ASCII.test(text)) return text.toLowerCase();
  return text.replace(ASCII_UPPER, (run) => run.toLowerCase());
}

function asciiTrim(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && ASCII_WHITESPACE.includes(text[start]!)) start++;
  while (end > start && ASCII_WHITESPACE.includes(text[end - 1]!)) end--;
  return start === 0 && end === text.length ? text : text.slice(start, end);
}

function textRule(rule: TextRule): (value: unknown) => unknown {
  const collapse = rule.collapse ? new RegExp(charClass(rule.collapse.chars), 'g') : undefined;
  const into = rule.collapse?.into ?? '';
  return (value) => {
    if (typeof value !== 'string') return value;
    let text = rule.trim ? asciiTrim(value) : value;
    if (rule.case === 'upper') text = asciiUpper(text);
    else if (rule.case === 'lower') text = asciiLower(text);
    if (collapse) text = text.replace(collapse, () => into);
    return rule.emptyToNull && text === '' ? null : text;
  };
}

/** The JavaScript test of a declarative condition (what `skipRows` drops), for stages that run steps themselves. */
export function conditionMatcher(when: Condition): (row: Row) => boolean {
  const { column } = when;
  if ('startsWith' in when) {
    return (row) => {
      const value = row[column];
      return value !== null && value !== undefined && String(value).startsWith(when.startsWith);
    };
  }
  const fold = (text: string) => {
    const trimmed = when.trim ? asciiTrim(text) : text;
    return when.ignoreCase ? asciiLower(trimmed) : trimmed;
  };
  const values = new Set(when.oneOf.map((v) => (when.ignoreCase ? asciiLower(v) : v)));
  return (row) => {
    const value = row[column];
    return value !== null && value !== undefined && values.has(fold(String(value)));
  };
}

/**
 * Drops the rows that match `when` (declarative, so it also runs in SQL on raw batches); they are
 * counted under `name`.
 */
export function skipRows(name: string, when: Condition): DeclarativeTransform {
  return declarative({ op: 'skip-rows', name, when });
}

/** Cleans text columns with declarative rules (also runs in SQL on raw batches). */
export function cleanText(rules: Readonly<Record<string, TextRule>>): DeclarativeTransform {
  for (const rule of Object.values(rules)) if (rule.collapse) charClass(rule.collapse.chars);
  return declarative({ op: 'text', rules });
}

/** Removes the named fields from every row (declarative). */
export function dropFields(fields: readonly string[]): DeclarativeTransform {
  return declarative({ op: 'drop-fields', fields: [...fields] });
}

/** Renames fields: `{ old: 'new' }` (declarative). */
export function rename(mapping: Readonly<Record<string, string>>): DeclarativeTransform {
  return declarative({ op: 'rename', mapping: { ...mapping } });
}

function dropFieldsOnRows(fields: readonly string[]): (batch: Batch<Row>) => Batch<Row> {
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

function renameOnRows(mapping: Readonly<Record<string, string>>): (batch: Batch<Row>) => Batch<Row> {
  const entries = Object.entries(mapping);
  return (batch) => ({
    ...batch,
    rows: batch.rows.map((row) => {
      const copy: Row = {};
      for (const [key, value] of Object.entries(row))
        copy[Object.hasOwn(mapping, key) ? mapping[key]! : key] = value;
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
