import { setTimeout as sleep } from 'node:timers/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import { type PipelineEvent, TributaryError } from '@tributary/core';
import type { ExtractStreamConfig } from './config-schema.js';
import { createS3Client, openPool, type ServiceEnvironment, UsageError } from './env.js';
import type { ExtractReport } from './extract.js';
import { streamHealth } from './health.js';
import { describeError, type Logger, progressRenderer, stopOnSignals, table } from './output.js';
import { CONTROL_SCHEMA, type LatePolicy, runStreamSpecs, type StreamReport } from './runner.js';
import type { StreamSpec } from './spec.js';
import { readStatus } from './status.js';

// Extract streams load pg-source, lib-storage and the config schema (zod): only configs that
// have them pay for that at start (a load-only run's start is on the steady-state path, #12).
const extractModule = () => import('./extract.js');

/** What a command handler needs from the binary that runs it. */
export interface CommandContext {
  /** Binary name: log field `app`, stderr prefix, PostgreSQL application_name. */
  app: string;
  logger: Logger;
  json: boolean;
  tty: boolean;
  /** How stderr names a stream (`dataset inc` for tickets-pipeline). */
  label?: (stream: string) => string;
}

export interface RunCommandOptions {
  apply: boolean;
  watch: boolean;
  intervalMs: number;
  metricsPort?: number | undefined;
  lateFiles?: LatePolicy | undefined;
  replayFrom?: string | undefined;
  concurrency?: number | undefined;
  /**
   * Watch mode: called every interval for the streams that exist now (discover templates); a
   * stream not running yet starts in its own failure domain beside the others.
   */
  rediscover?: ((client: S3Client) => Promise<StreamSpec[]>) | undefined;
  /** Extract streams (PostgreSQL → S3), run before the load streams (every interval in watch mode). */
  extracts?: readonly ExtractStreamConfig[] | undefined;
}

/** Exit codes of the contract: 0 ok, 1 a stream failed, 2 usage, 3 locked by another process. */
export const EXIT = { ok: 0, failed: 1, usage: 2, locked: 3 } as const;

export function exitCodeFor(
  reports: readonly Pick<StreamReport, 'error' | 'errorCode'>[],
  extracts: readonly Pick<ExtractReport, 'error' | 'errorCode'>[] = [],
): number {
  const all = [...reports, ...extracts];
  if (all.some((r) => r.errorCode === 'STREAM_LOCKED')) return EXIT.locked;
  return all.some((r) => r.error) ? EXIT.failed : EXIT.ok;
}

/** The `--json` shape of `run`/`replay` (examples/tickets/README.md § Output; same for `tributary`). */
export function runJson(dryRun: boolean, reports: StreamReport[], extracts?: ExtractReport[]): unknown {
  return {
    dryRun,
    // Only for configs with extract streams: the load-only document stays as it was.
    ...(extracts?.length
      ? {
          extracts: extracts.map((e) => ({
            stream: e.stream,
            table: e.table,
            status: e.status,
            key: e.key,
            rowsExtracted: e.rows,
            error: e.error,
          })),
        }
      : {}),
    streams: reports.map((r) => ({
      stream: r.stream,
      watermark: r.watermark,
      files: r.files.map((f) => ({
        key: f.key,
        kind: f.kind,
        status: f.status,
        rowsRead: f.rowsRead,
        rowsFiltered: f.rowsFiltered,
        rowsUpserted: f.rowsUpserted,
        rowsRejected: f.rowsRejected,
      })),
      rowsRejected: r.files.reduce((n, f) => n + f.rowsRejected, 0),
      error: r.error === null ? null : describeError(r.errorDetail ?? r.error),
    })),
  };
}

function printReports(reports: StreamReport[], dryRun: boolean, extracts: ExtractReport[]): void {
  for (const e of extracts) {
    process.stdout.write(
      `\n${e.stream}  extract ${e.table}: ${e.status}${e.key ? ` ${e.key}` : ''} (${e.rows} rows)${e.error ? `\n  error: ${e.error}` : ''}\n`,
    );
  }
  for (const report of reports) {
    process.stdout.write(
      `\n${report.stream}  watermark: ${report.watermark ?? '(none)'}${dryRun ? '  (dry run: nothing changed)' : ''}\n`,
    );
    if (report.files.length === 0) process.stdout.write('  nothing to do\n');
    else {
      const rows = report.files.map((f) => [
        f.key,
        f.kind,
        f.status,
        f.size ?? '',
        f.rowsRead,
        f.rowsFiltered,
        f.rowsUpserted,
      ]);
      const headers = ['file', 'kind', 'status', 'bytes', 'read', 'filtered', 'upserted'];
      // Rejected rows (onError): a column only when some file has some.
      if (report.files.some((f) => f.rowsRejected)) {
        headers.push('rejected');
        report.files.forEach((f, i) => {
          rows[i]!.push(f.rowsRejected);
        });
      }
      process.stdout.write(`${table(headers, rows)}\n`);
    }
    if (report.error) process.stdout.write(`  error: ${describeError(report.errorDetail ?? report.error)}\n`);
  }
}

/**
 * `run` and `replay`: every stream concurrently in its own failure domain, progress on stderr,
 * the summary (or `--json`) on stdout. Returns the exit code.
 */
export async function runCommand(
  ctx: CommandContext,
  env: ServiceEnvironment,
  specs: StreamSpec[],
  options: RunCommandOptions,
): Promise<number> {
  const { logger, json, tty } = ctx;
  const label = ctx.label ?? ((stream: string) => `stream ${stream}`);
  if (options.watch && !options.apply) throw new UsageError('--watch needs --apply');
  // Per stream: its session (advisory lock held), its load-log reads and a planner.
  const extracts = options.extracts ?? [];
  // Extracts: one session each (advisory lock, run log) beside the load streams'.
  const pool = openPool(env, ctx.app, logger, 2 * specs.length + extracts.length + 2);
  const client = createS3Client(env);
  // The SDK loads and runs its credential chain on the first request; start it now so it
  // overlaps PostgreSQL's connect, lock and checks instead of following them. A failure is
  // reported by that first request, as it would be anyway.
  void (client.config.credentials() as Promise<unknown>).catch(() => undefined);
  const stop = stopOnSignals(logger);
  const renderer = progressRenderer(logger, tty);
  const health = streamHealth();
  const metrics = options.metricsPort
    ? await (await import('./metrics.js')).startMetricsServer(options.metricsPort, {
        client,
        pool,
        specs,
        health,
      })
    : undefined;
  const onEvent = (event: PipelineEvent) => {
    health.onEvent(event);
    renderer.onEvent(event);
    metrics?.onEvent(event);
    // In watch mode a failure is reported when it happens, not at exit.
    if (options.watch && event.type === 'stream-failed') {
      logger.error(
        {
          stream: event.stream,
          file: event.source,
          code: event.error instanceof TributaryError ? event.error.code : undefined,
          retryInMs: event.retryInMs,
        },
        describeError(event.error, label(event.stream)),
      );
    }
  };
  const runSpecs = (streams: StreamSpec[]) =>
    runStreamSpecs(client, pool, {
      streams,
      apply: options.apply,
      ...(options.lateFiles ? { lateFiles: options.lateFiles } : {}),
      ...(options.replayFrom ? { replayFrom: options.replayFrom } : {}),
      ...(options.concurrency ? { concurrency: options.concurrency } : {}),
      ...(options.watch ? { watch: { intervalMs: options.intervalMs, stop: stop.signal } } : {}),
      onEvent,
    });
  const extractPass = async () => {
    // No stop signal: a graceful stop lets an in-flight extract finish its file and watermark.
    const { runExtracts } = await extractModule();
    const reports = await runExtracts(client, pool, extracts, { apply: options.apply, app: ctx.app, logger });
    // /healthz, the failure counter and watch-mode logging see extracts as they see loads.
    for (const report of reports)
      onEvent(extractEvent(report, options.watch ? options.intervalMs : undefined));
    return reports;
  };
  let extractReports: ExtractReport[] = [];
  try {
    // Extract before load: this run's files are loaded by this run's load streams.
    if (extracts.length) extractReports = await extractPass();
    const runs = specs.length ? [runSpecs(specs)] : [];
    if (options.watch && extracts.length) {
      runs.push(
        (async () => {
          for (;;) {
            try {
              await sleep(options.intervalMs, undefined, { signal: stop.signal });
            } catch {
              return [];
            }
            await (await extractModule())
              .reconcileExtracts(pool, logger)
              .catch((error: unknown) =>
                logger.error({}, `reconciling extract runs failed: ${describeError(error)}`),
              );
            extractReports = await extractPass();
          }
        })(),
      );
    }
    if (options.watch && options.rediscover) {
      const running = new Set(specs.map((spec) => spec.id));
      for (;;) {
        try {
          await sleep(options.intervalMs, undefined, { signal: stop.signal });
        } catch {
          break;
        }
        let found: StreamSpec[];
        try {
          found = await options.rediscover(client);
        } catch (error) {
          logger.error({}, `discovering streams failed (the running ones go on): ${describeError(error)}`);
          continue;
        }
        const fresh = found.filter((spec) => !running.has(spec.id));
        if (!fresh.length) continue;
        for (const spec of fresh) running.add(spec.id);
        specs.push(...fresh); // the metrics server reads this list at scrape time
        // Each new stream holds a session (its lock) and reads the load log.
        (pool as unknown as { options: { max: number } }).options.max += 2 * fresh.length;
        logger.info({ streams: fresh.map((spec) => spec.id) }, 'new streams discovered');
        runs.push(runSpecs(fresh));
      }
    }
    const reports = (await Promise.all(runs)).flat();
    renderer.stop();
    const parityFailures =
      options.apply && extracts.length ? await (await extractModule()).reconcileExtracts(pool, logger) : 0;
    for (const e of extractReports) {
      if (e.error) process.stderr.write(`${ctx.app}: ${e.error}\n`);
    }
    for (const report of reports) {
      if (report.error) {
        process.stderr.write(
          `${ctx.app}: ${describeError(report.errorDetail ?? report.error, label(report.stream))}\n`,
        );
      }
    }
    if (json) process.stdout.write(`${JSON.stringify(runJson(!options.apply, reports, extractReports))}\n`);
    else printReports(reports, !options.apply, extractReports);
    const code = exitCodeFor(reports, extractReports);
    return code === EXIT.ok && parityFailures ? EXIT.failed : code;
  } finally {
    renderer.stop();
    await metrics?.close();
    await pool.end();
    client.destroy();
  }
}

/**
 * An extract's outcome as a pipeline event: a failed extract is a failing stream (the file is its
 * table), retried at the next interval in watch mode; a good one is healthy again.
 */
function extractEvent(report: ExtractReport, retryInMs: number | undefined): PipelineEvent {
  if (!report.error) return { type: 'stream-recovered', stream: report.stream };
  const error =
    report.errorDetail instanceof Error
      ? report.errorDetail
      : new TributaryError('SOURCE_FAILED', report.error, { stream: report.stream });
  return {
    type: 'stream-failed',
    stream: report.stream,
    error,
    source: report.table,
    ...(retryInMs === undefined ? {} : { retryInMs }),
  };
}

/** `status`: control-schema facts plus a read-only listing per stream. */
export async function statusCommand(
  ctx: CommandContext,
  env: ServiceEnvironment,
  specs: StreamSpec[],
  extractIds: readonly string[] = [],
): Promise<void> {
  const pool = openPool(env, ctx.app, ctx.logger, 2);
  const client = createS3Client(env);
  try {
    const streams = await readStatus(client, pool, specs);
    const extracts = extractIds.length
      ? await (await import('@tributary/pg-source')).readExtractStatus(pool, extractIds, {
          schema: CONTROL_SCHEMA,
        })
      : [];
    // Only configs with extract streams get the key: the load-only document is unchanged.
    if (ctx.json)
      process.stdout.write(`${JSON.stringify({ streams, ...(extracts.length ? { extracts } : {}) })}\n`);
    else {
      if (extracts.length) {
        const rows = extracts.map((e) => [
          e.stream,
          e.watermark ?? '-',
          e.lastKey ?? '-',
          e.lastRun?.status ?? '-',
          e.lastRun?.rowsExtracted ?? '-',
          e.lastRun?.rowsLoaded ?? '-',
          e.lastLoadedAt ?? '-',
          e.lastRun?.error ?? '-',
        ]);
        process.stdout.write(
          `${table(['extract', 'watermark', 'last file', 'last run', 'extracted', 'loaded', 'last loaded', 'error'], rows)}\n\n`,
        );
      }
      const rows = streams.map((s) => [
        s.stream,
        s.watermark ?? '-',
        s.lastLoadedAt ?? '-',
        s.lagSeconds ?? '-',
        s.filesLoaded,
        s.rowsLoaded,
        s.pendingFiles,
        s.lateFiles,
        s.lateFilesSkipped,
        s.failingFile ?? '-',
        s.lastError ?? '-',
      ]);
      const headers = [
        'stream',
        'watermark',
        'last loaded',
        'lag s',
        'files',
        'rows',
        'pending',
        'late',
        'late skipped',
        'failing file',
        'last error',
      ];
      // Rejected rows and files (onError): columns only when some stream has some.
      if (streams.some((s) => s.rowsRejected || s.filesRejected)) {
        headers.push('rows rejected', 'files rejected');
        streams.forEach((s, i) => {
          rows[i]!.push(s.rowsRejected, s.filesRejected);
        });
      }
      // Qlik reloads: a column only when some stream has had one.
      if (streams.some((s) => s.snapshot)) {
        headers.push('snapshot');
        streams.forEach((s, i) => {
          const snap = s.snapshot;
          rows[i]!.push(
            snap ? `${snap.status} ${snap.completedAt ?? snap.startedAt} (${snap.files.length} files)` : '-',
          );
        });
      }
      if (streams.some((s) => s.afterCommit)) {
        headers.push('after commit');
        streams.forEach((s, i) => {
          const run = s.afterCommit;
          rows[i]!.push(run ? `${run.status} ${run.startedAt}${run.error ? `: ${run.error}` : ''}` : '-');
        });
      }
      process.stdout.write(`${table(headers, rows)}\n`);
    }
  } finally {
    await pool.end();
    client.destroy();
  }
}

/** Exit code for an error that escaped a command (usage 2, locked 3, else 1), after printing it. */
export function reportCommandError(app: string, error: unknown): number {
  if (error instanceof UsageError) {
    process.stderr.write(`${app}: ${error.message}\n`);
    return EXIT.usage;
  }
  process.stderr.write(`${app}: ${describeError(error)}\n`);
  return error instanceof TributaryError && error.code === 'STREAM_LOCKED' ? EXIT.locked : EXIT.failed;
}
