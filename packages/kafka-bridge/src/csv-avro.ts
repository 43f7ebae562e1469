import { type Condition, conditionMatcher, type RawCsv, type Row } from '@tributary/core';
import type { AvroType } from './encoding.js';

/**
 * The publisher's pass-through path: raw CSV records (`batch.raw`) straight into Avro message
 * values, without row objects.
 *
 * It applies to the publisher's default schema (`schemaFromColumns`: a record of nullable
 * strings), where an Avro value is the field's bytes behind two varints. Each field's bytes are
 * copied from the CSV into the message as they are (UTF-8 both sides; the reader has checked the
 * file is UTF-8). Whatever the plan cannot reproduce byte for byte as the row path would (a
 * declarative step other than skip-rows, a record whose field count is not the header's, input
 * the splitter should have refused) returns `undefined`, and the batch takes the row path, which
 * gives the same messages or the row path's error naming the file and line.
 */

const QUOTE = 0x22;
const COMMA = 0x2c;
const LF = 0x0a;
const CR = 0x0d;

/** The messages of one raw batch, values as views into one buffer. */
export interface RawMessages {
  /** Per kept record: its key text, value and file record number (1-based). */
  keys: string[];
  values: Buffer[];
  records: number[];
  /** Records a skip-rows step dropped, by step name. */
  filtered: Record<string, number>;
}

/** What varies per record field: where the schema's field reads from. */
interface FieldPlan {
  /** Header index of the column, or -1 when the file has no such column (always null). */
  column: number;
  /** Union branch indexes, already zig-zag encoded (one byte each: 0 or 2). */
  nullBranch: number;
  stringBranch: number;
}

export interface RawAvroEncoder {
  /** The batch's messages, or `undefined` when the row path must take it. */
  encode(raw: RawCsv, key: readonly string[], prefix: Buffer): RawMessages | undefined;
}

/**
 * An encoder for `type` when it is a record whose every field is a union of `null` and `string`
 * (what `schemaFromColumns` builds), else `undefined`.
 */
export function rawAvroEncoder(type: AvroType): RawAvroEncoder | undefined {
  const schema = type.schema() as { type?: unknown; fields?: { name: string; type: unknown }[] };
  if (schema.type !== 'record' || !Array.isArray(schema.fields)) return undefined;
  const branches: Array<{ name: string; nullBranch: number; stringBranch: number }> = [];
  for (const field of schema.fields) {
    const union = field.type;
    if (!Array.isArray(union) || union.length !== 2) return undefined;
    const nullAt = union.indexOf('null');
    const stringAt = union.indexOf('string');
    if (nullAt < 0 || stringAt < 0) return undefined;
    branches.push({ name: field.name, nullBranch: nullAt * 2, stringBranch: stringAt * 2 });
  }
  const plans = new Map<string, FieldPlan[]>();
  const planFor = (header: readonly string[]): FieldPlan[] => {
    const cacheKey = header.join('\u0000');
    let plan = plans.get(cacheKey);
    if (!plan) {
      plan = branches.map((b) => ({ ...b, column: header.indexOf(b.name) }));
      plans.set(cacheKey, plan);
    }
    return plan;
  };
  return {
    encode(raw, key, prefix) {
      const skips: Skip[] = [];
      for (const step of raw.steps) {
        if (step.op !== 'skip-rows') return undefined;
        skips.push({ name: step.name, when: step.when, matches: conditionMatcher(step.when) });
      }
      return encodeRecords(raw, planFor(raw.header), key, prefix, skips);
    },
  };
}

interface Skip {
  name: string;
  when: Condition;
  matches: (row: Row) => boolean;
}

/** Splits the records into fields and writes each kept record as one message. */
function encodeRecords(
  raw: RawCsv,
  fields: readonly FieldPlan[],
  key: readonly string[],
  prefix: Buffer,
  skips: readonly Skip[],
): RawMessages | undefined {
  const bytes = raw.bytes;
  const width = raw.header.length;
  const keyColumns = key.map((k) => raw.header.indexOf(k));
  const skipColumns = skips.map((skip) => raw.header.indexOf(skip.when.column));
  // Field spans of the current record: start, end (exclusive), quoted (1) or not (0).
  const spans = new Int32Array(width * 3);
  // Messages are at most the CSV bytes plus the prefix and a few varint bytes per field.
  let out = Buffer.allocUnsafe(bytes.length + raw.records * (prefix.length + fields.length * 6) + 64);
  let at = 0;
  const starts: number[] = [];
  const ends: number[] = [];
  const keys: string[] = [];
  const records: number[] = [];
  const filtered: Record<string, number> = {};
  const emptyAsNull = raw.emptyAsNull;

  // A field's value as the row path has it (csv-parse, then `emptyAsNull`).
  const fieldText = (f: number): string | null => {
    const start = spans[f * 3]!;
    const end = spans[f * 3 + 1]!;
    if (start === end) return emptyAsNull ? null : '';
    const text = bytes.toString('utf8', start, end);
    return spans[f * 3 + 2] === 1 ? text.replaceAll('""', '"') : text;
  };

  let p = 0;
  let record = 0;
  while (p < bytes.length) {
    // Split one record into its fields.
    const recordStart = p;
    let count = 0;
    for (;;) {
      if (count === width) return undefined; // more fields than the header
      if (bytes[p] === QUOTE) {
        const start = p + 1;
        let q = start;
        for (;;) {
          q = bytes.indexOf(QUOTE, q);
          if (q < 0) return undefined; // unterminated quote
          if (bytes[q + 1] === QUOTE) q += 2;
          else break;
        }
        spans[count * 3] = start;
        spans[count * 3 + 1] = q;
        spans[count * 3 + 2] = 1;
        p = q + 1;
      } else {
        const start = p;
        while (p < bytes.length) {
          const b = bytes[p]!;
          if (b === COMMA || b === LF || b === CR) break;
          if (b === QUOTE) return undefined; // a quote inside an unquoted field
          p++;
        }
        spans[count * 3] = start;
        spans[count * 3 + 1] = p;
        spans[count * 3 + 2] = 0;
      }
      count++;
      const next = bytes[p];
      if (next === COMMA) {
        p++;
        continue;
      }
      if (next === undefined) break;
      if (next === CR) {
        if (bytes[p + 1] !== LF) return undefined; // a lone CR
        p += 2;
        break;
      }
      if (next === LF) {
        p++;
        break;
      }
      return undefined; // text after a closing quote
    }
    if (count !== width) return undefined; // fewer fields than the header: the row path's error

    const number = raw.firstRecord + record;
    record++;
    let skippedBy: string | undefined;
    for (let i = 0; i < skips.length; i++) {
      const skip = skips[i]!;
      const column = skipColumns[i]!;
      if (column >= 0 && skip.matches({ [skip.when.column]: fieldText(column) })) {
        skippedBy = skip.name;
        break;
      }
    }
    if (skippedBy !== undefined) {
      filtered[skippedBy] = (filtered[skippedBy] ?? 0) + 1;
      continue;
    }

    // The message: prefix, then each schema field as union branch + length + bytes. It is at
    // most the record's bytes plus the prefix and 6 bytes per field.
    const most = prefix.length + fields.length * 6 + (p - recordStart);
    if (at + most > out.length) {
      const grown = Buffer.allocUnsafe(Math.max(out.length * 2, at + most));
      out.copy(grown, 0, 0, at);
      out = grown;
    }
    const start = at;
    prefix.copy(out, at);
    at += prefix.length;
    for (const field of fields) {
      if (field.column < 0) {
        out[at++] = field.nullBranch;
        continue;
      }
      const s = spans[field.column * 3]!;
      const e = spans[field.column * 3 + 1]!;
      if (s === e && emptyAsNull) {
        out[at++] = field.nullBranch;
        continue;
      }
      out[at++] = field.stringBranch;
      const quote = spans[field.column * 3 + 2] === 1 ? bytes.indexOf(QUOTE, s) : -1;
      if (quote >= 0 && quote < e) {
        // A quoted field with escaped quotes: the value has one quote per pair.
        const text = Buffer.from(bytes.toString('latin1', s, e).replaceAll('""', '"'), 'latin1');
        at = writeLength(out, at, text.length);
        text.copy(out, at);
        at += text.length;
      } else if (e - s < 64) {
        // Short values (most): a loop beats a native copy call per field.
        out[at++] = (e - s) * 2;
        for (let i = s; i < e; i++) out[at++] = bytes[i]!;
      } else {
        at = writeLength(out, at, e - s);
        bytes.copy(out, at, s, e);
        at += e - s;
      }
    }
    starts.push(start);
    ends.push(at);
    records.push(number);
    keys.push(
      key.length === 1
        ? keyPart(keyColumns[0]!, fieldText)
        : key.map((_, i) => keyPart(keyColumns[i]!, fieldText)).join('|'),
    );
  }
  if (record !== raw.records) return undefined;
  const values = starts.map((s, i) => out.subarray(s, ends[i]));
  return { keys, values, records, filtered };
}

/** One key column's text as `messageKey` writes it: '' for a missing column or a null. */
function keyPart(column: number, fieldText: (f: number) => string | null): string {
  return column < 0 ? '' : (fieldText(column) ?? '');
}

/** An Avro `long` (zig-zag varint) of a non-negative length. */
function writeLength(out: Buffer, at: number, length: number): number {
  let n = length * 2;
  while (n >= 0x80) {
    out[at++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  out[at++] = n;
  return at;
}
