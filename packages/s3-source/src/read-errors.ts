import { isTransient, type RejectedRecord, TributaryError } from '@tributary/core';
import type { CsvError } from 'csv-parse';
import { checkColumns } from './columns.js';
import type { ReadFileOptions } from './read.js';

/**
 * Error classification for a file read: what a failure while reading means (transient or not,
 * which file, line and column), as small functions the read paths call.
 */

function s3ErrorName(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const e = error as { name?: string; Code?: string; $metadata?: { httpStatusCode?: number } };
  if (e.$metadata?.httpStatusCode === 412) return 'PreconditionFailed';
  return e.Code ?? e.name;
}

/** Classifies a failure while reading a file into the error the pipeline reports. */
export function readError(error: unknown, options: ReadFileOptions, correction: number): TributaryError {
  if (error instanceof TributaryError) return error;
  const file = options.key;
  const stream = options.stream;
  const csv = error as Partial<CsvError> & { jsonLine?: number; jsonColumn?: number };
  if (typeof csv.jsonLine === 'number') {
    return new TributaryError(
      'MALFORMED_ROW',
      `${file}:${csv.jsonLine}:${csv.jsonColumn}: malformed JSON line: ${(error as Error).message}`,
      { stream, cause: error, location: { file, line: csv.jsonLine, column: csv.jsonColumn ?? 1 } },
    );
  }
  if (typeof csv.code === 'string' && csv.code.startsWith('CSV_')) {
    const line = typeof csv.lines === 'number' ? Math.max(1, csv.lines - correction) : undefined;
    const names = Array.isArray(csv.columns) ? (csv.columns as Array<{ name?: string }>) : [];
    let column: number | undefined;
    if (typeof csv.column === 'string')
      column = names.findIndex((c) => c.name === csv.column) + 1 || undefined;
    else if (typeof csv.column === 'number') column = csv.column + 1;
    if (
      csv.code === 'CSV_RECORD_INCONSISTENT_COLUMNS' ||
      csv.code === 'CSV_RECORD_INCONSISTENT_FIELDS_LENGTH'
    ) {
      // The first field that is missing or extra.
      column = Math.min(typeof csv.index === 'number' ? csv.index : 0, names.length || Infinity) + 1;
    }
    const record = typeof csv.records === 'number' ? csv.records + 1 : undefined;
    const message = (error as Error).message.replace(/ at line \d+| on line \d+/, '');
    return new TributaryError(
      'MALFORMED_ROW',
      `${file}:${line ?? '?'}:${column ?? '?'}: malformed CSV row${record ? ` (record ${record})` : ''}: ${message}`,
      {
        stream,
        cause: error,
        location: {
          file,
          ...(line !== undefined ? { line } : {}),
          ...(column !== undefined ? { column } : {}),
          ...(record !== undefined ? { record } : {}),
        },
      },
    );
  }
  const name = s3ErrorName(error);
  if (name === 'PreconditionFailed') {
    return new TributaryError(
      'ETAG_CHANGED',
      `${file} changed while it was being read (ETag is no longer ${options.etag})`,
      {
        stream,
        cause: error,
        location: { file },
      },
    );
  }
  if (name === 'NoSuchKey' || name === 'NotFound') {
    return new TributaryError('SOURCE_FAILED', `${file} disappeared before it could be read`, {
      stream,
      cause: error,
      location: { file },
    });
  }
  const code = (error as { code?: string }).code;
  if (typeof code === 'string' && code.startsWith('Z_')) {
    return new TributaryError('MALFORMED_ROW', `${file}: not valid gzip data (${(error as Error).message})`, {
      stream,
      cause: error,
      location: { file },
    });
  }
  return new TributaryError('SOURCE_FAILED', `reading ${file} failed: ${(error as Error).message}`, {
    stream,
    cause: error,
    retriable: isTransient(error),
    location: { file },
  });
}

export function headerDrift(options: ReadFileOptions, header: string[]): TributaryError | undefined {
  const problem = checkColumns(header, options.columns, options.columnCheck ?? 'any', true);
  if (!problem) return undefined;
  const { key } = options;
  return new TributaryError('SCHEMA_DRIFT', `${key}:1:${problem.column}: header drift: ${problem.message}`, {
    stream: options.stream,
    location: { file: key, line: 1, column: problem.column },
  });
}

export function invalidUtf8(options: ReadFileOptions, line: number, byteOffset: number): TributaryError {
  const { key } = options;
  return new TributaryError(
    'MALFORMED_ROW',
    `${key}:${line}: invalid UTF-8 (byte ${byteOffset} of the decoded text)`,
    {
      stream: options.stream,
      location: { file: key, line },
    },
  );
}

/** csv-parse errors that only concern one record: the records around it are read as usual. */
export const RECORD_SCOPED = new Set([
  'CSV_RECORD_INCONSISTENT_COLUMNS',
  'CSV_RECORD_INCONSISTENT_FIELDS_LENGTH',
]);

/**
 * A rejected record from a csv-parse error that only concerns it; any other error (a stray
 * quote: where the next record starts is in doubt) is thrown as the row path reports it.
 */
export function rejectedRecord(
  options: ReadFileOptions,
  error: unknown,
  at: { line: number; record: number; endLine?: number },
  text: string | undefined,
): RejectedRecord {
  const csv = error as { code?: string; lines?: number; records?: number };
  // The row path's wording and column, with the line and record this caller knows.
  csv.lines = at.endLine ?? at.line;
  csv.records = at.record - 1;
  const described = readError(error, options, 0);
  if (!RECORD_SCOPED.has(csv.code ?? '')) throw described;
  const column = described.location?.column;
  const names = (error as { columns?: Array<{ name?: string }> }).columns;
  const name = typeof column === 'number' ? (names?.[column - 1]?.name ?? String(column)) : column;
  return {
    line: at.line,
    record: at.record,
    ...(name === undefined ? {} : { column: name }),
    code: described.code,
    message: described.message,
    text: text?.replace(/\r?\n$/, '') ?? null,
  };
}
