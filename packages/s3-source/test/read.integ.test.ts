import { Readable } from 'node:stream';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { type Batch, DEFAULT_RETRY_POLICY, pipeline, type Row } from '@tributary/core';
import { memorySink } from '@tributary/core/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestBucket, type TestBucket, testS3Client } from '../../../test/support/services.js';
import { type FileChunk, normalizeEtag, readFileBatches, s3Source } from '../src/index.js';
import { csv, eventLog, put } from './helpers.js';

let t: TestBucket;
beforeAll(async () => {
  t = await createTestBucket();
});

/** Reads a whole stream through pipeline() into a memory sink. */
async function load(prefix: string, patch: Record<string, unknown> = {}, batchRows = 2) {
  const source = s3Source({
    client: t.client,
    batchRows,
    archive: false,
    streams: [{ id: 'test/read', bucket: t.bucket, prefix, keyPattern: 'YYYYMMDD', ...patch }],
  });
  const sink = memorySink();
  const batches: Batch<Row>[] = [];
  const log = eventLog();
  const result = await pipeline(
    source,
    (b) => {
      batches.push(b);
      return b;
    },
    sink,
    { onEvent: log.onEvent },
  );
  return { sink, batches, result, log };
}

describe('reading files', () => {
  it('round-trips gzip, BOM, CRLF and quoted commas, quotes and newlines exactly', async () => {
    const header = ['id', 'note', 'city'];
    const tricky = [
      ['1', '"a, b"', 'Nairobi'],
      ['2', '"she said ""hi"""', 'Mombasa'],
      ['3', '"line one\r\nline two"', 'Kisumu'],
      ['4', '"lf\nonly"', ''],
      ['5', 'plain', '"ünïcödé ✓"'],
    ];
    const expected = [
      { id: '1', note: 'a, b', city: 'Nairobi' },
      { id: '2', note: 'she said "hi"', city: 'Mombasa' },
      { id: '3', note: 'line one\r\nline two', city: 'Kisumu' },
      { id: '4', note: 'lf\nonly', city: '' },
      { id: '5', note: 'plain', city: 'ünïcödé ✓' },
    ];
    const text = `\ufeff${csv(header, tricky, '\r\n')}`;
    await put(t.client, t.bucket, 'rt/plain/20260101.csv', text);
    await put(t.client, t.bucket, 'rt/gz/20260101.csv.gz', text, { gzip: true });
    // gzip detected by its magic bytes even without the suffix
    await put(t.client, t.bucket, 'rt/magic/20260101.csv', text, { gzip: true });
    for (const prefix of ['rt/plain/', 'rt/gz/', 'rt/magic/']) {
      const { sink, batches } = await load(prefix);
      expect(sink.rows, prefix).toEqual(expected);
      // Locations name the first line of each record (record 3 spans lines 4-5).
      expect(batches.flatMap((b) => b.meta.locations ?? []).map((l) => [l.line, l.record])).toEqual([
        [2, 1],
        [3, 2],
        [4, 3],
        [6, 4],
        [8, 5],
      ]);
      expect(batches.map((b) => b.position['row'])).toEqual([2, 4, 5]);
      expect(batches.map((b) => b.meta.commit)).toEqual([false, false, true]);
    }
  });

  it('reads JSON lines (plain and gzip), CRLF and blank lines included', async () => {
    const lines = `\ufeff{"id":1,"tags":["a","b"],"note":"x\\ny"}\r\n\r\n{"id":2,"tags":[],"note":null}\n`;
    await put(t.client, t.bucket, 'jl/plain/20260101.jsonl', lines);
    await put(t.client, t.bucket, 'jl/gz/20260101.jsonl.gz', lines, { gzip: true });
    for (const prefix of ['jl/plain/', 'jl/gz/']) {
      const { sink, batches } = await load(prefix, {}, 10);
      expect(sink.rows).toEqual([
        { id: 1, tags: ['a', 'b'], note: 'x\ny' },
        { id: 2, tags: [], note: null },
      ]);
      expect(batches[0]!.meta.locations).toEqual([
        { file: `${prefix}20260101.jsonl${prefix.includes('gz') ? '.gz' : ''}`, line: 1, record: 1 },
        { file: `${prefix}20260101.jsonl${prefix.includes('gz') ? '.gz' : ''}`, line: 3, record: 2 },
      ]);
    }
  });

  it('turns empty strings into null when asked, and batches by bytes too', async () => {
    await put(
      t.client,
      t.bucket,
      'null/20260101.csv',
      csv(
        ['a', 'b'],
        [
          ['1', ''],
          ['', '2'],
        ],
      ),
    );
    const { sink } = await load('null/', { emptyAsNull: true }, 100);
    expect(sink.rows).toEqual([
      { a: '1', b: null },
      { a: null, b: '2' },
    ]);
    const big = csv(
      ['a'],
      Array.from({ length: 40_000 }, (_, i) => [`row-${i}-${'x'.repeat(20)}`]),
    );
    await put(t.client, t.bucket, 'bytes/20260101.csv', big);
    const source = s3Source({
      client: t.client,
      batchRows: 1_000_000,
      batchBytes: 64 * 1024,
      archive: false,
      streams: [{ id: 'test/bytes', bucket: t.bucket, prefix: 'bytes/', keyPattern: 'YYYYMMDD' }],
    });
    const bytesSink = memorySink();
    const result = await pipeline(source, bytesSink);
    expect(bytesSink.rows).toHaveLength(40_000);
    expect(result.batches).toBeGreaterThan(5);
  });

  it('pass-through hands out a full piece once the next record starts, not at the end of the download', async () => {
    const records = Array.from({ length: 40_000 }, (_, i) => [String(i + 1), `value-${i + 1}`]);
    const text = csv(['id', 'v'], records);
    await put(t.client, t.bucket, 'early/20260101.csv', text);
    const { ETag } = await t.client.send(
      new HeadObjectCommand({ Bucket: t.bucket, Key: 'early/20260101.csv' }),
    );
    // The body (~700 KB) arrives in 4 KiB reads; `delivered` counts what the reader has been given.
    let delivered = 0;
    const client = testS3Client();
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const result = await next(args);
        if (context.commandName === 'GetObjectCommand') {
          const output = result.output as { Body: unknown };
          const body = Buffer.from(
            await (output.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
          );
          output.Body = Readable.from(
            (function* () {
              for (let at = 0; at < body.length; at += 4096) {
                delivered = Math.min(at + 4096, body.length);
                yield body.subarray(at, at + 4096);
              }
            })(),
          );
        }
        return result;
      },
      { step: 'initialize', name: 'slowBody' },
    );
    const chunks: { chunk: FileChunk; delivered: number }[] = [];
    // Two pieces: the first is cut at 60% of the file, the rest is the last.
    for await (const chunk of readFileBatches({
      client,
      bucket: t.bucket,
      key: 'early/20260101.csv',
      etag: normalizeEtag(ETag),
      stream: 'test/early',
      format: 'csv',
      passThrough: true,
      batchRows: 1000,
      batchBytes: Math.floor(text.length * 0.6),
      retry: DEFAULT_RETRY_POLICY,
    }))
      chunks.push({ chunk, delivered });
    expect(chunks.map(({ chunk }) => [chunk.raw?.records, chunk.done])).toEqual([
      [expect.any(Number), false],
      [expect.any(Number), true],
    ]);
    expect(chunks.reduce((n, { chunk }) => n + (chunk.raw?.records ?? 0), 0)).toBe(40_000);
    // The first piece went out while the rest was still to come (read-ahead buffers hold ~100 KB).
    expect(chunks[0]!.delivered).toBeLessThan(text.length * 0.8);
    client.destroy();
  });

  it('never ends a file with an empty batch when its rows fill the last batch exactly', async () => {
    await put(t.client, t.bucket, 'exact/20260101.csv', csv(['a'], [['1'], ['2'], ['3'], ['4']]));
    const { batches } = await load('exact/');
    expect(batches.map((b) => [b.rows.length, b.position['row'], b.position['done'], b.meta.commit])).toEqual(
      [
        [2, 2, false, false],
        [2, 4, true, true],
      ],
    );
  });

  it('an empty file (0 bytes or header only) yields one empty final batch', async () => {
    await put(t.client, t.bucket, 'empty/20260101.csv', '');
    await put(t.client, t.bucket, 'empty/20260102.csv', 'a,b\r\n');
    await put(t.client, t.bucket, 'empty/20260103.csv', csv(['a', 'b'], [['1', '2']]));
    const { sink, batches } = await load('empty/');
    expect(batches.map((b) => [b.meta.source, b.rows.length, b.meta.commit, b.position['done']])).toEqual([
      ['empty/20260101.csv', 0, true, true],
      ['empty/20260102.csv', 0, true, true],
      ['empty/20260103.csv', 1, true, true],
    ]);
    expect(batches[0]!.meta.kind).toBe('baseline');
    expect(sink.rows).toEqual([{ a: '1', b: '2' }]);
  });

  it('ignores folder placeholders, legacy prefixes and other suffixes', async () => {
    for (const key of [
      'ign/',
      'ign/full/',
      'ign/latest.csv/',
      'ign/latest.json/',
      'ign/notes.txt',
      'ign/full/20200101.csv',
    ]) {
      await put(t.client, t.bucket, key, key.endsWith('/') ? '' : 'a\n1\n');
    }
    await put(t.client, t.bucket, 'ign/20260101.csv', 'a\n1\n');
    const source = s3Source({
      client: t.client,
      archive: false,
      streams: [{ id: 'test/ign', bucket: t.bucket, prefix: 'ign/', keyPattern: 'YYYYMMDD' }],
    });
    const [plan] = await source.plan();
    expect(plan!.pending.map((f) => f.key)).toEqual(['ign/20260101.csv']);
    // placeholder 'ign/', 'ign/notes.txt', and the folders full/, latest.csv/, latest.json/
    expect(plan!.ignored).toBe(5);
    expect(plan!.error).toBeUndefined();
  });

  it('reports unit-start and progress events with bytes', async () => {
    const body = csv(['a'], [['1'], ['2'], ['3']]);
    await put(t.client, t.bucket, 'events/20260101.csv', body);
    const { log } = await load('events/');
    expect(log.events.find((e) => e.type === 'unit-start')).toEqual({
      type: 'unit-start',
      stream: 'test/read',
      source: 'events/20260101.csv',
      bytesTotal: body.length,
      kind: 'baseline',
    });
    const progress = log.events.filter((e) => e.type === 'progress');
    expect(progress.at(-1)).toEqual({
      type: 'progress',
      stream: 'test/read',
      source: 'events/20260101.csv',
      bytes: body.length,
      rows: 3,
    });
  });
});
