import { isTimeZone, TributaryError } from '@tributary/core';
import type pg from 'pg';
import { type AfterCommitHook, resolveHook } from './after-commit.js';

export type WriteMode = 'upsert' | 'insert-ignore' | 'history';

/**
 * What a column the target does not have means: `fail` (default) stops naming it; `evolve` adds
 * it (nullable, typed from `types` or `columns`, else text) in the file's own transaction;
 * `freeze-extra` ignores it with a warning. Type changes are never made: they always fail.
 */
export type SchemaDrift = 'fail' | 'evolve' | 'freeze-extra';

export interface ColumnSpec {
  name: string;
  /** A PostgreSQL type name: `text`, `integer`, `numeric(12,2)`, `timestamptz`, `date`, `boolean`… */
  type: string;
}

export interface DeleteSpec {
  /** Source column that carries the operation, e.g. Qlik `header__change_oper`. */
  column: string;
  /** Values of that column that mean "delete", e.g. `['D']`. */
  values: string[];
  /** `hard`: DELETE the row; `soft`: keep it and set `softColumn`. */
  mode: 'hard' | 'soft';
  /** Timestamp column set on soft delete (default `deleted_at`). */
  softColumn?: string;
}

/**
 * Qlik Replicate change tables (`header__change_seq`, `header__change_oper`, `header__timestamp`,
 * then the table's columns). LOAD files, which have no `header__` columns, apply as plain upserts.
 */
export interface QlikTarget {
  /** Store the `header__` columns in the target (it must have them). Default false: dropped. */
  keepHeaders?: boolean;
  /** `D` rows: `hard` (default) deletes the row, `soft` keeps it with `softColumn` set. */
  deletes?: 'hard' | 'soft';
  /** Timestamp column set on soft delete (default `deleted_at`). */
  softColumn?: string;
  /**
   * Target column that stores each row's `header__timestamp`: a change older than the stored one
   * never overwrites (or deletes) the row. Default `header__timestamp` with `keepHeaders`, else
   * `qlik_timestamp` (created as `timestamp` by `createTable`). `false`: no guard.
   */
  versionColumn?: string | false;
}

/** The Qlik change-table header columns this sink interprets. */
export const QLIK_HEADER_PREFIX = 'header__';
export const QLIK_OPER = 'header__change_oper';
export const QLIK_SEQ = 'header__change_seq';
export const QLIK_TIMESTAMP = 'header__timestamp';
export const QLIK_DEFAULT_VERSION_COLUMN = 'qlik_timestamp';

/** Where one stream's rows go. */
export interface TargetTable {
  schema: string;
  table: string;
  /** Conflict key; must be backed by a PRIMARY KEY or UNIQUE constraint (manual §5.7). */
  key: string[];
  /** Column types, used by `createTable`. Without it the table's own column types are used. */
  columns?: ColumnSpec[];
  /** Create the table from `columns` when missing, `key` as PRIMARY KEY. Default false. */
  createTable?: boolean;
  /** Default `upsert`. */
  mode?: WriteMode;
  /** Rows never regress to an older value of this column (e.g. `updated_at`). */
  versionColumn?: string;
  deletes?: DeleteSpec;
  /** IANA zone in which offset-less timestamps are read (`SET LOCAL TimeZone`). */
  timeZone?: string;
  /**
   * Apply Qlik Replicate change semantics (see `QlikTarget`): rows in `header__change_seq` order,
   * `I`/`U` upsert, `D` delete, `B` (before-image) counted as filtered `qlik_before_image`,
   * `header__timestamp` as the version guard. `true` = all defaults.
   */
  qlik?: QlikTarget | boolean;
  /** New columns in a file: `fail` (default), `evolve` or `freeze-extra` (see `SchemaDrift`). */
  schemaDrift?: SchemaDrift;
  /** Types of columns `evolve` adds (others: their `columns` type, else text). */
  types?: Record<string, string>;
  /** Run after each unit of this stream commits, outside its transaction (see `AfterCommitHook`). */
  afterCommit?: AfterCommitHook;
}

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

export interface LockOptions {
  /**
   * Default true: one writer per stream through a session advisory lock. Turn off only when
   * something else guarantees a single writer (Kafka group membership per partition).
   */
  enabled?: boolean;
  /** `false` (default): fail fast with STREAM_LOCKED; or wait up to `timeoutMs`. */
  wait?: false | { timeoutMs: number };
}

/** Test hooks. Unset in production: they cost one property check per unit. */
export interface FaultHooks {
  /** Runs inside the transaction after the rows, checkpoint and load row, before COMMIT. */
  beforeCommit?: (info: { stream: string; source: string }) => void | Promise<void>;
}

export interface PgSinkOptions {
  /** The caller's pool (recommended for services). Not ended by `close()`. */
  pool?: pg.Pool;
  /** Used when no `pool` is given; default `DATABASE_URL`. `sslmode` in the URL is honoured. */
  connectionString?: string;
  /** TLS for the pool we build, e.g. `{ ca, rejectUnauthorized: true }`. */
  ssl?: pg.PoolConfig['ssl'];
  /** `statement_timeout` of the pool we build, in ms. Default none. */
  statementTimeoutMs?: number;
  /** `application_name` of the pool we build. Default `tributary`. */
  applicationName?: string;
  /** Size of the pool we build. Default 10. */
  poolSize?: number;
  /** Control schema. Default `tributary`. */
  schema?: string;
  /** Run migrations on first use. Default true. */
  migrate?: boolean;
  /** Target table per stream id. */
  targets: TargetResolver;
  lock?: LockOptions;
  /** Transient failures re-run the whole unit up to this many times. Default 3. */
  retries?: number;
  /**
   * Rows of an open unit kept in memory so a transient failure can replay it. A larger unit is
   * not replayed in process: its transient failure is raised (retriable) and the next run
   * resumes from the checkpoint. Default 500,000.
   */
  replayBufferRows?: number;
  /**
   * The same bound in input bytes (`batch.meta.bytes`, the size of the source text), which is
   * what keeps memory flat for wide rows: parsed rows take ~12× their text in V8. Default
   * 4 MiB. A bigger unit's transient failure is raised as retriable and `pipeline()` re-runs
   * it from the checkpoint, re-reading the file (invariant 7: memory does not grow with file
   * size).
   */
  replayBufferBytes?: number;
  faults?: FaultHooks;
  /**
   * Code run after every unit of every stream commits, outside its transaction: serialised by
   * `name` under an advisory lock, debounced, recorded in `<schema>.after_commit`; a failure is
   * recorded and warned about, never rolls back data, and is retried on the next commit.
   */
  onCommitted?: AfterCommitHook;
}

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

const TYPE_NAME =
  /^[a-z_][a-z0-9_]*(?: [a-z_][a-z0-9_]*)*(?:\s*\(\s*\d+\s*(?:,\s*\d+\s*)?\))?(?: with(?:out)? time zone)?(?:\[\])*$/i;

function invalid(path: string, message: string): TributaryError {
  return new TributaryError('INVALID_OPTIONS', `pgSink(): ${path} ${message}`);
}

function nonEmpty(path: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) throw invalid(path, 'must be a non-empty string');
  return value;
}

/** Checks one target definition; `path` names it in messages (`targets["tickets/inc"]`). */
export function validateTarget(path: string, target: TargetTable): TargetTable {
  if (typeof target !== 'object' || target === null) throw invalid(path, 'must be an object');
  nonEmpty(`${path}.schema`, target.schema);
  nonEmpty(`${path}.table`, target.table);
  if (!Array.isArray(target.key) || target.key.length === 0) {
    throw invalid(`${path}.key`, 'must list at least one column');
  }
  for (const [i, k] of target.key.entries()) nonEmpty(`${path}.key[${i}]`, k);
  const mode = target.mode ?? 'upsert';
  if (!['upsert', 'insert-ignore', 'history'].includes(mode)) {
    throw invalid(
      `${path}.mode`,
      `must be 'upsert', 'insert-ignore' or 'history', got ${JSON.stringify(mode)}`,
    );
  }
  if (target.columns !== undefined) {
    if (!Array.isArray(target.columns)) throw invalid(`${path}.columns`, 'must be an array');
    target.columns.forEach((c, i) => {
      nonEmpty(`${path}.columns[${i}].name`, c?.name);
      const type = nonEmpty(`${path}.columns[${i}].type`, c?.type);
      // Types end up in DDL text, so only plain type names are accepted.
      if (!TYPE_NAME.test(type.trim()))
        throw invalid(`${path}.columns[${i}].type`, `is not a type name: ${type}`);
    });
    const names = new Set(target.columns.map((c) => c.name));
    for (const k of target.key) {
      if (!names.has(k)) throw invalid(`${path}.key`, `column ${JSON.stringify(k)} is not in columns`);
    }
  }
  if (target.createTable && !target.columns?.length) {
    throw invalid(`${path}.createTable`, 'needs columns');
  }
  if (target.versionColumn !== undefined) nonEmpty(`${path}.versionColumn`, target.versionColumn);
  if (target.deletes !== undefined) {
    const d = target.deletes;
    nonEmpty(`${path}.deletes.column`, d.column);
    if (!Array.isArray(d.values) || d.values.length === 0) {
      throw invalid(`${path}.deletes.values`, 'must list at least one value');
    }
    if (d.mode !== 'hard' && d.mode !== 'soft')
      throw invalid(`${path}.deletes.mode`, "must be 'hard' or 'soft'");
    if (d.softColumn !== undefined) nonEmpty(`${path}.deletes.softColumn`, d.softColumn);
    if (mode === 'insert-ignore')
      throw invalid(`${path}.deletes`, "cannot be used with mode 'insert-ignore'");
  }
  if (target.qlik !== undefined && target.qlik !== false && target.qlik !== true) {
    const q = target.qlik;
    if (typeof q !== 'object' || q === null) throw invalid(`${path}.qlik`, 'must be true or an object');
    if (q.deletes !== undefined && q.deletes !== 'hard' && q.deletes !== 'soft')
      throw invalid(`${path}.qlik.deletes`, "must be 'hard' or 'soft'");
    if (q.softColumn !== undefined) nonEmpty(`${path}.qlik.softColumn`, q.softColumn);
    if (q.versionColumn !== undefined && q.versionColumn !== false)
      nonEmpty(`${path}.qlik.versionColumn`, q.versionColumn);
  }
  if (target.qlik) {
    if (target.deletes !== undefined)
      throw invalid(`${path}.deletes`, 'cannot be combined with qlik (qlik.deletes says how D rows apply)');
    if (target.versionColumn !== undefined)
      throw invalid(`${path}.versionColumn`, 'cannot be combined with qlik (qlik.versionColumn)');
    if (mode === 'insert-ignore') throw invalid(`${path}.qlik`, "cannot be used with mode 'insert-ignore'");
  }
  validateDrift(path, target);
  if (target.afterCommit !== undefined) {
    const hook = resolveHook(target.afterCommit);
    if (typeof hook === 'string') throw invalid(`${path}.afterCommit`, hook);
  }
  if (target.timeZone !== undefined) {
    const zone = nonEmpty(`${path}.timeZone`, target.timeZone);
    if (!isTimeZone(zone)) throw invalid(`${path}.timeZone`, `is not an IANA time zone: ${zone}`);
  }
  return expandQlik(target);
}

function validateDrift(path: string, target: TargetTable): void {
  const drift = target.schemaDrift ?? 'fail';
  if (!['fail', 'evolve', 'freeze-extra'].includes(drift)) {
    throw invalid(
      `${path}.schemaDrift`,
      `must be 'fail', 'evolve' or 'freeze-extra', got ${JSON.stringify(drift)}`,
    );
  }
  if (target.types === undefined) return;
  if (typeof target.types !== 'object' || target.types === null)
    throw invalid(`${path}.types`, 'must be an object');
  for (const [column, type] of Object.entries(target.types)) {
    // Types end up in DDL text (ALTER TABLE … ADD COLUMN), so only plain type names are accepted.
    if (typeof type !== 'string' || !TYPE_NAME.test(type.trim()))
      throw invalid(`${path}.types[${JSON.stringify(column)}]`, `is not a type name: ${String(type)}`);
  }
}

export function resolveOptions(options: PgSinkOptions): ResolvedOptions {
  if (typeof options !== 'object' || options === null) throw invalid('options', 'must be an object');
  const schema = options.schema ?? 'tributary';
  nonEmpty('schema', schema);
  const { targets } = options;
  if (typeof targets === 'function') {
    // validated per stream on first use
  } else if (typeof targets === 'object' && targets !== null) {
    for (const [stream, target] of Object.entries(targets)) {
      if (target !== null) validateTarget(`targets[${JSON.stringify(stream)}]`, target);
    }
  } else {
    throw invalid('targets', 'must be an object keyed by stream id or a function');
  }
  const retries = options.retries ?? 3;
  if (!Number.isInteger(retries) || retries < 0)
    throw invalid('retries', `must be an integer ≥ 0, got ${retries}`);
  const replayBufferRows = options.replayBufferRows ?? 500_000;
  if (!Number.isInteger(replayBufferRows) || replayBufferRows < 0) {
    throw invalid('replayBufferRows', `must be an integer ≥ 0, got ${replayBufferRows}`);
  }
  const replayBufferBytes = options.replayBufferBytes ?? 4 * 1024 * 1024;
  if (!Number.isInteger(replayBufferBytes) || replayBufferBytes < 0) {
    throw invalid('replayBufferBytes', `must be an integer ≥ 0, got ${replayBufferBytes}`);
  }
  if (options.onCommitted !== undefined) {
    const hook = resolveHook(options.onCommitted);
    if (typeof hook === 'string') throw invalid('onCommitted', hook);
  }
  const wait = options.lock?.wait ?? false;
  let lockWaitMs: number | undefined;
  if (wait !== false) {
    if (typeof wait !== 'object' || !Number.isInteger(wait.timeoutMs) || wait.timeoutMs <= 0) {
      throw invalid('lock.wait', 'must be false or { timeoutMs: positive integer }');
    }
    lockWaitMs = wait.timeoutMs;
  }
  if (
    options.statementTimeoutMs !== undefined &&
    !(Number.isInteger(options.statementTimeoutMs) && options.statementTimeoutMs >= 0)
  ) {
    throw invalid('statementTimeoutMs', 'must be an integer ≥ 0');
  }
  if (!options.pool && !options.connectionString && !process.env.DATABASE_URL) {
    throw invalid('pool', 'or connectionString (or DATABASE_URL) is required');
  }
  return {
    schema,
    migrate: options.migrate ?? true,
    targets,
    lockEnabled: options.lock?.enabled ?? true,
    lockWaitMs,
    retries,
    replayBufferRows,
    replayBufferBytes,
    faults: options.faults,
    onCommitted: options.onCommitted,
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
