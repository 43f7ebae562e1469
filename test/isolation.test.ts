/**
 * Issue 12 / invariant 10 in the library: one `pipeline()` over an s3Source with two streams
 * gives each stream its own failure domain. A bad file stops only its own stream, at that file.
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { type PipelineEvent, pipeline, type TributaryError } from '@tributary/core';
import { pgSink, type TargetTable } from '@tributary/pg-sink';
import { s3Source } from '@tributary/s3-source';
import { beforeAll, describe, expect, it } from 'vitest';
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

const HEADER = 'id,amount\n';
const rows = (from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, i) => `${from + i},${(from + i) * 10}\n`).join('');

async function put(key: string, body: string): Promise<void> {
  await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body }));
}

const target = (table: string): TargetTable => ({
  schema: 'iso',
  table,
  key: ['id'],
  columns: [
    { name: 'id', type: 'integer' },
    { name: 'amount', type: 'integer' },
  ],
  createTable: true,
});

describe('pipeline() over two streams: isolated failures', () => {
  it('a mid-file malformed row in A and a cast error in B’s second file stop only their own stream', async () => {
    const root = randomName('iso');
    // Stream A: day 1 good, day 2 malformed in the middle (rows before it must roll back), day 3 good.
    await put(`${root}/a/20260101.csv`, HEADER + rows(1, 3));
    await put(`${root}/a/20260102.csv`, `${HEADER}${rows(4, 5)}6,60,extra\n${rows(7, 8)}`);
    await put(`${root}/a/20260103.csv`, HEADER + rows(9, 9));
    // Stream B: day 1 good, day 2 has a value that does not cast to integer, day 3 good.
    await put(`${root}/b/20260101.csv`, HEADER + rows(101, 102));
    await put(`${root}/b/20260102.csv`, `${HEADER}${rows(103, 104)}105,not-a-number\n`);
    await put(`${root}/b/20260103.csv`, HEADER + rows(106, 106));

    const source = s3Source({
      client: s3.client,
      streams: ['a', 'b'].map((name) => ({
        id: `iso/${name}`,
        bucket: s3.bucket,
        prefix: `${root}/${name}/`,
        processedPrefix: `${root}/processed/${name}/`,
        latePrefix: `${root}/late/${name}/`,
        keyPattern: 'YYYYMMDD',
        format: 'csv' as const,
      })),
    });
    const sink = pgSink({ pool: db.pool, targets: { 'iso/a': target('a'), 'iso/b': target('b') } });
    const events: PipelineEvent[] = [];
    let error: TributaryError | undefined;
    try {
      await pipeline(source, sink, { onEvent: (e) => events.push(e) });
    } catch (e) {
      error = e as TributaryError;
    } finally {
      await sink.close();
    }

    // The run fails naming both streams and both files.
    expect(error?.code).toBe('STREAMS_FAILED');
    const failures = (error!.cause as AggregateError).errors as TributaryError[];
    expect(failures.map((f) => [f.stream, f.location?.file])).toEqual([
      ['iso/a', `${root}/a/20260102.csv`],
      ['iso/b', `${root}/b/20260102.csv`],
    ]);
    expect(failures[0]?.message).toMatch(/20260102\.csv:4:\d+: malformed CSV row/);
    expect(failures[1]?.message).toMatch(/not-a-number/);
    expect(
      events.flatMap((e) => (e.type === 'stream-failed' ? [`${e.stream} ${e.source}`] : [])).sort(),
    ).toEqual([`iso/a ${root}/a/20260102.csv`, `iso/b ${root}/b/20260102.csv`]);

    // Everything that can be applied is, exactly: each stream's first file, nothing after its
    // failing one (order, invariant 1), no row of a failing file (atomicity, invariant 2).
    const table = async (name: string) =>
      (await db.pool.query<{ id: number; amount: number }>(`SELECT id, amount FROM iso.${name} ORDER BY id`))
        .rows;
    expect(await table('a')).toEqual([1, 2, 3].map((id) => ({ id, amount: id * 10 })));
    expect(await table('b')).toEqual([101, 102].map((id) => ({ id, amount: id * 10 })));
    const loads = await db.pool.query<{ stream: string; source: string; status: string }>(
      `SELECT stream, source, status FROM tributary.loads ORDER BY stream, source, load_id`,
    );
    expect(loads.rows.map((r) => `${r.stream} ${r.source.split('/').pop()} ${r.status}`)).toEqual([
      'iso/a 20260101.csv archived',
      'iso/a 20260102.csv failed',
      'iso/b 20260101.csv archived',
      'iso/b 20260102.csv failed',
    ]);
    // Failing files stay where they are; applied ones were archived.
    expect(await listAll(s3.client, s3.bucket, `${root}/a/`)).toEqual([
      `${root}/a/20260102.csv`,
      `${root}/a/20260103.csv`,
    ]);
    expect(await listAll(s3.client, s3.bucket, `${root}/processed/`)).toEqual([
      `${root}/processed/a/20260101.csv`,
      `${root}/processed/b/20260101.csv`,
    ]);
  });
});
