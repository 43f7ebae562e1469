import type { S3Client } from '@aws-sdk/client-s3';
import { DEFAULT_RETRY_POLICY, type RejectPolicy, type RetryPolicy, TributaryError } from '@tributary/core';
import {
  changeTablePrefix,
  type DataFormat,
  isValidTimeZone,
  type KeyPattern,
  KeyPatterns,
  parentPrefix,
  siblingPrefix,
} from './keys.js';

export type ColumnCheck = 'exact' | 'subset' | 'any';
export type Layout = 'changes' | 'qlik' | 'unordered';
export type LateFilePolicy = 'error' | 'apply' | 'skip';
export type EtagChangedPolicy = 'error' | 'apply';
export type CommitGranularity = 'file' | 'batch';
/** What a row that does not parse or cast does to its file (see `StreamDefinition.onError`). */
export type OnErrorPolicy = 'abort' | 'skip-row' | 'skip-file';

/** One ordered stream of change files under a prefix. */
export interface StreamDefinition {
  /** Stream id, `<source-name>/<dataset>`, e.g. `tickets/inc`. */
  id: string;
  bucket: string;
  /** Folder of the change files, ending in `/`, e.g. `automations/inc/changes/`. */
  prefix: string;
  /**
   * How a key's file name encodes its time. Required for `layout: 'changes'`; for `qlik` it
   * defaults to `YYYYMMDD-HHmmssSSS` (the change-table names).
   */
  keyPattern?: KeyPattern;
  /** IANA zone of the local times in key names. Default `UTC`. */
  timeZone?: string;
  /**
   * `changes` (default): every data file directly under `prefix`.
   * `qlik`: baseline `LOAD001.csv.gz`, `LOAD002…` under `prefix` first (in number order), then the
   * change tables under `${prefix minus trailing /}__ct/` by time.
   * `unordered`: names carry no time (e.g. `<uuid>.json`): files apply in the order of their S3
   * LastModified, then key. Weaker than a time in the name: an upload that finishes after a
   * later-started one was applied is a late file (see `lateFiles`).
   */
  layout?: Layout;
  /**
   * Force a format; by default `.csv[.gz]` is CSV, `.jsonl[.gz]` JSON lines and `.json[.gz]`
   * JSON (`json`: a JSON array of objects per file, or objects one after another, e.g. one per
   * line; streamed element by element).
   */
  format?: DataFormat;
  /** Expected columns (CSV header or JSON keys). */
  columns?: string[];
  /** `exact` (default when `columns` is given): same names, same order. `subset`: every
   *  declared column present, any order, extra columns pass through. `any` (default otherwise). */
  columnCheck?: ColumnCheck;
  /** Turn empty strings into null. Default false. */
  emptyAsNull?: boolean;
  /**
   * CSV only. Default true: records travel as raw bytes (`Batch.raw`) to a sink that takes them
   * (pg-sink COPYs them as they are and runs declarative transforms in SQL); any other stage gets
   * them parsed. Irregular input (see the README) falls back to the row parser by itself.
   * False: always parse in JavaScript.
   */
  passThrough?: boolean;
  /** Archive folder. Default: sibling `processed/` of the prefix. */
  processedPrefix?: string;
  /** Folder for late files skipped under `lateFiles: 'skip'`. Default: sibling `late/`. */
  latePrefix?: string;
  /** A never-applied file at or before the watermark. Default `error`. */
  lateFiles?: LateFilePolicy;
  /**
   * Rows that do not parse (CSV with the wrong number of fields) or cast (a bad integer, date…).
   * `abort` (default): the file fails, the stream stops (fail loud). `skip-row`: those rows go to
   * the sink's dead-letter table (`tributary.rejected_rows`) in the file's own transaction, the
   * others are applied. `skip-file`: the file is recorded `rejected`, not applied, and moved to
   * `rejectedPrefix`; the stream goes on.
   */
  onError?: OnErrorPolicy;
  /**
   * `skip-row` only: a file with more rejected rows than this (a count, or a percentage of its
   * rows such as `'1%'`) fails as under `abort` (`REJECT_LIMIT`). Default: no limit.
   */
  maxRejected?: number | string;
  /** Folder for files rejected under `onError: 'skip-file'`. Default: sibling `rejected/`. */
  rejectedPrefix?: string;
  /** An applied file whose ETag changed (re-exported in place). Default `error`. */
  etagChanged?: EtagChangedPolicy;
  /** `file` (default): one commit per file. `batch`: a commit per batch (huge files). */
  granularity?: CommitGranularity;
  /**
   * Back-fill: read archived files from the processed prefix, from this key (archived or
   * original key, or bare file name) onwards, in order. Nothing is archived then.
   */
  replayFrom?: string;
  /** List sub-folders of the prefix too (keys keep their relative path). Default false. */
  recursive?: boolean;
}

/** Core's one `RetryPolicy`, each field optional: 4 retries, 200 ms doubling to 10 s by default. */
export type RetryOptions = Partial<RetryPolicy>;

export interface WatchOptions {
  /** Time between polls once the plan is empty. */
  intervalMs: number;
  /** Random extra fraction of the interval, 0–1. Default 0.1. */
  jitter?: number;
}

export interface S3SourceOptions {
  /** The caller's client (region, credentials, endpoint are theirs). */
  client: S3Client;
  streams: StreamDefinition[];
  /** Source name in pipeline events. Default `s3`. */
  name?: string;
  /** Rows per batch. Default 5,000 when parsed; unlimited for raw batches (bytes bound them). */
  batchRows?: number;
  /** Decompressed input bytes per batch (checked at chunk granularity). Default 8 MiB. */
  batchBytes?: number;
  /** Archive files after commit. Default true. */
  archive?: boolean;
  /** Keep polling for new files until `ctx.stop` or `ctx.signal` fires. */
  watch?: WatchOptions;
  /** Retries of S3 errors that are transient (5xx, throttling, resets), or false. */
  retry?: RetryOptions | false;
}

/** Where a stream's files live and what role they play. */
export interface ListedArea {
  /** The folder listed. */
  prefix: string;
  /** Files from here are baselines (Qlik LOAD files) or change files. */
  role: 'baseline' | 'changes';
}

/** A stream definition with every default filled in and derived folders computed. */
export interface ResolvedStream {
  id: string;
  bucket: string;
  prefix: string;
  keyPattern: KeyPattern;
  timeZone: string;
  layout: Layout;
  format: DataFormat | undefined;
  columns: string[] | undefined;
  columnCheck: ColumnCheck;
  emptyAsNull: boolean;
  passThrough: boolean;
  processedPrefix: string;
  latePrefix: string;
  rejectedPrefix: string;
  lateFiles: LateFilePolicy;
  /** Absent: `abort`. */
  onError: RejectPolicy | undefined;
  etagChanged: EtagChangedPolicy;
  granularity: CommitGranularity;
  replayFrom: string | undefined;
  recursive: boolean;
  /** Folders holding the stream's files. */
  areas: ListedArea[];
  /** Keys are archived relative to this folder (the prefix, or its parent for Qlik). */
  archiveBase: string;
}

export interface ResolvedOptions {
  client: S3Client;
  name: string;
  streams: ResolvedStream[];
  batchRows: number;
  /** Records per raw (pass-through) batch: `batchRows` when given, else unlimited. */
  rawBatchRows: number;
  batchBytes: number;
  archive: boolean;
  watch: { intervalMs: number; jitter: number } | undefined;
  retry: Required<RetryOptions>;
}

export const DEFAULT_BATCH_ROWS = 5000;
export const DEFAULT_BATCH_BYTES = 8 * 1024 * 1024;
export const DEFAULT_RETRY: Required<RetryOptions> = { ...DEFAULT_RETRY_POLICY };

function fail(path: string, message: string): never {
  throw new TributaryError('INVALID_OPTIONS', `s3Source: ${path} ${message}`);
}

function oneOf<T extends string>(path: string, value: unknown, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !allowed.includes(value as T)) {
    fail(path, `must be one of ${allowed.map((a) => `'${a}'`).join(', ')}, got ${JSON.stringify(value)}`);
  }
  return value as T;
}

function positiveInteger(path: string, value: unknown, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    fail(path, `must be an integer ≥ ${min}, got ${JSON.stringify(value)}`);
  }
  return value;
}

function folder(path: string, value: unknown, allowEmpty: boolean): string {
  if (typeof value !== 'string') fail(path, `must be a string, got ${JSON.stringify(value)}`);
  if (value === '' && allowEmpty) return value;
  if (value === '' || !value.endsWith('/') || value.startsWith('/')) {
    fail(
      path,
      `must be a folder like 'automations/inc/changes/' (ending in '/'), got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

function optionalBoolean(path: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') fail(path, `must be true or false, got ${JSON.stringify(value)}`);
  return value;
}

function resolveStream(definition: unknown, path: string): ResolvedStream {
  if (typeof definition !== 'object' || definition === null) fail(path, 'must be an object');
  const d = definition as Partial<Record<keyof StreamDefinition, unknown>>;
  if (typeof d.id !== 'string' || d.id.trim() === '') fail(`${path}.id`, 'must be a non-empty string');
  if (typeof d.bucket !== 'string' || d.bucket === '') fail(`${path}.bucket`, 'must be a non-empty string');
  const prefix = folder(`${path}.prefix`, d.prefix, true);
  const layout = oneOf<Layout>(`${path}.layout`, d.layout, ['changes', 'qlik', 'unordered'], 'changes');
  if (layout === 'qlik' && prefix === '')
    fail(`${path}.prefix`, "must name the table folder for layout 'qlik'");

  let keyPattern: KeyPattern;
  if (typeof d.keyPattern === 'function') keyPattern = d.keyPattern as KeyPattern;
  else if (d.keyPattern === undefined && layout === 'qlik') keyPattern = 'YYYYMMDD-HHmmssSSS';
  // Never consulted: unordered files are ordered by LastModified.
  else if (d.keyPattern === undefined && layout === 'unordered') keyPattern = () => undefined;
  else keyPattern = oneOf(`${path}.keyPattern`, d.keyPattern, KeyPatterns, undefined as never);
  if (keyPattern === undefined) {
    fail(
      `${path}.keyPattern`,
      `is required: one of ${KeyPatterns.map((p) => `'${p}'`).join(', ')} or a function`,
    );
  }

  const timeZone = d.timeZone === undefined ? 'UTC' : d.timeZone;
  if (typeof timeZone !== 'string' || !isValidTimeZone(timeZone)) {
    fail(
      `${path}.timeZone`,
      `must be an IANA time zone like 'Africa/Nairobi', got ${JSON.stringify(timeZone)}`,
    );
  }
  const format =
    d.format === undefined
      ? undefined
      : oneOf<DataFormat>(`${path}.format`, d.format, ['csv', 'jsonl', 'json'], 'csv');

  let columns: string[] | undefined;
  if (d.columns !== undefined) {
    if (
      !Array.isArray(d.columns) ||
      d.columns.length === 0 ||
      !d.columns.every((c) => typeof c === 'string' && c !== '')
    ) {
      fail(`${path}.columns`, 'must be a non-empty array of column names');
    }
    const duplicate = d.columns.find((c, i) => d.columns && (d.columns as string[]).indexOf(c) !== i);
    if (duplicate !== undefined) fail(`${path}.columns`, `names ${JSON.stringify(duplicate)} twice`);
    columns = [...(d.columns as string[])];
  }
  const columnCheck = oneOf<ColumnCheck>(
    `${path}.columnCheck`,
    d.columnCheck,
    ['exact', 'subset', 'any'],
    columns ? 'exact' : 'any',
  );
  if (columnCheck !== 'any' && !columns)
    fail(`${path}.columnCheck`, `'${columnCheck}' needs ${path}.columns`);

  const parent = parentPrefix(prefix);
  const defaultSibling = (name: string) => (prefix === '' ? undefined : siblingPrefix(prefix, name));
  const processedPrefix =
    d.processedPrefix === undefined
      ? defaultSibling('processed')
      : folder(`${path}.processedPrefix`, d.processedPrefix, false);
  const latePrefix =
    d.latePrefix === undefined ? defaultSibling('late') : folder(`${path}.latePrefix`, d.latePrefix, false);
  const rejectedPrefix =
    d.rejectedPrefix === undefined
      ? defaultSibling('rejected')
      : folder(`${path}.rejectedPrefix`, d.rejectedPrefix, false);
  if (processedPrefix === undefined || latePrefix === undefined || rejectedPrefix === undefined) {
    fail(
      `${path}.processedPrefix`,
      'latePrefix and rejectedPrefix are required when prefix is the bucket root',
    );
  }
  const areas: ListedArea[] =
    layout === 'qlik'
      ? [
          { prefix, role: 'baseline' },
          { prefix: changeTablePrefix(prefix), role: 'changes' },
        ]
      : [{ prefix, role: 'changes' }];
  for (const [name, value] of [
    ['processedPrefix', processedPrefix],
    ['latePrefix', latePrefix],
    ['rejectedPrefix', rejectedPrefix],
  ] as const) {
    if (areas.some((area) => area.prefix === value)) {
      fail(`${path}.${name}`, `must differ from the folder the files are read from (${value})`);
    }
  }
  if (processedPrefix === latePrefix) fail(`${path}.latePrefix`, 'must differ from processedPrefix');
  if (rejectedPrefix === processedPrefix || rejectedPrefix === latePrefix) {
    fail(`${path}.rejectedPrefix`, 'must differ from processedPrefix and latePrefix');
  }
  const granularity = oneOf<CommitGranularity>(
    `${path}.granularity`,
    d.granularity,
    ['file', 'batch'],
    'file',
  );

  if (d.replayFrom !== undefined && (typeof d.replayFrom !== 'string' || d.replayFrom === '')) {
    fail(`${path}.replayFrom`, 'must be a non-empty key or file name');
  }
  return {
    id: d.id,
    bucket: d.bucket,
    prefix,
    keyPattern,
    timeZone,
    layout,
    format,
    columns,
    columnCheck,
    emptyAsNull: optionalBoolean(`${path}.emptyAsNull`, d.emptyAsNull, false),
    passThrough: optionalBoolean(`${path}.passThrough`, d.passThrough, true),
    processedPrefix,
    latePrefix,
    rejectedPrefix,
    lateFiles: oneOf<LateFilePolicy>(`${path}.lateFiles`, d.lateFiles, ['error', 'apply', 'skip'], 'error'),
    etagChanged: oneOf<EtagChangedPolicy>(`${path}.etagChanged`, d.etagChanged, ['error', 'apply'], 'error'),
    granularity,
    onError: rejectPolicy(path, d, granularity),
    replayFrom: d.replayFrom as string | undefined,
    recursive: optionalBoolean(`${path}.recursive`, d.recursive, false),
    areas,
    // Qlik keeps the table folder names (`EDW.SAMPLE/`, `EDW.SAMPLE__ct/`) in archived keys, so
    // two tables' LOAD001 files never collide.
    archiveBase: layout === 'qlik' ? parent : prefix,
  };
}

/** Validates options once, before any I/O; a bad option names its path (STYLE.md). */
export function resolveOptions(options: S3SourceOptions): ResolvedOptions {
  if (typeof options !== 'object' || options === null) fail('options', 'must be an object');
  const client = options.client as unknown;
  if (typeof client !== 'object' || client === null || typeof (client as S3Client).send !== 'function') {
    fail('client', 'must be an S3Client');
  }
  if (!Array.isArray(options.streams) || options.streams.length === 0) {
    fail('streams', 'must be a non-empty array of stream definitions');
  }
  const streams = options.streams.map((definition, index) => resolveStream(definition, `streams[${index}]`));
  const seen = new Set<string>();
  for (const [index, stream] of streams.entries()) {
    if (seen.has(stream.id)) fail(`streams[${index}].id`, `${JSON.stringify(stream.id)} is used twice`);
    seen.add(stream.id);
  }
  let watch: ResolvedOptions['watch'];
  if (options.watch !== undefined) {
    if (typeof options.watch !== 'object' || options.watch === null) fail('watch', 'must be an object');
    const intervalMs = positiveInteger('watch.intervalMs', options.watch.intervalMs, Number.NaN);
    const jitter = options.watch.jitter ?? 0.1;
    if (typeof jitter !== 'number' || !(jitter >= 0 && jitter <= 1)) {
      fail('watch.jitter', `must be a fraction between 0 and 1, got ${JSON.stringify(jitter)}`);
    }
    watch = { intervalMs, jitter };
  }
  let retry: Required<RetryOptions> = { ...DEFAULT_RETRY, retries: 0 };
  if (options.retry !== false) {
    const r = options.retry ?? {};
    if (typeof r !== 'object' || r === null) fail('retry', 'must be an object or false');
    retry = {
      retries: positiveInteger('retry.retries', r.retries, DEFAULT_RETRY.retries, 0),
      minDelayMs: positiveInteger('retry.minDelayMs', r.minDelayMs, DEFAULT_RETRY.minDelayMs, 0),
      maxDelayMs: positiveInteger('retry.maxDelayMs', r.maxDelayMs, DEFAULT_RETRY.maxDelayMs, 0),
    };
  }
  if (options.name !== undefined && (typeof options.name !== 'string' || options.name === '')) {
    fail('name', 'must be a non-empty string');
  }
  return {
    client: options.client,
    name: options.name ?? 's3',
    streams,
    batchRows: positiveInteger('batchRows', options.batchRows, DEFAULT_BATCH_ROWS),
    rawBatchRows: options.batchRows === undefined ? Number.POSITIVE_INFINITY : options.batchRows,
    batchBytes: positiveInteger('batchBytes', options.batchBytes, DEFAULT_BATCH_BYTES),
    archive: optionalBoolean('archive', options.archive, true),
    watch,
    retry,
  };
}

/**
 * A stream's `onError` and `maxRejected` as the policy its batches carry (absent: `abort`).
 * `maxRejected` only means something under `skip-row`; `skip-file` needs whole-file commits.
 */
function rejectPolicy(
  path: string,
  d: Partial<Record<keyof StreamDefinition, unknown>>,
  granularity: CommitGranularity,
): RejectPolicy | undefined {
  const mode = oneOf<OnErrorPolicy>(
    `${path}.onError`,
    d.onError,
    ['abort', 'skip-row', 'skip-file'],
    'abort',
  );
  if (d.maxRejected !== undefined && mode !== 'skip-row') {
    fail(`${path}.maxRejected`, "applies to onError: 'skip-row' only");
  }
  if (mode === 'abort') return undefined;
  if (mode === 'skip-file' && granularity === 'batch') {
    fail(`${path}.onError`, "'skip-file' needs granularity 'file' (a file is applied whole or not at all)");
  }
  const limit =
    d.maxRejected === undefined ? undefined : parseMaxRejected(`${path}.maxRejected`, d.maxRejected);
  return { onError: mode, ...(limit ? { maxRejected: limit } : {}) };
}

/** `100` (rows) or `'1%'` / `'0.5%'` (of the file's rows). */
export function parseMaxRejected(path: string, value: unknown): NonNullable<RejectPolicy['maxRejected']> {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return { count: value };
  const match = typeof value === 'string' ? /^(\d+(?:\.\d+)?)%$/.exec(value.trim()) : null;
  if (match && Number(match[1]) <= 100) return { percent: Number(match[1]) };
  return fail(path, "must be a whole number of rows (e.g. 100) or a percentage (e.g. '1%')");
}
