import type { S3Client } from '@aws-sdk/client-s3';
import type { InputLocation, RawCsv, RejectedRecord, Row } from '@tributary/core';
import { faultPoint, isAbortError, retryIterable } from '@tributary/core';
import type { DataFormat } from './keys.js';
import type { RetryOptions } from './options.js';
import { readRawOnce } from './pass-through.js';
import { IrregularCsv } from './raw.js';
import { readError } from './read-errors.js';
import { readRowsOnce } from './rows.js';
import type { ColumnCheck } from './stream-options.js';

/**
 * Reading one S3 file into chunks: the reader's contract (`ReadFileOptions`, `FileChunk`) and
 * the retry loop around one read. The read itself is the pass-through path (`pass-through.ts`)
 * or the row path (`rows.ts`); failures are classified in `read-errors.ts`.
 */

/** One file read: the object, how to parse and check it, how to batch and retry. */
export interface ReadFileOptions {
  client: S3Client;
  bucket: string;
  key: string;
  /** The listed ETag: the read fails with ETAG_CHANGED if the object changed since (If-Match). */
  etag: string;
  stream: string;
  format: DataFormat;
  columns?: readonly string[] | undefined;
  columnCheck?: ColumnCheck;
  emptyAsNull?: boolean;
  /** CSV: hand out raw record bytes (`FileChunk.raw`) instead of parsed rows. */
  passThrough?: boolean;
  /** Records per raw chunk (bytes bound them too). Default unlimited. */
  rawBatchRows?: number;
  batchRows: number;
  batchBytes: number;
  /** Data records already committed: they are parsed but not emitted again. */
  startRow?: number;
  signal?: AbortSignal | undefined;
  retry: Required<RetryOptions>;
  onRetry?: ((error: unknown, attempt: number, delayMs: number) => void) | undefined;
  /**
   * CSV: records with the wrong number of fields are set aside (`FileChunk.rejected`) instead of
   * failing the file (a stream's `onError` policy).
   */
  setAside?: boolean;
  /** The pass-through reader met irregular input and the file continues through csv-parse. */
  onFallback?: ((reason: string, record: number) => void) | undefined;
}

/** A slice of one file's records. */
export interface FileChunk {
  rows: Row[];
  /** Pass-through: the records as CSV bytes (`rows` is empty). */
  raw?: RawCsv;
  /** Parallel to rows: file, 1-based first line and data record number. */
  locations: InputLocation[];
  /** Records set aside since the previous chunk (`setAside`). */
  rejected?: RejectedRecord[];
  /** Data records of the file consumed up to and including this chunk. */
  row: number;
  /** The file is complete. */
  done: boolean;
  /** Stored (possibly compressed) bytes consumed since the previous chunk. */
  bytes: number;
  /** Stored bytes consumed so far. */
  totalBytes: number;
}

/**
 * Streams one S3 object end to end into row chunks: GetObject body → (gunzip when the suffix or
 * the magic bytes say so) → csv-parse or JSON lines. Memory is bounded by the stream buffers and
 * one batch, whatever the file size (invariant 7). A transient failure mid-file re-reads it and
 * skips the records already handed out.
 */
export async function* readFileBatches(options: ReadFileOptions): AsyncGenerator<FileChunk> {
  let delivered = options.startRow ?? 0;
  let reportedBytes = 0;
  let passThrough = options.passThrough === true && options.format === 'csv';
  // One read of the object from record `delivered` on; a failure is mapped to a TributaryError
  // naming the file (and line), retriable when transient. Core's retryIterable re-opens it.
  async function* once(): AsyncGenerator<FileChunk> {
    const state = { correction: 0 };
    try {
      if (passThrough) {
        try {
          yield* readRawOnce(options, delivered);
          return;
        } catch (error) {
          if (!(error instanceof IrregularCsv)) throw error;
          // Nothing irregular was handed out: the row parser takes over from the next record.
          passThrough = false;
          options.onFallback?.(error.message, delivered);
        }
      }
      yield* readRowsOnce(options, delivered, state);
    } catch (error) {
      if (isAbortError(error) || options.signal?.aborted) throw error;
      // The failing record's own quoted CRLFs were not counted yet (csv-parse counts each twice).
      const failing = (error as { record?: unknown }).record;
      const ownCrlf = Array.isArray(failing)
        ? failing.reduce<number>(
            (n, field) => n + (typeof field === 'string' ? field.split('\r\n').length - 1 : 0),
            0,
          )
        : 0;
      throw readError(error, options, state.correction + ownCrlf);
    }
  }
  const chunks = retryIterable(once, options.retry, {
    signal: options.signal,
    onRetry: options.onRetry,
  });
  for await (const chunk of chunks) {
    delivered = chunk.row;
    if (delivered > 0) faultPoint('s3-source:mid-download'); // part of the file read (issue 7)
    const bytes = Math.max(0, chunk.totalBytes - reportedBytes);
    reportedBytes = Math.max(reportedBytes, chunk.totalBytes);
    yield { ...chunk, bytes, totalBytes: reportedBytes };
  }
}
