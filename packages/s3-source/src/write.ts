import { PassThrough, type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { Upload } from '@aws-sdk/lib-storage';
import { TributaryError } from '@tributary/core';
import { formatKeyTime, parseKeyTime } from './keys.js';
import { resolveS3FileTargetOptions, type S3FileTargetOptions } from './options.js';

/**
 * The write direction of the S3 package: one CSV file per extract unit, at a timestamped key the
 * S3 source reads back in order (seed 001 §4 Phase B: `{YYYYMMDD_HHMM}_{TZ}.csv`).
 */
/** One file to write: its key and the instant its name stands for. */
export interface FileUnit {
  key: string;
  /** The instant the key's name represents (the time given, truncated to the name's resolution). */
  time: Date;
}

export interface WrittenFile {
  key: string;
  /** Bytes stored (after gzip). */
  bytes: number;
  etag: string | undefined;
}

export interface S3FileTarget {
  /** `s3://bucket/prefix`, for logs and the run log. */
  readonly location: string;
  readonly bucket: string;
  /** The file for a unit that ends at `time`: same time → same key (a retry overwrites, never adds). */
  unitFor(time: Date): FileUnit;
  /**
   * Uploads `body` to `key` atomically: a single PUT for a small file, a multipart upload
   * (aborted on failure) for a big one, so the key is either complete or absent.
   */
  write(key: string, body: Readable, signal?: AbortSignal): Promise<WrittenFile>;
}

export function s3FileTarget(options: S3FileTargetOptions): S3FileTarget {
  const resolved = resolveS3FileTargetOptions(options);
  const { keyPattern, timeZone, partSize } = resolved;
  const prefix = resolved.prefix.endsWith('/') ? resolved.prefix : `${resolved.prefix}/`;
  const suffix = resolved.gzip ? '.csv.gz' : '.csv';
  return {
    location: `s3://${resolved.bucket}/${prefix}`,
    bucket: resolved.bucket,
    unitFor(time) {
      const key = `${prefix}${formatKeyTime(time, keyPattern, timeZone)}${suffix}`;
      // The name's own instant: what a reader derives from it, and the unit's closed bound.
      const parsed = parseKeyTime(key, keyPattern, timeZone);
      if (!parsed)
        throw new TributaryError('INTERNAL', `s3FileTarget: ${key} does not read back as ${keyPattern}`);
      return { key, time: parsed.time };
    },
    async write(key, body, signal) {
      let bytes = 0;
      const counter = new Transform({
        transform(chunk: Buffer, _encoding, done) {
          bytes += chunk.length;
          done(null, chunk);
        },
      });
      const out = new PassThrough();
      const feeding = resolved.gzip
        ? pipeline(body, createGzip(), counter, out)
        : pipeline(body, counter, out);
      const upload = new Upload({
        client: resolved.client,
        params: {
          Bucket: resolved.bucket,
          Key: key,
          Body: out,
          ContentType: resolved.gzip ? 'application/gzip' : 'text/csv',
        },
        partSize,
        queueSize: resolved.queueSize,
        // A failed multipart upload is aborted: no half object ever becomes visible.
        leavePartsOnError: false,
      });
      const abort = () => void upload.abort().catch(() => undefined);
      signal?.addEventListener('abort', abort, { once: true });
      try {
        // The body's failure (a source query error mid-COPY) must fail the upload, not end it.
        feeding.catch((error: unknown) => out.destroy(error as Error));
        const [result] = await Promise.all([upload.done(), feeding]);
        return { key, bytes, etag: result.ETag };
      } finally {
        signal?.removeEventListener('abort', abort);
      }
    },
  };
}
