import { gzipSync } from 'node:zlib';
import { HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { Batch, LoadLog, LoadRecord, PipelineEvent, Position, Row } from '@tributary/core';
import { type MemorySink, memorySink } from '@tributary/core/testing';

export async function put(
  client: S3Client,
  bucket: string,
  key: string,
  body: string | Uint8Array,
  options: { gzip?: boolean } = {},
): Promise<void> {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  await client.send(
    new PutObjectCommand({ Bucket: bucket, Key: key, Body: options.gzip ? gzipSync(bytes) : bytes }),
  );
}

/** True when the object exists (HEAD answers). */
export async function objectExists(client: S3Client, bucket: string, key: string): Promise<boolean> {
  try {
    await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return true;
  } catch {
    return false;
  }
}

/** An in-memory load log like pg-sink's: one record per committed file, archived on request. */
export class FakeLoadLog implements LoadLog {
  readonly records = new Map<string, LoadRecord>();
  readonly archived: string[] = [];

  readonly listCalls: Array<readonly string[] | undefined> = [];

  async list(stream: string, sources?: readonly string[]): Promise<LoadRecord[]> {
    this.listCalls.push(sources);
    return [...this.records.values()].filter(
      (r) => r.stream === stream && (sources === undefined || sources.includes(r.source)),
    );
  }

  async markArchived(stream: string, source: string): Promise<void> {
    const record = this.records.get(`${stream}\0${source}`);
    if (record) record.status = 'archived';
    this.archived.push(source);
  }

  /** What the sink does in the file's transaction. */
  record(batch: Batch<Row>): void {
    if (!batch.meta.lastOfUnit || !batch.meta.commit) return;
    this.records.set(`${batch.stream}\0${batch.meta.source}`, {
      stream: batch.stream,
      source: String(batch.meta.source),
      etag: String(batch.meta['etag']),
      size: Number(batch.meta['size']),
      kind: batch.meta.kind ?? null,
      status: batch.meta['late'] === 'skipped' ? 'late_skipped' : 'loaded',
      finishedAt: new Date(),
      error: null,
    });
  }
}

/** A memory sink that also keeps a load log, committed with its rows. */
export function loggingSink(loads: FakeLoadLog, checkpoints?: Record<string, Position>): MemorySink {
  const sink = memorySink(checkpoints ? { checkpoints } : {});
  const write = sink.write.bind(sink);
  return Object.assign(sink, {
    async write(batch: Batch<Row>) {
      const result = await write(batch);
      if (result.committed) loads.record(batch);
      return result;
    },
    loadLog: loads,
  });
}

/** Collects pipeline events, with helpers for the ones tests look at. */
export function eventLog(): {
  events: PipelineEvent[];
  onEvent: (e: PipelineEvent) => void;
  warnings: () => string[];
} {
  const events: PipelineEvent[] = [];
  return {
    events,
    onEvent: (e) => events.push(e),
    warnings: () => events.flatMap((e) => (e.type === 'warning' ? [e.message] : [])),
  };
}

export function csv(header: string[], rows: Array<Array<string | number>>, eol = '\n'): string {
  return [header.join(','), ...rows.map((r) => r.join(','))].join(eol) + eol;
}
