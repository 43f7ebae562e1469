import { gzipSync } from 'node:zlib';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { Batch, Row, Sink, WriteResult } from '@tributary/core';
import { kafkaRange } from './meta.js';

export interface ArchiveOptions {
  client: S3Client;
  bucket: string;
  /** Key prefix, e.g. `cubic/kafka/sample/`. */
  prefix: string;
  /** Roll a file after this many records. Default 10,000 (the Cubic ADR). */
  maxRecords?: number;
  /** … or when its oldest record is this old. Default 3,600,000 ms (one hour). */
  maxAgeMs?: number;
  gzip?: boolean;
  /** Clock for age decisions (tests pass their own). */
  now?: () => number;
}

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
export function kafkaArchiveSink(options: ArchiveOptions): Sink<Row> & { readonly objects: string[] } {
  const maxRecords = options.maxRecords ?? 10_000;
  const maxAgeMs = options.maxAgeMs ?? 3_600_000;
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
    await options.client.send(
      new PutObjectCommand({
        Bucket: options.bucket,
        Key: key,
        Body: options.gzip ? gzipSync(body) : body,
        ContentType: 'application/x-ndjson',
      }),
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
    async abort() {
      open.clear();
    },
  };
}
