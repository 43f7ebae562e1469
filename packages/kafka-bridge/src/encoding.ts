import type { RawCsv, Row } from '@tributary/core';
import { TributaryError } from '@tributary/core';
import avro from 'avsc';
import { avroBodiesToCsv, avroRawCsv, type StringRecordShape, stringRecordShape } from './avro-csv.js';

/**
 * Message values: Avro single-object encoding by default (Avro spec: 0xC3 0x01 marker, the
 * writer schema's 8-byte little-endian CRC-64-AVRO fingerprint, then the binary payload), the
 * Confluent wire format (0x00, 4-byte schema id, payload) when a registry is supplied, or JSON.
 */

export type AvroType = avro.Type;

const EMPTY = 0xc15d213aa4d7a795n;
let fingerprintTable: BigUint64Array | undefined;

/** CRC-64-AVRO (the Rabin fingerprint of the Avro spec) of a schema's canonical form. */
export function rabinFingerprint(text: string): Buffer {
  if (!fingerprintTable) {
    fingerprintTable = new BigUint64Array(256);
    for (let i = 0; i < 256; i++) {
      let fp = BigInt(i);
      for (let j = 0; j < 8; j++) fp = (fp >> 1n) ^ (EMPTY & -(fp & 1n));
      fingerprintTable[i] = fp & 0xffffffffffffffffn;
    }
  }
  let fp = EMPTY;
  for (const byte of Buffer.from(text, 'utf8')) {
    fp = (fp >> 8n) ^ (fingerprintTable[Number((fp ^ BigInt(byte)) & 0xffn)] as bigint);
  }
  const out = Buffer.alloc(8);
  out.writeBigUInt64LE(fp & 0xffffffffffffffffn);
  return out;
}

/** The schema's Parsing Canonical Form (what fingerprints are computed over). */
export function canonicalSchema(type: AvroType): string {
  return JSON.stringify(type.schema());
}

/** A record schema of nullable strings, one field per column (the default for CSV streams). */
export function schemaFromColumns(name: string, columns: readonly string[]): AvroType {
  const safe = (s: string) => s.replace(/[^A-Za-z0-9_]/g, '_').replace(/^([^A-Za-z_])/, '_$1');
  const fields = columns.map((column) => ({ name: safe(column), type: ['null', 'string'], default: null }));
  const distinct = new Set(fields.map((f) => f.name));
  if (distinct.size !== fields.length) {
    throw new TributaryError(
      'INVALID_OPTIONS',
      `columns do not map to distinct Avro field names: ${columns.join(', ')}`,
    );
  }
  return avro.Type.forSchema({ type: 'record', name: safe(name), fields } as avro.Schema);
}

export interface SchemaRegistryClient {
  /** Registers (or finds) the schema under `subject`, returning its id. */
  register(subject: string, schema: string): Promise<number>;
  /** The schema text of an id. */
  getSchema(id: number): Promise<string>;
}

export type EncodingOptions =
  | { kind: 'avro'; type: AvroType }
  | { kind: 'confluent'; type: AvroType; registry: SchemaRegistryClient; subject: string }
  | { kind: 'json' };

const MARKER = Buffer.from([0xc3, 0x01]);

/** Converts a row to the record's field types (strings or null). */
function toRecord(type: AvroType, row: Row): Record<string, unknown> {
  const record: Record<string, unknown> = {};
  const fields = (type as unknown as { fields: { name: string }[] }).fields;
  for (const { name } of fields) {
    const value = row[name];
    record[name] =
      value === undefined || value === null ? null : typeof value === 'string' ? value : String(value);
  }
  return record;
}

export interface Encoder {
  /** Fingerprint (hex) or registry id of the writer schema, when Avro. */
  readonly schemaId: string | null;
  readonly schema: string | null;
  /** The bytes every value starts with (single-object or Confluent header); none for JSON. */
  readonly prefix: Buffer | null;
  encode(row: Row): Buffer;
}

export async function createEncoder(options: EncodingOptions): Promise<Encoder> {
  if (options.kind === 'json') {
    return { schemaId: null, schema: null, prefix: null, encode: (row) => Buffer.from(JSON.stringify(row)) };
  }
  const schema = canonicalSchema(options.type);
  if (options.kind === 'avro') {
    const header = Buffer.concat([MARKER, rabinFingerprint(schema)]);
    return {
      schemaId: header.subarray(2).toString('hex'),
      schema,
      prefix: header,
      encode: (row) => Buffer.concat([header, options.type.toBuffer(toRecord(options.type, row))]),
    };
  }
  const id = await options.registry.register(options.subject, schema);
  const header = Buffer.alloc(5);
  header.writeUInt8(0, 0);
  header.writeInt32BE(id, 1);
  return {
    schemaId: String(id),
    schema,
    prefix: header,
    encode: (row) => Buffer.concat([header, options.type.toBuffer(toRecord(options.type, row))]),
  };
}

/** Finds writer schemas by fingerprint (hex) for single-object decoding. */
export type SchemaLookup = ((fingerprintHex: string) => Promise<string | undefined>) & {
  /** Loads ahead what lookups will need (e.g. reads the schemas topic), so the first one does not wait. */
  prepare?(): Promise<void>;
};

export interface DecoderOptions {
  /** Single-object encoding: where writer schemas are found (e.g. `schemaTopicLookup`). */
  schemas?: SchemaLookup;
  /** Confluent wire format. */
  registry?: SchemaRegistryClient;
}

/**
 * `createDecoder()`'s decoder: a function from a message value to its row, which also converts a
 * whole slice of values to CSV for the pass-through path (`rawCsv`).
 */
export interface Decoder {
  (value: Buffer | null): Promise<Row>;
  /**
   * The values as one pass-through batch payload (`RawCsv`, for a sink that COPYs CSV), without
   * making rows, when every value is single-object Avro of one writer schema that is a record of
   * `"string"` or `["null","string"]` fields (what `schemaFromColumns` gives) and decodes cleanly,
   * and the values do not hold both nulls and empty strings. Otherwise undefined: decode each value.
   * `kafkaSubscribeSource` calls it when its `decode` is this decoder.
   */
  rawCsv(values: readonly (Buffer | null)[]): Promise<RawCsv | undefined>;
  /**
   * Loads the writer schemas ahead (`schemas.prepare()`), so the first message does not wait for
   * them. `kafkaSubscribeSource` calls it while it joins its group. A failure is left to the
   * lookups themselves to report.
   */
  prepare(): Promise<void>;
}

/**
 * Decodes Tributary message values into rows: the decoder other services use. Detects the
 * format from the first bytes: single-object Avro (C3 01), Confluent (00 + id), else JSON.
 */
export function createDecoder(options: DecoderOptions = {}): Decoder {
  const types = new Map<string, AvroType>();
  const typeFor = async (cacheKey: string, load: () => Promise<string | undefined>): Promise<AvroType> => {
    const cached = types.get(cacheKey);
    if (cached) return cached;
    const text = await load();
    if (!text) throw new TributaryError('POISON_MESSAGE', `unknown writer schema ${cacheKey}`);
    const type = avro.Type.forSchema(JSON.parse(text) as avro.Schema);
    types.set(cacheKey, type);
    return type;
  };
  const decode = async (value: Buffer | null): Promise<Row> => {
    if (!value || value.length === 0) throw new TributaryError('POISON_MESSAGE', 'empty message value');
    if (isSingleObject(value)) {
      const fingerprint = value.subarray(2, 10).toString('hex');
      if (!options.schemas)
        throw new TributaryError(
          'POISON_MESSAGE',
          'single-object Avro message but no schema lookup configured',
        );
      const lookup = options.schemas;
      const type = await typeFor(`fp:${fingerprint}`, () => lookup(fingerprint));
      return decodeBody(type, value.subarray(10));
    }
    if (value[0] === 0x00 && value.length >= 5 && options.registry) {
      const id = value.readInt32BE(1);
      const registry = options.registry;
      const type = await typeFor(`id:${id}`, () => registry.getSchema(id));
      return decodeBody(type, value.subarray(5));
    }
    try {
      const parsed: unknown = JSON.parse(value.toString('utf8'));
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
        throw new Error('not a JSON object');
      return parsed as Row;
    } catch (error) {
      throw new TributaryError('POISON_MESSAGE', `undecodable message value: ${(error as Error).message}`, {
        cause: error,
      });
    }
  };

  // Per writer fingerprint: the shape the pass-through path converts, or null when it cannot.
  const shapes = new Map<string, StringRecordShape | null>();
  const shapeFor = async (fingerprint: Buffer): Promise<StringRecordShape | undefined> => {
    const hex = fingerprint.toString('hex');
    let shape = shapes.get(hex);
    if (shape === undefined) {
      const lookup = options.schemas;
      if (!lookup) return undefined;
      // An unknown or unreadable schema is the row path's to report (poison, dead letter).
      const type = await typeFor(`fp:${hex}`, () => lookup(hex)).catch(() => undefined);
      if (!type) return undefined;
      shape = stringRecordShape(type) ?? null;
      shapes.set(hex, shape);
    }
    return shape ?? undefined;
  };
  const rawCsv = async (values: readonly (Buffer | null)[]): Promise<RawCsv | undefined> => {
    const first = values[0];
    if (!first || !isSingleObject(first)) return undefined;
    const fingerprint = first.subarray(2, 10);
    const bodies: Buffer[] = new Array(values.length);
    for (let i = 0; i < values.length; i++) {
      const value = values[i];
      // One writer schema per batch: its fields are the CSV header.
      if (!value || !isSingleObject(value) || fingerprint.compare(value, 2, 10) !== 0) return undefined;
      bodies[i] = value.subarray(10);
    }
    const shape = await shapeFor(fingerprint);
    if (!shape) return undefined;
    const csv = avroBodiesToCsv(shape, bodies);
    return csv && avroRawCsv(shape, csv);
  };
  const prepare = async () => {
    await options.schemas?.prepare?.();
  };
  return Object.assign(decode, { rawCsv, prepare });
}

function isSingleObject(value: Buffer): boolean {
  return value[0] === 0xc3 && value[1] === 0x01 && value.length >= 10;
}

function decodeBody(type: AvroType, body: Buffer): Row {
  try {
    return type.fromBuffer(body) as Row;
  } catch (error) {
    throw new TributaryError(
      'POISON_MESSAGE',
      `Avro payload does not match its writer schema: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
}
