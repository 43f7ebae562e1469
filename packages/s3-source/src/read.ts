import { isUtf8 } from 'node:buffer';
import { PassThrough, Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline as streamPipeline } from 'node:stream/promises';
import { StringDecoder } from 'node:string_decoder';
import { createGunzip } from 'node:zlib';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { InputLocation, RawCsv, RejectedRecord, Row } from '@tributary/core';
import { faultPoint, isAbortError, isTransient, retryIterable, TributaryError } from '@tributary/core';
import { type CsvError, parse } from 'csv-parse';
import { parse as parseSync } from 'csv-parse/sync';
import type { DataFormat } from './keys.js';
import { normalizeEtag } from './list.js';
import type { RetryOptions } from './options.js';
import { CsvSplitter, IrregularCsv, pieceEndLine, pieceLine, type RawPiece } from './raw.js';
import type { ColumnCheck } from './stream-options.js';

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

/** The header drift check, shared by CSV headers and JSON-line keys. */
export function checkColumns(
  found: readonly string[],
  expected: readonly string[] | undefined,
  check: ColumnCheck,
  ordered: boolean,
): { message: string; column: number } | undefined {
  const duplicate = found.find((name, index) => found.indexOf(name) !== index);
  if (duplicate !== undefined) {
    return {
      message: `column ${JSON.stringify(duplicate)} appears twice`,
      column: found.lastIndexOf(duplicate) + 1,
    };
  }
  const blank = found.indexOf('');
  if (blank >= 0 && ordered) return { message: `column ${blank + 1} has no name`, column: blank + 1 };
  if (!expected || check === 'any') return undefined;
  const missing = expected.filter((name) => !found.includes(name));
  const extra = check === 'exact' ? found.filter((name) => !expected.includes(name)) : [];
  const reordered =
    check === 'exact' &&
    ordered &&
    !missing.length &&
    !extra.length &&
    found.some((n, i) => n !== expected[i]);
  if (!missing.length && !extra.length && !reordered) return undefined;
  const firstBad = ordered
    ? found.findIndex((name, i) => (check === 'exact' ? name !== expected[i] : false))
    : -1;
  const detail = [
    missing.length ? `missing ${missing.join(', ')}` : '',
    extra.length ? `unexpected ${extra.join(', ')}` : '',
    reordered ? 'same columns in a different order' : '',
  ]
    .filter(Boolean)
    .join('; ');
  return {
    message: `expected [${expected.join(', ')}] (${check}), file has [${found.join(', ')}]: ${detail}`,
    column: firstBad >= 0 ? firstBad + 1 : found.length + 1,
  };
}

/** Counts bytes flowing through (stored bytes before gunzip, decoded bytes after). */
class ByteCounter extends Transform {
  bytes = 0;
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    callback(null, chunk);
  }
}

/** Largest CSV record accepted (characters); a 50 MB field still fits. */
export const MAX_RECORD_CHARS = 64 * 1024 * 1024;

/**
 * Rejects bytes that are not UTF-8 instead of letting the decoder turn them into U+FFFD and
 * storing the mangled text (invariant 6: fail loud). The native streaming decoder checks every
 * chunk; only on failure is the offending offset located, to name the line.
 */
export class Utf8Validator extends Transform {
  private readonly decoder = new TextDecoder('utf-8', { fatal: true });
  private newlines = 0;
  private offset = 0;

  constructor(private readonly onInvalid: (line: number, byteOffset: number) => Error) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.decoder.decode(chunk, { stream: true });
    } catch {
      const bad = firstInvalidUtf8(chunk);
      const before = chunk.subarray(0, bad);
      let lines = 0;
      for (let i = before.indexOf(0x0a); i >= 0; i = before.indexOf(0x0a, i + 1)) lines++;
      callback(this.onInvalid(this.newlines + lines + 1, this.offset + bad));
      return;
    }
    for (let i = chunk.indexOf(0x0a); i >= 0; i = chunk.indexOf(0x0a, i + 1)) this.newlines++;
    this.offset += chunk.length;
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    try {
      this.decoder.decode();
      callback();
    } catch {
      callback(this.onInvalid(this.newlines + 1, this.offset));
    }
  }
}

/** Offset of the first byte that starts an invalid UTF-8 sequence (chunk length if none). */
function firstInvalidUtf8(bytes: Buffer): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i]!;
    const need =
      b < 0x80
        ? 0
        : b >= 0xc2 && b <= 0xdf
          ? 1
          : b >= 0xe0 && b <= 0xef
            ? 2
            : b >= 0xf0 && b <= 0xf4
              ? 3
              : -1;
    if (need < 0) return i;
    if (i + need >= bytes.length) return i; // cut at the chunk's end: reported where it starts
    for (let k = 1; k <= need; k++) if ((bytes[i + k]! & 0xc0) !== 0x80) return i;
    i += need + 1;
  }
  return bytes.length;
}

/**
 * Splits JSON lines: one parsed object per non-empty line, with its line number. A UTF-8 BOM is
 * dropped, CRLF and LF both end a line.
 */
class JsonLinesParser extends Transform {
  private readonly decoder = new StringDecoder('utf8');
  private rest = '';
  private line = 0;
  private first = true;

  constructor() {
    super({ readableObjectMode: true, readableHighWaterMark: 1024 });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    let text = this.rest + this.decoder.write(chunk);
    if (this.first && text.length) {
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      this.first = false;
    }
    let start = 0;
    let newline = text.indexOf('\n', start);
    try {
      while (newline >= 0) {
        this.parseLine(text.slice(start, newline));
        start = newline + 1;
        newline = text.indexOf('\n', start);
      }
    } catch (error) {
      callback(error as Error);
      return;
    }
    this.rest = text.slice(start);
    callback();
  }

  override _flush(callback: TransformCallback): void {
    try {
      const tail = this.rest + this.decoder.end();
      if (tail.length) this.parseLine(tail);
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  private parseLine(raw: string): void {
    this.line++;
    const text = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (text.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      const position = /position (\d+)/.exec((error as Error).message);
      throw Object.assign(new Error((error as Error).message), {
        jsonLine: this.line,
        jsonColumn: position ? Number(position[1]) + 1 : 1,
      });
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw Object.assign(new Error('a JSON line must hold an object'), {
        jsonLine: this.line,
        jsonColumn: 1,
      });
    }
    this.push({ record: value, line: this.line });
  }
}

interface ParsedRecord {
  record: Row;
  line: number;
}

/**
 * `format: 'json'`: a JSON array of objects, or objects one after another (JSON lines, or
 * concatenated). Streamed element by element: only the element being read is held (invariant 7).
 */
class JsonValuesParser extends Transform {
  private readonly decoder = new StringDecoder('utf8');
  /** Text of the element in progress, from earlier chunks. */
  private pending = '';
  private mode: 'start' | 'array' | 'sequence' | 'end' = 'start';
  private depth = 0;
  private inString = false;
  private escape = false;
  private line = 1;
  private column = 0;
  private elementLine = 1;
  private first = true;
  private afterElement = false;

  constructor() {
    super({ readableObjectMode: true, readableHighWaterMark: 1024 });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.scan(this.decoder.write(chunk));
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    try {
      this.scan(this.decoder.end());
      if (this.depth > 0) throw this.fail('the file ends inside a JSON value', this.elementLine, 1);
      if (this.mode === 'array') throw this.fail('the JSON array is not closed', this.line, this.column);
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  private fail(message: string, line: number, column: number): Error {
    return Object.assign(new Error(message), { jsonLine: line, jsonColumn: Math.max(1, column) });
  }

  private scan(input: string): void {
    let text = input;
    if (this.first && text.length) {
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      this.first = false;
    }
    let start = this.depth > 0 ? 0 : -1;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      this.column++;
      if (c === 10) {
        this.line++;
        this.column = 0;
      }
      if (this.depth > 0) {
        if (this.inString) {
          if (this.escape) this.escape = false;
          else if (c === 92) this.escape = true;
          else if (c === 34) this.inString = false;
        } else if (c === 34) this.inString = true;
        else if (c === 123 || c === 91) this.depth++;
        else if (c === 125 || c === 93) {
          this.depth--;
          if (this.depth === 0) {
            this.element(this.pending + text.slice(start, i + 1));
            this.pending = '';
            start = -1;
            this.afterElement = true;
          }
        }
        continue;
      }
      if (c === 10 || c === 32 || c === 9 || c === 13) continue;
      if (this.mode === 'start') {
        if (c === 91) {
          this.mode = 'array';
          continue;
        }
        this.mode = 'sequence';
      }
      if (this.mode === 'end') throw this.fail('text after the JSON array', this.line, this.column);
      if (this.mode === 'array') {
        if (c === 44 && this.afterElement) {
          this.afterElement = false;
          continue;
        }
        if (c === 93) {
          this.mode = 'end';
          continue;
        }
        if (this.afterElement)
          throw this.fail("expected ',' or ']' after an element", this.line, this.column);
      }
      if (c !== 123) throw this.fail('each element must be a JSON object', this.line, this.column);
      this.depth = 1;
      this.afterElement = false;
      start = i;
      this.elementLine = this.line;
    }
    if (start >= 0) this.pending += text.slice(start);
  }

  private element(text: string): void {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw this.fail((error as Error).message, this.elementLine, 1);
    }
    this.push({ record: value as Row, line: this.elementLine });
  }
}

/**
 * Drains an object-mode stream in whole buffers: Node's async iterator costs a promise per
 * object, this costs one per buffer.
 */
async function* drain<T>(stream: Readable): AsyncGenerator<T[]> {
  let ended = false;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const onReadable = () => wake?.();
  const onEnd = () => {
    ended = true;
    wake?.();
  };
  const onError = (error: unknown) => {
    failure ??= error;
    wake?.();
  };
  const onClose = () => {
    if (!ended) failure ??= new Error('stream closed before its end');
    wake?.();
  };
  stream.on('readable', onReadable);
  stream.on('end', onEnd);
  stream.on('error', onError);
  stream.on('close', onClose);
  try {
    while (true) {
      const items: T[] = [];
      let item: T | null = stream.read();
      while (item !== null) {
        items.push(item);
        item = stream.read();
      }
      if (items.length) {
        yield items;
        continue;
      }
      if (failure !== undefined) throw failure;
      if (ended) return;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
      wake = undefined;
    }
  } finally {
    stream.off('readable', onReadable);
    stream.off('end', onEnd);
    stream.off('error', onError);
    stream.off('close', onClose);
    if (!ended) stream.destroy();
  }
}

function s3ErrorName(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const e = error as { name?: string; Code?: string; $metadata?: { httpStatusCode?: number } };
  if (e.$metadata?.httpStatusCode === 412) return 'PreconditionFailed';
  return e.Code ?? e.name;
}

/** Classifies a failure while reading a file into the error the pipeline reports. */
function readError(error: unknown, options: ReadFileOptions, correction: number): TributaryError {
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
      yield* readOnce(options, delivered, state);
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

interface OpenedObject {
  /** The body, as a stream of stored bytes. */
  body: Readable;
  /** Counts stored bytes, then (when gzip) gunzip and a counter of decoded bytes. */
  stages: NodeJS.ReadWriteStream[];
  stored: ByteCounter;
  decoded: ByteCounter;
}

/** GetObject with If-Match, the ETag re-check, and gzip detection (suffix or magic bytes). */
async function openObject(options: ReadFileOptions): Promise<OpenedObject | undefined> {
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

function headerDrift(options: ReadFileOptions, header: string[]): TributaryError | undefined {
  const problem = checkColumns(header, options.columns, options.columnCheck ?? 'any', true);
  if (!problem) return undefined;
  const { key } = options;
  return new TributaryError('SCHEMA_DRIFT', `${key}:1:${problem.column}: header drift: ${problem.message}`, {
    stream: options.stream,
    location: { file: key, line: 1, column: problem.column },
  });
}

function invalidUtf8(options: ReadFileOptions, line: number, byteOffset: number): TributaryError {
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

async function* readOnce(
  options: ReadFileOptions,
  skip: number,
  state: { correction: number },
): AsyncGenerator<FileChunk> {
  const opened = await openObject(options);
  if (!opened) {
    yield { rows: [], locations: [], row: skip, done: true, bytes: 0, totalBytes: 0 };
    return;
  }
  const { body: raw, stored, decoded } = opened;
  const { key, stream: streamId } = options;

  let headerError: TributaryError | undefined;
  // Records csv-parse skipped (`setAside`), in order; placed between the records around them.
  const skips: Array<{ error: unknown; text: string | undefined; lines: number }> = [];
  const setAside = options.setAside
    ? {
        raw: true,
        skip_records_with_error: true,
        on_skip: (error: CsvError | undefined, text: string | undefined) => {
          // Only a record with the wrong field count is set aside: after a stray quote csv-parse
          // cannot tell where the next record starts, so the file fails as on the row path.
          if (error && !RECORD_SCOPED.has(error.code)) throw error;
          if (error) skips.push({ error, text, lines: Number(error.lines) });
          return undefined;
        },
      }
    : {};
  const parser =
    options.format === 'jsonl'
      ? new JsonLinesParser()
      : options.format === 'json'
        ? new JsonValuesParser()
        : parse({
            bom: true,
            info: true,
            // One record may not hold more than this many characters: a runaway quote must fail
            // with its line, not buffer the rest of a multi-GB file (invariant 7).
            max_record_size: MAX_RECORD_CHARS,
            skip_empty_lines: true,
            ...setAside,
            // Header → column names, checked before any row of the file is emitted.
            columns: (header: string[]) => {
              headerError = headerDrift(options, header);
              if (headerError) throw headerError;
              return header;
            },
          });
  const utf8 = new Utf8Validator((line, byteOffset) => invalidUtf8(options, line, byteOffset));
  const stages = [...opened.stages, utf8];
  const wiring = (streamPipeline as unknown as (...s: unknown[]) => Promise<void>)(raw, ...stages, parser);
  wiring.catch(() => undefined); // failures surface through the parser, drained below

  let rows: Row[] = [];
  let locations: InputLocation[] = [];
  let rejected: RejectedRecord[] = [];
  let held: FileChunk | undefined;
  let record = 0;
  let decodedAtBatch = 0;
  let lastReportedLine = 1;
  const json = options.format !== 'csv';
  let lastLine = json ? 0 : 1;
  let lastEmpty = 0;
  const emptyAsNull = options.emptyAsNull === true;
  const jsonCheck = json && options.columns && options.columnCheck !== 'any';
  /** Skipped records that ended before csv-parse line `upTo`: numbered and set aside. */
  const takeSkips = (upTo: number) => {
    while (skips.length && skips[0]!.lines < upTo) {
      const entry = skips.shift()!;
      record++;
      const line = lastLine + 1;
      lastLine = line + Math.max(0, entry.lines - lastReportedLine - 1);
      lastReportedLine = entry.lines;
      const set = rejectedRecord(options, entry.error, { line, endLine: lastLine, record }, entry.text);
      // Set aside with an earlier commit of this file already (a resumed read): not again.
      if (record > skip) rejected.push(set);
    }
  };

  try {
    for await (const items of drain<unknown>(parser)) {
      for (const item of items) {
        // Skipped records before this one are numbered first (file record numbers).
        if (skips.length && !json) takeSkips((item as { info: { lines: number } }).info.lines);
        record++;
        let row: Row;
        let line: number;
        if (json) {
          const parsed = item as ParsedRecord;
          row = parsed.record;
          line = parsed.line;
          if (jsonCheck) {
            const problem = checkColumns(
              Object.keys(row),
              options.columns,
              options.columnCheck ?? 'exact',
              false,
            );
            if (problem) {
              throw new TributaryError('SCHEMA_DRIFT', `${key}:${line}:1: key drift: ${problem.message}`, {
                stream: streamId,
                location: { file: key, line, column: 1, record },
              });
            }
          }
        } else {
          const parsed = item as { record: Row; info: { lines: number; empty_lines: number } };
          row = parsed.record;
          // csv-parse reports the line a record ends on, and counts a CRLF inside quotes as two
          // lines; the record's first line is worked out from the previous record's end.
          const { lines, empty_lines } = parsed.info;
          const reported = lines - lastReportedLine;
          const empties = empty_lines - lastEmpty;
          let span = reported - empties;
          if (span > 1) {
            let crlf = 0;
            for (const value of Object.values(row)) {
              if (typeof value === 'string' && value.includes('\r\n')) crlf += value.split('\r\n').length - 1;
            }
            span -= crlf;
            state.correction += crlf;
          }
          line = lastLine + empties + 1;
          lastLine = line + span - 1;
          lastReportedLine = lines;
          lastEmpty = empty_lines;
        }
        if (record <= skip) continue;
        if (emptyAsNull) {
          for (const name in row) if (row[name] === '') row[name] = null;
        }
        if (held) {
          yield held;
          held = undefined;
        }
        rows.push(row);
        locations.push({ file: key, line, record });
        if (rows.length >= options.batchRows || decoded.bytes - decodedAtBatch >= options.batchBytes) {
          decodedAtBatch = decoded.bytes;
          // Held until the next record shows up, so a file never ends with an empty batch.
          held = { rows, locations, row: record, done: false, bytes: 0, totalBytes: stored.bytes };
          if (rejected.length) held.rejected = rejected;
          rows = [];
          locations = [];
          rejected = [];
        }
      }
    }
    await wiring;
    takeSkips(Number.POSITIVE_INFINITY);
  } catch (error) {
    throw headerError ?? error;
  }
  if (held) {
    const setAside = [...(held.rejected ?? []), ...rejected];
    yield {
      ...held,
      done: true,
      totalBytes: stored.bytes,
      ...(setAside.length ? { rejected: setAside } : {}),
    };
    return;
  }
  yield {
    rows,
    locations,
    ...(rejected.length ? { rejected } : {}),
    row: Math.max(record, skip),
    done: true,
    bytes: 0,
    totalBytes: stored.bytes,
  };
}

/**
 * The pass-through read: the decoded bytes are cut into runs of whole records (`CsvSplitter`)
 * and handed out unparsed. Only the header is parsed here (and checked like the row path's).
 * Every run is checked to be UTF-8. Irregular input throws `IrregularCsv` before anything
 * irregular is handed out.
 */
async function* readRawOnce(options: ReadFileOptions, skip: number): AsyncGenerator<FileChunk> {
  const opened = await openObject(options);
  if (!opened) {
    yield { rows: [], locations: [], row: skip, done: true, bytes: 0, totalBytes: 0 };
    return;
  }
  const { stored } = opened;
  const splitter = new CsvSplitter({
    pieceBytes: options.batchBytes,
    pieceRecords: options.rawBatchRows ?? Number.POSITIVE_INFINITY,
    skip,
    maxRecordBytes: MAX_RECORD_CHARS,
  });
  const out = new PassThrough();
  const wiring = (streamPipeline as unknown as (...s: unknown[]) => Promise<void>)(
    opened.body,
    ...opened.stages,
    out,
  );
  wiring.catch(() => undefined); // failures surface through `out`, iterated below
  let header: string[] | undefined;
  let decodedOffset = 0;
  const check = (piece: RawPiece): void => {
    if (!isUtf8(piece.bytes)) {
      const bad = firstInvalidUtf8(piece.bytes);
      let lines = 0;
      for (let i = piece.bytes.indexOf(0x0a); i >= 0 && i < bad; i = piece.bytes.indexOf(0x0a, i + 1))
        lines++;
      throw invalidUtf8(options, piece.firstLine + lines, decodedOffset + bad);
    }
    decodedOffset += piece.bytes.length;
  };
  const readHeader = (): string[] => {
    const bytes = splitter.header!;
    if (!isUtf8(bytes)) throw invalidUtf8(options, 1, firstInvalidUtf8(bytes));
    decodedOffset = bytes.length;
    if (bytes.length === 0) return [];
    const names = parseHeader(bytes);
    const drift = headerDrift(options, names);
    if (drift) throw drift;
    return names;
  };
  const chunkOf = (piece: RawPiece, done: boolean): FileChunk => ({
    rows: [],
    raw: rawCsv(options, header!, piece),
    locations: [],
    row: piece.recordsTotal,
    done,
    bytes: 0,
    totalBytes: stored.bytes,
  });
  let held: RawPiece | undefined;
  for await (const buffer of out as AsyncIterable<Buffer>) {
    const pieces = splitter.push(buffer);
    if (!header && splitter.header) header = readHeader();
    for (const piece of pieces) {
      check(piece);
      if (held) yield chunkOf(held, false);
      held = piece;
    }
  }
  await wiring;
  const last = splitter.end();
  if (!header) header = readHeader();
  check(last);
  if (held && last.records === 0) {
    yield chunkOf(held, true);
    return;
  }
  if (held) yield chunkOf(held, false);
  yield chunkOf(last, true);
}

let lastHeader: { bytes: Buffer; names: readonly string[] } | undefined;

/**
 * The names in a header line. Every file of a stream has the same header: the last one parsed
 * is kept, so csv-parse (whose set-up costs more than a small file's whole read) runs once, not
 * once per file.
 */
function parseHeader(bytes: Buffer): string[] {
  if (lastHeader?.bytes.equals(bytes)) return [...lastHeader.names];
  const [names = []] = parseSync(bytes, { max_record_size: MAX_RECORD_CHARS }) as string[][];
  lastHeader = { bytes: Buffer.from(bytes), names: [...names] };
  return names;
}

/** A raw batch payload over one piece; `parse()` is the row path's csv-parse over its bytes. */
function rawCsv(options: ReadFileOptions, header: string[], piece: RawPiece): RawCsv {
  const emptyAsNull = options.emptyAsNull === true;
  return {
    bytes: piece.bytes,
    header,
    records: piece.records,
    firstRecord: piece.recordsTotal - piece.records + 1,
    emptyAsNull,
    steps: [],
    line: (index) => pieceLine(piece, index),
    parse: () => {
      const before = piece.recordsTotal - piece.records;
      let rows: Row[];
      try {
        rows = parseSync(piece.bytes, {
          columns: header,
          max_record_size: MAX_RECORD_CHARS,
        }) as Row[];
      } catch (error) {
        // csv-parse counts from the piece's start (and a CRLF inside quotes as two lines): the
        // failing record's line comes from the piece instead, as the row path reports it.
        const csv = error as { lines?: number; records?: number };
        if (typeof csv.records === 'number') {
          csv.lines = pieceEndLine(piece, csv.records);
          csv.records += before;
        } else if (typeof csv.lines === 'number') {
          csv.lines += piece.firstLine - 1;
        }
        throw readError(error, options, 0);
      }
      const locations: InputLocation[] = new Array(rows.length);
      for (let i = 0; i < rows.length; i++) {
        const row = rows[i]!;
        if (emptyAsNull) for (const name in row) if (row[name] === '') row[name] = null;
        locations[i] = { file: options.key, line: pieceLine(piece, i), record: before + i + 1 };
      }
      return { rows, locations };
    },
    parseChecked: () => parsePieceChecked(options, header, piece),
  };
}

/** csv-parse errors that only concern one record: the records around it are read as usual. */
const RECORD_SCOPED = new Set(['CSV_RECORD_INCONSISTENT_COLUMNS', 'CSV_RECORD_INCONSISTENT_FIELDS_LENGTH']);

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

/** `RawCsv.parseChecked` over one piece: records with the wrong field count are set aside. */
function parsePieceChecked(options: ReadFileOptions, header: string[], piece: RawPiece) {
  const before = piece.recordsTotal - piece.records;
  const emptyAsNull = options.emptyAsNull === true;
  const rows: Row[] = [];
  const locations: InputLocation[] = [];
  const texts: string[] = [];
  const rejected: RejectedRecord[] = [];
  let index = 0; // records of the piece seen so far, kept or not
  parseSync(piece.bytes, {
    columns: header,
    max_record_size: MAX_RECORD_CHARS,
    raw: true,
    skip_records_with_error: true,
    on_skip: (error, text) => {
      const at = {
        line: pieceLine(piece, index),
        endLine: pieceEndLine(piece, index),
        record: before + index + 1,
      };
      rejected.push(rejectedRecord(options, error, at, text));
      index++;
      return undefined;
    },
    on_record: (parsed: { record: Row; raw: string }) => {
      const row = parsed.record;
      if (emptyAsNull) for (const name in row) if (row[name] === '') row[name] = null;
      rows.push(row);
      texts.push(parsed.raw.replace(/\r?\n$/, ''));
      locations.push({ file: options.key, line: pieceLine(piece, index), record: before + index + 1 });
      index++;
      return undefined;
    },
  });
  return { rows, locations, texts, rejected };
}
