import { TributaryError } from '@tributary/core';
import {
  createS3Client,
  openPool,
  parseDatasets,
  parseLatePolicy,
  parsePositiveNumber,
  readEnvironment,
  UsageError,
} from './config.js';
import { streamHealth } from './health.js';
import { createLogger, describeError, progressRenderer, stopOnSignals, table } from './output.js';
import { runDatasets, type StreamReport } from './run.js';
import { readStatus } from './status.js';

export type CommandName =
  | 'run'
  | 'status'
  | 'replay'
  | 'generate'
  | 'demo'
  | 'publish'
  | 'subscribe'
  | 'archive';

/** Exit codes of the contract: 0 ok, 1 a dataset failed, 2 usage, 3 locked by another process. */
export const EXIT = { ok: 0, failed: 1, usage: 2, locked: 3 } as const;

export function exitCodeFor(reports: StreamReport[]): number {
  if (reports.some((r) => r.errorCode === 'STREAM_LOCKED')) return EXIT.locked;
  return reports.some((r) => r.error) ? EXIT.failed : EXIT.ok;
}

/** The `--json` shape of `run` (examples/tickets/README.md § Output). */
export function runJson(dryRun: boolean, reports: StreamReport[]): unknown {
  return {
    dryRun,
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
      })),
      error: r.error === null ? null : describeError(r.errorDetail ?? r.error),
    })),
  };
}

function printReports(reports: StreamReport[], dryRun: boolean): void {
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
      process.stdout.write(
        `${table(['file', 'kind', 'status', 'bytes', 'read', 'filtered', 'upserted'], rows)}\n`,
      );
    }
    if (report.error) process.stdout.write(`  error: ${describeError(report.errorDetail ?? report.error)}\n`);
  }
}

export async function main(command: CommandName, opts: Record<string, unknown>): Promise<void> {
  const logger = createLogger();
  const json = Boolean(opts['json']);
  const tty = Boolean(process.stderr.isTTY) && !json;
  try {
    const env = readEnvironment();
    switch (command) {
      case 'run':
      case 'replay': {
        const datasets = parseDatasets(String(opts['dataset']));
        const lateFiles = parseLatePolicy(opts['lateFiles']);
        const intervalMs = parsePositiveNumber('--interval', String(opts['interval'] ?? '60')) * 1000;
        const metricsPort =
          opts['metricsPort'] === undefined
            ? undefined
            : parsePositiveNumber('--metrics-port', String(opts['metricsPort']));
        const apply = Boolean(opts['apply']);
        const watch = command === 'run' && Boolean(opts['watch']);
        if (watch && !apply) throw new UsageError('--watch needs --apply');
        // Per dataset: its session (advisory lock held), its load-log reads and a planner.
        const pool = openPool(env, logger, 2 * datasets.length + 2);
        const client = createS3Client(env);
        const stop = stopOnSignals(logger);
        const renderer = progressRenderer(logger, tty);
        const health = streamHealth();
        const metrics = metricsPort
          ? await (await import('./metrics.js')).startMetricsServer(metricsPort, {
              env,
              client,
              pool,
              datasets,
              health,
            })
          : undefined;
        try {
          const reports = await runDatasets(env, client, pool, {
            datasets,
            apply,
            lateFiles,
            ...(command === 'replay' ? { replayFrom: String(opts['from']) } : {}),
            ...(watch ? { watch: { intervalMs, stop: stop.signal } } : {}),
            onEvent: (event) => {
              health.onEvent(event);
              renderer.onEvent(event);
              metrics?.onEvent(event);
              // In watch mode a failure is reported when it happens, not at exit.
              if (watch && event.type === 'stream-failed') {
                logger.error(
                  {
                    stream: event.stream,
                    file: event.source,
                    code: event.error instanceof TributaryError ? event.error.code : undefined,
                    retryInMs: event.retryInMs,
                  },
                  describeError(event.error, event.stream.split('/')[1]),
                );
              }
            },
          });
          renderer.stop();
          for (const report of reports) {
            if (report.error) {
              process.stderr.write(
                `tickets-pipeline: ${describeError(report.errorDetail ?? report.error, report.stream.split('/')[1])}\n`,
              );
            }
          }
          if (json) process.stdout.write(`${JSON.stringify(runJson(!apply, reports))}\n`);
          else printReports(reports, !apply);
          process.exitCode = exitCodeFor(reports);
        } finally {
          renderer.stop();
          await metrics?.close();
          await pool.end();
          client.destroy();
        }
        return;
      }
      case 'status': {
        const datasets = parseDatasets(String(opts['dataset']));
        const pool = openPool(env, logger, 2);
        const client = createS3Client(env);
        try {
          const streams = await readStatus(env, client, pool, datasets);
          if (json) process.stdout.write(`${JSON.stringify({ streams })}\n`);
          else {
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
            process.stdout.write(
              `${table(['stream', 'watermark', 'last loaded', 'lag s', 'files', 'rows', 'pending', 'late', 'late skipped', 'failing file', 'last error'], rows)}\n`,
            );
          }
        } finally {
          await pool.end();
          client.destroy();
        }
        return;
      }
      case 'generate': {
        const seed = parsePositiveNumber('--seed', String(opts['seed']));
        const scale = parsePositiveNumber('--scale', String(opts['scale']));
        if (!opts['out'] && !opts['s3']) throw new UsageError('generate needs --out <dir> or --s3');
        // Loaded only for the commands that need them: a `run` starts without the generator,
        // lib-storage, embedded PostgreSQL or s3rver.
        const { generateBucket } = await import('./generate.js');
        const { uploadBucket, writeBucketToDir } = await import('./upload.js');
        const files = generateBucket({ seed, scale, prefix: env.prefix });
        if (opts['out']) await writeBucketToDir(files, String(opts['out']));
        if (opts['s3']) {
          const client = createS3Client(env);
          try {
            await uploadBucket(files, client, env.bucket, (key) => logger.info({ key }, 'uploaded'));
          } finally {
            client.destroy();
          }
        }
        const summary = { files: files.map((f) => ({ key: f.key, kind: f.kind, rows: f.rowCount })) };
        if (json) process.stdout.write(`${JSON.stringify(summary)}\n`);
        else
          process.stdout.write(
            `${table(
              ['key', 'kind', 'rows'],
              files.map((f) => [f.key, f.kind, f.rowCount]),
            )}\n`,
          );
        return;
      }
      case 'demo': {
        const scale = parsePositiveNumber('--scale', String(opts['scale'] ?? '1'));
        const { runDemo } = await import('./demo.js');
        process.exitCode = await runDemo({ keep: Boolean(opts['keep']), scale, json, tty, logger });
        return;
      }
      case 'publish':
      case 'subscribe':
      case 'archive': {
        const { runKafkaCommand } = await import('./kafka.js');
        process.exitCode = await runKafkaCommand(command, opts, { env, logger, json, tty });
        return;
      }
    }
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`tickets-pipeline: ${error.message}\n`);
      process.exitCode = EXIT.usage;
      return;
    }
    process.stderr.write(`tickets-pipeline: ${describeError(error)}\n`);
    process.exitCode =
      error instanceof TributaryError && error.code === 'STREAM_LOCKED' ? EXIT.locked : EXIT.failed;
  }
}
