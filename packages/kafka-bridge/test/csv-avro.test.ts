import type { Condition, RawCsv, Row, RowStep } from '@tributary/core';
import avro from 'avsc';
import { parse } from 'csv-parse/sync';
import { describe, expect, it } from 'vitest';
import { rawAvroEncoder } from '../src/csv-avro.js';
import { createEncoder, messageKey, schemaFromColumns } from '../src/index.js';

/** A raw batch over `text` as the S3 source hands it out (no header line, whole records). */
function rawCsv(
  header: string[],
  text: string,
  options: { emptyAsNull?: boolean; steps?: RowStep[] } = {},
): RawCsv {
  const bytes = Buffer.from(text, 'utf8');
  const emptyAsNull = options.emptyAsNull ?? false;
  const parseRows = () => {
    const rows = parse(bytes, { columns: header }) as Row[];
    if (emptyAsNull) for (const row of rows) for (const k in row) if (row[k] === '') row[k] = null;
    return rows;
  };
  return {
    bytes,
    header,
    records: countRecords(bytes),
    firstRecord: 7,
    emptyAsNull,
    steps: options.steps ?? [],
    line: (i) => i + 1,
    parse: () => {
      const rows = parseRows();
      return { rows, locations: rows.map((_, i) => ({ file: 'f.csv', line: i + 1, record: 7 + i })) };
    },
  };
}

/** Records in `bytes` (irregular input: its line count, as good as any for these tests). */
function countRecords(bytes: Buffer): number {
  try {
    return (parse(bytes, { relax_column_count: true }) as unknown[]).length;
  } catch {
    return bytes.toString().split('\n').length - 1;
  }
}

/** What the row path publishes for the same batch: csv-parse, skip-rows in JavaScript, avsc. */
async function rowPath(type: avro.Type, raw: RawCsv, key: string[]) {
  const encoder = await createEncoder({ kind: 'avro', type });
  let rows = raw.parse().rows.map((row, i) => ({ row, record: raw.firstRecord + i }));
  for (const step of raw.steps) {
    if (step.op !== 'skip-rows') throw new Error('test handles skip-rows only');
    rows = rows.filter(({ row }) => !matches(step.when, row));
  }
  return {
    encoder,
    keys: rows.map(({ row }) => messageKey(row, key)),
    values: rows.map(({ row }) => encoder.encode(row)),
    records: rows.map(({ record }) => record),
  };
}

function matches(when: Condition, row: Row): boolean {
  const value = row[when.column];
  if (value === null || value === undefined) return false;
  if ('startsWith' in when) return String(value).startsWith(when.startsWith);
  return when.oneOf.includes(String(value));
}

const HEADER = ['id', 'name', 'note'];
const NASTY = [
  'A1,plain,text',
  'A2,"with, comma","with ""quotes"""',
  'A3,"line\nbreak","crlf\r\ninside"',
  'A4,,""',
  'A5,unicode é ü 中文,emoji 🚀',
  `A6,${'x'.repeat(70_000)},"${'y'.repeat(200)}"`,
  '"A,7","""",end',
].join('\n');

describe('raw CSV → Avro (publisher pass-through)', () => {
  for (const emptyAsNull of [false, true]) {
    for (const ending of ['\n', '\r\n']) {
      it(`gives the row path's messages byte for byte (emptyAsNull ${emptyAsNull}, ${JSON.stringify(ending)})`, async () => {
        const type = schemaFromColumns('row', HEADER);
        const text = `${NASTY.replaceAll(/\n(?=A|")/g, ending)}${ending}`;
        const raw = rawCsv(HEADER, text, { emptyAsNull });
        const expected = await rowPath(type, raw, ['id']);
        const got = rawAvroEncoder(type)!.encode(raw, ['id'], expected.encoder.prefix!);
        expect(got).toBeDefined();
        expect(got!.keys).toEqual(expected.keys);
        expect(got!.records).toEqual(expected.records);
        expect(got!.values.map((v) => v.toString('hex'))).toEqual(
          expected.values.map((v) => v.toString('hex')),
        );
      });
    }
  }

  it('runs skip-rows steps as the row path does, counting what they drop', async () => {
    const type = schemaFromColumns('row', HEADER);
    const steps: RowStep[] = [
      { op: 'skip-rows', name: 'sentinel', when: { column: 'id', startsWith: 'EXPORT STOPPED' } },
      { op: 'skip-rows', name: 'no-note', when: { column: 'missing', oneOf: ['x'] } },
    ];
    const raw = rawCsv(HEADER, 'A1,a,b\nA2,c,d\nEXPORT STOPPED at 3,,\n', { steps });
    const expected = await rowPath(type, raw, ['id', 'name']);
    const got = rawAvroEncoder(type)!.encode(raw, ['id', 'name'], expected.encoder.prefix!)!;
    expect(got.values.map((v) => v.toString('hex'))).toEqual(expected.values.map((v) => v.toString('hex')));
    expect(got.keys).toEqual(['A1|a', 'A2|c']);
    expect(got.records).toEqual([7, 8]);
    expect(got.filtered).toEqual({ sentinel: 1 });
  });

  it('a schema column the file lacks is null; a file column the schema lacks is left out', async () => {
    const type = schemaFromColumns('row', ['id', 'absent']);
    const raw = rawCsv(HEADER, 'A1,a,b\n');
    const expected = await rowPath(type, raw, ['absent']);
    const got = rawAvroEncoder(type)!.encode(raw, ['absent'], expected.encoder.prefix!)!;
    expect(got.values[0]!.toString('hex')).toBe(expected.values[0]!.toString('hex'));
    expect(got.keys).toEqual(['']);
  });

  it('leaves to the row path what it cannot reproduce', async () => {
    const type = schemaFromColumns('row', HEADER);
    const prefix = Buffer.from([0xc3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8]);
    const encoder = rawAvroEncoder(type)!;
    // A record with too few or too many fields: the row path names the file and line.
    expect(encoder.encode(rawCsv(HEADER, 'A1,a\n'), ['id'], prefix)).toBeUndefined();
    expect(encoder.encode(rawCsv(HEADER, 'A1,a,b,c\n'), ['id'], prefix)).toBeUndefined();
    // Input the splitter refuses anyway: a quote inside a field, text after a closing quote, a lone CR.
    expect(encoder.encode(rawCsv(HEADER, 'A1,a"b,c\n'), ['id'], prefix)).toBeUndefined();
    expect(encoder.encode(rawCsv(HEADER, 'A1,"a"b,c\n'), ['id'], prefix)).toBeUndefined();
    expect(encoder.encode(rawCsv(HEADER, 'A1,a,b\rA2,c,d\n'), ['id'], prefix)).toBeUndefined();
    // A step other than skip-rows.
    const drop: RowStep = { op: 'drop-fields', fields: ['note'] };
    expect(encoder.encode(rawCsv(HEADER, 'A1,a,b\n', { steps: [drop] }), ['id'], prefix)).toBeUndefined();
    // Schemas that are not a record of nullable strings.
    const ints = avro.Type.forSchema({ type: 'record', name: 'r', fields: [{ name: 'id', type: 'int' }] });
    expect(rawAvroEncoder(ints)).toBeUndefined();
    const plain = avro.Type.forSchema({
      type: 'record',
      name: 'r',
      fields: [{ name: 'id', type: 'string' }],
    });
    expect(rawAvroEncoder(plain)).toBeUndefined();
  });
});
