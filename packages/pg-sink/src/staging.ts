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

/** What `InMemoryCopy` needs of pg's connection: its socket. */
interface CopyConnection {
  query(text: string): void;
  stream: NodeJS.WritableStream & { cork(): void; uncork(): void };
}

/**
 * A COPY … FROM STDIN whose whole payload is already in memory (a small file's records): the
 * CopyData message and CopyDone go out in one socket write once the server is ready (issue 12).
 * pg-copy-streams writes a chunk's header, the chunk and CopyDone separately: three write calls,
 * each a wake-up of the server, on every small file of a steady trickle.
 */
class InMemoryCopy implements pg.Submittable {
  readonly done: Promise<void>;
  #resolve!: () => void;
  #reject!: (error: unknown) => void;
  #failed = false;

  constructor(
    private readonly text: string,
    private readonly payload: Buffer,
  ) {
    this.done = new Promise<void>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  submit(connection: unknown): void {
    (connection as CopyConnection).query(this.text);
  }

  handleCopyInResponse(connection: unknown): void {
    const { stream } = connection as CopyConnection;
    const header = Buffer.alloc(5);
    header[0] = 0x64; // CopyData
    header.writeUInt32BE(this.payload.length + 4, 1);
    stream.cork();
    stream.write(header);
    stream.write(this.payload);
    stream.write(COPY_DONE);
    stream.uncork();
  }

  handleError(error: unknown): void {
    this.#failed = true;
    this.#reject(error);
  }

  handleReadyForQuery(): void {
    if (!this.#failed) this.#resolve();
  }

  handleCommandComplete(): void {}
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyData(): void {}
}

const COPY_DONE = Buffer.from([0x63, 0, 0, 0, 4]);

/** Streams raw CSV records (pass-through) into the staging table as they are. */
export async function copyCsv(client: pg.ClientBase, plan: ApplyPlan, bytes: Buffer): Promise<void> {
  if (bytes.length <= 65_536) {
    await client.query(new InMemoryCopy(plan.copy, bytes)).done;
    return;
  }
  function* parts(): Generator<Buffer> {
    yield bytes.subarray(0, 65_536);
    faultPoint('pg-sink:mid-copy'); // a crash with part of the COPY sent (issue 7)
    yield bytes.subarray(65_536);
  }
  const stream = client.query(copyFrom(plan.copy));
  await pipeline(Readable.from(parts(), { objectMode: false }), stream);
}
