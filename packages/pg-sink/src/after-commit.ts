import type pg from 'pg';
import { errorText, quoteIdent } from './sql.js';

/** The unit whose commit triggered an after-commit hook. */
export interface CommittedUnit {
  stream: string;
  /** The file (or Kafka range) that committed. */
  source: string;
  /** `"schema"."table"` of the stream's target; null for a checkpoint-only stream. */
  target: string | null;
}

/**
 * Work run after a unit commits, outside its transaction (seed 004: a matview refreshed under an
 * advisory lock). Runs of one `name` are serialised across streams and processes by a
 * PostgreSQL advisory lock, debounced by `minIntervalSeconds`, and recorded in
 * `<schema>.after_commit`. A failing run never touches the committed data: it is recorded and
 * the next commit runs it again.
 */
export interface AfterCommitHook {
  /**
   * SQL, e.g. `REFRESH MATERIALIZED VIEW CONCURRENTLY reporting.v_trips`. Sent as one simple
   * query: several statements run as one implicit transaction.
   */
  sql?: string;
  /** Code instead of `sql`: given a connection outside any transaction that holds the lock. */
  run?: (db: pg.ClientBase, unit: CommittedUnit) => Promise<void>;
  /** What serialises and debounces runs (one advisory lock per name). Default: the `sql` text. */
  name?: string;
  /**
   * At most one run per this many seconds per name, counted from the last successful run of any
   * process. A commit inside the interval runs the hook when the interval ends, or when the sink
   * closes (so a short-lived run leaves nothing unrefreshed). Default 0: after every commit.
   */
  minIntervalSeconds?: number;
}

export interface ResolvedHook {
  name: string;
  sql: string | null;
  run: (db: pg.ClientBase, unit: CommittedUnit) => Promise<void>;
  minIntervalMs: number;
}

/** The hook with its defaults, or a message saying what is wrong (for the option's path). */
export function resolveHook(hook: AfterCommitHook): ResolvedHook | string {
  if (typeof hook !== 'object' || hook === null) return 'must be an object';
  const { sql, run } = hook;
  if ((sql === undefined) === (run === undefined)) return 'needs exactly one of sql or run';
  if (sql !== undefined && (typeof sql !== 'string' || sql.trim() === '')) return '.sql must be SQL text';
  if (run !== undefined && typeof run !== 'function') return '.run must be a function';
  const name = hook.name ?? sql?.trim();
  if (typeof name !== 'string' || name === '') return '.name is required with run';
  const seconds = hook.minIntervalSeconds ?? 0;
  if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds < 0) {
    return '.minIntervalSeconds must be a number ≥ 0';
  }
  return {
    name,
    sql: sql ?? null,
    run: run ?? (async (db) => void (await db.query(sql!))),
    minIntervalMs: seconds * 1000,
  };
}

/**
 * Runs one hook for a sink: at most one run in flight per process, commits that arrive meanwhile
 * folded into one more run after it (a run started after a commit sees that commit's rows).
 */
export class AfterCommitRunner {
  readonly #pool: pg.Pool;
  readonly #s: string;
  readonly #hook: ResolvedHook;
  readonly #onFailure: (unit: CommittedUnit, message: string) => void;
  #pending: CommittedUnit | undefined;
  #inFlight: Promise<void> | undefined;
  #deferred: NodeJS.Timeout | undefined;
  #closing = false;

  constructor(
    pool: pg.Pool,
    schema: string,
    hook: ResolvedHook,
    onFailure: (unit: CommittedUnit, message: string) => void,
  ) {
    this.#pool = pool;
    this.#s = quoteIdent(schema);
    this.#hook = hook;
    this.#onFailure = onFailure;
  }

  /** A unit committed: run the hook now, after the run in flight, or when the interval ends. */
  committed(unit: CommittedUnit): void {
    this.#pending = unit;
    if (this.#deferred) return;
    this.#inFlight ??= this.#drain();
  }

  /** Runs what is deferred or pending now (ignoring the interval) and waits for it. */
  async flush(): Promise<void> {
    this.#closing = true;
    if (this.#deferred) {
      clearTimeout(this.#deferred);
      this.#deferred = undefined;
    }
    if (this.#pending) this.#inFlight ??= this.#drain();
    await this.#inFlight;
  }

  async #drain(): Promise<void> {
    try {
      while (this.#pending && !this.#deferred) {
        const unit = this.#pending;
        this.#pending = undefined;
        const waitMs = await this.#runOnce(unit);
        if (waitMs > 0) {
          // Inside the interval: run it later, or at once when close() began meanwhile (it
          // must not be dropped between the interval check and here).
          this.#pending ??= unit;
          if (!this.#closing) this.#defer(waitMs);
        }
      }
    } finally {
      this.#inFlight = undefined;
    }
  }

  #defer(waitMs: number): void {
    this.#deferred = setTimeout(() => {
      this.#deferred = undefined;
      if (this.#pending) this.#inFlight ??= this.#drain();
    }, waitMs);
    // A deferred refresh must not keep a finished process alive: close() flushes it.
    this.#deferred.unref();
  }

  /**
   * One run under the hook's advisory lock (seed 004's singleton), recorded before and after.
   * Returns how long to wait first when the last successful run is inside the interval.
   */
  async #runOnce(unit: CommittedUnit): Promise<number> {
    let client: pg.PoolClient | undefined;
    let broken = false;
    try {
      client = await this.#pool.connect();
      client.on('error', () => {
        broken = true;
      });
      const lockKey = `tributary:after-commit:${this.#hook.name}`;
      // Session lock, waited for: the run after the holder's sees every commit before it.
      await client.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', [lockKey]);
      try {
        const waitMs = await this.#intervalLeft(client);
        if (waitMs > 0 && !this.#closing) return waitMs;
        await this.#recordedRun(client, unit);
      } finally {
        await client.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [lockKey]);
      }
    } catch (error) {
      // The lock or the record could not be written (database gone): the data is committed and
      // the next commit tries again.
      broken = true;
      this.#onFailure(unit, `after-commit hook "${this.#hook.name}" could not run: ${errorText(error)}`);
    } finally {
      client?.release(broken);
    }
    return 0;
  }

  async #intervalLeft(client: pg.ClientBase): Promise<number> {
    if (this.#hook.minIntervalMs <= 0) return 0;
    const { rows } = await client.query<{ ago_ms: number | null }>(
      `SELECT (extract(epoch FROM clock_timestamp() - max(started_at)) * 1000)::float8 AS ago_ms
         FROM ${this.#s}.after_commit WHERE hook = $1 AND ok`,
      [this.#hook.name],
    );
    const ago = rows[0]?.ago_ms;
    return ago === null || ago === undefined ? 0 : Math.max(0, this.#hook.minIntervalMs - ago);
  }

  async #recordedRun(client: pg.ClientBase, unit: CommittedUnit): Promise<void> {
    const started = await client.query<{ id: string }>(
      `INSERT INTO ${this.#s}.after_commit (stream, source, target, hook, sql, started_at)
       VALUES ($1, $2, $3, $4, $5, clock_timestamp()) RETURNING id::text`,
      [unit.stream, unit.source, unit.target, this.#hook.name, this.#hook.sql],
    );
    let failure: string | null = null;
    try {
      await this.#hook.run(client, unit);
    } catch (error) {
      failure = errorText(error);
      // A code hook may leave a transaction open; outside one this is only a warning.
      await client.query('ROLLBACK');
    }
    await client.query(
      `UPDATE ${this.#s}.after_commit
          SET finished_at = clock_timestamp(), ok = $2, error = $3,
              duration_ms = (extract(epoch FROM clock_timestamp() - started_at) * 1000)::bigint
        WHERE id = $1`,
      [started.rows[0]!.id, failure === null, failure],
    );
    if (failure !== null) {
      this.#onFailure(
        unit,
        `after-commit hook "${this.#hook.name}" failed after ${unit.source} committed (data is committed; the next commit runs it again): ${failure}`,
      );
    }
  }
}

/**
 * The sink's hooks: one runner per hook name (runs of a name never overlap in this process),
 * shared by every stream whose target or sink options name it.
 */
export class AfterCommitHooks {
  readonly #pool: pg.Pool;
  readonly #schema: string;
  readonly #sinkHook: AfterCommitHook | undefined;
  readonly #warn: (stream: string, message: string) => void;
  readonly #runners = new Map<string, AfterCommitRunner>();

  constructor(
    pool: pg.Pool,
    schema: string,
    sinkHook: AfterCommitHook | undefined,
    warn: (stream: string, message: string) => void,
  ) {
    this.#pool = pool;
    this.#schema = schema;
    this.#sinkHook = sinkHook;
    this.#warn = warn;
  }

  /** The runners of a stream's hooks, resolved once per session (one runner per hook name). */
  runnersFor(targetHook: AfterCommitHook | undefined): AfterCommitRunner[] {
    const runners: AfterCommitRunner[] = [];
    for (const hook of [targetHook, this.#sinkHook]) {
      if (!hook) continue;
      const resolved = resolveHook(hook);
      if (typeof resolved === 'string') continue; // refused when the options and targets were checked
      let runner = this.#runners.get(resolved.name);
      if (!runner) {
        runner = new AfterCommitRunner(this.#pool, this.#schema, resolved, (u, message) =>
          this.#warn(u.stream, message),
        );
        this.#runners.set(resolved.name, runner);
      }
      runners.push(runner);
    }
    return runners;
  }

  /** Waits for the hooks in flight and runs deferred ones now: committed data is not left unrefreshed. */
  async flush(): Promise<void> {
    await Promise.all([...this.#runners.values()].map((runner) => runner.flush()));
  }
}
