import {
  type Batch,
  type LoadLog,
  type Position,
  type Row,
  type Sink,
  TributaryError,
  toTributaryError,
  type WriteResult,
} from '@tributary/core';
import pg from 'pg';
import { AfterCommitHooks } from './after-commit.js';
import { insertFailedLoad } from './loads.js';
import { migrate } from './migrations.js';
import { type PgSinkOptions, type ResolvedOptions, resolveOptions, targetFor } from './options.js';
import { finishRunRow, insertRun, type RunInfo, type RunOutcome } from './runs.js';
import { describeTarget, StreamSession } from './session.js';
import { quoteIdent } from './sql.js';
import { pgLoadLog, readPosition } from './state.js';
import type { OpenUnit } from './unit.js';
import { UnitWriter } from './unit-writer.js';
import { StreamWarnings } from './warnings.js';

export type { RunInfo, RunOutcome } from './runs.js';

export interface PgSink extends Sink<Row> {
  readonly name: string;
  readonly loadLog: LoadLog;
  /** The pool in use (the caller's, or the one built from the connection string). */
  readonly pool: pg.Pool;
  /** The control schema. */
  readonly schema: string;
  /** Brings the control schema up to date (also done on first use unless `migrate: false`). */
  migrate(): Promise<void>;
  /** Records a run in `<schema>.runs`; loads written until `finishRun` carry its id. */
  startRun(info?: RunInfo): Promise<string>;
  finishRun(runId: string, outcome: RunOutcome): Promise<void>;
  /** Rolls back what is open and releases the advisory lock(s): one stream or all. */
  release(stream?: string): Promise<void>;
  abort(error: Error, stream?: string): Promise<void>;
  close(): Promise<void>;
}

function buildPool(options: PgSinkOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: options.connectionString ?? process.env.DATABASE_URL,
    ...(options.ssl === undefined ? {} : { ssl: options.ssl }),
    ...(options.statementTimeoutMs === undefined ? {} : { statement_timeout: options.statementTimeoutMs }),
    application_name: options.applicationName ?? 'tributary',
    max: options.poolSize ?? 10,
  });
  // An idle client that dies (server restart) must not crash the process; the next checkout
  // reconnects (STYLE.md: no 'error' without a listener).
  pool.on('error', () => {});
  return pool;
}

/**
 * The sink's public face: one session per stream (`session.ts`), batches applied by the unit
 * writer (`unit-writer.ts`), runs and failed loads recorded (`runs.ts`, `loads.ts`).
 */
class PgSinkImpl implements PgSink {
  readonly name = 'pg-sink';
  /** Raw CSV batches are COPYed as they are; their declarative steps run in the merge. */
  readonly acceptsRaw = true;
  /** Each stream writes on its own connection and transaction (`#session`), serialised per stream. */
  readonly concurrentStreams = true;
  readonly pool: pg.Pool;
  readonly schema: string;
  readonly loadLog: LoadLog;
  readonly #options: ResolvedOptions;
  readonly #ownPool: boolean;
  readonly #s: string;
  readonly #sessions = new Map<string, StreamSession>();
  #migrated: Promise<void> | undefined;
  #runId: string | null = null;
  readonly #hooks: AfterCommitHooks;
  readonly #warnings = new StreamWarnings();
  readonly #writer: UnitWriter;

  constructor(options: PgSinkOptions) {
    this.#options = resolveOptions(options);
    this.schema = this.#options.schema;
    this.#s = quoteIdent(this.schema);
    this.#ownPool = !options.pool;
    this.pool = options.pool ?? buildPool(options);
    this.loadLog = pgLoadLog(
      this.pool,
      this.schema,
      this.#options.migrate ? () => this.migrate() : undefined,
    );
    this.#hooks = new AfterCommitHooks(this.pool, this.schema, this.#options.onCommitted, (stream, message) =>
      this.#warnings.add(stream, message),
    );
    this.#writer = new UnitWriter({
      schema: this.schema,
      options: this.#options,
      warnings: this.#warnings,
      hooks: this.#hooks,
      runId: () => this.#runId,
    });
  }

  migrate(): Promise<void> {
    this.#migrated ??= migrate(this.pool, { schema: this.schema }).catch((error) => {
      this.#migrated = undefined;
      throw error;
    });
    return this.#migrated;
  }

  async checkpoint(stream: string): Promise<Position | null> {
    const session = await this.#session(stream);
    try {
      return await session.serially(async () => {
        // A failed unit may have dropped the connection (and lock): take them again, as a
        // pipeline() retry resumes from here.
        if (!session.client) await session.connect();
        return readPosition(session.client!, this.schema, stream);
      });
    } catch (error) {
      if ((error as { code?: string }).code === '42P01') {
        throw new TributaryError(
          'INVALID_OPTIONS',
          `control schema ${this.#s} is not set up: run migrate() (or leave migrate enabled)`,
          { cause: error, stream },
        );
      }
      throw toTributaryError(error, 'SINK_FAILED');
    }
  }

  async write(batch: Batch<Row>): Promise<WriteResult> {
    const session = await this.#session(batch.stream);
    const written = session.serially(() => this.#writer.write(session, batch));
    session.busy = written.catch(() => undefined);
    return written;
  }

  async abort(error: Error, stream?: string): Promise<void> {
    const recorded = new Set<string>();
    for (const session of this.#sessions.values()) {
      // Scoped to one stream, the other streams' open units keep going (invariant 10).
      if (stream !== undefined && session.stream !== stream) continue;
      await session.busy;
      const unit = session.unit ?? session.failed;
      if (session.unit) await session.serially(() => session.discardTransaction(error));
      session.unit = undefined;
      session.failed = undefined;
      if (!unit) continue;
      await this.#recordFailure(session.stream, unit.source, unit, error);
      recorded.add(`${session.stream}\u0000${unit.source}`);
    }
    const te = error instanceof TributaryError ? error : undefined;
    if (
      te?.stream &&
      (stream === undefined || te.stream === stream) &&
      te.location?.file &&
      !recorded.has(`${te.stream}\u0000${te.location.file}`)
    ) {
      await this.#recordFailure(te.stream, te.location.file, undefined, error);
    }
  }

  async startRun(info: RunInfo = {}): Promise<string> {
    await this.migrate();
    this.#runId = await insertRun(this.pool, this.#s, info);
    return this.#runId;
  }

  async finishRun(runId: string, outcome: RunOutcome): Promise<void> {
    await finishRunRow(this.pool, this.#s, runId, outcome);
    if (this.#runId === runId) this.#runId = null;
  }

  async release(stream?: string): Promise<void> {
    const sessions = stream === undefined ? [...this.#sessions.values()] : [this.#sessions.get(stream)];
    for (const session of sessions) {
      if (!session) continue;
      this.#sessions.delete(session.stream);
      session.released = true;
      await session.ready?.catch(() => undefined);
      await session.busy;
      await session.serially(() => session.releaseClient());
    }
  }

  async close(): Promise<void> {
    await this.release();
    await this.#hooks.flush();
    if (this.#ownPool) await this.pool.end();
  }

  async #session(stream: string): Promise<StreamSession> {
    let session = this.#sessions.get(stream);
    if (!session) {
      session = new StreamSession(this.pool, this.schema, stream, targetFor(this.#options.targets, stream), {
        enabled: this.#options.lockEnabled,
        waitMs: this.#options.lockWaitMs,
      });
      this.#sessions.set(stream, session);
    }
    const s = session;
    s.ready ??= this.#openSession(s).catch((error) => {
      s.ready = undefined;
      throw error;
    });
    await s.ready;
    return s;
  }

  /** Lock first (one writer per stream, invariant 8), then migrations and the target audit. */
  async #openSession(session: StreamSession): Promise<void> {
    await session.connect();
    try {
      if (this.#options.migrate) await this.migrate();
      if (session.target) {
        session.shape = await describeTarget(session.client!, session.target, this.#options.migrate);
      }
    } catch (error) {
      await session.releaseClient();
      throw error;
    }
  }

  async #recordFailure(
    stream: string,
    source: string,
    unit: OpenUnit | undefined,
    error: unknown,
  ): Promise<void> {
    try {
      if (this.#options.migrate) await this.migrate();
    } catch {
      // The failure itself is what the caller sees; a load log that cannot be written (schema
      // missing, database down) must not hide it.
      return;
    }
    await insertFailedLoad(this.pool, this.#s, this.#runId, stream, source, unit, error);
  }
}

/** The PostgreSQL sink: exactly-once apply with checkpoint, load log and observability. */
export function pgSink(options: PgSinkOptions): PgSink {
  return new PgSinkImpl(options);
}
