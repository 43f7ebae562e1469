import type { S3Client } from '@aws-sdk/client-s3';
import { type PipelineEvent, pipeline, runStreams, semaphore, TributaryError } from '@tributary/core';
import { type PgSink, pgSink, readState, type TargetTable } from '@tributary/pg-sink';
import { type S3Source, type StreamDefinition, s3Source } from '@tributary/s3-source';
import type pg from 'pg';
import type { Environment, LatePolicy } from './config.js';

export type { LatePolicy } from './config.js';

import {
  type Dataset,
  DEFAULT_DROP_FIELDS,
  KEY_PATTERN,
  TICKET_COLUMNS,
  TIME_ZONE,
  tableColumns,
  ticketTransforms,
} from './tickets.js';

export type FileStatus = 'planned' | 'loaded' | 'late' | 'skipped' | 'failed';

export interface FileReport {
  key: string;
  kind: 'baseline' | 'delta';
  status: FileStatus;
  rowsRead: number;
  rowsFiltered: number;
  rowsUpserted: number;
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
  datasets: Dataset[];
  apply: boolean;
  lateFiles: LatePolicy;
  /** Replay archived files at or after this key (`replay --from`). */
  replayFrom?: string;
  watch?: { intervalMs: number; stop: AbortSignal };
  /** Datasets applying files at once (default 4); every watched dataset keeps polling. */
  concurrency?: number;
  onEvent?: (event: PipelineEvent) => void;
  /** Called after each dataset's pipeline run (watch mode reports every round). */
  onReport?: (report: StreamReport) => void;
}

export const CONTROL_SCHEMA = 'tributary';
export const TARGET_SCHEMA = 'tickets';

export function streamId(dataset: Dataset): string {
  return `tickets/${dataset}`;
}

/** The S3 stream of one dataset: `<prefix>/<dataset>/changes/`, Nairobi-time keys, 32 columns. */
export function ticketStream(
  env: Environment,
  dataset: Dataset,
  options: Pick<RunOptions, 'lateFiles' | 'replayFrom'>,
): StreamDefinition {
  return {
    id: streamId(dataset),
    bucket: env.bucket,
    prefix: `${env.prefix}/${dataset}/changes/`,
    processedPrefix: `${env.prefix}/${dataset}/processed/`,
    latePrefix: `${env.prefix}/${dataset}/late/`,
    keyPattern: KEY_PATTERN,
    timeZone: TIME_ZONE,
    format: 'csv',
    columns: [...TICKET_COLUMNS],
    columnCheck: 'exact',
    emptyAsNull: true,
    lateFiles: options.lateFiles,
    granularity: 'file',
    ...(options.replayFrom ? { replayFrom: options.replayFrom } : {}),
  };
}

/** `tickets.<dataset>`: typed columns, upsert on ticket_id, offset-less times in Nairobi. */
export function ticketTarget(dataset: Dataset, mode: TargetTable['mode'] = 'upsert'): TargetTable {
  return {
    schema: TARGET_SCHEMA,
    table: dataset,
    key: ['ticket_id'],
    columns: tableColumns(DEFAULT_DROP_FIELDS),
    createTable: true,
    mode,
    timeZone: TIME_ZONE,
  };
}

export function ticketSink(pool: pg.Pool, datasets: Dataset[]): PgSink {
  return pgSink({
    pool,
    schema: CONTROL_SCHEMA,
    targets: Object.fromEntries(datasets.map((dataset) => [streamId(dataset), ticketTarget(dataset)])),
  });
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
    };
    if (typeof meta['size'] === 'number') report.size = meta['size'];
    files.set(key, report);
  }
  report.rowsRead += meta.rowsRead;
  report.rowsFiltered += Object.values(event.filtered).reduce((a, b) => a + b, 0);
  report.rowsUpserted += event.rows;
  if (meta['late'] === 'skipped') report.status = 'skipped';
}

/**
 * A failed watched dataset is retried after one interval, the wait doubling up to ten intervals
 * and never more than 5 minutes: a fixed file is picked up soon, a broken one is not hammered.
 */
export const MAX_RESTART_DELAY_MS = 300_000;

/**
 * Runs (or plans) every dataset concurrently, each on its own pipeline, sink session, advisory
 * lock and run record (invariant 10): a failing dataset stops at its failing file and is
 * reported (`stream-failed`) while the others go on. In watch mode a failed dataset is run again
 * after a backoff, from its checkpoint, until the stop signal.
 */
export async function runDatasets(
  env: Environment,
  client: S3Client,
  pool: pg.Pool,
  options: RunOptions,
): Promise<StreamReport[]> {
  const reports = new Map<string, StreamReport>();
  if (!options.apply) {
    const planned = await Promise.all(
      options.datasets.map((dataset) => planDataset(env, client, pool, dataset, options)),
    );
    for (const report of planned) options.onReport?.(report);
    return planned;
  }
  const concurrency = options.concurrency ?? 4;
  const slot = semaphore(concurrency);
  const byStream = new Map(options.datasets.map((dataset) => [streamId(dataset), dataset]));
  const watch = options.watch;
  await runStreams(
    [...byStream.keys()],
    async (stream) => {
      const report = await applyDataset(env, client, pool, byStream.get(stream)!, options, slot);
      reports.set(stream, report);
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
      onFailure: (stream, error, retryInMs) => {
        const file = error instanceof TributaryError ? error.location?.file : undefined;
        options.onEvent?.({
          type: 'stream-failed',
          stream,
          error,
          ...(file ? { source: file } : {}),
          ...(retryInMs === undefined ? {} : { retryInMs }),
        });
      },
    },
  );
  return [...byStream.keys()].map((stream) => reports.get(stream)!);
}

async function planDataset(
  env: Environment,
  client: S3Client,
  pool: pg.Pool,
  dataset: Dataset,
  options: RunOptions,
): Promise<StreamReport> {
  const stream = streamId(dataset);
  const report: StreamReport = { stream, watermark: null, files: [], error: null };
  try {
    // Read-only: no schema, table or object is created or moved by a dry run.
    const state = await readState(pool, CONTROL_SCHEMA, stream);
    const source = s3Source({ client, streams: [ticketStream(env, dataset, options)], archive: false });
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
        size: file.size,
      });
    }
    if (plan.error) report.error = plan.error;
  } catch (error) {
    fail(report, error);
  }
  return report;
}

async function applyDataset(
  env: Environment,
  client: S3Client,
  pool: pg.Pool,
  dataset: Dataset,
  options: RunOptions,
  slot: () => Promise<() => void>,
): Promise<StreamReport> {
  const stream = streamId(dataset);
  const report: StreamReport = { stream, watermark: null, files: [], error: null };
  const files = new Map<string, FileReport>();
  const source: S3Source = s3Source({
    client,
    streams: [ticketStream(env, dataset, options)],
    archive: !options.replayFrom,
    ...(options.watch ? { watch: { intervalMs: options.watch.intervalMs, jitter: 0.1 } } : {}),
  });
  const sink = ticketSink(pool, [dataset]);
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
  // One row in tributary.runs per dataset run, with its outcome (manual §6 run log).
  let runId: string | undefined;
  try {
    runId = await sink.startRun({
      streams: [stream],
      info: { command: options.replayFrom ? 'replay' : 'run' },
    });
    const result = await pipeline(source, ...ticketTransforms(), sink, {
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
      });
    }
  } finally {
    await sink.close().catch(() => undefined);
  }
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

function fail(report: StreamReport, error: unknown): void {
  report.error = error instanceof Error ? error.message : String(error);
  report.errorDetail = error;
  if (error instanceof TributaryError) report.errorCode = error.code;
}
