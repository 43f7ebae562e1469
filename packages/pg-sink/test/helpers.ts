import type { Batch, BatchMeta, Position, Row } from '@tributary/core';
import type { TargetTable } from '../src/index.js';

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
