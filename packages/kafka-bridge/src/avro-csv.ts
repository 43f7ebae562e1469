import { isUtf8 } from 'node:buffer';
import { type RawCsv, type Row, TributaryError } from '@tributary/core';
import type { AvroType } from './encoding.js';

/**
 * The subscriber's pass-through path: Avro bodies of a record of strings (what our publisher
 * writes, `schemaFromColumns`) turned straight into CSV bytes for a sink that COPYs them
 * (`RawCsv`), with no row object made. Strings are copied as bytes, never decoded.
 */

/** A record whose fields are all `"string"` or a union of `"null"` and `"string"`. */
export interface StringRecordShape {
  /** The field names, in schema order: the CSV header. */
  readonly names: readonly string[];
  /** Per field: the union branch that is null (0 or 1), or -1 for a plain string. */
  readonly nullBranch: Int8Array;
}

/** The shape of a writer schema the pass-through path can convert, else undefined. */
export function stringRecordShape(type: AvroType): StringRecordShape | undefined {
  const record = type as unknown as {
    typeName: string;
    fields?: readonly { name: string; type: { typeName: string; types?: readonly { typeName: string }[] } }[];
  };
  if (record.typeName !== 'record' || !record.fields?.length) return undefined;
  // Rows are plain objects: a field that is an object's own prototype slot cannot be a key.
  if (record.fields.some((f) => f.name === '__proto__')) return undefined;
  const nullBranch = new Int8Array(record.fields.length);
  for (const [i, field] of record.fields.entries()) {
    const { typeName, types } = field.type;
    if (typeName === 'string') nullBranch[i] = -1;
    // Wrapped unions decode to `{ string: … }` objects on the row path: not plain strings.
    else if (typeName === 'union:unwrapped' && types?.length === 2) {
      const [a, b] = types.map((t) => t.typeName);
      if (a === 'null' && b === 'string') nullBranch[i] = 0;
      else if (a === 'string' && b === 'null') nullBranch[i] = 1;
      else return undefined;
    } else return undefined;
  }
  return { names: record.fields.map((f) => f.name), nullBranch };
}

/** CSV records converted from Avro bodies; `emptyAsNull` tells how their empty fields read. */
export interface AvroCsv {
  bytes: Buffer;
  records: number;
  emptyAsNull: boolean;
}

const COMMA = 0x2c;
const QUOTE = 0x22;
const LF = 0x0a;
const CR = 0x0d;

/** Thrown inside the conversion when a body is not what its schema says: the slice falls back. */
const NOT_CONVERTIBLE = Symbol('not convertible');

/** A growing output buffer: bytes are copied in, never turned into strings. */
class ByteSink {
  buffer: Buffer;
  length = 0;
  constructor(size: number) {
    this.buffer = Buffer.allocUnsafe(Math.max(size, 1024));
  }
  /** Room for `bytes` more. */
  reserve(bytes: number): void {
    const needed = this.length + bytes;
    if (needed <= this.buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(needed, this.buffer.length * 2));
    this.buffer.copy(grown, 0, 0, this.length);
    this.buffer = grown;
  }
}

/**
 * The bodies (Avro binary, without the single-object header) as CSV records, or undefined when
 * the pass-through path does not apply: a body that does not decode cleanly (the row path then
 * reports it, or dead-letters it), a string that is not UTF-8 or holds a NUL (the row path would
 * read or fail on it differently), or a slice with both nulls and empty strings (`RawCsv` has one
 * `emptyAsNull` for all its fields, so it cannot carry both).
 *
 * A field is quoted only when it must be: it holds `,` `"` CR or LF, starts with a BOM, is `\.`
 * (PostgreSQL's end-of-data marker), or is the empty only field of a record (no empty lines).
 * Nulls and empty strings are both an empty field; `emptyAsNull` says which one the slice has.
 */
export function avroBodiesToCsv(shape: StringRecordShape, bodies: readonly Buffer[]): AvroCsv | undefined {
  const { nullBranch } = shape;
  const fields = nullBranch.length;
  let estimate = 0;
  for (const body of bodies) estimate += body.length;
  const out = new ByteSink(estimate + (estimate >> 3) + bodies.length * 2);
  let sawNull = false;
  let sawEmpty = false;
  try {
    const reader: BodyReader = { body: EMPTY, pos: 0 };
    for (const body of bodies) {
      reader.body = body;
      reader.pos = 0;
      for (let f = 0; f < fields; f++) {
        if (f) {
          out.reserve(1);
          out.buffer[out.length++] = COMMA;
        }
        const nulls = nullBranch[f]!;
        if (nulls >= 0) {
          const branch = readLong(reader);
          if (branch === nulls) {
            sawNull = true;
            if (fields === 1) writeEmptyQuoted(out);
            continue;
          }
          if (branch !== 1 - nulls) throw NOT_CONVERTIBLE;
        }
        const length = readLong(reader);
        const start = reader.pos;
        if (length < 0 || start + length > body.length) throw NOT_CONVERTIBLE;
        if (length === 0) {
          sawEmpty = true;
          if (fields === 1) writeEmptyQuoted(out);
          continue;
        }
        writeField(out, body, start, start + length);
        reader.pos = start + length;
      }
      // avsc refuses trailing bytes (the row path fails on them).
      if (reader.pos !== body.length) throw NOT_CONVERTIBLE;
      out.reserve(1);
      out.buffer[out.length++] = LF;
    }
  } catch (error) {
    if (error === NOT_CONVERTIBLE) return undefined;
    throw error;
  }
  if (sawNull && sawEmpty) return undefined;
  const bytes = out.buffer.subarray(0, out.length);
  // Delimiters are ASCII, so a broken sequence inside any field makes the whole buffer invalid.
  if (!isUtf8(bytes)) return undefined;
  return { bytes, records: bodies.length, emptyAsNull: sawNull };
}

const EMPTY = Buffer.alloc(0);

interface BodyReader {
  body: Buffer;
  pos: number;
}

/** An Avro `long` (zigzag varint); beyond 2^53 it loses precision, but then overruns the body. */
function readLong(reader: BodyReader): number {
  const { body } = reader;
  let value = 0;
  let scale = 1;
  for (;;) {
    if (reader.pos >= body.length || scale > 2 ** 63) throw NOT_CONVERTIBLE;
    const byte = body[reader.pos++]!;
    value += (byte & 0x7f) * scale;
    if (!(byte & 0x80)) break;
    scale *= 128;
  }
  return value % 2 === 1 ? -(value + 1) / 2 : value / 2;
}

function writeEmptyQuoted(out: ByteSink): void {
  out.reserve(2);
  out.buffer[out.length++] = QUOTE;
  out.buffer[out.length++] = QUOTE;
}

/** One non-empty string field, bytes `start..end` of `body`, quoted when it must be. */
function writeField(out: ByteSink, body: Buffer, start: number, end: number): void {
  let quote = false;
  let quotes = 0;
  for (let i = start; i < end; i++) {
    const byte = body[i]!;
    if (byte > COMMA) continue;
    if (byte === QUOTE) {
      quote = true;
      quotes++;
    } else if (byte === COMMA || byte === LF || byte === CR) quote = true;
    else if (byte === 0) throw NOT_CONVERTIBLE; // PostgreSQL text cannot hold NUL
  }
  if (!quote) {
    const length = end - start;
    // A BOM at the very start of the bytes would read as one; `\.` alone ends a COPY.
    quote =
      (length >= 3 && body[start] === 0xef && body[start + 1] === 0xbb && body[start + 2] === 0xbf) ||
      (length === 2 && body[start] === 0x5c && body[start + 1] === 0x2e);
  }
  if (!quote) {
    const length = end - start;
    out.reserve(length);
    if (length < 32) {
      const target = out.buffer;
      let at = out.length;
      for (let i = start; i < end; i++) target[at++] = body[i]!;
      out.length = at;
    } else {
      body.copy(out.buffer, out.length, start, end);
      out.length += length;
    }
    return;
  }
  out.reserve(end - start + quotes + 2);
  const target = out.buffer;
  let at = out.length;
  target[at++] = QUOTE;
  if (!quotes) {
    body.copy(target, at, start, end);
    at += end - start;
  } else {
    let from = start;
    for (let i = start; i < end; i++) {
      if (body[i] !== QUOTE) continue;
      body.copy(target, at, from, i + 1);
      at += i + 1 - from;
      target[at++] = QUOTE;
      from = i + 1;
    }
    body.copy(target, at, from, end);
    at += end - from;
  }
  target[at++] = QUOTE;
  out.length = at;
}

/**
 * Converted records as a pass-through batch payload. `parse()` reads the bytes back (the dialect
 * written above), giving the rows the row path would have decoded: same keys in schema order, and
 * null or '' as the slice had them. Kafka batches carry no input locations on the row path, so
 * none here either; `line(i)` is the record's number in the batch.
 */
export function avroRawCsv(shape: StringRecordShape, csv: AvroCsv): RawCsv {
  const { bytes, records, emptyAsNull } = csv;
  const header = shape.names;
  return {
    bytes,
    header,
    records,
    firstRecord: 1,
    emptyAsNull,
    steps: [],
    line: (index) => index + 1,
    parse: () => ({ rows: parseCsv(bytes, header, emptyAsNull), locations: [] }),
  };
}

/** Parses records written by `avroBodiesToCsv` (RFC 4180, `\n` endings) into rows. */
export function parseCsv(bytes: Buffer, header: readonly string[], emptyAsNull: boolean): Row[] {
  const text = bytes.toString('utf8');
  const rows: Row[] = [];
  const fields = header.length;
  const empty = emptyAsNull ? null : '';
  let pos = 0;
  const end = text.length;
  while (pos < end) {
    const row: Row = {};
    for (let f = 0; f < fields; f++) {
      let value: string;
      if (text.charCodeAt(pos) === QUOTE) {
        value = '';
        let from = pos + 1;
        for (;;) {
          const close = text.indexOf('"', from);
          if (close < 0) throw malformed(rows.length);
          value += text.slice(from, close);
          if (text.charCodeAt(close + 1) !== QUOTE) {
            pos = close + 1;
            break;
          }
          value += '"';
          from = close + 2;
        }
      } else {
        let stop = pos;
        while (stop < end) {
          const c = text.charCodeAt(stop);
          if (c === COMMA || c === LF) break;
          stop++;
        }
        value = text.slice(pos, stop);
        pos = stop;
      }
      row[header[f]!] = value === '' ? empty : value;
      const next = text.charCodeAt(pos++);
      if (next !== (f === fields - 1 ? LF : COMMA)) throw malformed(rows.length);
    }
    rows.push(row);
  }
  return rows;
}

function malformed(record: number): TributaryError {
  return new TributaryError(
    'MALFORMED_ROW',
    `pass-through CSV of a Kafka batch: malformed record ${record + 1}`,
  );
}
