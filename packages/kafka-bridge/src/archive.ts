import { gzipSync } from 'node:zlib';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import {
  type Batch,
  DEFAULT_RETRY_POLICY,
  type Row,
  retry,
  type Sink,
  type WriteResult,
} from '@tributary/core';
import { kafkaRange } from './meta.js';
import { type ArchiveOptions, resolveArchiveOptions } from './options.js';

interface OpenFile {
  topic: string;
  partition: number;
  firstOffset: string;
  lastOffset: string;
  lines: string[];
  openedAt: number;
}

/**
 * Kafka → S3 archive sink (the Cubic ADR's "file after 10,000 records or one hour, whichever
 * first"): per partition, rows are buffered and written as one JSON-lines object when the count
 * or age limit is reached. The key is derived from topic, partition and offset range, so a
 * retried upload overwrites the same object. A write reports `committed` only after the PUT
 * succeeded, and only then are Kafka offsets committed by the subscribe source.
 */
export function kafkaArchiveSink(input: ArchiveOptions): Sink<Row> & { readonly objects: string[] } {
  const options = resolveArchiveOptions(input);
  const { maxRecords, maxAgeMs } = options;
  const now = options.now ?? Date.now;
  const open = new Map<string, OpenFile>();
  const objects: string[] = [];
  const prefix =
    options.prefix.endsWith('/') || options.prefix === '' ? options.prefix : `${options.prefix}/`;

  const objectKey = (file: OpenFile) => {
    const pad = (o: string) => o.padStart(20, '0');
    return `${prefix}${file.topic}/partition=${file.partition}/${pad(file.firstOffset)}-${pad(file.lastOffset)}.jsonl${options.gzip ? '.gz' : ''}`;
  };

  async function flush(stream: string): Promise<void> {
    const file = open.get(stream);
    if (!file || file.lines.length === 0) return;
    const body = `${file.lines.join('\n')}\n`;
    const key = objectKey(file);
    const payload = options.gzip ? gzipSync(body) : body;
    await retry(
      () =>
        options.client.send(
          new PutObjectCommand({
            Bucket: options.bucket,
            Key: key,
            Body: payload,
            ContentType: 'application/x-ndjson',
          }),
        ),
      options.retry ?? DEFAULT_RETRY_POLICY,
    );
    objects.push(key);
    open.delete(stream);
  }

  return {
    name: 'kafka-archive',
    get objects() {
      return objects;
    },
    // Positions live in Kafka's committed offsets (written after each PUT).
    async checkpoint() {
      return null;
    },
    async write(batch: Batch<Row>): Promise<WriteResult> {
      const { topic, partition, offsets = [] } = kafkaRange(batch);
      // Files hold exactly maxRecords rows (count rolls are deterministic from the start
      // offset, so a re-run after a crash rewrites the same keys).
      for (const [i, row] of batch.rows.entries()) {
        const offset = offsets[i] ?? String(batch.position['offset']);
        let file = open.get(batch.stream);
        if (!file) {
          file = { topic, partition, firstOffset: offset, lastOffset: offset, lines: [], openedAt: now() };
          open.set(batch.stream, file);
        }
        file.lines.push(JSON.stringify(row));
        file.lastOffset = offset;
        if (file.lines.length >= maxRecords) await flush(batch.stream);
      }
      const file = open.get(batch.stream);
      if (file && (now() - file.openedAt >= maxAgeMs || batch.meta.marker === 'flush'))
        await flush(batch.stream);
      // Committed means "nothing up to this batch is only in memory": Kafka offsets may move.
      return { committed: !open.has(batch.stream) };
    },
    // One stream's failure drops that stream's buffer only (invariant 10): dropping another
    // partition's open file would let its later PUT commit offsets past rows never written.
    async abort(_error, stream) {
      if (stream === undefined) open.clear();
      else open.delete(stream);
    },
  };
}
