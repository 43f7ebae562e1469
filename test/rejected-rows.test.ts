/**
 * Issue 17, rejected rows, in the library: pipeline(s3Source → pgSink) under each `onError`
 * policy, on the pass-through (raw CSV → COPY) path and on the row path (csv-parse in JavaScript).
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { map, type PipelineResult, pipeline, TributaryError } from '@tributary/core';
import { pgSink } from '@tributary/pg-sink';
import { type OnErrorPolicy, s3Source } from '@tributary/s3-source';
import { beforeAll, describe, expect, it } from 'vitest';
import { BAD_ROWS, cleanRecord, REJECT_HEADER, REJECT_TYPES, rejectFile } from './support/rejected.js';
import {
  createTestBucket,
  createTestDatabase,
  randomName,
  type TestBucket,
  type TestDatabase,
} from './support/services.js';
import { listAll } from './support/tickets.js';

let db: TestDatabase;
let s3: TestBucket;
beforeAll(async () => {
  [db, s3] = await Promise.all([createTestDatabase(), createTestBucket()]);
});

interface Run {
  stream: string;
  prefix: string;
  root: string;
  table: string;
}

async function put(key: string, body: string): Promise<void> {
  await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body }));
}

/** A stream of its own (prefix, target table) with `files` uploaded. */
async function setUp(files: Record<string, string>): Promise<Run> {
  const name = randomName('r');
  // processed/ and rejected/ are siblings of the listed folder.
  const run = { stream: `rej/${name}`, prefix: `${name}/changes/`, root: `${name}/`, table: name };
  for (const [file, body] of Object.entries(files)) await put(`${run.prefix}${file}`, body);
  return run;
}

async function load(
  run: Run,
  options: {
    onError?: OnErrorPolicy;
    maxRejected?: number | string;
    passThrough?: boolean;
    custom?: boolean;
  },
): Promise<PipelineResult> {
  const sink = pgSink({
    pool: db.pool,
    targets: {
      [run.stream]: {
        schema: 'public',
        table: run.table,
        key: ['id'],
        createTable: true,
        columns: Object.entries(REJECT_TYPES).map(([name, type]) => ({ name, type })),
      },
    },
  });
  const source = s3Source({
    client: s3.client,
    // Several batches per file: the checked re-run covers the whole unit, not just the last batch.
    batchRows: 1500,
    streams: [
      {
        id: run.stream,
        bucket: s3.bucket,
        prefix: run.prefix,
        keyPattern: 'YYYYMMDD',
        emptyAsNull: true,
        passThrough: options.passThrough ?? true,
        ...(options.onError ? { onError: options.onError } : {}),
        ...(options.maxRejected === undefined ? {} : { maxRejected: options.maxRejected }),
      },
    ],
  });
  try {
    // A custom transform needs rows: raw batches are parsed (checked) by pipeline() before it.
    const stages = options.custom ? [map((row) => row, 'identity')] : [];
    return await pipeline(source, ...stages, sink);
  } finally {
    await sink.close();
  }
}

function rowOf(text: string): Record<string, string> {
  const values = text.split(',');
  return Object.fromEntries(REJECT_HEADER.split(',').map((name, i) => [name, values[i]!]));
}

async function count(run: Run): Promise<number> {
  const result = await db.pool.query(`SELECT count(*)::int AS n FROM public."${run.table}"`);
  return result.rows[0].n;
}

async function rejectedRows(run: Run) {
  const result = await db.pool.query(
    `SELECT source, line::int, record::int, column_name, error_code, record_text
       FROM tributary.rejected_rows WHERE stream = $1 ORDER BY record`,
    [run.stream],
  );
  return result.rows;
}

async function loads(run: Run) {
  const result = await db.pool.query(
    `SELECT source, status, rows_read::int, rows_rejected::int, rows_inserted::int, error
       FROM tributary.loads WHERE stream = $1 ORDER BY load_id`,
    [run.stream],
  );
  return result.rows.map((row) => ({ ...row, source: String(row.source).split('/').pop() }));
}

describe('onError: skip-row', () => {
  for (const [name, passThrough, custom] of [
    ['pass-through', true, false],
    ['row path', false, false],
    ['pass-through parsed for a custom transform', true, true],
  ] as const) {
    it(`sets the 5 bad rows aside with their lines and columns, applies 9,995 (${name})`, async () => {
      const run = await setUp({ '20260101.csv': rejectFile() });
      const result = await load(run, { onError: 'skip-row', passThrough, custom });
      expect(await count(run)).toBe(9995);
      expect(result.rowsRejected).toBe(5);
      expect(result.rowsWritten).toBe(9995);
      const rejected = await rejectedRows(run);
      expect(
        rejected.map((r) => ({
          line: r.line,
          record: r.record,
          column: r.column_name,
          code: r.error_code,
          text: r.record_text,
        })),
      ).toEqual(
        BAD_ROWS.map((b) => ({
          line: b.line,
          record: b.record,
          column: b.column,
          code: b.code,
          // The row path keeps the parsed row (as JSON) for a value that does not cast.
          text:
            (passThrough && !custom) || b.code === 'MALFORMED_ROW' ? b.text : JSON.stringify(rowOf(b.text)),
        })),
      );
      expect(rejected.every((r) => r.source === `${run.prefix}20260101.csv`)).toBe(true);
      expect(await loads(run)).toEqual([
        expect.objectContaining({
          source: '20260101.csv',
          status: 'archived',
          rows_read: 10_000,
          rows_rejected: 5,
          rows_inserted: 9995,
        }),
      ]);
      // Checkpoint moved, file archived to processed/.
      const checkpoint = await db.pool.query(`SELECT source FROM tributary.checkpoints WHERE stream = $1`, [
        run.stream,
      ]);
      expect(checkpoint.rows[0].source).toBe(`${run.prefix}20260101.csv`);
      expect(await listAll(s3.client, s3.bucket, `${run.root}processed/`)).toHaveLength(1);
      const view = await db.pool.query(
        `SELECT rows_rejected::int FROM tributary.v_rejected_rows WHERE stream = $1`,
        [run.stream],
      );
      expect(view.rows).toEqual([{ rows_rejected: 5 }]);
    });
  }

  it('a stray quote still fails the file: where the next record starts is in doubt', async () => {
    const body = `${REJECT_HEADER}\n${cleanRecord(1)}\n2,"x"y,2026-01-01,z\n${cleanRecord(3)}\n`;
    const run = await setUp({ '20260101.csv': body });
    const failure = await load(run, { onError: 'skip-row' }).catch((error: unknown) => error);
    expect((failure as TributaryError).code).toBe('MALFORMED_ROW');
    expect((failure as TributaryError).message).toContain('20260101.csv:3');
    expect(await count(run)).toBe(0);
    expect(await rejectedRows(run)).toEqual([]);
  });

  it('a clean file takes the fast path: nothing rejected', async () => {
    const run = await setUp({ '20260101.csv': rejectFile(3000, false) });
    const result = await load(run, { onError: 'skip-row' });
    expect(result.rowsRejected).toBe(0);
    expect(await count(run)).toBe(3000);
    expect(await rejectedRows(run)).toEqual([]);
  });

  it('above maxRejected the file is not applied and the stream stops naming it (REJECT_LIMIT)', async () => {
    for (const maxRejected of [4, '0.04%']) {
      const run = await setUp({ '20260101.csv': rejectFile(), '20260102.csv': rejectFile(10, false) });
      const failure = await load(run, { onError: 'skip-row', maxRejected }).catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(TributaryError);
      expect((failure as TributaryError).code).toBe('REJECT_LIMIT');
      expect((failure as TributaryError).message).toContain(`${run.prefix}20260101.csv`);
      expect(await count(run)).toBe(0);
      expect(await rejectedRows(run)).toEqual([]);
      expect((await loads(run)).map((l) => l.status)).toEqual(['failed']);
      // At the limit (5 of 10,000 = 0.05%) the file is applied.
      const ok = await load(run, {
        onError: 'skip-row',
        maxRejected: typeof maxRejected === 'number' ? 5 : '0.05%',
      });
      expect(ok.rowsRejected).toBe(5);
      expect(await count(run)).toBe(9995);
    }
  });
});

describe('onError: skip-file', () => {
  for (const passThrough of [true, false]) {
    it(`records the file rejected, moves it to rejected/, applies the later files (${passThrough ? 'pass-through' : 'row path'})`, async () => {
      const later = `${REJECT_HEADER}\n${cleanRecord(1, 2)}\n${cleanRecord(20_000)}\n`;
      const run = await setUp({
        '20260101.csv': rejectFile(10, false),
        '20260102.csv': rejectFile(),
        '20260103.csv': later,
      });
      const result = await load(run, { onError: 'skip-file', passThrough });
      expect(await count(run)).toBe(11);
      const row = await db.pool.query(`SELECT amount::text FROM public."${run.table}" WHERE id = 1`);
      expect(row.rows[0].amount).toBe('2.25');
      expect(result.rowsRejected).toBe(10_000);
      expect(result.rowsWritten).toBe(12);
      const log = await loads(run);
      expect(log.map((l) => [l.source, l.status])).toEqual([
        ['20260101.csv', 'archived'],
        ['20260102.csv', 'rejected'],
        ['20260103.csv', 'archived'],
      ]);
      expect(log[1]).toMatchObject({ rows_read: 10_000, rows_rejected: 10_000, rows_inserted: 0 });
      expect(log[1]!.error).toMatch(/20260102\.csv:101/);
      expect(await rejectedRows(run)).toEqual([]);
      expect(await listAll(s3.client, s3.bucket, `${run.root}rejected/`)).toEqual([
        `${run.root}rejected/20260102.csv`,
      ]);
      expect(await listAll(s3.client, s3.bucket, `${run.root}processed/`)).toHaveLength(2);
      // The next run has nothing to do: the rejected file is not read again.
      const again = await load(run, { onError: 'skip-file', passThrough });
      expect(again.commits).toBe(0);
    });
  }
});

describe('onError: abort (default)', () => {
  it('fails the file as before: nothing applied, nothing set aside', async () => {
    const run = await setUp({ '20260101.csv': rejectFile() });
    const failure = await load(run, {}).catch((error: unknown) => error);
    expect((failure as TributaryError).code).toBe('MALFORMED_ROW');
    expect((failure as TributaryError).message).toContain('20260101.csv:101');
    expect(await count(run)).toBe(0);
    expect(await rejectedRows(run)).toEqual([]);
  });
});
