import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import {
  type Batch,
  type ExportKind,
  faultPoint,
  formatLocation,
  type InputLocation,
  isExhausted,
  isTransient,
  type JsonValue,
  type LoadLog,
  type Position,
  type RejectedRecord,
  type RejectPolicy,
  type Row,
  retry,
  type Sink,
  TributaryError,
  toTributaryError,
  type WriteResult,
} from '@tributary/core';
import pg from 'pg';
import { AfterCommitRunner, type CommittedUnit, resolveHook } from './after-commit.js';
import { type ApplyPlan, batchColumns, copyCsv, copyRows, encodeCsv, planApply, rowStage } from './apply.js';
import {
  addColumns,
  checkDeclaredTypes,
  driftError,
  driftPolicy,
  missingColumns,
  unknownColumns,
} from './drift.js';
import { migrate } from './migrations.js';
import {
  type PgSinkOptions,
  type ResolvedOptions,
  resolveOptions,
  type TargetTable,
  targetFor,
} from './options.js';
import { compileRaw, copyErrorLine } from './raw.js';
import { insertRejected, isRejectable, rejectedRecordError, rejectLimitError } from './reject.js';
import { openSnapshot, type SnapshotPhase, shadowShape, swapSnapshot } from './snapshot.js';
import { errorText, qualifiedName, quoteIdent } from './sql.js';
import { checkpointParams, checkpointUpsertSql, pgLoadLog, readPosition } from './state.js';
import { prepareTarget, type TargetShape } from './target.js';

export interface RunInfo {
  streams?: string[];
  host?: string;
  version?: string;
  info?: { [key: string]: JsonValue };
}

/** How a run ended; a `PipelineResult` can be spread in: `{ status: 'succeeded', ...result }`. */
export interface RunOutcome {
  status: 'succeeded' | 'failed' | 'stopped' | 'aborted';
  error?: unknown;
  batches?: number;
  rowsRead?: number;
  rowsWritten?: number;
  rowsFiltered?: number;
  commits?: number;
}

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

interface UnitStats {
  rowsRead: number;
  filtered: Record<string, number>;
  inserted: number;
  updated: number;
  deleted: number;
  unchanged: number;
  batches: number;
  bytes: number;
  /** Rows set aside under the unit's `onError` policy (all of them when the file is rejected). */
  rejected: number;
}

/** Rows and filter counts of a unit: applied so far, or reported to the pipeline so far. */
interface Tally {
  rows: number;
  filtered: Record<string, number>;
}

interface OpenUnit {
  source: string;
  kind: ExportKind | null;
  etag: string | null;
  size: number | null;
  /** The source object's LastModified (S3), when the source says. */
  modified: Date | null;
  late: boolean;
  startedAt: Date;
  /** Batches kept to replay the unit after a transient failure; undefined once over the cap. */
  buffer: Batch<Row>[] | undefined;
  bufferedRows: number;
  bufferedBytes: number;
  stats: UnitStats;
  /** COMMIT was sent: after a connection loss the outcome is unknown until checked. */
  commitSent: boolean;
  /** The checkpoint and load row are written (with the last batch's merge); COMMIT is next. */
  recorded: boolean;
  /** A file of a new snapshot (Qlik reload): rows go to the shadow table (see snapshot.ts). */
  snapshot: SnapshotPhase | undefined;
  /** The snapshot is open in this unit's transaction. */
  snapshotOpen: boolean;
  /** The stream's `onError` policy (from the unit's first batch); undefined: abort. */
  policy: RejectPolicy | undefined;
  /** skip-row: the unit runs through the per-row-checked path (after a COPY or cast failure). */
  checked: boolean;
  /** skip-file: why the unit is rejected; its rows are not applied, its load row says `rejected`. */
  rejectedBy: TributaryError | undefined;
  /** The first row set aside (named when the file goes over `maxRejected`). */
  firstRejected: RejectedRecord | undefined;
  /** Rows read by the source for this unit (each batch counted once, replays not again). */
  rowsSeen: number;
  /** With a policy: what the unit applied, and what `write()` reported to the pipeline. */
  tally: Tally;
  reported: Tally & { rejected: number };
  /** Missing / ignored columns were warned about (once per file). */
  driftWarned: boolean;
}

interface StreamSession {
  stream: string;
  lockKey: string;
  /** null: checkpoint-only stream (no rows). */
  target: TargetTable | null;
  client: pg.PoolClient | undefined;
  onClientError: (() => void) | undefined;
  broken: boolean;
  ready: Promise<void> | undefined;
  shape: TargetShape | undefined;
  plans: Map<string, ApplyPlan>;
  /** Staging tables created on the current connection (outside any transaction). */
  stages: Set<string>;
  inTx: boolean;
  /** The write in flight: abort() and release() wait for it before touching the client. */
  busy: Promise<unknown> | undefined;
  /** Set by release(): the session must not connect again. */
  released: boolean;
  /** The connect in flight, shared by every caller that finds no client (see #connect). */
  connecting: Promise<void> | undefined;
  /** The after-commit hooks' runners, resolved at the session's first commit. */
  hookRunners: AfterCommitRunner[] | undefined;
  unit: OpenUnit | undefined;
  /** The unit whose write failed, recorded as a failed load by abort(). */
  failed: OpenUnit | undefined;
  /** The open transaction ALTERed the target (schemaDrift evolve): a rollback resets `shape`. */
  shapeAltered: boolean;
}

const VERSION = (() => {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
})();

function emptyStats(): UnitStats {
  return {
    rowsRead: 0,
    filtered: {},
    inserted: 0,
    updated: 0,
    deleted: 0,
    unchanged: 0,
    batches: 0,
    bytes: 0,
    rejected: 0,
  };
}

const statementNames = new Map<string, string>();

/**
 * A name for a statement the sink runs once per file (the merge, the checkpoint + load row):
 * prepared once per connection, its parse and plan are not repeated for every file. Derived
 * from the text, so one name never stands for two statements.
 */
function statementName(text: string): string {
  let name = statementNames.get(text);
  if (!name) {
    if (statementNames.size >= 1000) statementNames.clear();
    name = `tributary_${createHash('sha1').update(text).digest('hex').slice(0, 24)}`;
    statementNames.set(text, name);
  }
  return name;
}

function metaNumber(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function metaDate(value: unknown): Date | null {
  const date = value instanceof Date ? value : typeof value === 'string' ? new Date(value) : undefined;
  return date && Number.isFinite(date.getTime()) ? date : null;
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

/** Raw records the checked path kept: their locations and text as in the file. */
interface CheckedRecords {
  locations: InputLocation[];
  texts: string[];
}

/** What a batch contributed, when the sink ran its filters (raw batches). */
interface Applied {
  rows: number;
  filtered: Record<string, number>;
  /** Rows set aside under the unit's `onError` policy. */
  rejected?: number;
}

class PgSinkImpl implements PgSink {
  readonly name = 'pg-sink';
  /** Raw CSV batches are COPYed as they are; their declarative steps run in the merge. */
  readonly acceptsRaw = true;
  readonly pool: pg.Pool;
  readonly schema: string;
  readonly loadLog: LoadLog;
  readonly #options: ResolvedOptions;
  readonly #ownPool: boolean;
  readonly #s: string;
  readonly #sessions = new Map<string, StreamSession>();
  #migrated: Promise<void> | undefined;
  #runId: string | null = null;
  /** One runner per after-commit hook name: runs of a name never overlap in this process. */
  readonly #hooks = new Map<string, AfterCommitRunner>();
  /** Warnings per stream, handed to the pipeline with the stream's next write result. */
  readonly #warnings = new Map<string, string[]>();

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
    // A failed unit may have dropped the connection (and lock): take them again, as a
    // pipeline() retry resumes from here.
    if (!session.client) await this.#connect(session);
    try {
      return await readPosition(session.client!, this.schema, stream);
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
    const written = this.#writeBatch(session, batch);
    session.busy = written.catch(() => undefined);
    return written;
  }

  async #writeBatch(session: StreamSession, batch: Batch<Row>): Promise<WriteResult> {
    let unit = session.unit;
    if (!unit) {
      unit = {
        source: batch.meta.source ?? batch.stream,
        kind: batch.meta.kind ?? null,
        etag: batch.meta.etag ?? null,
        size: metaNumber(batch.meta.size),
        modified: metaDate(batch.meta.modified),
        late: false,
        startedAt: new Date(),
        buffer: [],
        bufferedRows: 0,
        bufferedBytes: 0,
        stats: emptyStats(),
        commitSent: false,
        recorded: false,
        snapshot: batch.meta.snapshot,
        snapshotOpen: false,
        policy: batch.meta.onError,
        checked: false,
        rejectedBy: undefined,
        firstRejected: undefined,
        rowsSeen: 0,
        tally: { rows: 0, filtered: {} },
        reported: { rows: 0, filtered: {}, rejected: 0 },
        driftWarned: false,
      };
      session.unit = unit;
    }
    const openUnit = unit;
    openUnit.rowsSeen += batch.meta.rowsRead;
    if (openUnit.buffer) {
      const bytes = Math.max(batch.meta.bytes ?? 0, batch.raw?.bytes.length ?? 0);
      const rows = batch.raw?.records ?? batch.rows.length;
      if (
        openUnit.bufferedRows + rows <= this.#options.replayBufferRows &&
        openUnit.bufferedBytes + bytes <= this.#options.replayBufferBytes
      ) {
        openUnit.buffer.push(batch);
        openUnit.bufferedRows += rows;
        openUnit.bufferedBytes += bytes;
      } else {
        openUnit.buffer = undefined; // too large to replay in process (invariant 7)
      }
    }
    let replay = false;
    let applied: Applied | undefined;
    try {
      await retry(
        async () => {
          if (replay) {
            // The transaction died with its connection: reconnect (re-taking the stream lock)
            // and re-run the whole unit from the first batch.
            await this.#reconnect(session);
            if (openUnit.commitSent && (await this.#positionStored(session, batch.position))) return;
            openUnit.stats = emptyStats();
            openUnit.late = false;
            openUnit.commitSent = false;
            openUnit.recorded = false;
            openUnit.snapshotOpen = false;
            openUnit.tally = { rows: 0, filtered: {} };
            for (const buffered of openUnit.buffer!)
              applied = await this.#applyUnitBatch(session, openUnit, buffered);
          } else {
            applied = await this.#applyUnitBatch(session, openUnit, batch);
          }
          if (batch.meta.commit) await this.#commitUnit(session, openUnit, batch);
        },
        { retries: this.#options.retries, minDelayMs: 100, maxDelayMs: 2000 },
        {
          onFailure: async (error) => {
            replay = true;
            await this.#discardTransaction(session, error);
          },
          // A fenced unit would fail the same way again: only pipeline() can help, by re-reading
          // from the (moved) stored position. A unit too large to hold is re-read by pipeline().
          retryable: (error) =>
            isTransient(error) &&
            !(error instanceof TributaryError && error.code === 'FENCED') &&
            openUnit.buffer !== undefined,
        },
      );
    } catch (error) {
      await this.#discardTransaction(session, error);
      session.unit = undefined;
      session.failed = openUnit;
      // Spent here (exhausted), the pipeline must not re-run it: one budget. A unit too large to
      // replay in process was not retried here, so the pipeline may re-read it from the checkpoint.
      const spent = isExhausted(error);
      if ((spent || isTransient(error)) && !(error instanceof TributaryError)) {
        throw new TributaryError(
          'TRANSIENT',
          `stream "${batch.stream}": ${errorText(error)} (gave up after ${spent ? this.#options.retries : 0} retries` +
            `${openUnit.buffer ? '' : '; unit too large to replay in process'}); the next run resumes from the checkpoint`,
          { cause: error, retriable: !spent, stream: batch.stream },
        );
      }
      if (error instanceof TributaryError) throw error;
      throw new TributaryError(
        'SINK_FAILED',
        `stream "${batch.stream}", ${openUnit.source}: ${errorText(error)}`,
        { cause: error, stream: batch.stream, location: { file: openUnit.source } },
      );
    }
    if (openUnit.policy) applied = this.#report(openUnit);
    const counts = applied
      ? {
          rows: applied.rows,
          filtered: applied.filtered,
          ...(applied.rejected ? { rejected: applied.rejected } : {}),
        }
      : {};
    if (!batch.meta.commit) return { committed: false, ...counts, ...this.#takeWarnings(batch.stream) };
    session.unit = undefined;
    // A file rejected under skip-file changed no target row: nothing downstream to refresh.
    if (!openUnit.rejectedBy) this.#afterCommitted(session, openUnit);
    return {
      committed: true,
      ...counts,
      ...(openUnit.rejectedBy ? { unitRejected: true } : {}),
      ...this.#takeWarnings(batch.stream),
    };
  }

  #warn(stream: string, message: string): void {
    const list = this.#warnings.get(stream) ?? [];
    if (list.length < 100) list.push(message);
    this.#warnings.set(stream, list);
  }

  #takeWarnings(stream: string): { warnings?: string[] } {
    const warnings = this.#warnings.get(stream);
    if (!warnings?.length) return {};
    this.#warnings.delete(stream);
    return { warnings };
  }

  /** Starts the stream's after-commit hooks; they run outside the unit's transaction. */
  #afterCommitted(session: StreamSession, unit: OpenUnit): void {
    session.hookRunners ??= this.#hookRunners(session.target);
    if (session.hookRunners.length === 0) return;
    const committed: CommittedUnit = {
      stream: session.stream,
      source: unit.source,
      target: session.target ? qualifiedName(session.target.schema, session.target.table) : null,
    };
    for (const runner of session.hookRunners) runner.committed(committed);
  }

  /** The runners of a stream's hooks, resolved once per session (one runner per hook name). */
  #hookRunners(target: TargetTable | null): AfterCommitRunner[] {
    const runners: AfterCommitRunner[] = [];
    for (const hook of [target?.afterCommit, this.#options.onCommitted]) {
      if (!hook) continue;
      const resolved = resolveHook(hook);
      if (typeof resolved === 'string') continue; // refused when the options and targets were checked
      let runner = this.#hooks.get(resolved.name);
      if (!runner) {
        runner = new AfterCommitRunner(this.pool, this.schema, resolved, (u, message) =>
          this.#warn(u.stream, message),
        );
        this.#hooks.set(resolved.name, runner);
      }
      runners.push(runner);
    }
    return runners;
  }

  /** Waits for the hooks in flight and runs deferred ones now: committed data is not left unrefreshed. */
  async #flushHooks(): Promise<void> {
    await Promise.all([...this.#hooks.values()].map((runner) => runner.flush()));
  }

  async abort(error: Error, stream?: string): Promise<void> {
    const recorded = new Set<string>();
    for (const session of this.#sessions.values()) {
      // Scoped to one stream, the other streams' open units keep going (invariant 10).
      if (stream !== undefined && session.stream !== stream) continue;
      await session.busy;
      const unit = session.unit ?? session.failed;
      if (session.unit) await this.#discardTransaction(session, error);
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
    const result = await this.pool.query<{ run_id: string }>(
      `INSERT INTO ${this.#s}.runs (host, pid, version, streams, info) VALUES ($1, $2, $3, $4, $5)
       RETURNING run_id::text`,
      [
        info.host ?? hostname(),
        process.pid,
        info.version ?? VERSION,
        info.streams ?? null,
        info.info === undefined ? null : JSON.stringify(info.info),
      ],
    );
    this.#runId = result.rows[0]!.run_id;
    return this.#runId;
  }

  async finishRun(runId: string, outcome: RunOutcome): Promise<void> {
    await this.pool.query(
      `UPDATE ${this.#s}.runs SET status = $2, finished_at = clock_timestamp(), batches = $3, rows_read = $4,
              rows_written = $5, rows_filtered = $6, commits = $7, error = $8
        WHERE run_id = $1`,
      [
        runId,
        outcome.status,
        outcome.batches ?? null,
        outcome.rowsRead ?? null,
        outcome.rowsWritten ?? null,
        outcome.rowsFiltered ?? null,
        outcome.commits ?? null,
        outcome.error === undefined ? null : errorText(outcome.error),
      ],
    );
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
      await this.#releaseClient(session);
    }
  }

  /** Rolls back, unlocks and returns the session's client to the pool (destroyed if broken). */
  async #releaseClient(session: StreamSession): Promise<void> {
    const client = session.client;
    if (!client) return;
    if (session.broken) {
      this.#dropClient(session, true);
      return;
    }
    try {
      if (session.inTx) await client.query('ROLLBACK');
      if (session.target?.timeZone) await client.query('RESET TimeZone');
      if (this.#options.lockEnabled) {
        await client.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [session.lockKey]);
      }
      this.#dropClient(session, false);
    } catch (error) {
      this.#dropClient(session, error instanceof Error ? error : true);
    }
  }

  /** Detaches the session's client; `destroy` closes its connection instead of pooling it. */
  #dropClient(session: StreamSession, destroy: boolean | Error): void {
    const client = session.client;
    session.client = undefined;
    session.inTx = false;
    if (!client) return;
    if (session.onClientError) client.off('error', session.onClientError);
    session.onClientError = undefined;
    client.release(destroy === false ? undefined : destroy);
  }

  async close(): Promise<void> {
    await this.release();
    await this.#flushHooks();
    if (this.#ownPool) await this.pool.end();
  }

  // ---------------------------------------------------------------- sessions and locks

  async #session(stream: string): Promise<StreamSession> {
    let session = this.#sessions.get(stream);
    if (!session) {
      session = {
        stream,
        lockKey: `tributary:${this.schema}:${stream}`,
        target: targetFor(this.#options.targets, stream),
        client: undefined,
        onClientError: undefined,
        broken: false,
        ready: undefined,
        shape: undefined,
        plans: new Map(),
        stages: new Set(),
        inTx: false,
        busy: undefined,
        released: false,
        connecting: undefined,
        hookRunners: undefined,
        unit: undefined,
        failed: undefined,
        shapeAltered: false,
      };
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
    await this.#connect(session);
    try {
      if (this.#options.migrate) await this.migrate();
      if (session.target) {
        session.shape = await this.#describeTarget(session.client!, session.target, this.#options.migrate);
      }
    } catch (error) {
      await this.#releaseClient(session);
      throw error;
    }
  }

  /**
   * Gives the session a client, once however many callers find it missing at the same time. A
   * Kafka subscriber reads a partition's checkpoint from its fetch and from its idle check at
   * once; two connects would leave one client checked out for good, and `pool.end()` then waits
   * forever (a process that never exits).
   */
  #connect(session: StreamSession): Promise<void> {
    session.connecting ??= this.#openClient(session).finally(() => {
      session.connecting = undefined;
    });
    return session.connecting;
  }

  async #openClient(session: StreamSession): Promise<void> {
    if (session.released) {
      throw new TributaryError('ABORTED', `stream "${session.stream}" was released`, {
        stream: session.stream,
      });
    }
    const client = await this.pool.connect();
    // A dedicated client killed while idle emits 'error'; without a listener that would crash
    // the process. The next statement on it fails and the retry path reconnects.
    const onClientError = () => {
      session.broken = true;
    };
    client.on('error', onClientError);
    session.client = client;
    session.onClientError = onClientError;
    session.broken = false;
    session.inTx = false;
    session.stages = new Set();
    try {
      await this.#lockStream(client, session);
      // Offset-less timestamps in the file are read in the export's zone (invariant 1's zone),
      // set once for the session's dedicated connection instead of once per transaction; reset
      // before the connection goes back to the pool.
      if (session.target?.timeZone) {
        await client.query(`SELECT set_config('TimeZone', $1, false)`, [session.target.timeZone]);
      }
    } catch (error) {
      this.#dropClient(session, isTransient(error));
      throw error;
    }
  }

  async #reconnect(session: StreamSession): Promise<void> {
    this.#dropClient(session, true);
    await this.#connect(session);
  }

  async #lockStream(client: pg.PoolClient, session: StreamSession): Promise<void> {
    if (!this.#options.lockEnabled) return;
    const waitMs = this.#options.lockWaitMs;
    if (waitMs === undefined) {
      const result = await client.query<{ locked: boolean }>(
        'SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS locked',
        [session.lockKey],
      );
      if (result.rows[0]?.locked) return;
      throw await this.#lockedError(client, session, '');
    }
    // Server-side wait bounded by lock_timeout: no polling loop.
    await client.query(`SET lock_timeout = ${waitMs}`);
    try {
      await client.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', [session.lockKey]);
    } catch (error) {
      if ((error as { code?: string }).code === '55P03') {
        await client.query('RESET lock_timeout');
        throw await this.#lockedError(client, session, ` (waited ${waitMs} ms)`);
      }
      throw error;
    }
    await client.query('RESET lock_timeout');
  }

  async #lockedError(client: pg.PoolClient, session: StreamSession, waited: string): Promise<TributaryError> {
    const holder = await client.query<{
      pid: number;
      application_name: string | null;
      client_addr: string | null;
      backend_start: Date | null;
    }>(
      `WITH k AS (SELECT hashtextextended($1, 0) AS k)
       SELECT l.pid, a.application_name, host(a.client_addr) AS client_addr, a.backend_start
         FROM k, pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.classid = ((k.k >> 32) & 4294967295)::oid AND l.objid = (k.k & 4294967295)::oid
        LIMIT 1`,
      [session.lockKey],
    );
    const h = holder.rows[0];
    const who = h
      ? `pid ${h.pid}${h.application_name ? ` (application "${h.application_name}"` : ' ('}${
          h.client_addr ? `, client ${h.client_addr}` : ''
        }${h.backend_start ? `, connected since ${h.backend_start.toISOString()}` : ''})`
      : 'another session';
    return new TributaryError(
      'STREAM_LOCKED',
      `stream "${session.stream}" is locked by ${who}${waited}: another runner is applying it (one writer per stream)`,
      { stream: session.stream },
    );
  }

  // ---------------------------------------------------------------- apply

  async #ensureTransaction(session: StreamSession, extraSql = ''): Promise<pg.PoolClient> {
    if (!session.client) await this.#connect(session);
    const client = session.client!;
    if (session.inTx) {
      if (extraSql) await client.query(extraSql);
      return client;
    }
    await client.query(`BEGIN${extraSql ? `; ${extraSql}` : ''}`);
    session.inTx = true;
    return client;
  }

  /**
   * The open transaction with the plan's staging table empty. The table is created once per
   * connection, outside any transaction (so no rollback takes it away), and is `ON COMMIT DELETE
   * ROWS`: a transaction's first batch finds it empty and needs no TRUNCATE; only a later batch
   * of the same transaction clears it. A file of one batch costs BEGIN alone here.
   */
  async #stagedTransaction(session: StreamSession, plan: ApplyPlan): Promise<pg.PoolClient> {
    if (!session.client) await this.#connect(session);
    const client = session.client!;
    if (session.inTx) {
      await client.query(session.stages.has(plan.stage) ? plan.clearStage : plan.prepareStage);
      return client;
    }
    if (!session.stages.has(plan.stage)) {
      await client.query(plan.createStage);
      session.stages.add(plan.stage);
    }
    return this.#ensureTransaction(session);
  }

  async #shape(session: StreamSession): Promise<TargetShape> {
    if (!session.target) {
      throw new TributaryError(
        'INVALID_OPTIONS',
        `stream "${session.stream}" has no target table (checkpoint-only): its batches must be empty`,
        { stream: session.stream },
      );
    }
    if (!session.shape) {
      if (!session.client) await this.#connect(session);
      session.shape = await this.#describeTarget(session.client!, session.target, true);
    }
    return session.shape!;
  }

  /** The audited target; under evolve / freeze-extra its declared types are checked too. */
  async #describeTarget(
    client: pg.ClientBase,
    target: TargetTable,
    create: boolean,
  ): Promise<TargetShape | undefined> {
    const shape = await prepareTarget(client, target, create);
    if (shape && driftPolicy(shape) !== 'fail') await checkDeclaredTypes(client, shape);
    return shape;
  }

  async #applyBatch(session: StreamSession, unit: OpenUnit, batch: Batch<Row>): Promise<Applied | undefined> {
    const { stats } = unit;
    const { meta, raw } = batch;
    stats.batches++;
    stats.rowsRead += meta.rowsRead;
    for (const [name, count] of Object.entries(meta.filtered))
      stats.filtered[name] = (stats.filtered[name] ?? 0) + count;
    stats.bytes += meta.bytes ?? 0;
    if (meta.late === 'skipped') unit.late = true;
    // Records the source could not parse, set aside under the policy (the row path).
    if (meta.rejected?.length) await this.#setAside(session, unit, batch, meta.rejected);
    let records = raw ? raw.records : batch.rows.length;
    if (records === 0) return raw ? { rows: 0, filtered: {} } : undefined;

    const plan = await this.#plan(session, unit, batch);
    const target = await this.#shape(session);
    const client = await this.#stagedTransaction(session, plan);
    if (unit.snapshot && !unit.snapshotOpen) {
      await openSnapshot(client, this.schema, target, session.stream, unit.source);
      unit.snapshotOpen = true;
    }
    let kept: CheckedRecords | undefined;
    try {
      if (raw && unit.checked) kept = await this.#stageChecked(session, unit, plan, batch);
      else await this.#stage(client, plan, batch);
    } catch (error) {
      // Only a data error (class 22) is about the CSV; others fail as on the row path.
      const code = (error as { code?: unknown }).code;
      if (!raw || isTransient(error) || typeof code !== 'string' || !code.startsWith('22')) throw error;
      throw this.#explainCopyError(batch, error);
    }
    if (kept) records = kept.texts.length;
    if (unit.checked) records -= await this.#rejectCasts(session, unit, plan, batch, kept);
    let counts: { inserted: number; updated: number; deleted: number; filtered: number[]; recorded?: number };
    // The unit's last batch: its merge also writes the checkpoint and load row (one round trip
    // less per file); COMMIT follows in #commitUnit.
    const record = meta.commit
      ? this.#recordSql(unit, batch, plan.mergeParams.length + 1, { records, filterNames: plan.filterNames })
      : undefined;
    try {
      const text = record
        ? `${plan.mergeWith},
counts AS (
  SELECT m.*, coalesce((SELECT sum(v) FROM unnest(m.filtered) v), 0)::int AS dropped
    FROM (${plan.mergeCounts}) m
),
${record.ctes}
SELECT b.inserted, b.updated, b.deleted, b.filtered, (SELECT count(*) FROM ld)::int AS recorded FROM counts b`
        : plan.merge;
      const result = await client.query<{
        inserted: number;
        updated: number;
        deleted: number;
        filtered: number[];
        recorded?: number;
      }>({
        name: statementName(text),
        text,
        values: record ? [...plan.mergeParams, ...record.values] : plan.mergeParams,
      });
      counts = result.rows[0]!;
    } catch (error) {
      if (isTransient(error)) throw error;
      throw await this.#explainApplyError(session, plan, batch, error);
    }
    if (record) {
      if (record.fenced && !counts.recorded) throw this.#fencedError(batch, unit);
      unit.recorded = true;
    }
    faultPoint('pg-sink:after-upsert'); // rows applied, not yet committed (issue 7)
    const filtered: Record<string, number> = {};
    plan.filterNames.forEach((name, i) => {
      const count = counts.filtered[i] ?? 0;
      if (count) filtered[name] = (filtered[name] ?? 0) + count;
    });
    let written = records;
    for (const [name, count] of Object.entries(filtered)) {
      stats.filtered[name] = (stats.filtered[name] ?? 0) + count;
      written -= count;
    }
    stats.inserted += counts.inserted;
    stats.updated += counts.updated;
    stats.deleted += counts.deleted;
    stats.unchanged += written - counts.inserted - counts.updated - counts.deleted;
    // Rows sent from JavaScript can be filtered in SQL too (Qlik before-images).
    return raw || Object.keys(filtered).length || unit.checked ? { rows: written, filtered } : undefined;
  }

  // ---------------------------------------------------------------- rejected rows (issue 17)

  /**
   * Applies a batch of its unit under the unit's `onError` policy. Clean files take the fast
   * path unchanged; a row that does not parse or cast fails it as today, and then `skip-file`
   * rejects the unit while `skip-row` rolls back and re-runs the unit so far through the
   * per-row-checked path (`checked`), in a new transaction.
   */
  async #applyUnitBatch(
    session: StreamSession,
    unit: OpenUnit,
    batch: Batch<Row>,
  ): Promise<Applied | undefined> {
    if (!unit.policy) return this.#applyBatch(session, unit, batch);
    if (unit.rejectedBy) {
      this.#skipRejected(unit, batch);
      return undefined;
    }
    try {
      return this.#tally(unit, batch, await this.#applyBatch(session, unit, batch));
    } catch (error) {
      if (!isRejectable(error) || unit.checked) throw error;
      await this.#discardTransaction(session, error);
      if (unit.policy.onError === 'skip-file') {
        this.#rejectUnit(unit, error);
        return undefined;
      }
      if (!unit.buffer) {
        throw new TributaryError(
          'SINK_FAILED',
          `stream "${batch.stream}", ${unit.source}: ${errorText(error)}; the file is too large to re-check in process (raise replayBufferRows / replayBufferBytes, or split the file)`,
          { cause: error, stream: batch.stream, location: { file: unit.source } },
        );
      }
      unit.checked = true;
      unit.stats = emptyStats();
      unit.tally = { rows: 0, filtered: {} };
      unit.late = false;
      unit.recorded = false;
      unit.snapshotOpen = false;
      unit.firstRejected = undefined;
      // The unit up to this batch: a transient replay may be at an earlier one.
      const upTo = unit.buffer.slice(0, unit.buffer.indexOf(batch) + 1);
      let applied: Applied | undefined;
      for (const buffered of upTo)
        applied = this.#tally(unit, buffered, await this.#applyBatch(session, unit, buffered));
      return applied;
    }
  }

  #tally(unit: OpenUnit, batch: Batch<Row>, applied: Applied | undefined): Applied | undefined {
    unit.tally.rows += applied?.rows ?? batch.rows.length;
    for (const [name, count] of Object.entries(applied?.filtered ?? {}))
      unit.tally.filtered[name] = (unit.tally.filtered[name] ?? 0) + count;
    return applied;
  }

  /**
   * What to tell the pipeline for a write under a policy: the change in the unit's applied rows,
   * filter counts and rejected rows since the last write. A re-run of the unit (checked path,
   * or a rejected file) corrects what earlier batches reported.
   */
  #report(unit: OpenUnit): Applied {
    const { tally, reported } = unit;
    const filtered: Record<string, number> = {};
    for (const name of new Set([...Object.keys(tally.filtered), ...Object.keys(reported.filtered)])) {
      const delta = (tally.filtered[name] ?? 0) - (reported.filtered[name] ?? 0);
      if (delta) filtered[name] = delta;
    }
    const applied = {
      rows: tally.rows - reported.rows,
      filtered,
      rejected: unit.stats.rejected - reported.rejected,
    };
    unit.reported = { rows: tally.rows, filtered: { ...tally.filtered }, rejected: unit.stats.rejected };
    return applied;
  }

  /** skip-file: nothing of the unit is applied; its load row will say `rejected`, with why. */
  #rejectUnit(unit: OpenUnit, error: TributaryError): void {
    const { batches, bytes } = unit.stats;
    unit.rejectedBy = error;
    unit.stats = { ...emptyStats(), batches, bytes, rowsRead: unit.rowsSeen, rejected: unit.rowsSeen };
    unit.tally = { rows: 0, filtered: {} };
    unit.late = false;
    unit.recorded = false;
    unit.snapshotOpen = false;
  }

  /** A later batch of a rejected unit: read and counted, not applied. */
  #skipRejected(unit: OpenUnit, batch: Batch<Row>): void {
    const { stats } = unit;
    stats.batches++;
    stats.bytes += batch.meta.bytes ?? 0;
    stats.rowsRead += batch.meta.rowsRead;
    stats.rejected += batch.meta.rowsRead;
  }

  /**
   * Records rows set aside on the unit's transaction (skip-row), or rejects the unit with the
   * first one (skip-file). Over a `maxRejected` count, the unit fails as under abort.
   */
  async #setAside(
    session: StreamSession,
    unit: OpenUnit,
    batch: Batch<Row>,
    records: readonly RejectedRecord[],
  ): Promise<void> {
    if (!records.length) return;
    if (unit.policy?.onError !== 'skip-row')
      throw rejectedRecordError(batch.stream, unit.source, records[0]!);
    const client = await this.#ensureTransaction(session);
    await insertRejected(
      client,
      this.#s,
      { stream: batch.stream, source: unit.source, etag: unit.etag },
      records,
    );
    faultPoint('pg-sink:after-reject'); // rows set aside, the file's other rows not yet (issue 17)
    unit.stats.rejected += records.length;
    unit.firstRejected ??= records[0];
    this.#checkRejectLimit(unit, batch.stream, false);
  }

  #checkRejectLimit(unit: OpenUnit, stream: string, final: boolean): void {
    const error = rejectLimitError(unit.policy, {
      stream,
      source: unit.source,
      rejected: unit.stats.rejected,
      read: unit.stats.rowsRead,
      final,
      first: unit.firstRejected,
    });
    if (error) throw error;
  }

  /**
   * The checked path's staging of raw CSV: records with the wrong field count are set aside,
   * the others staged (re-encoded) through the same plan, so the SQL steps run as on the fast path.
   */
  async #stageChecked(
    session: StreamSession,
    unit: OpenUnit,
    plan: ApplyPlan,
    batch: Batch<Row>,
  ): Promise<CheckedRecords> {
    const raw = batch.raw!;
    if (!raw.parseChecked) {
      raw.parse(); // a RawCsv without the checked parser: fail as on the fast path
      throw new TributaryError('SINK_FAILED', `${unit.source}: the source cannot re-check its records`);
    }
    const parsed = raw.parseChecked();
    await this.#setAside(session, unit, batch, parsed.rejected);
    await copyCsv(session.client!, plan, encodeCsv(parsed.rows, raw.header));
    return parsed;
  }

  /**
   * The checked path's casts: every staged row with a value that does not cast (or an empty
   * key) is taken out of the staging table and set aside. Returns how many.
   */
  async #rejectCasts(
    session: StreamSession,
    unit: OpenUnit,
    plan: ApplyPlan,
    batch: Batch<Row>,
    kept: CheckedRecords | undefined,
  ): Promise<number> {
    const bad = await session.client!.query<{ ord0: number; col: number; col_value: string | null }>(
      plan.rejectCasts,
      plan.locateParams,
    );
    if (!bad.rowCount) return 0;
    const records = bad.rows.map((row) => this.#castRejection(session, plan, batch, kept, row));
    await this.#setAside(session, unit, batch, records);
    return records.length;
  }

  #castRejection(
    session: StreamSession,
    plan: ApplyPlan,
    batch: Batch<Row>,
    kept: CheckedRecords | undefined,
    found: { ord0: number; col: number; col_value: string | null },
  ): RejectedRecord {
    const index = found.ord0;
    const column = plan.locateColumns[found.col]!;
    const at = kept ? kept.locations[index] : batch.meta.locations?.[index];
    const location = {
      file: at?.file ?? batch.meta.source ?? batch.stream,
      ...(at?.line === undefined ? {} : { line: at.line }),
      record: at?.record ?? index + 1,
    };
    const bad = this.#badValue(session, column, found.col_value, location);
    return {
      ...(at?.line === undefined ? {} : { line: at.line }),
      ...(at?.record === undefined ? {} : { record: at.record }),
      column,
      code: bad.code,
      message: bad.message,
      // Rows sent from JavaScript: the row as parsed (the file's text is not kept on that path).
      text: kept ? (kept.texts[index] ?? null) : JSON.stringify(batch.rows[index] ?? null),
    };
  }

  /**
   * The batch's apply plan, cached per stream by its columns (pass-through: header and steps).
   * A new plan first settles schema drift: columns the target lacks fail the file, are added in
   * its transaction (evolve) or are left out (freeze-extra).
   */
  async #plan(session: StreamSession, unit: OpenUnit, batch: Batch<Row>): Promise<ApplyPlan> {
    const { raw } = batch;
    const columns = raw ? undefined : batchColumns(batch.rows);
    const into = unit.snapshot ? 'snapshot\u0000' : '';
    const signature = raw
      ? `${into}csv\u0000${raw.emptyAsNull}\u0000${raw.header.join('\u0000')}\u0000${JSON.stringify(raw.steps)}`
      : into + columns!.join('\u0000');
    let target = await this.#shape(session);
    const cached = session.plans.get(signature);
    if (cached) {
      this.#warnDrift(session, unit, target, cached.columns);
      return cached;
    }
    const input = raw ? compileRaw(raw) : { ...rowStage(columns!), columns: columns! };
    let extra: 'fail' | 'ignore' = 'fail';
    // A Qlik snapshot's shadow table follows the target: drift is settled on the target only.
    const unknown = unit.snapshot ? [] : unknownColumns(target, input.columns);
    if (unknown.length) {
      const policy = driftPolicy(target);
      if (policy === 'fail') throw driftError(session.stream, unit.source, target, unknown);
      if (policy === 'evolve') target = await this.#evolve(session, unit, target, unknown);
      else extra = 'ignore';
    }
    const shape = unit.snapshot ? shadowShape(target, this.schema, session.stream) : target;
    const plan = planApply(shape, input.columns, this.schema, input, extra);
    session.plans.set(signature, plan);
    this.#warnDrift(session, unit, target, plan.columns);
    return plan;
  }

  /** Adds the new columns in the unit's transaction; the shape is re-read inside it. */
  async #evolve(
    session: StreamSession,
    unit: OpenUnit,
    target: TargetShape,
    unknown: string[],
  ): Promise<TargetShape> {
    const client = await this.#ensureTransaction(session);
    const added = await addColumns(client, this.schema, target, unknown, {
      stream: session.stream,
      file: unit.source,
    });
    // Until COMMIT the new shape exists only in this transaction: a rollback forgets it.
    session.shapeAltered = true;
    session.plans.clear();
    session.shape = (await prepareTarget(client, session.target!, false))!;
    this.#warn(
      session.stream,
      `stream "${session.stream}", ${unit.source}: added column(s) ${added
        .map((a) => `${quoteIdent(a.column)} ${a.type}`)
        .join(', ')} to ${target.name} (schemaDrift: evolve)`,
    );
    return session.shape;
  }

  /** Once per file under evolve / freeze-extra: the columns it lacks, and the ones ignored. */
  #warnDrift(session: StreamSession, unit: OpenUnit, target: TargetShape, columns: readonly string[]): void {
    const policy = driftPolicy(target);
    if (policy === 'fail' || unit.driftWarned || unit.snapshot) return;
    unit.driftWarned = true;
    const where = `stream "${session.stream}", ${unit.source}`;
    const missing = missingColumns(target, columns);
    if (missing.length) {
      this.#warn(
        session.stream,
        `${where}: no column(s) ${missing.map(quoteIdent).join(', ')}: updated rows keep their stored values, inserted rows get null`,
      );
    }
    const ignored = policy === 'freeze-extra' ? unknownColumns(target, columns) : [];
    if (ignored.length) {
      this.#warn(
        session.stream,
        `${where}: column(s) ${ignored.map(quoteIdent).join(', ')} not in ${target.name}: ignored (schemaDrift: freeze-extra)`,
      );
    }
  }

  /** Fills the staging table: raw CSV bytes as they are, or rows in COPY text format. */
  async #stage(client: pg.ClientBase, plan: ApplyPlan, batch: Batch<Row>): Promise<void> {
    if (batch.raw) await copyCsv(client, plan, batch.raw.bytes);
    else await copyRows(client, plan, batch.rows);
  }

  /**
   * COPY refused raw CSV (a wrong field count, mostly): csv-parse over the same bytes gives the
   * row path's error, naming file, line and column; otherwise COPY's own line is mapped to the file.
   */
  #explainCopyError(batch: Batch<Row>, error: unknown): TributaryError {
    const raw = batch.raw!;
    try {
      raw.parse();
    } catch (parseError) {
      if (parseError instanceof TributaryError) return parseError;
    }
    const file = batch.meta.source ?? batch.stream;
    const line = copyErrorLine(raw, (error as { where?: string }).where);
    return new TributaryError(
      'MALFORMED_ROW',
      `${file}${line === undefined ? '' : `:${line}`}: COPY rejected the CSV: ${errorText(error)}`,
      { cause: error, stream: batch.stream, location: { file, ...(line === undefined ? {} : { line }) } },
    );
  }

  /**
   * Turns a failed merge into an error naming file, line and column (invariant 6): the
   * transaction is rolled back, the batch staged again and the first value that does not cast
   * located with the control schema's try_cast.
   */
  async #explainApplyError(
    session: StreamSession,
    plan: ApplyPlan,
    batch: Batch<Row>,
    error: unknown,
  ): Promise<TributaryError> {
    const pgError = error as { code?: string; message?: string; column?: string };
    const source = batch.meta.source ?? batch.stream;
    const isData =
      typeof pgError.code === 'string' && (pgError.code.startsWith('22') || pgError.code === '23502');
    let found: { ord: number; col: number; col_value: string | null } | undefined;
    if (isData) {
      try {
        await this.#discardTransaction(session, error);
        const client = await this.#ensureTransaction(session, plan.prepareStage);
        await this.#stage(client, plan, batch);
        const located = await client.query<{ ord: number; col: number; col_value: string | null }>(
          plan.locate,
          plan.locateParams,
        );
        found = located.rows[0];
      } catch {
        // Locating is best effort; the original error below still names the file.
      } finally {
        await this.#discardTransaction(session, error);
      }
    }
    if (!found) {
      const column = pgError.column ? `, column ${quoteIdent(pgError.column)}` : '';
      return new TributaryError(
        isData ? 'CAST_FAILED' : 'SINK_FAILED',
        `stream "${batch.stream}", ${source}${column}: ${errorText(error)}`,
        {
          cause: error,
          stream: batch.stream,
          location: { file: source, ...(pgError.column ? { column: pgError.column } : {}) },
        },
      );
    }
    const column = plan.locateColumns[found.col]!;
    // Raw staging numbers rows from 1 in COPY order; rows sent from JavaScript from 0.
    const raw = batch.raw;
    const index = raw ? Number(found.ord) - 1 : found.ord;
    const at = raw
      ? { file: source, line: raw.line(index), record: raw.firstRecord + index }
      : batch.meta.locations?.[index];
    const location = {
      file: at?.file ?? source,
      ...(at?.line === undefined ? {} : { line: at.line }),
      column,
      record: at?.record ?? index + 1,
    };
    const bad = this.#badValue(session, column, found.col_value, {
      ...location,
      file: location.file ?? source,
    });
    return new TributaryError(
      bad.code,
      `stream "${batch.stream}": ${bad.message}${bad.code === 'CAST_FAILED' ? `: ${errorText(error)}` : ''}`,
      { cause: error, stream: batch.stream, location },
    );
  }

  /** What is wrong with a value `locate` / `rejectCasts` found: an empty key, or a failed cast. */
  #badValue(
    session: StreamSession,
    column: string,
    value: string | null,
    at: { file: string; line?: number; record: number },
  ): { code: 'BAD_KEY' | 'CAST_FAILED'; message: string } {
    const where = `${at.file}${at.line === undefined ? '' : `:${at.line}`} (row ${at.record}, column ${quoteIdent(column)})`;
    if ((session.target?.key.includes(column) ?? false) && (value === null || value === '')) {
      return { code: 'BAD_KEY', message: `empty key column ${quoteIdent(column)} at ${where}` };
    }
    const type = session.shape?.columns.get(column)?.type ?? 'text';
    const shown = value === null ? 'NULL' : JSON.stringify(value.slice(0, 80));
    return { code: 'CAST_FAILED', message: `value ${shown} is not a valid ${type} at ${where}` };
  }

  /**
   * The load row and checkpoint of a unit, from its stats so far: SQL over parameters `$(first)`
   * on. The row counts of `counts` (a relation with the merge's `inserted`, `updated`,
   * `deleted`, `dropped` and `filtered`), when given, are added in SQL: the last batch's merge
   * and these writes then go in one statement. Rows, checkpoint and load row: one transaction
   * (invariant 2, manual §5.4).
   */
  #recordSql(
    unit: OpenUnit,
    batch: Batch<Row>,
    first: number,
    merged?: { records: number; filterNames: string[] },
  ): { ctes: string; insert: string; values: unknown[]; fenced: boolean } {
    const { stats } = unit;
    const watermark = unit.late ? undefined : batch.meta.watermark;
    const cp = checkpointParams(batch.stream, batch.position, {
      source: unit.source,
      watermark: watermark && typeof watermark.key === 'string' ? watermark : null,
    });
    const filteredTotal = Object.values(stats.filtered).reduce((a, b) => a + b, 0);
    // A source may say which stored position the batch continues from (`fence.after`): the
    // checkpoint then moves only if it still is that one, so a writer that lost its partition
    // in a rebalance while the batch was in flight cannot apply it twice.
    const fenced = batch.meta.fence !== undefined;
    const previous = batch.meta.fence?.after;
    const values: unknown[] = [
      ...cp,
      this.#runId,
      unit.etag,
      unit.size,
      unit.kind,
      unit.rejectedBy ? 'rejected' : unit.late ? 'late_skipped' : 'loaded',
      stats.rowsRead,
      filteredTotal,
      JSON.stringify(stats.filtered),
      stats.inserted,
      stats.updated,
      stats.deleted,
      stats.unchanged,
      stats.batches,
      stats.bytes || null,
      unit.modified,
      stats.rejected,
      unit.rejectedBy ? errorText(unit.rejectedBy) : null,
    ];
    if (merged) values.push(merged.records, merged.filterNames);
    if (fenced) values.push(previous === null || previous === undefined ? null : JSON.stringify(previous));
    const $ = (i: number) => `$${first + i - 1}`;
    const cpSql = checkpointUpsertSql(this.#s, fenced ? $(values.length) : undefined, first);
    const columns = `run_id, stream, source, etag, size, kind, status, rows_read, rows_filtered,
              filtered, rows_inserted, rows_updated, rows_deleted, rows_unchanged, batches, bytes, position,
              started_at, finished_at, s3_modified, rows_rejected, error`;
    if (!merged) {
      return {
        ctes: `cp AS (${cpSql} RETURNING 1)`,
        insert: `INSERT INTO ${this.#s}.loads (${columns})
       SELECT ${$(6)}, ${$(1)}, ${$(3)}, ${$(7)}, ${$(8)}, ${$(9)}, ${$(10)}, ${$(11)}, ${$(12)}, ${$(13)}::jsonb,
              ${$(14)}, ${$(15)}, ${$(16)}, ${$(17)}, ${$(18)}, ${$(19)}, ${$(2)}::jsonb, now(), clock_timestamp(), ${$(20)}::timestamptz,
              ${$(21)}::bigint, ${$(22)}::text
         FROM cp`,
        values,
        fenced,
      };
    }
    // The batch's filter counts join the unit's by name, as in JavaScript (zeros are not added).
    const filteredSql = `(SELECT coalesce(jsonb_object_agg(f.k, f.n), '{}'::jsonb)
           FROM (SELECT k, sum(n)::int AS n
                   FROM (SELECT key AS k, value::int AS n FROM jsonb_each_text(${$(13)}::jsonb)
                         UNION ALL
                         SELECT u.k, u.n FROM unnest(${$(24)}::text[], b.filtered) AS u(k, n) WHERE u.n <> 0) x
                  GROUP BY k) f)`;
    return {
      ctes: `cp AS (${cpSql} RETURNING 1),
ld AS (
  INSERT INTO ${this.#s}.loads (${columns})
  SELECT ${$(6)}, ${$(1)}, ${$(3)}, ${$(7)}, ${$(8)}, ${$(9)}, ${$(10)}, ${$(11)}, ${$(12)}::bigint + b.dropped, ${filteredSql},
         ${$(14)}::bigint + b.inserted, ${$(15)}::bigint + b.updated, ${$(16)}::bigint + b.deleted,
         ${$(17)}::bigint + (${$(23)}::int - b.dropped - b.inserted - b.updated - b.deleted),
         ${$(18)}, ${$(19)}, ${$(2)}::jsonb, now(), clock_timestamp(), ${$(20)}::timestamptz, ${$(21)}::bigint, ${$(22)}::text
    FROM counts b, cp
  RETURNING 1
)`,
      insert: '',
      values,
      fenced,
    };
  }

  #fencedError(batch: Batch<Row>, unit: OpenUnit): TributaryError {
    // Retriable: pipeline() re-runs the source from the stored position, so a Kafka member
    // that lost its partition in a rebalance rejoins the group instead of exiting.
    return new TributaryError(
      'FENCED',
      `stream "${batch.stream}": ${unit.source} was not applied: the stored position moved while it was in flight (another writer applied this range, e.g. after a rebalance); rolled back so nothing is applied twice`,
      { stream: batch.stream, location: { file: unit.source }, retriable: true },
    );
  }

  async #commitUnit(session: StreamSession, unit: OpenUnit, batch: Batch<Row>): Promise<void> {
    // A percentage of rejected rows is known once the file is complete.
    if (unit.policy && !unit.rejectedBy) this.#checkRejectLimit(unit, batch.stream, true);
    const client = await this.#ensureTransaction(session);
    if (!unit.recorded) {
      // Rows, checkpoint and load row: one transaction (invariant 2, manual §5.4).
      const record = this.#recordSql(unit, batch, 1);
      const text = `WITH ${record.ctes}\n       ${record.insert}`;
      const written = await client.query({ name: statementName(text), text, values: record.values });
      if (record.fenced && written.rowCount === 0) throw this.#fencedError(batch, unit);
      unit.recorded = true;
    }
    if (unit.snapshot && batch.meta.lastOfUnit && !unit.rejectedBy) {
      // A file of a new snapshot with no rows still joins it; the last one swaps it in.
      const target = await this.#shape(session);
      if (!unit.snapshotOpen) {
        await openSnapshot(client, this.schema, target, session.stream, unit.source);
        unit.snapshotOpen = true;
      }
      if (unit.snapshot === 'last') await swapSnapshot(client, this.schema, target, session.stream);
    }
    const hook = this.#options.faults?.beforeCommit;
    if (hook) await hook({ stream: batch.stream, source: unit.source });
    unit.commitSent = true;
    await client.query('COMMIT');
    session.shapeAltered = false;
    faultPoint('pg-sink:after-commit'); // committed, not yet archived (invariant 3, issue 7)
    session.inTx = false;
  }

  async #positionStored(session: StreamSession, position: Position): Promise<boolean> {
    const result = await session.client!.query<{ same: boolean }>(
      `SELECT position = $2::jsonb AS same FROM ${this.#s}.checkpoints WHERE stream = $1`,
      [session.stream, JSON.stringify(position)],
    );
    return result.rows[0]?.same ?? false;
  }

  async #discardTransaction(session: StreamSession, error: unknown): Promise<void> {
    if (session.shapeAltered) {
      // The ALTER goes with the transaction (a rolled-back file leaves no column behind).
      session.shapeAltered = false;
      session.shape = undefined;
      session.plans.clear();
    }
    const client = session.client;
    if (!client) return;
    if (session.broken || isTransient(error)) {
      // The connection is (or may be) gone, and the transaction with it.
      this.#dropClient(session, true);
      return;
    }
    if (!session.inTx) return;
    session.inTx = false;
    try {
      await client.query('ROLLBACK');
    } catch (rollbackError) {
      this.#dropClient(session, rollbackError instanceof Error ? rollbackError : true);
    }
  }

  async #recordFailure(
    stream: string,
    source: string,
    unit: OpenUnit | undefined,
    error: unknown,
  ): Promise<void> {
    const location = error instanceof TributaryError ? formatLocation(error.location) : '';
    try {
      if (this.#options.migrate) await this.migrate();
      await this.pool.query(
        `INSERT INTO ${this.#s}.loads (run_id, stream, source, etag, size, kind, status, rows_read, batches,
                started_at, finished_at, error, s3_modified)
         VALUES ($1, $2, $3, $4, $5, $6, 'failed', $7, $8, $9, clock_timestamp(), $10, $11)`,
        [
          this.#runId,
          stream,
          source,
          unit?.etag ?? null,
          unit?.size ?? null,
          unit?.kind ?? null,
          unit?.stats.rowsRead ?? 0,
          unit?.stats.batches ?? 0,
          unit?.startedAt ?? new Date(),
          errorText(error) + (location && !errorText(error).includes(location) ? ` (at ${location})` : ''),
          unit?.modified ?? null,
        ],
      );
    } catch {
      // The failure itself is what the caller sees; a load log that cannot be written (schema
      // missing with migrate: false, database down) must not hide it.
    }
  }
}

/** The PostgreSQL sink: exactly-once apply with checkpoint, load log and observability. */
export function pgSink(options: PgSinkOptions): PgSink {
  return new PgSinkImpl(options);
}
