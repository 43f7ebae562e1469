import { type Batch, pipeline, type Row, TributaryError } from '@tributary/core';
import { memorySink } from '@tributary/core/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestBucket, type TestBucket, testS3Client } from '../../../test/support/services.js';
import { type StreamDefinition, s3Source } from '../src/index.js';
import { csv, FakeLoadLog, loggingSink, objectExists, put } from './helpers.js';

let t: TestBucket;
beforeAll(async () => {
  t = await createTestBucket();
});

const stream = (prefix: string, patch: Partial<StreamDefinition> = {}): StreamDefinition => ({
  id: `err/${prefix}`,
  bucket: t.bucket,
  prefix: `${prefix}/changes/`,
  keyPattern: 'YYYYMMDD',
  ...patch,
});

const exists = (key: string) => objectExists(t.client, t.bucket, key);

/** Runs a pipeline and returns what it produced, the sink and the error it failed with. */
async function run(
  streams: StreamDefinition[],
  options: {
    sink?: ReturnType<typeof memorySink>;
    archive?: boolean;
    batchRows?: number;
    loads?: FakeLoadLog;
  } = {},
) {
  const source = s3Source({
    client: t.client,
    streams,
    archive: options.archive ?? true,
    batchRows: options.batchRows ?? 1000,
  });
  const sink = options.sink ?? memorySink();
  const produced: Batch<Row>[] = [];
  let error: TributaryError | undefined;
  try {
    await pipeline(
      source,
      (b) => {
        produced.push(b);
        return b;
      },
      sink,
    );
  } catch (e) {
    error = e as TributaryError;
  }
  return { sink, produced, error, sources: produced.map((b) => b.meta.source) };
}

const header = ['id', 'name'];

describe('fail loud', () => {
  it('header drift: names the file, line, column and both sides; nothing of it emitted; earlier files committed', async () => {
    await put(t.client, t.bucket, 'drift/changes/20260101.csv', csv(header, [['1', 'a']]));
    await put(t.client, t.bucket, 'drift/changes/20260102.csv', csv(['id', 'nom'], [['2', 'b']]));
    await put(t.client, t.bucket, 'drift/changes/20260103.csv', csv(header, [['3', 'c']]));
    const { sink, error, sources } = await run([stream('drift', { columns: header })]);
    expect(error).toBeInstanceOf(TributaryError);
    expect(error).toMatchObject({
      code: 'SCHEMA_DRIFT',
      stream: 'err/drift',
      location: { file: 'drift/changes/20260102.csv', line: 1, column: 2 },
    });
    expect(error!.message).toContain('drift/changes/20260102.csv:1:2');
    expect(error!.message).toContain('expected [id, name]');
    expect(error!.message).toContain('file has [id, nom]');
    expect(error!.message).toMatch(/missing name; unexpected nom/);
    expect(sources).toEqual(['drift/changes/20260101.csv']);
    expect(sink.rows).toEqual([{ id: '1', name: 'a' }]);
    expect(await sink.checkpoint('err/drift')).toMatchObject({
      key: 'drift/changes/20260101.csv',
      done: true,
    });
    // The earlier file was archived, the failing one left in place.
    expect(await exists('drift/processed/20260101.csv')).toBe(true);
    expect(await exists('drift/changes/20260102.csv')).toBe(true);
  });

  it('column checks: exact rejects reordering, subset accepts extra columns in any order', async () => {
    await put(t.client, t.bucket, 'order/changes/20260101.csv', csv(['name', 'id'], [['a', '1']]));
    const exact = await run([stream('order', { columns: header })], { archive: false });
    expect(exact.error?.code).toBe('SCHEMA_DRIFT');
    expect(exact.error?.message).toMatch(/same columns in a different order/);
    await put(
      t.client,
      t.bucket,
      'subset/changes/20260101.csv',
      csv(['extra', 'name', 'id'], [['x', 'a', '1']]),
    );
    const subset = await run([stream('subset', { columns: header, columnCheck: 'subset' })], {
      archive: false,
    });
    expect(subset.error).toBeUndefined();
    expect(subset.sink.rows).toEqual([{ extra: 'x', name: 'a', id: '1' }]);
  });

  it('malformed row: names file, line and column; nothing of the file is committed', async () => {
    await put(t.client, t.bucket, 'bad-row/changes/20260101.csv', csv(header, [['1', 'a']]));
    await put(t.client, t.bucket, 'bad-row/changes/20260102.csv', 'id,name\n2,b\n3,"c\n4,d,extra\n');
    // Far enough into the file that batches of it were emitted before the bad row is parsed.
    const many = Array.from({ length: 20_000 }, (_, i) => [String(10 + i), 'x']);
    await put(t.client, t.bucket, 'bad-row/changes/20260103.csv', `${csv(header, many)}6,f,extra\n7,g\n`);
    const first = await run([stream('bad-row')]);
    // `3,"c\n4,d,extra\n` is one quoted field that never closes: reported at the end of input.
    expect(first.error).toMatchObject({ code: 'MALFORMED_ROW', stream: 'err/bad-row' });
    expect(first.error!.location).toMatchObject({ file: 'bad-row/changes/20260102.csv', column: 2 });
    expect(first.error!.message).toMatch(/^bad-row\/changes\/20260102\.csv:\d+:2: malformed CSV row/);
    expect(first.sources).toEqual(['bad-row/changes/20260101.csv']);
    expect(first.sink.rows).toEqual([{ id: '1', name: 'a' }]);

    // A wrong field count, mid-file, after batches of the file were emitted: they were never
    // committed, and the sink rolled them back.
    await put(t.client, t.bucket, 'bad-row/changes/20260102.csv', csv(header, [['2', 'b']]));
    const second = await run([stream('bad-row')], { batchRows: 100, sink: first.sink });
    expect(second.error).toMatchObject({
      code: 'MALFORMED_ROW',
      location: { file: 'bad-row/changes/20260103.csv', line: 20_002, column: 3, record: 20_001 },
    });
    expect(second.error!.message).toMatch(
      /^bad-row\/changes\/20260103\.csv:20002:3: malformed CSV row \(record 20001\)/,
    );
    expect(second.sources).toContain('bad-row/changes/20260103.csv');
    expect(second.sink.rows).toEqual([
      { id: '1', name: 'a' },
      { id: '2', name: 'b' },
    ]);
    expect(await second.sink.checkpoint('err/bad-row')).toMatchObject({
      key: 'bad-row/changes/20260102.csv',
    });
  });

  it('malformed JSON line: file, line and column', async () => {
    await put(t.client, t.bucket, 'bad-json/changes/20260101.jsonl', '{"id":1}\n{"id":2,}\n');
    const { error, sources } = await run([stream('bad-json')]);
    expect(error).toMatchObject({
      code: 'MALFORMED_ROW',
      location: { file: 'bad-json/changes/20260101.jsonl', line: 2, column: 9 },
    });
    expect(sources).toEqual([]);
  });

  it('bad key name: the stream stops before emitting anything; other streams keep running', async () => {
    await put(t.client, t.bucket, 'bad-key/changes/20260101.csv', csv(header, [['1', 'a']]));
    const sink = memorySink();
    await run([stream('bad-key')], { sink });
    await put(t.client, t.bucket, 'bad-key/changes/export-final.csv', csv(header, [['2', 'b']]));
    await put(t.client, t.bucket, 'bad-key/changes/20260103.csv', csv(header, [['3', 'c']]));
    await put(t.client, t.bucket, 'good/changes/20260101.csv', csv(header, [['9', 'z']]));
    const { error, sources } = await run([stream('bad-key'), stream('good')], { sink });
    expect(error).toMatchObject({
      code: 'BAD_KEY',
      stream: 'err/bad-key',
      location: { file: 'bad-key/changes/export-final.csv' },
    });
    expect(error!.message).toMatch(/export-final\.csv does not match the key pattern 'YYYYMMDD'/);
    expect(sources).toEqual(['good/changes/20260101.csv']);
    expect(sink.rows).toEqual([
      { id: '1', name: 'a' },
      { id: '9', name: 'z' },
    ]);
    expect(await sink.checkpoint('err/bad-key')).toMatchObject({ key: 'bad-key/changes/20260101.csv' });
  });

  it('ETag change of an applied file: error by default (checkpoint or load log), re-applied under apply', async () => {
    // Without a load log: the checkpointed file, left in place (archive off), re-exported.
    await put(t.client, t.bucket, 'etag/changes/20260101.csv', csv(header, [['1', 'a']]));
    const sink = memorySink();
    await run([stream('etag')], { sink, archive: false });
    await put(t.client, t.bucket, 'etag/changes/20260101.csv', csv(header, [['1', 'a2']]));
    await put(t.client, t.bucket, 'etag/changes/20260102.csv', csv(header, [['2', 'b']]));
    const changed = await run([stream('etag')], { sink, archive: false });
    expect(changed.error).toMatchObject({
      code: 'ETAG_CHANGED',
      stream: 'err/etag',
      location: { file: 'etag/changes/20260101.csv' },
    });
    expect(changed.error!.message).toMatch(/20260101\.csv was already applied but its ETag changed/);
    expect(changed.sources).toEqual([]);

    const applied = await run([stream('etag', { etagChanged: 'apply' })], { sink, archive: false });
    expect(applied.error).toBeUndefined();
    expect(applied.sources).toEqual(['etag/changes/20260101.csv', 'etag/changes/20260102.csv']);
    expect(sink.rows.slice(-2)).toEqual([
      { id: '1', name: 'a2' },
      { id: '2', name: 'b' },
    ]);

    // With a load log: the file was applied and archived, then re-exported in place.
    const loads = new FakeLoadLog();
    const logged = loggingSink(loads);
    await put(t.client, t.bucket, 'etag2/changes/20260101.csv', csv(header, [['1', 'a']]));
    await put(t.client, t.bucket, 'etag2/changes/20260102.csv', csv(header, [['2', 'b']]));
    const first = await run([stream('etag2')], { sink: logged, loads });
    expect(first.error).toBeUndefined();
    expect([...loads.archived].sort()).toEqual(['etag2/changes/20260101.csv', 'etag2/changes/20260102.csv']);
    await put(t.client, t.bucket, 'etag2/changes/20260101.csv', csv(header, [['1', 'a2']]));
    const second = await run([stream('etag2')], { sink: logged, loads });
    expect(second.error).toMatchObject({
      code: 'ETAG_CHANGED',
      location: { file: 'etag2/changes/20260101.csv' },
    });
    expect(second.sources).toEqual([]);
    // Planning asked the load log about the listed file only, not the stream's whole history.
    expect(loads.listCalls.at(-1)).toEqual(['etag2/changes/20260101.csv']);
  });

  it('a file re-exported between listing and reading: ETAG_CHANGED, nothing emitted', async () => {
    await put(t.client, t.bucket, 'race/changes/20260101.csv', csv(header, [['1', 'a']]));
    const client = testS3Client();
    client.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'GetObjectCommand') {
          await put(t.client, t.bucket, 'race/changes/20260101.csv', csv(header, [['1', 'changed']]));
        }
        return next(args);
      },
      { step: 'initialize', name: 'reExport' },
    );
    const source = s3Source({ client, streams: [stream('race')], retry: false });
    const sink = memorySink();
    const error = await pipeline(source, sink).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ETAG_CHANGED', location: { file: 'race/changes/20260101.csv' } });
    expect(sink.rows).toEqual([]);
  });
});
