import { setTimeout as sleep } from 'node:timers/promises';
import { type Batch, pipeline, type Row, TributaryError } from '@tributary/core';
import { memorySink } from '@tributary/core/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestBucket, type TestBucket } from '../../../test/support/services.js';
import { type StreamDefinition, s3Source } from '../src/index.js';
import { put } from './helpers.js';

let t: TestBucket;
beforeAll(async () => {
  t = await createTestBucket();
});

async function load(stream: Partial<StreamDefinition> & { prefix: string }, batchRows = 100) {
  const source = s3Source({
    client: t.client,
    batchRows,
    archive: false,
    streams: [{ id: 'test/layouts', bucket: t.bucket, ...stream }],
  });
  const sink = memorySink();
  const batches: Batch<Row>[] = [];
  await pipeline(
    source,
    (b) => {
      batches.push(b);
      return b;
    },
    sink,
  );
  return { sink, batches };
}

describe("layout 'unordered' with format 'json' (seed 002's cubic/kafka/sample/<uuid>.json)", () => {
  it('applies files by LastModified, not by name, and reads JSON arrays and concatenated objects', async () => {
    const prefix = 'cubic/kafka/sample/';
    // Uploaded in this order; names sort the other way round.
    await put(
      t.client,
      t.bucket,
      `${prefix}zzVytxeTZskVKR7C7WgdSP3d.json`,
      '[{"id":1,"v":"first"},{"id":2,"v":"first"}]',
    );
    await sleep(1100); // S3 LastModified has second precision
    await put(
      t.client,
      t.bucket,
      `${prefix}mmQ8pK2nLx.json.gz`,
      '[\n  {"id": 1, "v": "second", "nested": {"a": [1, 2, "]}"]}},\n  {"id": 3, "v": "x\\"}"}\n]\n',
      { gzip: true },
    );
    await sleep(1100);
    await put(
      t.client,
      t.bucket,
      `${prefix}aa0001.json`,
      '{"id":2,"v":"third"}\n{"id":4,"v":"third"}{"id":5,"v":"third"}\n',
    );
    const { batches } = await load({ prefix, layout: 'unordered' });
    expect(batches.map((b) => b.meta.source)).toEqual([
      `${prefix}zzVytxeTZskVKR7C7WgdSP3d.json`,
      `${prefix}mmQ8pK2nLx.json.gz`,
      `${prefix}aa0001.json`,
    ]);
    expect(batches[1]!.rows).toEqual([
      { id: 1, v: 'second', nested: { a: [1, 2, ']}'] } },
      { id: 3, v: 'x"}' },
    ]);
    expect(batches[1]!.meta.locations?.map((l) => l.line)).toEqual([2, 3]);
    expect(batches[2]!.rows.map((r) => r['id'])).toEqual([2, 4, 5]);
    // LastModified travels to the sink (tributary.loads.s3_modified).
    const modified = batches.map((b) => Date.parse(b.meta['modified'] as string));
    expect(modified.every(Number.isFinite)).toBe(true);
    expect(modified[0]!).toBeLessThan(modified[2]!);
  });

  it('a malformed JSON element fails naming the file and its line', async () => {
    const prefix = 'json-bad/';
    await put(t.client, t.bucket, `${prefix}20260101.json`, '[\n{"id":1},\n{"id":2,,}\n]');
    const error = await load({ prefix, keyPattern: 'YYYYMMDD', format: 'json' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TributaryError);
    expect((error as TributaryError).location).toMatchObject({ file: `${prefix}20260101.json`, line: 3 });
  });

  it('an unclosed array is an error, not a silently shorter file', async () => {
    const prefix = 'json-open/';
    await put(t.client, t.bucket, `${prefix}20260101.json`, '[{"id":1},{"id":2}');
    await expect(load({ prefix, keyPattern: 'YYYYMMDD', format: 'json' })).rejects.toThrow(/not closed/);
  });

  it('.json keys are ignored by streams that do not read JSON', async () => {
    const prefix = 'json-ignored/';
    await put(t.client, t.bucket, `${prefix}latest.json`, '[]');
    await put(t.client, t.bucket, `${prefix}20260101.jsonl`, '{"id":1}\n');
    const { sink } = await load({ prefix, keyPattern: 'YYYYMMDD' });
    expect(sink.rows).toEqual([{ id: 1 }]);
  });
});
