import {
  type Batch,
  faultPoint,
  isExhausted,
  isTransient,
  type Position,
  type Row,
  retry,
  TributaryError,
  type WriteResult,
} from '@tributary/core';
import type { AfterCommitHooks, CommittedUnit } from './after-commit.js';
import { type CheckedRecords, rejectCasts, setAside, stageChecked } from './checked.js';
import {
  explainApplyError,
  explainCopyError,
  fencedError,
  tooLargeToRecheckError,
  unitFailedError,
} from './explain.js';
import { loadRecordSql } from './loads.js';
import type { ResolvedOptions } from './options.js';
import { planFor } from './plan.js';
import {
  checkRejectLimit,
  isRejectable,
  rejectUnit,
  reportSinceLastWrite,
  skipRejected,
  tally,
} from './reject.js';
import type { StreamSession } from './session.js';
import { openSnapshot, swapSnapshot } from './snapshot.js';
import { qualifiedName, quoteIdent, statementName } from './sql.js';
import { stageBatch } from './staging.js';
import { type Applied, emptyStats, type OpenUnit, openUnit } from './unit.js';
import type { StreamWarnings } from './warnings.js';

/** What the writer shares with the sink that owns it. */
export interface UnitWriterContext {
  /** The control schema. */
  schema: string;
  options: ResolvedOptions;
  warnings: StreamWarnings;
  hooks: AfterCommitHooks;
  /** The run loads are recorded under (`startRun`), or null. */
  runId(): string | null;
}

/**
 * Applies a stream's batches unit by unit on its session: each batch staged with COPY and merged
 * in the unit's transaction, the last one with the checkpoint and load row, then COMMIT
 * (invariant 2). A transient failure re-runs the whole unit from its replay buffer, within one
 * retry budget; an `onError` policy sets bad rows aside or rejects the file (issue 17).
 */
export class UnitWriter {
  readonly #ctx: UnitWriterContext;
  /** The quoted control schema. */
  readonly #s: string;

  constructor(ctx: UnitWriterContext) {
    this.#ctx = ctx;
    this.#s = quoteIdent(ctx.schema);
  }

  async write(session: StreamSession, batch: Batch<Row>): Promise<WriteResult> {
    const { options, warnings } = this.#ctx;
    session.unit ??= openUnit(batch, { rows: options.replayBufferRows, bytes: options.replayBufferBytes });
    const unit = session.unit;
    unit.rowsSeen += batch.meta.rowsRead;
    unit.buffer.keep(batch);
    let replay = false;
    let applied: Applied | undefined;
    try {
      await retry(
        async () => {
          if (replay) {
            // The transaction died with its connection: reconnect (re-taking the stream lock)
            // and re-run the whole unit from the first batch.
            await session.reconnect();
            if (unit.commitSent && (await this.#positionStored(session, batch.position))) return;
            unit.stats = emptyStats();
            unit.late = false;
            unit.commitSent = false;
            unit.recorded = false;
            unit.snapshotOpen = false;
            unit.tally = { rows: 0, filtered: {} };
            for (const buffered of unit.buffer.batches())
              applied = await this.#applyUnitBatch(session, unit, buffered);
          } else {
            applied = await this.#applyUnitBatch(session, unit, batch);
          }
          if (batch.meta.commit) await this.#commitUnit(session, unit, batch);
        },
        { retries: options.retries, minDelayMs: 100, maxDelayMs: 2000 },
        {
          onFailure: async (error) => {
            replay = true;
            await session.discardTransaction(error);
          },
          // A fenced unit would fail the same way again: only pipeline() can help, by re-reading
          // from the (moved) stored position. A unit too large to hold is re-read by pipeline().
          retryable: (error) =>
            isTransient(error) &&
            !(error instanceof TributaryError && error.code === 'FENCED') &&
            unit.buffer.holdsUnit,
        },
      );
    } catch (error) {
      await session.discardTransaction(error);
      session.unit = undefined;
      session.failed = unit;
      // Spent here (exhausted), the pipeline must not re-run it: one budget. A unit too large to
      // replay in process was not retried here, so the pipeline may re-read it from the checkpoint.
      throw unitFailedError(batch, unit, error, isExhausted(error), isTransient(error), options.retries);
    }
    if (unit.policy) applied = reportSinceLastWrite(unit);
    const counts = applied
      ? {
          rows: applied.rows,
          filtered: applied.filtered,
          ...(applied.rejected ? { rejected: applied.rejected } : {}),
        }
      : {};
    if (!batch.meta.commit) return { committed: false, ...counts, ...warnings.take(batch.stream) };
    session.unit = undefined;
    // A file rejected under skip-file changed no target row: nothing downstream to refresh.
    if (!unit.rejectedBy) this.#afterCommitted(session, unit);
    return {
      committed: true,
      ...counts,
      ...(unit.rejectedBy ? { unitRejected: true } : {}),
      ...warnings.take(batch.stream),
    };
  }

  /** Starts the stream's after-commit hooks; they run outside the unit's transaction. */
  #afterCommitted(session: StreamSession, unit: OpenUnit): void {
    session.hookRunners ??= this.#ctx.hooks.runnersFor(session.target?.afterCommit);
    if (session.hookRunners.length === 0) return;
    const committed: CommittedUnit = {
      stream: session.stream,
      source: unit.source,
      target: session.target ? qualifiedName(session.target.schema, session.target.table) : null,
    };
    for (const runner of session.hookRunners) runner.committed(committed);
  }

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
      skipRejected(unit, batch);
      return undefined;
    }
    try {
      return tally(unit, batch, await this.#applyBatch(session, unit, batch));
    } catch (error) {
      if (!isRejectable(error) || unit.checked) throw error;
      await session.discardTransaction(error);
      if (unit.policy.onError === 'skip-file') {
        rejectUnit(unit, error);
        return undefined;
      }
      if (!unit.buffer.holdsUnit) throw tooLargeToRecheckError(batch, unit, error);
      unit.checked = true;
      unit.stats = emptyStats();
      unit.tally = { rows: 0, filtered: {} };
      unit.late = false;
      unit.recorded = false;
      unit.snapshotOpen = false;
      unit.firstRejected = undefined;
      // The unit up to this batch: a transient replay may be at an earlier one.
      const upTo = unit.buffer.batches(batch);
      let applied: Applied | undefined;
      for (const buffered of upTo)
        applied = tally(unit, buffered, await this.#applyBatch(session, unit, buffered));
      return applied;
    }
  }

  async #applyBatch(session: StreamSession, unit: OpenUnit, batch: Batch<Row>): Promise<Applied | undefined> {
    const { schema, warnings } = this.#ctx;
    const { stats } = unit;
    const { meta, raw } = batch;
    stats.batches++;
    stats.rowsRead += meta.rowsRead;
    for (const [name, count] of Object.entries(meta.filtered))
      stats.filtered[name] = (stats.filtered[name] ?? 0) + count;
    stats.bytes += meta.bytes ?? 0;
    if (meta.late === 'skipped') unit.late = true;
    // Records the source could not parse, set aside under the policy (the row path).
    if (meta.rejected?.length) await setAside(this.#s, session, unit, batch, meta.rejected);
    let records = raw ? raw.records : batch.rows.length;
    if (records === 0) return raw ? { rows: 0, filtered: {} } : undefined;

    const plan = await planFor(schema, warnings, session, unit, batch);
    const target = await session.targetShape();
    const client = await session.stagedTransaction(plan);
    if (unit.snapshot && !unit.snapshotOpen) {
      await openSnapshot(client, schema, target, session.stream, unit.source);
      unit.snapshotOpen = true;
    }
    let kept: CheckedRecords | undefined;
    try {
      if (raw && unit.checked) kept = await stageChecked(this.#s, session, unit, plan, batch);
      else await stageBatch(client, plan, batch);
    } catch (error) {
      // Only a data error (class 22) is about the CSV; others fail as on the row path.
      const code = (error as { code?: unknown }).code;
      if (!raw || isTransient(error) || typeof code !== 'string' || !code.startsWith('22')) throw error;
      throw explainCopyError(batch, error);
    }
    if (kept) records = kept.texts.length;
    if (unit.checked) records -= await rejectCasts(this.#s, session, unit, plan, batch, kept);
    let counts: { inserted: number; updated: number; deleted: number; filtered: number[]; recorded?: number };
    // The unit's last batch: its merge also writes the checkpoint and load row (one round trip
    // less per file); COMMIT follows in #commitUnit.
    const record = meta.commit
      ? loadRecordSql(this.#s, this.#ctx.runId(), unit, batch, plan.mergeParams.length + 1, {
          records,
          filterNames: plan.filterNames,
        })
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
      throw await explainApplyError(session, plan, batch, error);
    }
    if (record) {
      if (record.fenced && !counts.recorded) throw fencedError(batch, unit);
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

  async #commitUnit(session: StreamSession, unit: OpenUnit, batch: Batch<Row>): Promise<void> {
    const { schema, options } = this.#ctx;
    // A percentage of rejected rows is known once the file is complete.
    if (unit.policy && !unit.rejectedBy) checkRejectLimit(unit, batch.stream, true);
    const client = await session.ensureTransaction();
    if (!unit.recorded) {
      // Rows, checkpoint and load row: one transaction (invariant 2, manual §5.4).
      const record = loadRecordSql(this.#s, this.#ctx.runId(), unit, batch, 1);
      const text = `WITH ${record.ctes}\n       ${record.insert}`;
      const written = await client.query({ name: statementName(text), text, values: record.values });
      if (record.fenced && written.rowCount === 0) throw fencedError(batch, unit);
      unit.recorded = true;
    }
    if (unit.snapshot && batch.meta.lastOfUnit && !unit.rejectedBy) {
      // A file of a new snapshot with no rows still joins it; the last one swaps it in.
      const target = await session.targetShape();
      if (!unit.snapshotOpen) {
        await openSnapshot(client, schema, target, session.stream, unit.source);
        unit.snapshotOpen = true;
      }
      if (unit.snapshot === 'last') await swapSnapshot(client, schema, target, session.stream);
    }
    const hook = options.faults?.beforeCommit;
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
}
