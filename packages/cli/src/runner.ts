import { setTimeout as sleep } from 'node:timers/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import {
  type PipelineEvent,
  pipeline,
  runStreams,
  semaphore,
  streamFailedEvent,
  TributaryError,
} from '@tributary/core';
import { type PgSink, pgSink, readState, type TargetTable } from '@tributary/pg-sink';
import { type S3Source, type StreamDefinition, s3Source } from '@tributary/s3-source';
import type pg from 'pg';
import { readAfterCommit } from './after-commit.js';
import { readColumnNames } from './header.js';
import type { StreamSpec } from './spec.js';

/** The control schema the binaries use (`tributary.checkpoints`, `loads`, `runs`, views). */
export const CONTROL_SCHEMA = 'tributary';

export type LatePolicy = 'error' | 'apply' | 'skip';

/** `rejected`: not applied, moved to rejected/ under `onError: skip-file`. */
export type FileStatus = 'planned' | 'loaded' | 'late' | 'skipped' | 'rejected' | 'failed';

export interface FileReport {
  key: string;
  kind: 'baseline' | 'delta';
  status: FileStatus;
  rowsRead: number;
  rowsFiltered: number;
  rowsUpserted: number;
  /** Rows set aside under the stream's `onError` policy (all of a rejected file's). */
  rowsRejected: number;
  size?: number;
}

export interface StreamReport {
  stream: string;
  watermark: string | null;
  files: FileReport[];
  error: string | null;
  /** Error code when the stream failed (STREAM_LOCKED maps to exit code 3). */
  errorCode?: string;
  errorDetail?: unknown;
}

export interface RunOptions {
  streams: StreamSpec[];
  apply: boolean;
  /** Overrides every stream's late-file policy (`--late-files`). */
  lateFiles?: LatePolicy;
  /** Replay archived files at or after this key (`replay --from`). */
  replayFrom?: string;
  watch?: { intervalMs: number; stop: AbortSignal };
  /** Streams applying files at once (default 4); every watched stream keeps polling. */
  concurrency?: number;
  onEvent?: (event: PipelineEvent) => void;
  /** Called after each stream's pipeline run (watch mode reports every retry too). */
  onReport?: (report: StreamReport) => void;
}

/** The S3 stream definition of a spec for this run: late policy and replay applied. */
export function runDefinition(
  spec: StreamSpec,
  options: Pick<RunOptions, 'lateFiles' | 'replayFrom'>,
): StreamDefinition {
  return {
    ...spec.source,
    id: spec.id,
    ...(options.lateFiles ? { lateFiles: options.lateFiles } : {}),
    ...(options.replayFrom ? { replayFrom: options.replayFrom } : {}),
  };
}

/** A pg sink over these specs' targets in the control schema. */
export function specSink(pool: pg.Pool, specs: readonly StreamSpec[]): PgSink {
  return pgSink({
    pool,
    schema: CONTROL_SCHEMA,
    targets: Object.fromEntries(specs.map((spec) => [spec.id, spec.target])),
  });
}

/**
 * The spec's target as the sink can take it. A table to create without declared columns gets
 * them from the first pending file's header; undefined while there is no file to read one from
 * (and no table yet).
 */
async function resolveTarget(
  client: S3Client,
  pool: pg.Pool,
  spec: StreamSpec,
  source: S3Source,
): Promise<TargetTable | undefined> {
  const target = spec.target;
  if (!target.createTable || target.columns || !spec.columnsFromHeader) return target;
  const exists = await pool.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [
    `"${target.schema.replaceAll('"', '""')}"."${target.table.replaceAll('"', '""')}"`,
  ]);
  if (exists.rows[0]?.ok) return { ...target, createTable: false };
  const state = await readState(pool, CONTROL_SCHEMA, spec.id);
  const [plan] = await source.plan({
    checkpoint: async () => state?.checkpoint ?? null,
    ...(state ? { loads: state.loads } : {}),
  });
  const first = plan?.pending[0];
  if (!first) return undefined;
  const header = await readColumnNames(client, spec.source.bucket, first.key);
  return { ...target, columns: spec.columnsFromHeader(header) };
}

/**
 * Counts per file from the pipeline's events: each written batch adds what was read, filtered
 * (in JavaScript or in the merge SQL) and sent to the upsert.
 */
function trackFiles(files: Map<string, FileReport>, event: PipelineEvent): void {
  if (event.type !== 'batch-written') return;
  const { meta } = event;
  const key = String(meta.source ?? '');
  let report = files.get(key);
  if (!report) {
    report = {
      key,
      kind: meta.kind ?? 'delta',
      status: 'planned',
      rowsRead: 0,
      rowsFiltered: 0,
      rowsUpserted: 0,
      rowsRejected: 0,
    };
    if (meta.size !== undefined) report.size = meta.size;
    files.set(key, report);
  }
  report.rowsRead += meta.rowsRead;
  report.rowsFiltered += Object.values(event.filtered).reduce((a, b) => a + b, 0);
  report.rowsUpserted += event.rows;
  report.rowsRejected += event.rejected ?? 0;
  if (meta.late === 'skipped') report.status = 'skipped';
  if (event.unitRejected) report.status = 'rejected';
}

/**
 * A failed watched stream is retried after one interval, the wait doubling up to ten intervals
 * and never more than 5 minutes: a fixed file is picked up soon, a broken one is not hammered.
 */
export const MAX_RESTART_DELAY_MS = 300_000;

/**
 * Runs (or plans) every stream concurrently, each on its own pipeline, sink session, advisory
 * lock and run record (invariant 10): a failing stream stops at its failing file and is
 * reported (`stream-failed`) while the others go on. In watch mode a failed stream is run again
 * after a backoff, from its checkpoint, until the stop signal.
 */
export async function runStreamSpecs(
  client: S3Client,
  pool: pg.Pool,
  options: RunOptions,
): Promise<StreamReport[]> {
  const reports = new Map<string, StreamReport>();
  if (!options.apply) {
    const planned = await Promise.all(options.streams.map((spec) => planStream(client, pool, spec, options)));
    for (const report of planned) options.onReport?.(report);
    return planned;
  }
  const concurrency = options.concurrency ?? 4;
  const slot = semaphore(concurrency);
  const byId = new Map(options.streams.map((spec) => [spec.id, spec]));
  const watch = options.watch;
  const outcomes = await runStreams(
    [...byId.keys()],
    async (id) => {
      const report = await applyStream(client, pool, byId.get(id)!, options, slot);
      reports.set(id, report);
      options.onReport?.(report);
      if (report.error) throw report.errorDetail ?? new Error(report.error);
      return report;
    },
    {
      concurrency,
      restart: watch
        ? {
            initialDelayMs: watch.intervalMs,
            maxDelayMs: Math.max(watch.intervalMs, Math.min(10 * watch.intervalMs, MAX_RESTART_DELAY_MS)),
          }
        : false,
      ...(watch ? { stop: watch.stop } : {}),
      onFailure: (stream, error, retryInMs) => options.onEvent?.(streamFailedEvent(stream, error, retryInMs)),
    },
  );
  // A stream that failed before its report existed (e.g. an option its sink refused) still
  // gets one, with the error.
  return outcomes.map((outcome) => {
    const report = reports.get(outcome.stream);
    if (report) return report;
    const failed: StreamReport = { stream: outcome.stream, watermark: null, files: [], error: null };
    fail(failed, outcome.error ?? new Error('the stream ended without a report'));
    return failed;
  });
}

async function planStream(
  client: S3Client,
  pool: pg.Pool,
  spec: StreamSpec,
  options: RunOptions,
): Promise<StreamReport> {
  const stream = spec.id;
  const report: StreamReport = { stream, watermark: null, files: [], error: null };
  try {
    // Read-only: no schema, table or object is created or moved by a dry run.
    const state = await readState(pool, CONTROL_SCHEMA, stream);
    const source = s3Source({ client, streams: [runDefinition(spec, options)], archive: false });
    const [plan] = await source.plan({
      checkpoint: async () => state?.checkpoint ?? null,
      ...(state ? { loads: state.loads } : {}),
    });
    if (!plan) return report;
    report.watermark = plan.watermark?.key ?? state?.watermarkKey ?? null;
    for (const file of plan.pending) {
      report.files.push({
        key: file.key,
        kind: file.kind,
        status: 'planned',
        rowsRead: 0,
        rowsFiltered: 0,
        rowsUpserted: 0,
        rowsRejected: 0,
        size: file.size,
      });
    }
    for (const file of plan.late) {
      if (report.files.some((f) => f.key === file.key)) continue;
      report.files.push({
        key: file.key,
        kind: file.kind,
        status: 'late',
        rowsRead: 0,
        rowsFiltered: 0,
        rowsUpserted: 0,
        rowsRejected: 0,
        size: file.size,
      });
    }
    if (plan.error) report.error = plan.error;
  } catch (error) {
    fail(report, error);
  }
  return report;
}

async function applyStream(
  client: S3Client,
  pool: pg.Pool,
  spec: StreamSpec,
  options: RunOptions,
  slot: () => Promise<() => void>,
): Promise<StreamReport> {
  const stream = spec.id;
  const report: StreamReport = { stream, watermark: null, files: [], error: null };
  const files = new Map<string, FileReport>();
  const source: S3Source = s3Source({
    client,
    streams: [runDefinition(spec, options)],
    archive: !options.replayFrom,
    ...(options.watch ? { watch: { intervalMs: options.watch.intervalMs, jitter: 0.1 } } : {}),
  });
  let target: TargetTable | undefined;
  try {
    // No table and no file to take its columns from: nothing to do until a file arrives.
    for (;;) {
      target = await resolveTarget(client, pool, spec, source);
      if (target) break;
      options.onEvent?.({ type: 'caught-up', stream });
      if (!options.watch) return report;
      try {
        await sleep(options.watch.intervalMs, undefined, { signal: options.watch.stop });
      } catch {
        return report;
      }
    }
  } catch (error) {
    fail(report, error);
    return report;
  }
  const sink = specSink(pool, [{ ...spec, target }]);
  const onEvent = (event: PipelineEvent) => {
    // A transient failure re-runs from the checkpoint: the uncommitted file is read again, so
    // its partial counts are dropped rather than doubled.
    if (event.type === 'retry') {
      for (const [key, file] of files) if (file.status === 'planned') files.delete(key);
    }
    trackFiles(files, event);
    if (event.type === 'committed' && event.source) {
      const file = files.get(event.source);
      if (file && file.status === 'planned') file.status = 'loaded';
    }
    options.onEvent?.(event);
  };
  // One row in tributary.runs per stream run, with its outcome (manual §6 run log).
  let runId: string | undefined;
  try {
    runId = await sink.startRun({
      streams: [stream],
      info: { command: options.replayFrom ? 'replay' : 'run' },
    });
    const result = await pipeline(source, ...spec.transforms(), sink, {
      onEvent,
      slot,
      ...(options.watch ? { stopSignal: options.watch.stop } : {}),
    });
    await sink
      .finishRun(runId, { status: result.stopped ? 'stopped' : 'succeeded', ...result })
      .catch(() => undefined);
  } catch (error) {
    if (runId) await sink.finishRun(runId, { status: 'failed', error }).catch(() => undefined);
    fail(report, error);
    const key = error instanceof TributaryError ? error.location?.file : undefined;
    const failing = key ? files.get(key) : [...files.values()].find((f) => f.status === 'planned');
    if (failing)
      failing.status = error instanceof TributaryError && error.code === 'LATE_FILE' ? 'late' : 'failed';
    else if (key) {
      report.files.push({
        key,
        kind: 'delta',
        status: error instanceof TributaryError && error.code === 'LATE_FILE' ? 'late' : 'failed',
        rowsRead: 0,
        rowsFiltered: 0,
        rowsUpserted: 0,
        rowsRejected: 0,
      });
    }
  } finally {
    await sink.close().catch(() => undefined);
  }
  if (target.afterCommit) await warnFailedHook(pool, stream, options);
  // Files that never committed in a failed run are not "loaded"; planned-but-unreached stay out.
  for (const file of files.values()) {
    if (file.status === 'planned') file.status = 'failed';
    report.files.push(file);
  }
  report.files.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const state = await readState(pool, CONTROL_SCHEMA, stream).catch(() => undefined);
  report.watermark = state?.watermarkKey ?? null;
  return report;
}

/**
 * A failed after-commit hook does not fail the run (the data is committed), but the operator
 * should hear of it at the run's end, not only from `status`.
 */
async function warnFailedHook(pool: pg.Pool, stream: string, options: RunOptions): Promise<void> {
  const run = await readAfterCommit(pool, CONTROL_SCHEMA, stream).catch(() => null);
  if (run?.status !== 'failed') return;
  options.onEvent?.({
    type: 'warning',
    stream,
    message: `after-commit hook failed after ${run.source ?? 'a commit'} (data is committed; the next commit runs it again): ${run.error ?? ''}`,
  });
}

function fail(report: StreamReport, error: unknown): void {
  report.error = error instanceof Error ? error.message : String(error);
  report.errorDetail = error;
  if (error instanceof TributaryError) report.errorCode = error.code;
}
