import {
  type CheckpointStore,
  type ExportKind,
  type LoadLog,
  type LoadRecord,
  type LoadStatus,
  type Position,
  TributaryError,
} from '@tributary/core';
import type pg from 'pg';
import { migrate } from './migrations.js';
import { quoteIdent } from './sql.js';

export interface Watermark {
  key: string;
  time?: Date | string | null;
}

export interface SaveCheckpointOptions {
  source?: string | null;
  /** Only moves forward: an older watermark time never replaces a newer one. */
  watermark?: Watermark | null;
}

/**
 * The checkpoint upsert shared by the sink and `pgCheckpointStore.save` ($1 stream … $5 time;
 * `$(first)` … `$(first + 4)` with `first`). With `expected` (a parameter such as `$20`), an
 * existing row moves only while its position still equals that one (NULL: no position stored
 * yet); otherwise nothing is returned.
 */
export function checkpointUpsertSql(s: string, expected?: string, first = 1): string {
  const $ = (i: number) => `$${first + i - 1}`;
  const forward = `EXCLUDED.watermark_key IS NOT NULL AND (c.watermark_time IS NULL OR EXCLUDED.watermark_time IS NULL
                    OR EXCLUDED.watermark_time >= c.watermark_time)`;
  return `INSERT INTO ${s}.checkpoints AS c (stream, position, source, watermark_key, watermark_time, updated_at)
VALUES (${$(1)}, ${$(2)}::jsonb, ${$(3)}, ${$(4)}, ${$(5)}::timestamptz, clock_timestamp())
ON CONFLICT (stream) DO UPDATE SET
  position = EXCLUDED.position,
  source = coalesce(EXCLUDED.source, c.source),
  updated_at = EXCLUDED.updated_at,
  watermark_key = CASE WHEN ${forward} THEN EXCLUDED.watermark_key ELSE c.watermark_key END,
  watermark_time = CASE WHEN ${forward} THEN coalesce(EXCLUDED.watermark_time, c.watermark_time) ELSE c.watermark_time END${
    expected ? `\nWHERE c.position IS NOT DISTINCT FROM ${expected}::jsonb` : ''
  }`;
}

export function checkpointParams(
  stream: string,
  position: Position,
  options: SaveCheckpointOptions = {},
): unknown[] {
  const time = options.watermark?.time;
  return [
    stream,
    JSON.stringify(position),
    options.source ?? null,
    options.watermark?.key ?? null,
    time instanceof Date ? time.toISOString() : (time ?? null),
  ];
}

async function controlTableExists(
  db: pg.Pool | pg.ClientBase,
  schema: string,
  table: string,
): Promise<boolean> {
  const result = await db.query<{ found: boolean }>('SELECT to_regclass($1) IS NOT NULL AS found', [
    `${quoteIdent(schema)}.${quoteIdent(table)}`,
  ]);
  return result.rows[0]?.found ?? false;
}

export async function readPosition(
  db: pg.Pool | pg.ClientBase,
  schema: string,
  stream: string,
): Promise<Position | null> {
  const result = await db.query<{ position: Position }>(
    `SELECT position FROM ${quoteIdent(schema)}.checkpoints WHERE stream = $1`,
    [stream],
  );
  return result.rows[0]?.position ?? null;
}

export interface PgCheckpointStoreOptions {
  pool: pg.Pool;
  /** Control schema, default `tributary`. */
  schema?: string;
  /** Run migrations on first use, default true. When false, a missing schema reads as no checkpoint. */
  migrate?: boolean;
}

export interface PgCheckpointStore extends CheckpointStore {
  /**
   * Stores a position. With `client`, inside the caller's transaction (rows + offsets in one
   * COMMIT); without, on its own.
   */
  save(
    stream: string,
    position: Position,
    client?: pg.ClientBase,
    options?: SaveCheckpointOptions,
  ): Promise<void>;
}

/** Positions in `<schema>.checkpoints`, for pipelines whose terminal sink is not PostgreSQL. */
export function pgCheckpointStore(options: PgCheckpointStoreOptions): PgCheckpointStore {
  const schema = options.schema ?? 'tributary';
  const s = quoteIdent(schema);
  let migrated: Promise<void> | undefined;
  const ready = async () => {
    if (options.migrate === false) return;
    migrated ??= migrate(options.pool, { schema }).catch((error) => {
      migrated = undefined;
      throw error;
    });
    await migrated;
  };
  return {
    async checkpoint(stream) {
      await ready();
      if (options.migrate === false && !(await controlTableExists(options.pool, schema, 'checkpoints')))
        return null;
      return readPosition(options.pool, schema, stream);
    },
    async save(stream, position, client, saveOptions) {
      await ready();
      await (client ?? options.pool).query(
        checkpointUpsertSql(s),
        checkpointParams(stream, position, saveOptions),
      );
    },
  };
}

interface LoadRow {
  stream: string;
  source: string;
  etag: string | null;
  size: string | null;
  kind: ExportKind | null;
  status: LoadStatus;
  finished_at: Date | null;
  error: string | null;
}

function toLoadRecord(row: LoadRow): LoadRecord {
  return {
    stream: row.stream,
    source: row.source,
    etag: row.etag,
    size: row.size === null ? null : Number(row.size),
    kind: row.kind,
    status: row.status,
    finishedAt: row.finished_at,
    error: row.error,
  };
}

async function listLoads(
  db: pg.Pool | pg.ClientBase,
  schema: string,
  stream: string,
  sources?: readonly string[],
): Promise<LoadRecord[]> {
  // With `sources`, each ref is one probe of loads_stream_source_idx, however long the history.
  const result = await db.query<LoadRow>(
    `SELECT DISTINCT ON (source) stream, source, etag, size, kind, status, finished_at, error
       FROM ${quoteIdent(schema)}.loads WHERE stream = $1${sources ? ' AND source = ANY($2::text[])' : ''}
      ORDER BY source, load_id DESC`,
    sources ? [stream, [...sources]] : [stream],
  );
  return result.rows.map(toLoadRecord);
}

/** The load log (`<schema>.loads`) as the sources see it. A missing schema reads as empty. */
export function pgLoadLog(pool: pg.Pool, schema = 'tributary', beforeUse?: () => Promise<void>): LoadLog {
  // Archives run several at once behind the apply: marks that arrive while one UPDATE is in
  // flight go out together in the next one (one commit for many files). Each caller still
  // returns only once its own row is durably marked, before its original is deleted.
  let queued: { stream: string; source: string; done: () => void; failed: (e: unknown) => void }[] = [];
  let flushing = false;
  const flush = async (): Promise<void> => {
    while (queued.length) {
      const batch = queued;
      queued = [];
      try {
        await pool.query(
          `UPDATE ${quoteIdent(schema)}.loads SET status = 'archived', archived_at = clock_timestamp()
            WHERE load_id IN (
              SELECT max(l.load_id) FROM ${quoteIdent(schema)}.loads l
                JOIN unnest($1::text[], $2::text[]) AS u(stream, source)
                  ON l.stream = u.stream AND l.source = u.source
               WHERE l.status = 'loaded' GROUP BY l.stream, l.source)`,
          [batch.map((m) => m.stream), batch.map((m) => m.source)],
        );
        for (const mark of batch) mark.done();
      } catch (error) {
        for (const mark of batch) mark.failed(error);
      }
    }
    flushing = false;
  };
  return {
    async list(stream, sources) {
      await beforeUse?.();
      if (!(await controlTableExists(pool, schema, 'loads'))) return [];
      return listLoads(pool, schema, stream, sources);
    },
    async markArchived(stream, source) {
      await beforeUse?.();
      const marked = new Promise<void>((done, failed) => queued.push({ stream, source, done, failed }));
      // Started on the next turn of the event loop: marks made together (a batch of archives)
      // share the first UPDATE.
      if (!flushing) {
        flushing = true;
        setImmediate(() => void flush());
      }
      await marked;
    },
  };
}

/** One stream's stored state, read without side effects. */
export interface StreamState {
  /** The stored position (what the sink's `checkpoint(stream)` returns), null when none. */
  checkpoint: Position | null;
  /** Source ref of the unit that set the position. */
  source: string | null;
  watermarkKey: string | null;
  watermarkTime: Date | null;
  updatedAt: Date | null;
  /** Latest load record per source ref, as read now. */
  records: LoadRecord[];
  /** A read-only load log over the same table, for planning (`markArchived` rejects). */
  loads: LoadLog;
}

/**
 * Read-only view of one stream's checkpoint and load history, for dry runs and status
 * commands: never migrates, never locks, never writes; `null` when the control schema does not
 * exist (nothing was ever applied).
 */
export async function readState(
  db: pg.Pool | pg.ClientBase,
  schema: string,
  stream: string,
): Promise<StreamState | null> {
  if (!(await controlTableExists(db, schema, 'checkpoints'))) return null;
  const result = await db.query<{
    position: Position;
    source: string | null;
    watermark_key: string | null;
    watermark_time: Date | null;
    updated_at: Date;
  }>(
    `SELECT position, source, watermark_key, watermark_time, updated_at
       FROM ${quoteIdent(schema)}.checkpoints WHERE stream = $1`,
    [stream],
  );
  const row = result.rows[0];
  const hasLoads = await controlTableExists(db, schema, 'loads');
  const loads: LoadLog = {
    list: async (s, sources) => (hasLoads ? listLoads(db, schema, s, sources) : []),
    markArchived: async () => {
      throw new TributaryError('INVALID_OPTIONS', 'readState(): the load log is read-only here (dry run)');
    },
  };
  return {
    checkpoint: row?.position ?? null,
    source: row?.source ?? null,
    watermarkKey: row?.watermark_key ?? null,
    watermarkTime: row?.watermark_time ?? null,
    updatedAt: row?.updated_at ?? null,
    records: hasLoads ? await listLoads(db, schema, stream) : [],
    loads,
  };
}
