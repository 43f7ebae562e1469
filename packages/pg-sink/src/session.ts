import { isTransient, TributaryError } from '@tributary/core';
import type pg from 'pg';
import type { AfterCommitRunner } from './after-commit.js';
import type { ApplyPlan } from './apply.js';
import { checkDeclaredTypes, driftPolicy } from './drift.js';
import { lockStream, type StreamLock, streamLockKey, unlockStream } from './lock.js';
import type { TargetTable } from './options.js';
import { prepareTarget, type TargetShape } from './target.js';
import type { OpenUnit } from './unit.js';

/** The audited target; under evolve / freeze-extra its declared types are checked too. */
export async function describeTarget(
  client: pg.ClientBase,
  target: TargetTable,
  create: boolean,
): Promise<TargetShape | undefined> {
  const shape = await prepareTarget(client, target, create);
  if (shape && driftPolicy(shape) !== 'fail') await checkDeclaredTypes(client, shape);
  return shape;
}

/**
 * One stream's session: its dedicated connection holding the stream's advisory lock (invariant
 * 8), the transaction open on it, and what the session learnt about its target (shape, apply
 * plans, staging tables). The unit being written is kept here too, for `abort()` and `release()`.
 */
export class StreamSession {
  readonly stream: string;
  readonly lockKey: string;
  /** null: checkpoint-only stream (no rows). */
  readonly target: TargetTable | null;
  client: pg.PoolClient | undefined;
  broken = false;
  ready: Promise<void> | undefined;
  shape: TargetShape | undefined;
  plans = new Map<string, ApplyPlan>();
  /** Staging tables created on the current connection (outside any transaction). */
  stages = new Set<string>();
  inTx = false;
  /** The write in flight: abort() and release() wait for it before touching the client. */
  busy: Promise<unknown> | undefined;
  /** Set by release(): the session must not connect again. */
  released = false;
  /** The after-commit hooks' runners, resolved at the session's first commit. */
  hookRunners: AfterCommitRunner[] | undefined;
  unit: OpenUnit | undefined;
  /** The unit whose write failed, recorded as a failed load by abort(). */
  failed: OpenUnit | undefined;
  /** The open transaction ALTERed the target (schemaDrift evolve): a rollback resets `shape`. */
  shapeAltered = false;
  readonly #pool: pg.Pool;
  readonly #lock: StreamLock;
  #onClientError: (() => void) | undefined;
  /** The connect in flight, shared by every caller that finds no client (see connect()). */
  #connecting: Promise<void> | undefined;
  /** The work queued on the client, run one after another (see serially()). */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(pool: pg.Pool, schema: string, stream: string, target: TargetTable | null, lock: StreamLock) {
    this.#pool = pool;
    this.#lock = lock;
    this.stream = stream;
    this.lockKey = streamLockKey(schema, stream);
    this.target = target;
  }

  /**
   * Gives the session a client, once however many callers find it missing at the same time. A
   * Kafka subscriber reads a partition's checkpoint from its fetch and from its idle check at
   * once; two connects would leave one client checked out for good, and `pool.end()` then waits
   * forever (a process that never exits).
   */
  /**
   * Runs `work` once the client's earlier work has finished. A client runs one query at a time,
   * and handing it a query while one runs is deprecated (gone in pg 9); a Kafka subscriber reads
   * a checkpoint from its fetch and its idle check at once, and between the batches of a write.
   */
  serially<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(work, work);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  connect(): Promise<void> {
    this.#connecting ??= this.#openClient().finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  async #openClient(): Promise<void> {
    if (this.released) {
      throw new TributaryError('ABORTED', `stream "${this.stream}" was released`, {
        stream: this.stream,
      });
    }
    const client = await this.#pool.connect();
    // A dedicated client killed while idle emits 'error'; without a listener that would crash
    // the process. The next statement on it fails and the retry path reconnects.
    const onClientError = () => {
      this.broken = true;
    };
    client.on('error', onClientError);
    this.client = client;
    this.#onClientError = onClientError;
    this.broken = false;
    this.inTx = false;
    this.stages = new Set();
    try {
      await lockStream(client, this.stream, this.lockKey, this.#lock);
      // Offset-less timestamps in the file are read in the export's zone (invariant 1's zone),
      // set once for the session's dedicated connection instead of once per transaction; reset
      // before the connection goes back to the pool.
      if (this.target?.timeZone) {
        await client.query(`SELECT set_config('TimeZone', $1, false)`, [this.target.timeZone]);
      }
    } catch (error) {
      this.dropClient(isTransient(error));
      throw error;
    }
  }

  async reconnect(): Promise<void> {
    this.dropClient(true);
    await this.connect();
  }

  /** The target's audited shape, read on first use (a checkpoint-only stream has none). */
  async targetShape(): Promise<TargetShape> {
    if (!this.target) {
      throw new TributaryError(
        'INVALID_OPTIONS',
        `stream "${this.stream}" has no target table (checkpoint-only): its batches must be empty`,
        { stream: this.stream },
      );
    }
    if (!this.shape) {
      if (!this.client) await this.connect();
      this.shape = await describeTarget(this.client!, this.target, true);
    }
    return this.shape!;
  }

  async ensureTransaction(extraSql = ''): Promise<pg.PoolClient> {
    if (!this.client) await this.connect();
    const client = this.client!;
    if (this.inTx) {
      if (extraSql) await client.query(extraSql);
      return client;
    }
    await client.query(`BEGIN${extraSql ? `; ${extraSql}` : ''}`);
    this.inTx = true;
    return client;
  }

  /**
   * The open transaction with the plan's staging table empty. The table is created once per
   * connection, outside any transaction (so no rollback takes it away), and is `ON COMMIT DELETE
   * ROWS`: a transaction's first batch finds it empty and needs no TRUNCATE; only a later batch
   * of the same transaction clears it. A file of one batch costs BEGIN alone here.
   */
  async stagedTransaction(plan: ApplyPlan): Promise<pg.PoolClient> {
    if (!this.client) await this.connect();
    const client = this.client!;
    if (this.inTx) {
      await client.query(this.stages.has(plan.stage) ? plan.clearStage : plan.prepareStage);
      return client;
    }
    if (!this.stages.has(plan.stage)) {
      await client.query(plan.createStage);
      this.stages.add(plan.stage);
    }
    return this.ensureTransaction();
  }

  /** Rolls the open transaction back, or drops the connection when it is (or may be) gone. */
  async discardTransaction(error: unknown): Promise<void> {
    if (this.shapeAltered) {
      // The ALTER goes with the transaction (a rolled-back file leaves no column behind).
      this.shapeAltered = false;
      this.shape = undefined;
      this.plans.clear();
    }
    const client = this.client;
    if (!client) return;
    if (this.broken || isTransient(error)) {
      // The connection is (or may be) gone, and the transaction with it.
      this.dropClient(true);
      return;
    }
    if (!this.inTx) return;
    this.inTx = false;
    try {
      await client.query('ROLLBACK');
    } catch (rollbackError) {
      this.dropClient(rollbackError instanceof Error ? rollbackError : true);
    }
  }

  /** Rolls back, unlocks and returns the session's client to the pool (destroyed if broken). */
  async releaseClient(): Promise<void> {
    const client = this.client;
    if (!client) return;
    if (this.broken) {
      this.dropClient(true);
      return;
    }
    try {
      if (this.inTx) await client.query('ROLLBACK');
      if (this.target?.timeZone) await client.query('RESET TimeZone');
      if (this.#lock.enabled) await unlockStream(client, this.lockKey);
      this.dropClient(false);
    } catch (error) {
      this.dropClient(error instanceof Error ? error : true);
    }
  }

  /** Detaches the session's client; `destroy` closes its connection instead of pooling it. */
  dropClient(destroy: boolean | Error): void {
    const client = this.client;
    this.client = undefined;
    this.inTx = false;
    if (!client) return;
    if (this.#onClientError) client.off('error', this.#onClientError);
    this.#onClientError = undefined;
    client.release(destroy === false ? undefined : destroy);
  }
}
