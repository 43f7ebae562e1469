import { isTimeZone } from '@tributary/core';
import { z } from 'zod';

/**
 * The `tributary` config file: one schema validates it, types it and generates the README's
 * "Config reference" (scripts/config-reference.ts), so the three cannot drift. The keys of
 * issue 14 are a contract: additive changes only.
 */

export const KEY_PATTERNS = [
  'YYYY-MM-DDTHH-mm-ss',
  'YYYYMMDD_HHMM_<TZ>',
  'YYYYMMDD-HHmmssSSS',
  'YYYYMMDD',
] as const;

const folder = (what: string) =>
  z
    .string()
    .min(1)
    .refine((s) => !s.startsWith('/'), `${what} is an S3 key prefix: no leading slash`)
    .transform((s) => (s.endsWith('/') ? s : `${s}/`));

const timeZone = z.string().refine(isTimeZone, 'must be an IANA time zone name, e.g. Africa/Nairobi or UTC');

const identifier = z.string().min(1).max(63);

const skipRowsStep = z
  .object({
    column: identifier.describe('column to test'),
    oneOf: z.array(z.string()).min(1).describe('values that drop the row (compared as text)'),
    ignoreCase: z.boolean().optional().describe('compare ASCII letters case-insensitively'),
    trim: z.boolean().optional().describe('trim ASCII whitespace before comparing'),
    name: z
      .string()
      .min(1)
      .optional()
      .describe('the filter name rows are counted under; default skip_<column>'),
  })
  .strict();

const textRule = z
  .object({
    trim: z.boolean().optional(),
    case: z.enum(['upper', 'lower']).optional(),
    collapse: z
      .object({ chars: z.string().min(1), into: z.string() })
      .strict()
      .optional(),
    emptyToNull: z.boolean().optional(),
  })
  .strict();

export const transformSchema = z.union([
  z.object({ skipRows: skipRowsStep }).strict().describe('drop rows whose column is one of the values'),
  z
    .object({ dropFields: z.array(identifier).min(1) })
    .strict()
    .describe('remove columns'),
  z
    .object({ rename: z.record(identifier, identifier) })
    .strict()
    .describe('rename columns: { old: new }'),
  z
    .object({ cleanText: z.record(identifier, textRule) })
    .strict()
    .describe('trim / case / collapse / empty-to-null per column'),
]);

export const sourceSchema = z
  .object({
    bucket: z.string().min(1).optional().describe('S3 bucket; default $S3_BUCKET'),
    prefix: folder('prefix')
      .optional()
      .describe('the folder the change files are listed from (required unless the stream has discover)'),
    layout: z
      .enum(['changes', 'qlik', 'unordered'])
      .default('changes')
      .describe(
        'changes: files ordered by the time in their names; qlik: LOAD files, then <prefix>__ct/ change files (Qlik Replicate semantics, see target.qlik); unordered: names without time, ordered by S3 LastModified then key (a weaker guarantee)',
      ),
    keyPattern: z
      .enum(KEY_PATTERNS)
      .optional()
      .describe('how a file name encodes its time; default per layout (qlik: YYYYMMDD-HHmmssSSS)'),
    timeZone: timeZone.default('UTC').describe('IANA zone of the times in file names'),
    format: z
      .enum(['csv', 'jsonl', 'json'])
      .optional()
      .describe(
        'default from the suffix (.csv[.gz], .jsonl[.gz], .json[.gz]); json: a JSON array of objects per file, or one object after another',
      ),
    lateFiles: z
      .enum(['error', 'apply', 'skip'])
      .default('error')
      .describe('a never-applied file at or before the watermark: stop, apply, or skip to late/'),
    columns: z
      .array(identifier)
      .min(1)
      .optional()
      .describe('the header every file must have (exact); also the columns of a created table'),
    processedPrefix: folder('processedPrefix')
      .optional()
      .describe("archive folder; default <prefix>processed/ (inside the stream's own space)"),
    latePrefix: folder('latePrefix').optional().describe('late-file folder; default <prefix>late/'),
    onError: z
      .enum(['abort', 'skip-row', 'skip-file'])
      .default('abort')
      .describe(
        'a row that does not parse (wrong field count) or cast (bad integer, date…): abort fails the file and stops the stream; skip-row applies the others and writes it to tributary.rejected_rows in the same transaction; skip-file records the file rejected, moves it to rejectedPrefix and goes on',
      ),
    maxRejected: z
      .union([
        z.number().int().min(0),
        z.string().regex(/^\d+(\.\d+)?%$/, "must be a percentage such as '1%'"),
      ])
      .optional()
      .describe(
        "skip-row only: a file with more rejected rows than this (a count, or a percentage of its rows such as '1%') fails as under abort (REJECT_LIMIT); default no limit",
      ),
    rejectedPrefix: folder('rejectedPrefix')
      .optional()
      .describe('folder for files rejected under onError: skip-file; default <prefix>rejected/'),
  })
  .strict()
  .describe('where the change files are and how they are ordered');

export const targetSchema = z
  .object({
    table: z
      .string()
      .regex(/^[^.\s]+\.[^.\s]+$/, 'must be schema.table')
      .describe('schema.table; created if missing'),
    key: z.array(identifier).min(1).describe('conflict key; must be the PRIMARY KEY or a UNIQUE constraint'),
    mode: z
      .enum(['upsert', 'insert-ignore', 'history', 'snapshot'])
      .default('upsert')
      .describe(
        'upsert, insert-ignore (first version wins), history (type-2 versions) or snapshot (each file replaces the table in its commit: TRUNCATE + reload without an empty moment, manual §6)',
      ),
    types: z
      .record(identifier, z.string().min(1))
      .optional()
      .describe('column types for a created table; other columns are text'),
    qlik: z
      .object({
        keepHeaders: z
          .boolean()
          .default(false)
          .describe('store the header__ columns in the target too (default: dropped)'),
        deletes: z
          .enum(['hard', 'soft'])
          .default('hard')
          .describe('D rows: delete the row, or keep it with deleted_at set'),
        versionColumn: z
          .union([identifier, z.literal(false)])
          .optional()
          .describe(
            'column holding the header__timestamp of the change last applied (a change older than it is not applied); default qlik_timestamp (header__timestamp with keepHeaders); false: no guard',
          ),
      })
      .strict()
      .optional()
      .describe(
        'layout qlik: how change rows apply (header__change_seq order, I/U upsert, D delete, B skipped and counted)',
      ),
    schemaDrift: z
      .enum(['fail', 'evolve', 'freeze-extra'])
      .default('fail')
      .describe(
        "a column the table lacks: fail (stop naming it); evolve (ALTER TABLE ADD COLUMN, nullable, typed from types or text, in the file's transaction; recorded in tributary.schema_changes); freeze-extra (ignore it, warn). Under evolve and freeze-extra a file may also lack columns (updates keep the stored value, inserts get null; warned) and source.columns is not checked exactly. Type changes always fail",
      ),
    versionColumn: identifier
      .optional()
      .describe(
        "a row never regresses to an older value of this column (e.g. updated_at); in history mode a time column's value is the version's valid_from (instead of the load time)",
      ),
    afterCommit: z
      .object({
        sql: z.string().min(1).describe('e.g. REFRESH MATERIALIZED VIEW CONCURRENTLY reporting.v_trips'),
        minIntervalSeconds: z
          .number()
          .min(0)
          .default(0)
          .describe(
            'at most one run per interval (across processes); a commit inside it runs the hook when it ends or when the run ends',
          ),
      })
      .strict()
      .optional()
      .describe(
        'SQL run after each file commits, outside its transaction, serialised across processes under an advisory lock (one per SQL text); outcome in tributary.after_commit and status; a failure never rolls back data and is retried on the next commit',
      ),
  })
  .strict()
  .describe('where the rows go');

export const streamSchema = z
  .object({
    id: z
      .string()
      .regex(
        /^[A-Za-z0-9_.{}-]+\/[A-Za-z0-9_.{}-]+$/,
        'must be <source>/<dataset>, e.g. cubic/edw_sample (with {table} in a discover template)',
      )
      .describe('stream id: checkpoint key, status, logs'),
    discover: z
      .object({
        under: folder('discover.under').describe('the folder whose sub-folders are tables'),
      })
      .strict()
      .optional()
      .describe(
        'a template: one stream per table folder found under `under` (again on every watch poll); {table} in id and target.table is the folder name; source.prefix is <under><table>/',
      ),
    source: sourceSchema,
    transforms: z.array(transformSchema).default([]).describe('declarative transforms, in order'),
    target: targetSchema,
  })
  .strict();

export const configSchema = z
  .object({
    streams: z.array(streamSchema).min(1).describe('the streams this process applies'),
  })
  .strict();

const extractColumn = z.union([
  identifier,
  z
    .object({ name: identifier, expression: z.string().min(1) })
    .strict()
    .describe('a named SQL expression over the row (drift fixed in the extract, manual §8)'),
]);

/**
 * An extract stream (seed 001): a `streams` entry whose source is `postgres` and whose target is
 * `s3`. `tributary run --apply` runs these before the load streams.
 */
export const extractStreamSchema = z
  .object({
    id: z
      .string()
      .regex(/^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/, 'must be <source>/<dataset>, e.g. dwh/trips')
      .describe('stream id: extract watermark and run-log key'),
    source: z
      .object({
        postgres: z
          .object({
            url: z
              .string()
              .min(1)
              .describe('source database URL, usually an environment variable; a read-only role is enough'),
            table: z
              .string()
              .regex(/^[^.\s]+\.[^.\s]+$/, 'must be schema.table')
              .describe('schema.table on the source'),
            watermark: identifier
              .optional()
              .describe('DB-insertion timestamp or increasing id column; required for incremental'),
            key: z.array(identifier).min(1).describe('natural key (orders rows with equal watermarks)'),
            mode: z
              .enum(['incremental', 'snapshot'])
              .default('incremental')
              .describe('incremental: rows past the watermark; snapshot: the whole table each run'),
            columns: z
              .array(extractColumn)
              .min(1)
              .optional()
              .describe('the file columns, in order: names or { name, expression }; default all'),
            safetyLag: z
              .number()
              .nonnegative()
              .default(0)
              .describe('seconds subtracted from the source clock for the upper bound (late commits)'),
          })
          .strict(),
      })
      .strict()
      .describe('the PostgreSQL table to extract'),
    target: z
      .object({
        s3: z
          .object({
            bucket: z.string().min(1).optional().describe('S3 bucket; default $S3_BUCKET'),
            prefix: folder('prefix').describe('folder of the files (a load stream reads it)'),
            keyPattern: z
              .enum(KEY_PATTERNS)
              .default('YYYYMMDD_HHMM_<TZ>')
              .describe('file name time format; a run within one name is a no-op'),
            timeZone: timeZone.default('UTC').describe('IANA zone of the times in file names'),
            gzip: z.boolean().default(false).describe('write .csv.gz'),
          })
          .strict(),
      })
      .strict()
      .describe('where the files go'),
  })
  .strict();

export type ExtractStreamConfig = z.infer<typeof extractStreamSchema>;

export type TributaryConfig = z.infer<typeof configSchema> & {
  /** The extract streams (`source.postgres` entries of `streams`), in file order. */
  extracts: ExtractStreamConfig[];
};
export type StreamConfig = z.infer<typeof streamSchema>;
export type TransformConfig = z.infer<typeof transformSchema>;
