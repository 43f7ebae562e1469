import { isTimeZone, TributaryError } from '@tributary/core';
import { instance, optionsResolver } from '@tributary/core/options';
import type pg from 'pg';
import { z } from 'zod';
import { type AfterCommitHook, resolveHook } from './after-commit.js';

/**
 * pgSink's options (issue 16): one zod schema is the type, the defaults, the validation (errors
 * name the option path, before any I/O) and the README's option tables (`pnpm docs:options`).
 * Unknown keys are kept, as before the schema: a config written for a later version still loads.
 * Over 400 lines on purpose: it is one thing, the schema of pgSink's options and its targets,
 * each option with its doc text; cutting it would scatter what the README table is built from.
 */

/** A value the schema checks; its message is the same whether the type or the value is wrong. */
function nonEmpty() {
  return z.string({ error: 'must be a non-empty string' }).min(1, 'must be a non-empty string');
}

const TYPE_NAME =
  /^[a-z_][a-z0-9_]*(?: [a-z_][a-z0-9_]*)*(?:\s*\(\s*\d+\s*(?:,\s*\d+\s*)?\))?(?: with(?:out)? time zone)?(?:\[\])*$/i;

/** A PostgreSQL type name. Types end up in DDL text, so only plain type names are accepted. */
function typeName() {
  return z.string({ error: 'must be a type name' }).superRefine((type, ctx) => {
    if (!TYPE_NAME.test(type.trim()))
      ctx.addIssue({ code: 'custom', message: `is not a type name: ${type}` });
  });
}

/**
 * One of `values`, checked without aborting the parse: inside a union (`qlik`, `targets`) an
 * aborting check would hide the nested option's path behind the union's message.
 */
function oneOf<const T extends readonly string[]>(values: T) {
  const text = values.map((v) => `'${v}'`);
  const list = text.length === 2 ? text.join(' or ') : `${text.slice(0, -1).join(', ')} or ${text.at(-1)}`;
  return z
    .string({ error: `must be ${list}` })
    .superRefine((value, ctx) => {
      if (!values.includes(value))
        ctx.addIssue({ code: 'custom', message: `must be ${list}, got ${JSON.stringify(value)}` });
    })
    .meta({ enum: [...values] }) as unknown as z.ZodType<T[number], T[number]>;
}

const afterCommitHook = instance<AfterCommitHook>('an object', (v) => typeof v === 'object' && v !== null)
  .superRefine((hook, ctx) => {
    const resolved = resolveHook(hook);
    if (typeof resolved === 'string') ctx.addIssue({ code: 'custom', message: resolved });
  })
  .meta({ type: 'AfterCommitHook' });

const nonNegativeInt = () =>
  z
    .number({ error: 'must be an integer ≥ 0' })
    .int('must be an integer ≥ 0')
    .min(0, 'must be an integer ≥ 0');

export type WriteMode = 'upsert' | 'insert-ignore' | 'history';
const writeModes = ['upsert', 'insert-ignore', 'history'] as const satisfies readonly WriteMode[];

/**
 * What a column the target does not have means: `fail` (default) stops naming it; `evolve` adds
 * it (nullable, typed from `types` or `columns`, else text) in the file's own transaction;
 * `freeze-extra` ignores it with a warning. Type changes are never made: they always fail.
 */
export type SchemaDrift = 'fail' | 'evolve' | 'freeze-extra';

export const columnSpecSchema = z.strictObject({
  name: nonEmpty().describe('column name'),
  type: typeName().describe(
    'a PostgreSQL type name: `text`, `integer`, `numeric(12,2)`, `timestamptz`, `date`, `boolean`…',
  ),
});
export type ColumnSpec = z.input<typeof columnSpecSchema>;

export const deleteSpecSchema = z.strictObject({
  column: nonEmpty().describe('source column that carries the operation, e.g. Qlik `header__change_oper`'),
  values: z
    .array(z.string(), { error: 'must list at least one value' })
    .min(1, 'must list at least one value')
    .describe('values of that column that mean "delete", e.g. `["D"]`'),
  mode: oneOf(['hard', 'soft'] as const).describe(
    '`hard`: DELETE the row; `soft`: keep it and set `softColumn`',
  ),
  softColumn: nonEmpty()
    .default('deleted_at')
    .describe('timestamp column set on soft delete (a later insert clears it)'),
});
export type DeleteSpec = z.input<typeof deleteSpecSchema>;

/**
 * Qlik Replicate change tables (`header__change_seq`, `header__change_oper`, `header__timestamp`,
 * then the table's columns). LOAD files, which have no `header__` columns, apply as plain upserts.
 */
export const qlikTargetSchema = z.strictObject({
  keepHeaders: z
    .boolean()
    .default(false)
    .describe('store the `header__` columns in the target (it must have them); false: dropped'),
  deletes: oneOf(['hard', 'soft'] as const)
    .default('hard')
    .describe('`D` rows: `hard` deletes the row, `soft` keeps it with `softColumn` set'),
  softColumn: nonEmpty().optional().describe('timestamp column set on soft delete (default `deleted_at`)'),
  versionColumn: z
    .union([nonEmpty(), z.literal(false)], { error: 'must be a non-empty string or false' })
    .optional()
    .describe(
      "target column that stores each row's `header__timestamp`: a change older than the stored one never overwrites (or deletes) the row. Default `header__timestamp` with `keepHeaders`, else `qlik_timestamp` (created as `timestamp` by `createTable`); `false`: no guard",
    ),
});
export type QlikTarget = z.input<typeof qlikTargetSchema>;

/** The Qlik change-table header columns this sink interprets. */
export const QLIK_HEADER_PREFIX = 'header__';
export const QLIK_OPER = 'header__change_oper';
export const QLIK_SEQ = 'header__change_seq';
export const QLIK_TIMESTAMP = 'header__timestamp';
export const QLIK_DEFAULT_VERSION_COLUMN = 'qlik_timestamp';

/** Where one stream's rows go. */
export const targetTableSchema = z
  .strictObject({
    schema: nonEmpty().describe("the target table's schema (any name: quoted)"),
    table: nonEmpty().describe('the target table (any name: quoted)'),
    key: z
      .array(nonEmpty(), { error: 'must list at least one column' })
      .min(1, 'must list at least one column')
      .describe(
        'conflict key; must be backed by a `PRIMARY KEY` or `UNIQUE` constraint (audited at start: `MISSING_CONSTRAINT` names table and columns, manual §5.7)',
      ),
    columns: z
      .array(columnSpecSchema, { error: 'must be an array' })
      .optional()
      .describe(
        "SQL types of the columns, needed by `createTable`; default the table's own (casts always use the catalog's column types)",
      ),
    createTable: z
      .boolean()
      .default(false)
      .describe(
        'create the table from `columns` if missing (`key` = PRIMARY KEY; plus `deleted_at` for soft deletes, `valid_from` and `<table>_history` in history mode)',
      ),
    mode: oneOf(writeModes)
      .default('upsert')
      .describe(
        '`upsert`; `insert-ignore` (`ON CONFLICT DO NOTHING`, append-only tables); `history` (the replaced or deleted version goes to `<table>_history` with `valid_from` / `valid_to`, same transaction)',
      ),
    versionColumn: nonEmpty()
      .optional()
      .describe(
        'a row never regresses to an older value of this column, e.g. `updated_at` (late files are safe to apply)',
      ),
    deletes: deleteSpecSchema
      .optional()
      .describe(
        "rows whose `column` is in `values` (e.g. Qlik `header__change_oper = 'D'`) are deleted, or kept with `softColumn` set",
      ),
    timeZone: nonEmpty()
      .superRefine((zone, ctx) => {
        if (!isTimeZone(zone)) ctx.addIssue({ code: 'custom', message: `is not an IANA time zone: ${zone}` });
      })
      .optional()
      .describe(
        "IANA zone in which offset-less timestamps are read (the session's `TimeZone`); default the session's",
      ),
    qlik: z
      .union([z.boolean(), qlikTargetSchema], { error: 'must be true or an object' })
      .optional()
      .describe(
        'Qlik Replicate change tables (below): rows in `header__change_seq` order, `I`/`U` upsert, `D` delete, `B` (before-image) counted as filtered `qlik_before_image`, `header__timestamp` as the version guard; `true` = all defaults. Not combined with `deletes` / `versionColumn`',
      ),
    schemaDrift: oneOf(['fail', 'evolve', 'freeze-extra'] as const)
      .default('fail')
      .describe(
        "a batch column the table lacks: `fail` (`SCHEMA_DRIFT` naming file and columns); `evolve` (added in the file's transaction, below); `freeze-extra` (left out, warned); type changes always fail",
      ),
    types: z
      .record(z.string(), typeName(), { error: 'must be an object' })
      .optional()
      .describe(
        "`{ column: type }`: types of columns `evolve` adds (else the `columns` type, else `text`); under `evolve` / `freeze-extra` a declared type that differs from the table's fails (`SCHEMA_DRIFT`, both types named)",
      ),
    afterCommit: afterCommitHook
      .optional()
      .describe(
        '`{ sql, minIntervalSeconds = 0, name = sql }` or `{ run, name, … }`: run after each unit of this stream commits, outside its transaction (below)',
      ),
  })
  .superRefine((target, ctx) => {
    const problem = (path: string, message: string) =>
      ctx.addIssue({ code: 'custom', path: [path], message });
    const mode = target.mode ?? 'upsert';
    if (target.columns) {
      const names = new Set(target.columns.map((c) => c.name));
      for (const k of target.key)
        if (!names.has(k)) problem('key', `column ${JSON.stringify(k)} is not in columns`);
    }
    if (target.createTable && !target.columns?.length) problem('createTable', 'needs columns');
    if (target.deletes !== undefined && mode === 'insert-ignore')
      problem('deletes', "cannot be used with mode 'insert-ignore'");
    if (target.qlik) {
      if (target.deletes !== undefined)
        problem('deletes', 'cannot be combined with qlik (qlik.deletes says how D rows apply)');
      if (target.versionColumn !== undefined)
        problem('versionColumn', 'cannot be combined with qlik (qlik.versionColumn)');
      if (mode === 'insert-ignore') problem('qlik', "cannot be used with mode 'insert-ignore'");
    }
  });
export type TargetTable = z.input<typeof targetTableSchema>;

/** The Qlik settings of a target with every default filled in, or undefined. */
export interface ResolvedQlik {
  keepHeaders: boolean;
  versionColumn: string | undefined;
}

export function qlikOf(target: TargetTable): ResolvedQlik | undefined {
  if (!target.qlik) return undefined;
  const q = target.qlik === true ? {} : target.qlik;
  const keepHeaders = q.keepHeaders ?? false;
  const versionColumn =
    q.versionColumn === false
      ? undefined
      : (q.versionColumn ?? (keepHeaders ? QLIK_TIMESTAMP : QLIK_DEFAULT_VERSION_COLUMN));
  return { keepHeaders, versionColumn };
}

/**
 * A Qlik target as the generic machinery sees it: `D` in `header__change_oper` is a delete
 * (hard unless asked), the version column guards against older changes.
 */
function expandQlik(target: TargetTable): TargetTable {
  const qlik = qlikOf(target);
  if (!qlik) return target;
  const q = target.qlik === true ? {} : (target.qlik as QlikTarget);
  return {
    ...target,
    deletes: {
      column: QLIK_OPER,
      values: ['D'],
      mode: q.deletes ?? 'hard',
      ...(q.softColumn ? { softColumn: q.softColumn } : {}),
    },
    ...(qlik.versionColumn ? { versionColumn: qlik.versionColumn } : {}),
  };
}

/**
 * Target per stream id. `null` makes a checkpoint-only stream: its batches must be empty and only
 * move the checkpoint and the load log (e.g. when the rows went to Kafka).
 */
export type TargetResolver = Record<string, TargetTable | null> | ((stream: string) => TargetTable | null);

/**
 * Targets keyed by stream id are checked at construction with `targetTableSchema` (issues keep
 * their path, `targets.<stream>.key`); a function's targets are checked per stream on first use.
 * A custom check, not a union: a union would report a nested problem as the union's own.
 */
const targetsSchema = instance<TargetResolver>(
  'an object keyed by stream id or a function',
  (v) => typeof v === 'function' || (typeof v === 'object' && v !== null),
)
  .superRefine((targets, ctx) => {
    if (typeof targets === 'function') return;
    for (const [stream, target] of Object.entries(targets)) {
      if (target === null) continue;
      const parsed = targetTableSchema.safeParse(target, { jitless: true });
      for (const issue of parsed.error?.issues ?? [])
        ctx.addIssue({ code: 'custom', path: [stream, ...issue.path], message: issue.message });
    }
  })
  .meta({ type: 'map \\| function' });

export const lockOptionsSchema = z
  .strictObject({
    enabled: z
      .boolean()
      .default(true)
      .describe(
        'one writer per stream through a session advisory lock; turn off only when something else guarantees a single writer (Kafka group membership per partition)',
      ),
    wait: z
      .union(
        [
          z.literal(false),
          z.strictObject({ timeoutMs: z.number().int().min(1).describe('longest wait for the lock, in ms') }),
        ],
        {
          error: 'must be false or { timeoutMs: positive integer }',
        },
      )
      .default(false)
      .describe(
        '`false`: a second runner fails fast with `STREAM_LOCKED`; `{ timeoutMs }`: wait server-side up to that long',
      ),
  })
  .prefault({})
  .describe('one writer per stream (invariant 8): a session advisory lock per stream');
export type LockOptions = z.input<typeof lockOptionsSchema>;

/** Test hooks. Unset in production: they cost one property check per unit. */
export interface FaultHooks {
  /** Runs inside the transaction after the rows, checkpoint and load row, before COMMIT. */
  beforeCommit?: (info: { stream: string; source: string }) => void | Promise<void>;
}

export const pgSinkOptionsSchema = z
  .strictObject({
    pool: instance<pg.Pool>(
      'pg.Pool',
      (v) => typeof v === 'object' && v !== null && typeof (v as pg.Pool).connect === 'function',
    )
      .optional()
      .describe(
        'your `pg.Pool` (recommended for services); each stream holds one client of it for the run (lock + transactions); not ended by `close()`',
      ),
    connectionString: z
      .string()
      .optional()
      .describe('used when no `pool` is given; default `DATABASE_URL`; `sslmode` in the URL is honoured'),
    ssl: instance<pg.PoolConfig['ssl']>('TLS options', () => true)
      .optional()
      .describe('TLS for the pool we build, e.g. `{ ca, rejectUnauthorized: true }`'),
    statementTimeoutMs: nonNegativeInt()
      .optional()
      .describe('`statement_timeout` of the pool we build, in ms; default none'),
    applicationName: z
      .string()
      .default('tributary')
      .describe('`application_name` of the pool we build (shown in lock errors and `pg_stat_activity`)'),
    poolSize: z.number().int().min(1).default(10).describe('size of the pool we build'),
    schema: nonEmpty().default('tributary').describe('control schema'),
    migrate: z
      .boolean()
      .default(true)
      .describe(
        'run migrations on first use; with `false`, `checkpoint()` has no side effect beyond the lock',
      ),
    targets: targetsSchema.describe(
      'target table per stream id (see the target table below), or `(stream) => target`; `null`: checkpoint-only stream',
    ),
    lock: lockOptionsSchema,
    retries: nonNegativeInt()
      .default(3)
      .describe(
        'transient failures (connection reset, admin shutdown, serialization failure, deadlock) re-run the whole unit this many times',
      ),
    replayBufferRows: nonNegativeInt()
      .default(500_000)
      .describe(
        'rows of an open unit kept in memory so a transient failure can replay it; a larger unit is not replayed in process: its transient failure is raised (retriable) and the next run resumes from the checkpoint',
      ),
    replayBufferBytes: nonNegativeInt()
      .default(4 * 1024 * 1024)
      .describe(
        'the same bound in input bytes (the size of the source text), which keeps memory flat for wide rows (parsed rows take ~12× their text in V8); a bigger unit is re-read from the checkpoint (invariant 7)',
      ),
    faults: instance<FaultHooks>('FaultHooks', (v) => typeof v === 'object' && v !== null)
      .optional()
      .describe(
        'test hooks: `beforeCommit` runs inside the transaction just before `COMMIT`; unset in production',
      ),
    onCommitted: afterCommitHook
      .optional()
      .describe(
        'run after every unit of every stream commits, outside its transaction: serialised by `name` under an advisory lock, debounced, recorded in `<schema>.after_commit`; a failure is warned about and retried on the next commit, never rolls back data',
      ),
  })
  .superRefine((options, ctx) => {
    if (!options.pool && !options.connectionString && !process.env.DATABASE_URL)
      ctx.addIssue({
        code: 'custom',
        path: ['pool'],
        message: 'or connectionString (or DATABASE_URL) is required',
      });
  });

export type PgSinkOptions = z.input<typeof pgSinkOptionsSchema>;

const parseOptions = optionsResolver('pgSink', pgSinkOptionsSchema);

export interface ResolvedOptions {
  schema: string;
  migrate: boolean;
  targets: TargetResolver;
  lockEnabled: boolean;
  lockWaitMs: number | undefined;
  retries: number;
  replayBufferRows: number;
  replayBufferBytes: number;
  faults: FaultHooks | undefined;
  onCommitted: AfterCommitHook | undefined;
}

/** Checks one target definition; `path` names it in messages (`targets("tickets/inc")`). */
export function validateTarget(path: string, target: TargetTable): TargetTable {
  // The path as the one key of a wrapper: the resolver then names it in front of the option.
  const parsed = optionsResolver('pgSink', z.object({ [path]: targetTableSchema }))({ [path]: target });
  return expandQlik(parsed[path] as TargetTable);
}

export function resolveOptions(options: PgSinkOptions): ResolvedOptions {
  if (typeof options !== 'object' || options === null)
    throw new TributaryError('INVALID_OPTIONS', 'pgSink(): options must be an object');
  const resolved = parseOptions(options);
  return {
    schema: resolved.schema,
    migrate: resolved.migrate,
    targets: resolved.targets,
    lockEnabled: resolved.lock.enabled,
    lockWaitMs: resolved.lock.wait === false ? undefined : resolved.lock.wait.timeoutMs,
    retries: resolved.retries,
    replayBufferRows: resolved.replayBufferRows,
    replayBufferBytes: resolved.replayBufferBytes,
    faults: resolved.faults,
    onCommitted: resolved.onCommitted,
  };
}

export function targetFor(targets: TargetResolver, stream: string): TargetTable | null {
  if (typeof targets === 'function') {
    const target = targets(stream);
    return target === null ? null : validateTarget(`targets(${JSON.stringify(stream)})`, target);
  }
  const target = Object.hasOwn(targets, stream) ? targets[stream] : undefined;
  if (target === null) return null;
  if (!target) {
    throw new TributaryError(
      'INVALID_OPTIONS',
      `pgSink(): no target table configured for stream "${stream}"`,
      {
        stream,
      },
    );
  }
  return expandQlik(target);
}
