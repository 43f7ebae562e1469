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
      .enum(['upsert', 'insert-ignore', 'history'])
      .default('upsert')
      .describe('upsert, insert-ignore (first version wins) or history (type-2 versions)'),
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

export type TributaryConfig = z.infer<typeof configSchema>;
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
  const parsed = configSchema.safeParse(expanded);
  if (!parsed.success) {
    // A value left empty by a missing variable is already reported: not twice.
    const reported = new Set(problems.map((p) => p.path));
    for (const issue of parsed.error.issues) {
      const path = pathText(issue.path);
      if (!reported.has(path)) problems.push({ path, message: issue.message });
    }
  }
  if (problems.length || !parsed.success) throw new ConfigError(file, problems);
  const config = parsed.data;
  problems.push(...semanticProblems(config, env));
  if (problems.length) throw new ConfigError(file, problems);
  return config;
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
    if (stream.target.qlik && stream.source.layout !== 'qlik') {
      problems.push({
        path: `streams[${i}].target.qlik`,
        message: "is only for source.layout 'qlik'",
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
      const aAll = [...a.listing.map((p) => ['listing', p]), ['archive', a.processed], ['late', a.late]];
      const bAll = [...b.listing.map((p) => ['listing', p]), ['archive', b.processed], ['late', b.late]];
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
