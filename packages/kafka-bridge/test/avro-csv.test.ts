import { materialize, type Row } from '@tributary/core';
import avro from 'avsc';
import { parse } from 'csv-parse/sync';
import { describe, expect, it } from 'vitest';
import { avroBodiesToCsv, stringRecordShape } from '../src/avro-csv.js';
import { type AvroType, createDecoder, createEncoder, schemaFromColumns } from '../src/index.js';

/** Values as our publisher writes them, and the decoder that finds their schema. */
async function encoded(type: AvroType, rows: Row[]) {
  const encoder = await createEncoder({ kind: 'avro', type });
  const schemas = new Map([[encoder.schemaId!, encoder.schema!]]);
  const decoder = createDecoder({ schemas: async (fp) => schemas.get(fp) });
  return { values: rows.map((row) => encoder.encode(row)), decoder };
}

/** What the row path gives: each value through the decoder. */
async function rowPath(decoder: ReturnType<typeof createDecoder>, values: Buffer[]): Promise<Row[]> {
  const rows: Row[] = [];
  for (const value of values) rows.push({ ...(await decoder(value)) });
  return rows;
}

/** The CSV read by an independent parser, as COPY reads it under `emptyAsNull`. */
function parsedByCsvParse(bytes: Buffer, header: readonly string[], emptyAsNull: boolean): Row[] {
  const rows = parse(bytes, { columns: [...header] }) as Row[];
  if (emptyAsNull) for (const row of rows) for (const k in row) if (row[k] === '') row[k] = null;
  return rows.map((row) => ({ ...row }));
}

const COLUMNS = ['id', 'text', 'note'];
const long = 'x'.repeat(70_000) + ',"\n' + 'é'.repeat(40_000);

const NASTY: Row[] = [
  { id: '1', text: 'a,b', note: 'plain' },
  { id: '2', text: 'say "hi"', note: '"' },
  { id: '3', text: 'line\nbreak', note: 'cr\r\nlf' },
  { id: '4', text: 'Grüße – 日本語 🎉👩‍👩‍👧', note: '\r' },
  { id: '5', text: long, note: '""' },
  { id: '6', text: ' padded ', note: '\\.' },
  { id: '7', text: '\uFEFFbom first', note: ',' },
  { id: '8', text: 'x'.repeat(200), note: '\\N' },
];

describe('Avro to pass-through CSV', () => {
  it('converts nasty strings (no nulls): the CSV reads back as the row path decodes', async () => {
    const rows = [...NASTY, { id: '9', text: '', note: '' }];
    const { values, decoder } = await encoded(schemaFromColumns('t', COLUMNS), rows);
    const raw = await decoder.rawCsv(values);
    expect(raw).toBeDefined();
    expect(raw!.header).toEqual(COLUMNS);
    expect(raw!.records).toBe(rows.length);
    expect(raw!.emptyAsNull).toBe(false);
    expect(raw!.firstRecord).toBe(1);
    expect(raw!.line(0)).toBe(1);
    expect(raw!.bytes.at(-1)).toBe(0x0a);
    const expected = await rowPath(decoder, values);
    expect(expected[8]).toEqual({ id: '9', text: '', note: '' });
    expect(parsedByCsvParse(raw!.bytes, raw!.header, raw!.emptyAsNull)).toEqual(expected);
    expect(raw!.parse()).toEqual({ rows: expected, locations: [] });
  });

  it('quotes only the fields that need it', async () => {
    const rows = [
      { id: '1', text: 'a,b', note: 'q"' },
      { id: 'plain', text: '\\.', note: 'x' },
    ];
    const { values, decoder } = await encoded(schemaFromColumns('t', COLUMNS), rows);
    const raw = await decoder.rawCsv(values);
    expect(raw!.bytes.toString()).toBe('1,"a,b","q"""\nplain,"\\.",x\n');
  });

  it('nulls without empty strings: emptyAsNull', async () => {
    const rows = [...NASTY, { id: '9', text: null, note: 'n' }, { id: null, text: null, note: null }];
    const { values, decoder } = await encoded(schemaFromColumns('t', COLUMNS), rows);
    const raw = await decoder.rawCsv(values);
    expect(raw!.emptyAsNull).toBe(true);
    const expected = await rowPath(decoder, values);
    expect(expected.at(-1)).toEqual({ id: null, text: null, note: null });
    expect(parsedByCsvParse(raw!.bytes, raw!.header, true)).toEqual(expected);
    expect(raw!.parse().rows).toEqual(expected);
  });

  it('materialize() of the batch gives the row path rows', async () => {
    const { values, decoder } = await encoded(schemaFromColumns('t', COLUMNS), NASTY);
    const raw = (await decoder.rawCsv(values))!;
    const batch = materialize({
      stream: 's',
      rows: [],
      raw,
      position: {},
      meta: { commit: true, rowsRead: values.length, filtered: {} },
    });
    expect(batch.raw).toBeUndefined();
    expect(batch.rows).toEqual(await rowPath(decoder, values));
  });

  it('one-field records: an empty or null field is quoted (never an empty line)', async () => {
    const type = schemaFromColumns('one', ['v']);
    for (const rows of [
      [{ v: '' }, { v: 'a' }, { v: '' }],
      [{ v: null }, { v: 'b' }],
    ]) {
      const { values, decoder } = await encoded(type, rows);
      const raw = (await decoder.rawCsv(values))!;
      expect(raw.bytes.includes('\n\n')).toBe(false);
      expect(raw.bytes[0]).not.toBe(0x0a);
      const expected = await rowPath(decoder, values);
      expect(parsedByCsvParse(raw.bytes, raw.header, raw.emptyAsNull)).toEqual(expected);
      expect(raw.parse().rows).toEqual(expected);
    }
  });

  it('falls back when a slice has both nulls and empty strings', async () => {
    const { values, decoder } = await encoded(schemaFromColumns('t', COLUMNS), [
      { id: '1', text: '', note: 'x' },
      { id: '2', text: null, note: 'y' },
    ]);
    expect(await decoder.rawCsv(values)).toBeUndefined();
    expect(await decoder.rawCsv(values.slice(0, 1))).toBeDefined();
    expect(await decoder.rawCsv(values.slice(1))).toBeDefined();
  });

  it('multi-byte varints: lengths beyond 64 KiB', async () => {
    const big = '🎉'.repeat(20_000) + 'a,"b"';
    const { values, decoder } = await encoded(schemaFromColumns('t', ['a']), [{ a: big }]);
    const raw = (await decoder.rawCsv(values))!;
    expect(raw.parse().rows).toEqual([{ a: big }]);
  });

  it('plain string and ["string","null"] fields convert too', async () => {
    const type = avro.Type.forSchema({
      type: 'record',
      name: 'r',
      fields: [
        { name: 'a', type: 'string' },
        { name: 'b', type: ['string', 'null'] },
      ],
    });
    const { values, decoder } = await encoded(type, [
      { a: 'x', b: null },
      { a: 'y,z', b: 'w' },
    ]);
    const raw = (await decoder.rawCsv(values))!;
    expect(raw.emptyAsNull).toBe(true);
    expect(raw.parse().rows).toEqual(await rowPath(decoder, values));
  });

  it('a schema with a non-string field takes the row path', async () => {
    const type = avro.Type.forSchema({
      type: 'record',
      name: 'r',
      fields: [
        { name: 'a', type: ['null', 'string'] },
        { name: 'n', type: 'int' },
      ],
    });
    expect(stringRecordShape(type)).toBeUndefined();
    const encoder = await createEncoder({ kind: 'avro', type });
    const value = Buffer.concat([
      Buffer.from([0xc3, 0x01]),
      Buffer.from(encoder.schemaId!, 'hex'),
      type.toBuffer({ a: 'x', n: 5 }),
    ]);
    const decoder = createDecoder({ schemas: async () => encoder.schema! });
    expect(await decoder.rawCsv([value])).toBeUndefined();
    expect(await decoder(value)).toEqual({ a: 'x', n: 5 });
  });

  it('anything else takes the row path: JSON, unknown schema, bad bodies, mixed schemas', async () => {
    const type = schemaFromColumns('t', COLUMNS);
    const { values, decoder } = await encoded(type, NASTY.slice(0, 2));
    const json = await createEncoder({ kind: 'json' });
    expect(await decoder.rawCsv([json.encode({ a: '1' })])).toBeUndefined();
    expect(await decoder.rawCsv([values[0]!, null])).toBeUndefined();
    expect(await decoder.rawCsv([])).toBeUndefined();
    const unknown = Buffer.from(values[0]!);
    unknown[2]! ^= 0xff;
    expect(await decoder.rawCsv([unknown])).toBeUndefined();
    expect(await createDecoder().rawCsv(values)).toBeUndefined(); // no schema lookup
    // Truncated body, trailing bytes, a bad union branch: avsc refuses them, so does the fast path.
    expect(await decoder.rawCsv([values[0]!.subarray(0, values[0]!.length - 1)])).toBeUndefined();
    expect(await decoder.rawCsv([Buffer.concat([values[0]!, Buffer.from([0])])])).toBeUndefined();
    const badBranch = Buffer.from(values[0]!);
    badBranch[10] = 4; // union index 2
    expect(await decoder.rawCsv([badBranch])).toBeUndefined();
    // Another writer schema in the same slice.
    const other = await encoded(schemaFromColumns('u', ['x']), [{ x: '1' }]);
    expect(await decoder.rawCsv([values[0]!, other.values[0]!])).toBeUndefined();
  });

  it('strings that are not UTF-8 or hold NUL take the row path', async () => {
    const shape = stringRecordShape(schemaFromColumns('t', ['a']))!;
    const body = (bytes: number[]) => Buffer.from([2, bytes.length * 2, ...bytes]);
    expect(avroBodiesToCsv(shape, [body([0x61, 0xc3])])).toBeUndefined();
    expect(avroBodiesToCsv(shape, [body([0x80])])).toBeUndefined();
    expect(avroBodiesToCsv(shape, [body([0x61, 0x00])])).toBeUndefined();
    expect(avroBodiesToCsv(shape, [body([0x61, 0x62])])?.bytes.toString()).toBe('ab\n');
  });
});
