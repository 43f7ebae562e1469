import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { TributaryError } from '@tributary/core';
import { normalizeEtag } from './list.js';
import type { ReadFileOptions } from './read.js';
import { ByteCounter } from './stages.js';

/** Opening one S3 object for a read: GetObject with If-Match, byte counters, gzip detection. */

interface OpenedObject {
  /** The body, as a stream of stored bytes. */
  body: Readable;
  /** Counts stored bytes, then (when gzip) gunzip and a counter of decoded bytes. */
  stages: NodeJS.ReadWriteStream[];
  stored: ByteCounter;
  decoded: ByteCounter;
}

/** GetObject with If-Match, the ETag re-check, and gzip detection (suffix or magic bytes). */
export async function openObject(options: ReadFileOptions): Promise<OpenedObject | undefined> {
  const { key, stream: streamId } = options;
  // No retry wrapper here: readFileBatches' loop already retries the whole read (GetObject
  // included) with backoff; a second layer multiplied the attempts (5 × 5 × the SDK's own).
  const response = await options.client.send(
    new GetObjectCommand({ Bucket: options.bucket, Key: key, IfMatch: `"${options.etag}"` }),
    { abortSignal: options.signal },
  );
  const body = response.Body as Readable | undefined;
  // Servers that ignore If-Match (s3rver) still return the ETag: a re-export between listing and
  // reading must not be read as the listed file.
  if (response.ETag !== undefined && normalizeEtag(response.ETag) !== options.etag) {
    body?.destroy();
    throw new TributaryError(
      'ETAG_CHANGED',
      `${key} changed between listing and reading (ETag ${normalizeEtag(response.ETag)}, listed ${options.etag})`,
      { stream: streamId, location: { file: key } },
    );
  }
  const stored = new ByteCounter();
  if (!body) return undefined;
  // Peek at the first chunk: gzip is detected by suffix or by its magic bytes (1f 8b).
  const iterator = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const first = await iterator.next();
  const head: Buffer | undefined = first.done ? undefined : first.value;
  const gzip =
    key.toLowerCase().endsWith('.gz') || (head !== undefined && head[0] === 0x1f && head[1] === 0x8b);
  const raw = Readable.from(
    (async function* () {
      if (head) yield head;
      while (true) {
        const next = await iterator.next();
        if (next.done) return;
        yield next.value;
      }
    })(),
    { objectMode: false },
  );
  // A torn-down pipeline must release the HTTP connection even while waiting for data.
  raw.on('close', () => body.destroy());
  const decoded = gzip ? new ByteCounter() : stored;
  return { body: raw, stages: gzip ? [stored, createGunzip(), decoded] : [stored], stored, decoded };
}
