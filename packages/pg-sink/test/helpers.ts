import type { Batch, BatchMeta, Position, RawCsv, Row, RowStep } from '@tributary/core';
import { afterEach, beforeAll } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../../test/support/services.js';
import { type PgSink, type PgSinkOptions, pgSink, type TargetTable } from '../src/index.js';

/**
 * A test file's database and its sinks: one database per file, every sink made through
 * `makeSink` closed after each test.
 */
export function sinkFixture(): {
  db: () => TestDatabase;
  makeSink: (target: TargetTable, extra?: Partial<PgSinkOptions>) => PgSink;
} {
  let database: TestDatabase | undefined;
  const sinks: PgSink[] = [];
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterEach(async () => {
    for (const sink of sinks.splice(0)) await sink.close().catch(() => undefined);
  });
  return {
    db: () => database!,
    makeSink(target, extra = {}) {
      const sink = pgSink({ pool: database!.pool, targets: { [target.table]: target }, ...extra });
      sinks.push(sink);
      return sink;
    },
  };
}

/** A two-column target `(id integer PRIMARY KEY, <value> <type>)` in public, created on first use. */
export function idValueTarget(table: string, value = 'v', type = 'text'): TargetTable {
  return {
    schema: 'public',
    table,
    key: ['id'],
    columns: [
      { name: 'id', type: 'integer' },
      { name: value, type },
    ],
    createTable: true,
  };
}

let positionCounter = 0;

/** A batch as s3-source produces it: string values, one location per row, file-order lines. */
export function fileBatch(
  stream: string,
  source: string,
  rows: Record<string, string | null>[],
  meta: Partial<BatchMeta> = {},
  position?: Position,
): Batch<Row> {
  return {
    stream,
    rows,
    position: position ?? { key: source, row: rows.length, n: ++positionCounter },
    meta: {
      source,
      kind: 'delta',
      commit: true,
      lastOfUnit: true,
      rowsRead: rows.length,
      filtered: {},
      locations: rows.map((_, i) => ({ file: source, line: i + 2, record: i + 1 })),
      etag: `"etag-${source}"`,
      size: 100 * rows.length,
      ...meta,
    },
  };
}

/**
 * A pass-through batch as s3-source produces it: `records` (CSV lines without the header) as
 * raw bytes, numbered from `firstRecord`, with declarative `steps` to run in the merge.
 */
export function rawBatch(
  stream: string,
  source: string,
  header: string[],
  records: string[],
  options: { steps?: RowStep[]; firstRecord?: number; meta?: Partial<BatchMeta>; position?: Position } = {},
): Batch<Row> {
  const firstRecord = options.firstRecord ?? 1;
  const raw: RawCsv = {
    bytes: Buffer.from(records.map((r) => `${r}\n`).join('')),
    header,
    records: records.length,
    firstRecord,
    emptyAsNull: false,
    steps: options.steps ?? [],
    line: (index) => firstRecord + index + 1, // the header is line 1
    parse: () => {
      const rows = records.map((r) => Object.fromEntries(r.split(',').map((v, i) => [header[i]!, v])));
      return { rows, locations: rows.map((_, i) => ({ file: source, line: firstRecord + i + 1 })) };
    },
  };
  const last = firstRecord + records.length - 1;
  return {
    stream,
    rows: [],
    raw,
    position: options.position ?? { key: source, row: last, n: ++positionCounter },
    meta: {
      source,
      kind: 'delta',
      commit: true,
      lastOfUnit: true,
      rowsRead: records.length,
      filtered: {},
      locations: [],
      etag: `"etag-${source}"`,
      size: 10 * records.length,
      ...options.meta,
    },
  };
}
