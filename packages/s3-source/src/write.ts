import { PassThrough, type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type { S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { TributaryError } from '@tributary/core';
import { type BuiltInKeyPattern, formatKeyTime, isValidTimeZone, KeyPatterns, parseKeyTime } from './keys.js';

/**
 * The write direction of the S3 package: one CSV file per extract unit, at a timestamped key the
 * S3 source reads back in order (seed 001 §4 Phase B: `{YYYYMMDD_HHMM}_{TZ}.csv`).
 */
export interface S3FileTargetOptions {
  client: S3Client;
  bucket: string;
  /** Folder of the files, e.g. `dwh/exports/trips/` (a trailing `/` is added when missing). */
  prefix: string;
  /** How a file name encodes its unit's time; default the manual's `YYYYMMDD_HHMM_<TZ>`. */
  keyPattern?: BuiltInKeyPattern;
  /** IANA zone the time in names is written in; default `UTC`. */
  timeZone?: string;
  /** Gzip the file (`.csv.gz`); default false. */
  gzip?: boolean;
  /** Multipart part size in bytes (min 5 MiB); default 8 MiB. */
  partSize?: number;
  /** Parts uploaded at once; default 4. */
  queueSize?: number;
}

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

const MIN_PART_SIZE = 5 * 1024 * 1024;

function invalid(message: string): TributaryError {
  return new TributaryError('INVALID_OPTIONS', `s3FileTarget: ${message}`);
}

export function s3FileTarget(options: S3FileTargetOptions): S3FileTarget {
  const keyPattern = options.keyPattern ?? 'YYYYMMDD_HHMM_<TZ>';
  const timeZone = options.timeZone ?? 'UTC';
  const partSize = options.partSize ?? 8 * 1024 * 1024;
  if (!options.bucket) throw invalid('bucket is required');
  if (!options.prefix || options.prefix.startsWith('/')) {
    throw invalid(
      `prefix ${JSON.stringify(options.prefix)} must be a non-empty key prefix without a leading /`,
    );
  }
  if (!KeyPatterns.includes(keyPattern)) throw invalid(`keyPattern must be one of ${KeyPatterns.join(', ')}`);
  if (!isValidTimeZone(timeZone)) throw invalid(`timeZone ${JSON.stringify(timeZone)} is not an IANA zone`);
  if (!Number.isInteger(partSize) || partSize < MIN_PART_SIZE) throw invalid('partSize must be >= 5 MiB');
  const prefix = options.prefix.endsWith('/') ? options.prefix : `${options.prefix}/`;
  const suffix = options.gzip ? '.csv.gz' : '.csv';
  return {
    location: `s3://${options.bucket}/${prefix}`,
    bucket: options.bucket,
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
      const feeding = options.gzip
        ? pipeline(body, createGzip(), counter, out)
        : pipeline(body, counter, out);
      const upload = new Upload({
        client: options.client,
        params: {
          Bucket: options.bucket,
          Key: key,
          Body: out,
          ContentType: options.gzip ? 'application/gzip' : 'text/csv',
        },
        partSize,
        queueSize: options.queueSize ?? 4,
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
