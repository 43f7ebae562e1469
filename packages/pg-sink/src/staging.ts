import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type Batch, faultPoint, type Row } from '@tributary/core';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { ApplyPlan } from './apply.js';
import { copyTextValue } from './sql.js';

/**
 * Filling a plan's staging table with COPY: raw CSV bytes as they are (pass-through), or rows
 * from JavaScript in COPY text format. Streamed in ~64 KiB chunks (invariant 7).
 */

/** Fills the staging table: raw CSV bytes as they are, or rows in COPY text format. */
export async function stageBatch(client: pg.ClientBase, plan: ApplyPlan, batch: Batch<Row>): Promise<void> {
  if (batch.raw) await copyCsv(client, plan, batch.raw.bytes);
  else await copyRows(client, plan, batch.rows);
}

/** Streams the rows into the staging table in COPY text format, ~64 KiB per chunk. */
export async function copyRows(
  client: pg.ClientBase,
  plan: ApplyPlan,
  rows: readonly Record<string, unknown>[],
): Promise<void> {
  const { columns } = plan;
  function* chunks(): Generator<string> {
    let chunk = '';
    for (let i = 0; i < rows.length; i++) {
      const row = rows[i]!;
      let line = String(i);
      for (const c of columns) line += `\t${copyTextValue(row[c])}`;
      chunk += `${line}\n`;
      if (chunk.length >= 65_536) {
        yield chunk;
        chunk = '';
        faultPoint('pg-sink:mid-copy'); // a crash with part of the COPY sent (issue 7)
      }
    }
    if (chunk) yield chunk;
  }
  const stream = client.query(copyFrom(plan.copy));
  await pipeline(Readable.from(chunks(), { objectMode: false }), stream);
}

/** Rows as CSV records in `header` order (nulls as unquoted empty fields, everything else quoted). */
export function encodeCsv(rows: readonly Record<string, unknown>[], header: readonly string[]): Buffer {
  let text = '';
  for (const row of rows) {
    text += header
      .map((name) => {
        const value = row[name];
        return value === null || value === undefined ? '' : `"${String(value).replaceAll('"', '""')}"`;
      })
      .join(',');
    text += '\n';
  }
  return Buffer.from(text, 'utf8');
}

/** Streams raw CSV records (pass-through) into the staging table as they are. */
export async function copyCsv(client: pg.ClientBase, plan: ApplyPlan, bytes: Buffer): Promise<void> {
  function* parts(): Generator<Buffer> {
    yield bytes.subarray(0, 65_536);
    if (bytes.length <= 65_536) return;
    faultPoint('pg-sink:mid-copy'); // a crash with part of the COPY sent (issue 7)
    yield bytes.subarray(65_536);
  }
  const stream = client.query(copyFrom(plan.copy));
  await pipeline(Readable.from(parts(), { objectMode: false }), stream);
}
