import type { Batch, Position, Row } from '@tributary/core';
import { TributaryError } from '@tributary/core';
import { formatOfKey } from './keys.js';
import { maxWatermark, type Watermark } from './order.js';
import type { PlannedFile } from './plan.js';
import { readFileBatches } from './read.js';
import type { SourceRuntime } from './runtime.js';
import type { ResolvedStream } from './stream-options.js';

/**
 * A planned file as the batches the source hands out: positions, commit marks and the metadata
 * the sink records, from the file's chunks (or one empty batch for a skipped file).
 */

function positionOf(
  file: PlannedFile,
  row: number,
  done: boolean,
  watermark: Watermark | null,
  late?: 'skipped',
): Position {
  return {
    key: file.key,
    etag: file.etag,
    row,
    done,
    kind: file.kind,
    watermark: watermark ? { key: watermark.key, time: watermark.time } : null,
    ...(late ? { late } : {}),
  };
}

/** One planned file read into batches; each is tracked before it is handed out. */
export async function* readStreamFile(
  runtime: SourceRuntime,
  stream: ResolvedStream,
  file: PlannedFile,
  startRow: number,
  watermarkBefore: Watermark | null,
  signal: AbortSignal,
  track: (batch: Batch<Row>) => void,
): AsyncGenerator<Batch<Row>> {
  const { config, emit } = runtime;
  emit({ type: 'unit-start', stream: stream.id, source: file.key, bytesTotal: file.size, kind: file.kind });
  // A late file applied under 'apply' never moves the watermark back; a replay (of archived,
  // already applied files) never moves it at all.
  const watermark = stream.replayFrom
    ? watermarkBefore
    : maxWatermark(watermarkBefore, { key: file.key, time: file.time });
  const chunks = readFileBatches({
    client: config.client,
    bucket: stream.bucket,
    key: file.key,
    etag: file.etag,
    stream: stream.id,
    format: stream.format ?? formatOfKey(file.key) ?? 'csv',
    columns: stream.columns,
    columnCheck: stream.columnCheck,
    emptyAsNull: stream.emptyAsNull,
    passThrough: stream.passThrough,
    setAside: stream.onError !== undefined,
    rawBatchRows: config.rawBatchRows,
    batchRows: config.batchRows,
    batchBytes: config.batchBytes,
    startRow,
    signal,
    retry: config.retry,
    onRetry: (error, attempt, delayMs) =>
      emit({
        type: 'warning',
        stream: stream.id,
        message: `reading ${file.key} failed (attempt ${attempt}); re-reading from record ${startRow + 1} in ${Math.round(delayMs)} ms: ${(error as Error).message}`,
      }),
    onFallback: (reason, record) =>
      emit({
        type: 'warning',
        stream: stream.id,
        message: `${file.key}: ${reason}; parsing it in JavaScript from record ${record + 1}`,
      }),
  });
  for await (const chunk of chunks) {
    // A body that ends early but looks complete (a Content-Length that matches what was sent)
    // parses as a shorter file: fail before the commit batch so it is never applied as one.
    if (chunk.done && chunk.totalBytes !== file.size) {
      throw new TributaryError(
        'SOURCE_FAILED',
        `${file.key}: read ${chunk.totalBytes} bytes but the listing says ${file.size} (ETag ${file.etag}): incomplete body, not applied`,
        { stream: stream.id, retriable: true, location: { file: file.key } },
      );
    }
    const commit = chunk.done || stream.granularity === 'batch';
    const batch: Batch<Row> = {
      stream: stream.id,
      rows: chunk.rows,
      ...(chunk.raw ? { raw: chunk.raw } : {}),
      position: positionOf(file, chunk.row, chunk.done, watermark),
      meta: {
        source: file.key,
        kind: file.kind,
        commit,
        lastOfUnit: chunk.done,
        // Records set aside while parsing were read too (invariant 5: counted, never lost).
        rowsRead: (chunk.raw ? chunk.raw.records : chunk.rows.length) + (chunk.rejected?.length ?? 0),
        filtered: {},
        bytes: chunk.bytes,
        locations: chunk.locations,
        ...(stream.onError ? { onError: stream.onError } : {}),
        ...(chunk.rejected?.length ? { rejected: chunk.rejected } : {}),
        etag: file.etag,
        size: file.size,
        ...(file.modified ? { modified: file.modified } : {}),
        ...(file.snapshot ? { snapshot: file.snapshot } : {}),
        watermark,
      },
    };
    emit({
      type: 'progress',
      stream: stream.id,
      source: file.key,
      bytes: chunk.totalBytes,
      rows: chunk.row,
    });
    track(batch);
    yield batch;
  }
}

/** The one empty commit batch of a skipped file (late under `skip`, or superseded). */
export function skipBatch(
  stream: ResolvedStream,
  file: PlannedFile,
  watermark: Watermark | null,
): Batch<Row> {
  return {
    stream: stream.id,
    rows: [],
    position: positionOf(file, 0, true, watermark, 'skipped'),
    meta: {
      source: file.key,
      kind: file.kind,
      commit: true,
      lastOfUnit: true,
      rowsRead: 0,
      filtered: {},
      bytes: 0,
      locations: [],
      etag: file.etag,
      size: file.size,
      ...(file.modified ? { modified: file.modified } : {}),
      watermark,
      late: 'skipped',
    },
  };
}
