import type { RejectPolicy } from '@tributary/core';
import { fn } from '@tributary/core/options';
import { z } from 'zod';
import {
  changeTablePrefix,
  type DataFormat,
  isValidTimeZone,
  type KeyPattern,
  KeyPatterns,
  parentPrefix,
  siblingPrefix,
} from './keys.js';
import { flag, folder, got, nonEmptyString, oneOf } from './option-values.js';

/**
 * One stream definition of s3Source (issue 16): its zod schema (the type, defaults, checks and
 * README rows under `streams[].`), and the resolved stream the reader and planner use, with the
 * defaults that depend on other fields (folders, key pattern, column check) filled in.
 */

/** How a file's header is checked against `columns` (see `StreamDefinition.columnCheck`). */
export type ColumnCheck = 'exact' | 'subset' | 'any';
export type Layout = 'changes' | 'qlik' | 'unordered';
export type LateFilePolicy = 'error' | 'apply' | 'skip';
export type EtagChangedPolicy = 'error' | 'apply';
export type CommitGranularity = 'file' | 'batch';
/** What a row that does not parse or cast does to its file (see `StreamDefinition.onError`). */
export type OnErrorPolicy = 'abort' | 'skip-row' | 'skip-file';

/** `100` (rows) or `'1%'` / `'0.5%'` (of the file's rows); undefined when neither. */
function maxRejectedLimit(value: number | string): NonNullable<RejectPolicy['maxRejected']> | undefined {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return { count: value };
  const match = typeof value === 'string' ? /^(\d+(?:\.\d+)?)%$/.exec(value.trim()) : null;
  if (match && Number(match[1]) <= 100) return { percent: Number(match[1]) };
  return undefined;
}
const MAX_REJECTED_MESSAGE = "must be a whole number of rows (e.g. 100) or a percentage (e.g. '1%')";

const keyPatternList = KeyPatterns.map((p) => `'${p}'`).join(', ');

const streamFields = z.strictObject({
  id: nonEmptyString('must be a non-empty string').describe(
    'stream id, `<source-name>/<dataset>`, e.g. `tickets/inc`',
  ),
  bucket: nonEmptyString('must be a non-empty string').describe('bucket name'),
  prefix: folder(true).describe(
    'folder of the files, ending in `/`, e.g. `automations/inc/changes/`; only keys directly under it count unless `recursive`',
  ),
  keyPattern: z
    .union([z.enum(KeyPatterns), fn<(key: string) => Date | undefined>()], {
      error: (issue) => `must be one of ${keyPatternList} or a function, got ${got(issue.input)}`,
    })
    .optional()
    .describe(
      "how a key's file name (without its suffix) encodes its time; required for `layout: 'changes'`, default `'YYYYMMDD-HHmmssSSS'` for `qlik`, unused for `unordered`. `'YYYY-MM-DDTHH-mm-ss'` (ticket exports), `'YYYYMMDD_HHMM_<TZ>'` (zone in the name: an unambiguous abbreviation such as `EAT`, `UTC`, `CET`, `EST`/`EDT`, or an offset `+0300`, `UTC+3`), `'YYYYMMDD-HHmmssSSS'` (Qlik change tables), `'YYYYMMDD'` (daily files), or `(key) => Date | undefined`. A key that does not match is a `BAD_KEY` error",
    ),
  timeZone: z
    .string({ error: (issue) => `must be an IANA time zone like 'Africa/Nairobi', got ${got(issue.input)}` })
    .superRefine((value, ctx) => {
      if (!isValidTimeZone(value)) {
        ctx.addIssue({
          code: 'custom',
          message: `must be an IANA time zone like 'Africa/Nairobi', got ${got(value)}`,
        });
      }
    })
    .default('UTC')
    .describe(
      "IANA zone of local times in names. A local time that occurs twice (DST fall-back) maps to the earlier instant; one that never occurs (DST gap) moves forward by the gap (Temporal's `'compatible'`). Both are reported as `warning` events",
    ),
  layout: oneOf(['changes', 'qlik', 'unordered'])
    .default('changes')
    .describe(
      "`'changes'`: every data file directly under `prefix`, by the time in its name. `'qlik'`: baselines `LOAD001.csv.gz`, `LOAD002…` under `prefix` (applied first, by number), change tables under the sibling `<prefix without />__ct/` (by time); pg-sink's `qlik` target applies their change semantics. A **reload** (LOAD files never applied after the first baseline, or applied ones with a new ETag) is a new snapshot whatever `lateFiles`/`etagChanged` say: its LOAD files come first, marked `meta.snapshot` (`'part'`, the last `'last'`) so pg-sink swaps them in atomically, and pending change files named before the reload's earliest LOAD LastModified are superseded (recorded `late_skipped`, moved to `late/`); `plan()` reports it as `reload`. `'unordered'`: names without a time (e.g. `cubic/kafka/sample/<uuid>.json`): files apply in the order of their S3 **LastModified**, then key. That is a weaker guarantee than a time in the name (it is the upload's time, second precision, and a long upload may finish after a later one was applied: a late file under `lateFiles`); `.json[.gz]` keys count",
    ),
  format: oneOf(['csv', 'jsonl', 'json'])
    .optional()
    .describe(
      "default by suffix: `.csv[.gz]` CSV, `.jsonl[.gz]` JSON lines, and `.json[.gz]` (`'json'`: a JSON array of objects per file, or objects one after another; streamed element by element) for `format: 'json'` or `layout: 'unordered'`. Gzip is also detected by magic bytes",
    ),
  columns: z
    .array(
      z
        .string({ error: 'must be a non-empty array of column names' })
        .min(1, 'must be a non-empty array of column names'),
      { error: 'must be a non-empty array of column names' },
    )
    .min(1, 'must be a non-empty array of column names')
    .superRefine((columns, ctx) => {
      const duplicate = columns.find((column, i) => columns.indexOf(column) !== i);
      if (duplicate !== undefined) ctx.addIssue({ code: 'custom', message: `names ${got(duplicate)} twice` });
    })
    .optional()
    .describe('expected columns (CSV header, or JSON keys)'),
  columnCheck: oneOf(['exact', 'subset', 'any'])
    .optional()
    .describe(
      '`exact` (default with `columns`): same names in the same order (JSON: same key set). `subset`: every declared column present, any order, extra columns pass through. `any` (default otherwise): no check (duplicate or blank header names are still errors)',
    ),
  emptyAsNull: flag().default(false).describe('empty strings become `null`'),
  passThrough: flag()
    .default(true)
    .describe(
      'CSV: hand records on as raw bytes (`batch.raw`) to a sink that takes them (pg-sink COPYs them as they are); any other stage gets them parsed. Irregular input falls back to the row parser by itself; see "Pass-through". `false` parses every file with csv-parse',
    ),
  processedPrefix: folder(false)
    .optional()
    .describe(
      "archive folder; default the prefix's sibling `processed/` (required when `prefix` is the bucket root): `automations/inc/changes/X.csv` → `automations/inc/processed/X.csv`; the path relative to the prefix is kept (for Qlik, relative to the prefix's parent: `ods/processed/EDW.SAMPLE/LOAD001.csv.gz`)",
    ),
  latePrefix: folder(false)
    .optional()
    .describe("where late files skipped under `lateFiles: 'skip'` go; default the sibling `late/`"),
  lateFiles: oneOf(['error', 'apply', 'skip'])
    .default('error')
    .describe(
      "a never-applied file at or before the watermark: `error` stops the stream (`LATE_FILE`, naming the file); `apply` applies it in order (the sink's version guard decides row by row; the watermark never moves back); `skip` emits one empty commit batch with `meta.late = 'skipped'` (so the sink records it) and moves it to `latePrefix`",
    ),
  onError: oneOf(['abort', 'skip-row', 'skip-file'])
    .default('abort')
    .describe(
      "a row that does not parse (CSV with the wrong number of fields) or cast (a bad integer, date…): `abort` fails the file and stops the stream (fail loud); `skip-row` applies the other rows and writes the bad ones to the sink's dead-letter table (`tributary.rejected_rows` with pg-sink) in the file's own transaction; `skip-file` (needs `granularity: 'file'`) records the file `rejected`, moves it to `rejectedPrefix` and goes on with the later files. Carried on every batch as `meta.onError`; on the row path malformed records travel as `meta.rejected`. A stray quote still fails the file under every policy (where the next record starts is in doubt), and so does a malformed JSON line",
    ),
  maxRejected: z
    .union([z.number(), z.string()], { error: MAX_REJECTED_MESSAGE })
    .superRefine((value, ctx) => {
      if (!maxRejectedLimit(value)) ctx.addIssue({ code: 'custom', message: MAX_REJECTED_MESSAGE });
    })
    // Without it zod merges the union into `type: ['number', 'string']`, which core's table
    // renderer cannot print; with it the union stays an anyOf (shown as `number | string`).
    .meta({ type: 'number | string' })
    .optional()
    .describe(
      "`skip-row` only: more rejected rows in one file than this — a count (`100`) or a percentage of its rows (`'1%'`) — and the file fails as under `abort` (`REJECT_LIMIT`, naming it); default no limit",
    ),
  rejectedPrefix: folder(false)
    .optional()
    .describe(
      "where files rejected under `onError: 'skip-file'` go; default the sibling `rejected/`. A replay (`replayFrom`) reads it beside `processedPrefix`, so a file fixed in place there is re-applied",
    ),
  etagChanged: oneOf(['error', 'apply'])
    .default('error')
    .describe(
      'a file already applied whose ETag changed (re-exported in place): `error` (`ETAG_CHANGED`) or `apply` (re-applied whole)',
    ),
  granularity: oneOf(['file', 'batch'])
    .default('file')
    .describe(
      '`file`: one commit per file (`meta.commit` only on its last batch). `batch`: every batch commits (huge files); a restart resumes after the committed row of the partial file',
    ),
  replayFrom: z
    .string({ error: 'must be a non-empty key or file name' })
    .min(1, 'must be a non-empty key or file name')
    .optional()
    .describe(
      'back-fill: read the archived files from `processedPrefix` at or after this key (archived key, original key or bare file name), in order. Nothing is archived, the watermark is not moved; a replay restarts from `replayFrom` unless it stopped inside a file. Remove it when done',
    ),
  recursive: flag()
    .default(false)
    .describe(
      'also read keys in sub-folders of the prefix (the archive and late folders are always excluded)',
    ),
});

type ParsedStream = z.output<typeof streamFields>;

/** The folders a stream reads, and where its files go (defaults: siblings of the prefix). */
function streamFolders(d: ParsedStream) {
  const sibling = (name: string) => (d.prefix === '' ? undefined : siblingPrefix(d.prefix, name));
  const areas: ListedArea[] =
    d.layout === 'qlik'
      ? [
          { prefix: d.prefix, role: 'baseline' },
          { prefix: changeTablePrefix(d.prefix), role: 'changes' },
        ]
      : [{ prefix: d.prefix, role: 'changes' }];
  return {
    areas,
    processedPrefix: d.processedPrefix ?? sibling('processed'),
    latePrefix: d.latePrefix ?? sibling('late'),
    rejectedPrefix: d.rejectedPrefix ?? sibling('rejected'),
  };
}

/** The checks that span several fields of one stream (paths relative to the stream). */
function checkStream(d: ParsedStream, ctx: z.RefinementCtx): void {
  const issue = (field: keyof ParsedStream, message: string) =>
    ctx.addIssue({ code: 'custom', path: [field], message });
  if (d.layout === 'qlik' && d.prefix === '') issue('prefix', "must name the table folder for layout 'qlik'");
  if (d.keyPattern === undefined && d.layout === 'changes') {
    issue('keyPattern', `is required: one of ${keyPatternList} or a function`);
  }
  if (d.columnCheck !== undefined && d.columnCheck !== 'any' && !d.columns) {
    issue('columnCheck', `'${d.columnCheck}' needs columns`);
  }
  const { areas, processedPrefix, latePrefix, rejectedPrefix } = streamFolders(d);
  if (processedPrefix === undefined || latePrefix === undefined || rejectedPrefix === undefined) {
    issue(
      'processedPrefix',
      'processedPrefix, latePrefix and rejectedPrefix are required when prefix is the bucket root',
    );
  } else {
    for (const [name, value] of [
      ['processedPrefix', processedPrefix],
      ['latePrefix', latePrefix],
      ['rejectedPrefix', rejectedPrefix],
    ] as const) {
      if (areas.some((area) => area.prefix === value)) {
        issue(name, `must differ from the folder the files are read from (${value})`);
      }
    }
    if (processedPrefix === latePrefix) issue('latePrefix', 'must differ from processedPrefix');
    if (rejectedPrefix === processedPrefix || rejectedPrefix === latePrefix) {
      issue('rejectedPrefix', 'must differ from processedPrefix and latePrefix');
    }
  }
  // `maxRejected` only means something under `skip-row`; `skip-file` needs whole-file commits.
  if (d.maxRejected !== undefined && d.onError !== 'skip-row') {
    issue('maxRejected', "applies to onError: 'skip-row' only");
  }
  if (d.onError === 'skip-file' && d.granularity === 'batch') {
    issue('onError', "'skip-file' needs granularity 'file' (a file is applied whole or not at all)");
  }
}

/** One ordered stream of change files under a prefix. */
export const streamDefinitionSchema = streamFields
  .superRefine(checkStream)
  .describe('one ordered stream of change files under a prefix');

export type StreamDefinition = z.input<typeof streamDefinitionSchema>;

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

export function resolveStream(d: ParsedStream): ResolvedStream {
  const { areas, processedPrefix, latePrefix, rejectedPrefix } = streamFolders(d);
  // The schema refused a bucket-root prefix without all three folders (checkStream).
  if (processedPrefix === undefined || latePrefix === undefined || rejectedPrefix === undefined) {
    throw new Error('s3Source: stream folders missing after validation');
  }
  const limit = d.maxRejected === undefined ? undefined : maxRejectedLimit(d.maxRejected);
  return {
    id: d.id,
    bucket: d.bucket,
    prefix: d.prefix,
    keyPattern: d.keyPattern ?? defaultKeyPattern(d.layout),
    timeZone: d.timeZone,
    layout: d.layout,
    format: d.format,
    columns: d.columns,
    columnCheck: d.columnCheck ?? (d.columns ? 'exact' : 'any'),
    emptyAsNull: d.emptyAsNull,
    passThrough: d.passThrough,
    processedPrefix,
    latePrefix,
    rejectedPrefix,
    lateFiles: d.lateFiles,
    etagChanged: d.etagChanged,
    granularity: d.granularity,
    onError:
      d.onError === 'abort' ? undefined : { onError: d.onError, ...(limit ? { maxRejected: limit } : {}) },
    replayFrom: d.replayFrom,
    recursive: d.recursive,
    areas,
    // Qlik keeps the table folder names (`EDW.SAMPLE/`, `EDW.SAMPLE__ct/`) in archived keys, so
    // two tables' LOAD001 files never collide.
    archiveBase: d.layout === 'qlik' ? parentPrefix(d.prefix) : d.prefix,
  };
}

/** `changes` streams must name one (the schema checks); Qlik change tables are named by time. */
function defaultKeyPattern(layout: Layout): KeyPattern {
  if (layout === 'qlik') return 'YYYYMMDD-HHmmssSSS';
  // Never consulted: unordered files are ordered by LastModified.
  return () => undefined;
}
