import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { isTimeZone } from '@tributary/core';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { UsageError } from './env.js';

/**
 * The `tributary` config file: one schema validates it, types it and generates the README's
 * "Config reference" (scripts/config-reference.ts), so the three cannot drift. The keys of
 * issue 14 are a contract: additive changes only.
 */

const KEY_PATTERNS = ['YYYY-MM-DDTHH-mm-ss', 'YYYYMMDD_HHMM_<TZ>', 'YYYYMMDD-HHmmssSSS', 'YYYYMMDD'] as const;

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

/** A config problem, with the option path (`streams[1].target.key`). */
export class ConfigError extends UsageError {
  constructor(
    readonly file: string,
    readonly problems: { path: string; message: string }[],
  ) {
    super(`${file}: invalid config:\n${problems.map((p) => `  ${p.path}: ${p.message}`).join('\n')}`);
  }
}

function pathText(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) out += typeof part === 'number' ? `[${part}]` : `${out ? '.' : ''}${String(part)}`;
  return out || '(root)';
}

/** Replaces `${VAR}` in every string with the environment's value; a missing one is an error. */
export function expandEnv(
  value: unknown,
  env: NodeJS.ProcessEnv,
  path: PropertyKey[] = [],
  problems: { path: string; message: string }[] = [],
): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
      const found = env[name];
      if (found === undefined) {
        problems.push({ path: pathText(path), message: `environment variable ${name} is not set` });
        return '';
      }
      return found;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => expandEnv(v, env, [...path, i], problems));
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, expandEnv(v, env, [...path, k], problems)]),
    );
  }
  return value;
}

/** Parses and validates config text (YAML, or JSON for a `.json` file). Throws ConfigError. */
export function parseConfig(
  text: string,
  file: string,
  env: NodeJS.ProcessEnv = process.env,
): TributaryConfig {
  let raw: unknown;
  try {
    raw = extname(file).toLowerCase() === '.json' ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    throw new ConfigError(file, [{ path: '(file)', message: (error as Error).message.split('\n')[0]! }]);
  }
  const problems: { path: string; message: string }[] = [];
  const expanded = expandEnv(raw, env, [], problems);
  const { loads, extracts, loadIndex } = splitStreams(expanded);
  // Only extract streams: the load streams may then be none.
  const schema = extracts.length ? configSchema.extend({ streams: z.array(streamSchema) }) : configSchema;
  const parsed = schema.safeParse(loads);
  // A value left empty by a missing variable is already reported: not twice.
  const reported = new Set(problems.map((p) => p.path));
  const report = (path: PropertyKey[], message: string) => {
    const text = pathText(path);
    if (!reported.has(text)) problems.push({ path: text, message });
  };
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const path = [...issue.path];
      // Back to the entry's index in the file's `streams`.
      if (path[0] === 'streams' && typeof path[1] === 'number') path[1] = loadIndex[path[1]]!;
      report(path, issue.message);
    }
  }
  const parsedExtracts: ExtractStreamConfig[] = [];
  for (const { index, entry } of extracts) {
    const one = extractStreamSchema.safeParse(entry);
    if (one.success) parsedExtracts.push(one.data);
    else for (const issue of one.error.issues) report(['streams', index, ...issue.path], issue.message);
  }
  if (problems.length || !parsed.success) throw new ConfigError(file, problems);
  const config: TributaryConfig = { ...parsed.data, extracts: parsedExtracts };
  problems.push(...semanticProblems(config, env), ...extractProblems(config, env, extracts));
  if (problems.length) throw new ConfigError(file, problems);
  return config;
}

const isExtractEntry = (entry: unknown): boolean => {
  const source = (entry as { source?: unknown } | null)?.source;
  return typeof source === 'object' && source !== null && 'postgres' in source;
};

/** The file's `streams` entries split into load and extract streams, with their file indices. */
function splitStreams(expanded: unknown): {
  loads: unknown;
  extracts: { index: number; entry: unknown }[];
  loadIndex: number[];
} {
  const streams = (expanded as { streams?: unknown } | null)?.streams;
  if (!Array.isArray(streams)) return { loads: expanded, extracts: [], loadIndex: [] };
  const extracts: { index: number; entry: unknown }[] = [];
  const loadIndex: number[] = [];
  const loads: unknown[] = [];
  streams.forEach((entry, index) => {
    if (isExtractEntry(entry)) extracts.push({ index, entry });
    else {
      loadIndex.push(index);
      loads.push(entry);
    }
  });
  return { loads: { ...(expanded as object), streams: loads }, extracts, loadIndex };
}

/** The bucket of an extract stream's files. */
export function extractBucket(stream: ExtractStreamConfig, env: NodeJS.ProcessEnv = process.env): string {
  return stream.target.s3.bucket ?? env.S3_BUCKET ?? '';
}

/**
 * Extract streams: ids unique across all streams, a bucket, a watermark when incremental, and no
 * two extracts writing into overlapping folders (their files would interleave in one listing).
 */
function extractProblems(
  config: TributaryConfig,
  env: NodeJS.ProcessEnv,
  entries: readonly { index: number }[],
): { path: string; message: string }[] {
  const problems: { path: string; message: string }[] = [];
  const loadIds = new Set(config.streams.map((s) => s.id));
  const seen = new Map<string, number>();
  config.extracts.forEach((stream, i) => {
    const at = `streams[${entries[i]!.index}]`;
    if (loadIds.has(stream.id) || seen.has(stream.id)) {
      problems.push({ path: `${at}.id`, message: `"${stream.id}" is the id of another stream` });
    }
    seen.set(stream.id, i);
    if (!extractBucket(stream, env)) {
      problems.push({ path: `${at}.target.s3.bucket`, message: 'is required when S3_BUCKET is not set' });
    }
    if (stream.source.postgres.mode === 'incremental' && !stream.source.postgres.watermark) {
      problems.push({
        path: `${at}.source.postgres.watermark`,
        message: "is required for mode 'incremental'",
      });
    }
    problems.push(...readerProblems(config, env, stream, at));
    for (let j = 0; j < i; j++) {
      const other = config.extracts[j]!;
      const [a, b] = [stream.target.s3.prefix, other.target.s3.prefix];
      if (extractBucket(stream, env) === extractBucket(other, env) && (a.startsWith(b) || b.startsWith(a))) {
        problems.push({
          path: `${at}.target.s3.prefix`,
          message: `streams "${other.id}" and "${stream.id}" write into overlapping folders ${b} and ${a}`,
        });
      }
    }
  });
  return problems;
}

/**
 * A load stream over an extract's folder must read the names as they are written: the same key
 * pattern and (unless the name carries its zone) the same time zone, else files would be
 * refused as bad keys or, worse, ordered on shifted times.
 */
function readerProblems(
  config: TributaryConfig,
  env: NodeJS.ProcessEnv,
  stream: ExtractStreamConfig,
  at: string,
): { path: string; message: string }[] {
  const { prefix, keyPattern, timeZone } = stream.target.s3;
  return config.streams
    .filter(
      (load) =>
        load.source.prefix === prefix && streamSpaces(load, env).bucket === extractBucket(stream, env),
    )
    .flatMap((load) => {
      const patternDiffers = load.source.keyPattern !== undefined && load.source.keyPattern !== keyPattern;
      const zoneDiffers = keyPattern !== 'YYYYMMDD_HHMM_<TZ>' && load.source.timeZone !== timeZone;
      if (!patternDiffers && !zoneDiffers) return [];
      return [
        {
          path: `${at}.target.s3`,
          message: `stream "${load.id}" reads ${prefix} with keyPattern ${load.source.keyPattern} in ${load.source.timeZone}, but "${stream.id}" writes ${keyPattern} in ${timeZone}`,
        },
      ];
    });
}

export async function loadConfig(
  file: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<TributaryConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new UsageError(
      `--config ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
  return parseConfig(text, file, env);
}

/** Where a stream reads, archives and parks late files: each must belong to it alone. */
export interface StreamSpaces {
  id: string;
  bucket: string;
  listing: string[];
  processed: string;
  late: string;
  rejected: string;
}

export function streamSpaces(stream: StreamConfig, env: NodeJS.ProcessEnv = process.env): StreamSpaces {
  // A discover template claims its whole folder until it is expanded.
  const prefix = stream.source.prefix ?? stream.discover?.under ?? '';
  const listing = stream.source.layout === 'qlik' ? [prefix, `${prefix.slice(0, -1)}__ct/`] : [prefix];
  return {
    id: stream.id,
    bucket: stream.source.bucket ?? env.S3_BUCKET ?? '',
    listing,
    processed: stream.source.processedPrefix ?? `${prefix}processed/`,
    late: stream.source.latePrefix ?? `${prefix}late/`,
    rejected: stream.source.rejectedPrefix ?? `${prefix}rejected/`,
  };
}

const overlaps = (a: string, b: string) => a.startsWith(b) || b.startsWith(a);

/**
 * Checks the schema cannot express: unique ids, a bucket for every stream, and no two streams
 * sharing a listing, archive or late prefix (invariant 11: an archive copy is never overwritten
 * by another stream's file and a replay reads only its own files).
 */
function semanticProblems(
  config: TributaryConfig,
  env: NodeJS.ProcessEnv,
): { path: string; message: string }[] {
  const problems: { path: string; message: string }[] = [];
  const seen = new Map<string, number>();
  const spaces = config.streams.map((stream) => streamSpaces(stream, env));
  for (const [i, stream] of config.streams.entries()) {
    const first = seen.get(stream.id);
    if (first !== undefined) {
      problems.push({ path: `streams[${i}].id`, message: `"${stream.id}" is also streams[${first}].id` });
    }
    seen.set(stream.id, i);
    if (!spaces[i]!.bucket) {
      problems.push({
        path: `streams[${i}].source.bucket`,
        message: 'is required when S3_BUCKET is not set',
      });
    }
    if (stream.discover) {
      if (stream.source.prefix) {
        problems.push({
          path: `streams[${i}].source.prefix`,
          message: 'is <discover.under><table>/ for a template: leave it out',
        });
      }
      for (const [path, value] of [
        ['id', stream.id],
        ['target.table', stream.target.table],
      ] as const) {
        if (!value.includes('{table}')) {
          problems.push({
            path: `streams[${i}].${path}`,
            message: 'must contain {table} in a discover template',
          });
        }
      }
    } else {
      if (!stream.source.prefix)
        problems.push({ path: `streams[${i}].source.prefix`, message: 'is required' });
      if (stream.id.includes('{') || stream.target.table.includes('{')) {
        problems.push({ path: `streams[${i}].id`, message: '{table} is only for streams with discover' });
      }
    }
    if (stream.source.layout === 'changes' && !stream.source.keyPattern) {
      problems.push({
        path: `streams[${i}].source.keyPattern`,
        message: `is required for layout 'changes' (one of ${KEY_PATTERNS.join(', ')})`,
      });
    }
    if (stream.target.versionColumn && stream.source.layout === 'qlik') {
      problems.push({
        path: `streams[${i}].target.versionColumn`,
        message: 'is target.qlik.versionColumn for layout qlik',
      });
    }
    if (stream.target.mode === 'snapshot' && stream.source.layout === 'qlik') {
      problems.push({
        path: `streams[${i}].target.mode`,
        message: 'snapshot is for files that each hold the whole table; a Qlik layout has its own reloads',
      });
    }
    if (stream.target.qlik && stream.source.layout !== 'qlik') {
      problems.push({
        path: `streams[${i}].target.qlik`,
        message: "is only for source.layout 'qlik'",
      });
    }
    if (stream.source.maxRejected !== undefined && stream.source.onError !== 'skip-row') {
      problems.push({
        path: `streams[${i}].source.maxRejected`,
        message: "applies to onError: 'skip-row' only",
      });
    }
  }
  for (let i = 0; i < spaces.length; i++) {
    for (let j = i + 1; j < spaces.length; j++) {
      const a = spaces[i]!;
      const b = spaces[j]!;
      if (a.bucket !== b.bucket) continue;
      // A template leaves out the table folders explicit streams already claim.
      if (config.streams[i]!.discover || config.streams[j]!.discover) continue;
      const aAll = [
        ...a.listing.map((p) => ['listing', p]),
        ['archive', a.processed],
        ['late', a.late],
        ['rejected', a.rejected],
      ];
      const bAll = [
        ...b.listing.map((p) => ['listing', p]),
        ['archive', b.processed],
        ['late', b.late],
        ['rejected', b.rejected],
      ];
      const clash = aAll.flatMap(([ka, pa]) =>
        bAll.filter(([, pb]) => overlaps(pa!, pb!)).map(([kb, pb]) => `${ka} ${pa} overlaps ${kb} ${pb}`),
      );
      if (clash.length) {
        problems.push({
          path: `streams[${j}].source`,
          message: `streams "${a.id}" and "${b.id}" share s3://${a.bucket} prefixes: ${clash[0]}`,
        });
      }
    }
  }
  return problems;
}

/** The table folders right under `under` (one level, `/`-delimited), sorted. */
export async function discoverTables(
  list: (continuationToken: string | undefined) => Promise<{ prefixes: string[]; next: string | undefined }>,
  under: string,
): Promise<string[]> {
  const tables: string[] = [];
  let token: string | undefined;
  do {
    const page = await list(token);
    for (const prefix of page.prefixes) {
      const name = prefix.slice(under.length).replace(/\/$/, '');
      if (/^[A-Za-z0-9_.-]+$/.test(name)) tables.push(name);
    }
    token = page.next;
  } while (token);
  return tables.sort();
}

/**
 * The config with every discover template replaced by one stream per table folder found. Table
 * folders an explicit stream already reads are left to it; the expanded config is checked again
 * for overlaps (ConfigError naming both streams).
 */
export function expandTemplates(
  config: TributaryConfig,
  tablesByTemplate: ReadonlyMap<number, readonly string[]>,
  file: string,
  env: NodeJS.ProcessEnv = process.env,
): TributaryConfig {
  const explicit = config.streams.filter((s) => !s.discover);
  const claimed = explicit.map((s) => streamSpaces(s, env));
  const streams: StreamConfig[] = [];
  for (const [i, stream] of config.streams.entries()) {
    if (!stream.discover) {
      streams.push(stream);
      continue;
    }
    const { discover, ...template } = stream;
    for (const table of tablesByTemplate.get(i) ?? []) {
      const prefix = `${discover.under}${table}/`;
      const bucket = stream.source.bucket ?? env.S3_BUCKET ?? '';
      if (
        claimed.some(
          (c) => c.bucket === bucket && c.listing.some((l) => l.startsWith(prefix) || prefix.startsWith(l)),
        )
      )
        continue;
      const fill = (text: string) => text.replaceAll('{table}', table);
      streams.push({
        ...template,
        id: fill(template.id),
        source: { ...template.source, prefix },
        target: { ...template.target, table: fill(template.target.table) },
      });
    }
  }
  const expanded = { ...config, streams };
  const problems = semanticProblems(expanded, env);
  if (problems.length) throw new ConfigError(file, problems);
  return expanded;
}
