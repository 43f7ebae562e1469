import type { S3Client } from '@aws-sdk/client-s3';
import { TributaryError } from '@tributary/core';
import { extractTable, reconcileExtractRuns } from '@tributary/pg-source';
import { s3FileTarget } from '@tributary/s3-source';
import type pg from 'pg';
import { extractBucket } from './config-checks.js';
import type { ExtractStreamConfig } from './config-schema.js';
import { openPool } from './env.js';
import { describeError, type Logger } from './output.js';
import { CONTROL_SCHEMA } from './runner.js';

/** One extract stream's outcome in a run (`--json`: `extracts[]`). */
export interface ExtractReport {
  stream: string;
  table: string;
  /** `planned` (dry run), `uploaded`, `caught-up` (its current file exists) or `failed`. */
  status: 'planned' | 'uploaded' | 'caught-up' | 'failed';
  key: string | null;
  rows: number;
  error: string | null;
  errorCode?: string;
  errorDetail?: unknown;
}

export interface ExtractRunOptions {
  apply: boolean;
  app: string;
  logger: Logger;
  env?: NodeJS.ProcessEnv;
  signal?: AbortSignal;
}

/**
 * Runs every extract stream once, concurrently, each in its own failure domain (invariant 10):
 * one failing table is reported and the others go on. A dry run touches nothing.
 */
export async function runExtracts(
  client: S3Client,
  control: pg.Pool,
  extracts: readonly ExtractStreamConfig[],
  options: ExtractRunOptions,
): Promise<ExtractReport[]> {
  if (!options.apply) return extracts.map((stream) => report(stream, 'planned'));
  const sources = new Map<string, pg.Pool>();
  const sourcePool = (url: string) => {
    let pool = sources.get(url);
    if (!pool) {
      // Idle errors logged by message only, never the connection string (it may hold a password).
      pool = openPool({ databaseUrl: url }, options.app, options.logger, 2);
      sources.set(url, pool);
    }
    return pool;
  };
  try {
    return await Promise.all(
      extracts.map(async (stream) => {
        const pgSource = stream.source.postgres;
        const s3 = stream.target.s3;
        try {
          const result = await extractTable({
            stream: stream.id,
            source: sourcePool(pgSource.url),
            control,
            schema: CONTROL_SCHEMA,
            table: pgSource.table,
            ...(pgSource.watermark ? { watermark: pgSource.watermark } : {}),
            key: pgSource.key,
            ...(pgSource.columns ? { columns: pgSource.columns } : {}),
            mode: pgSource.mode,
            safetyLagMs: pgSource.safetyLag * 1000,
            target: s3FileTarget({
              client,
              bucket: extractBucket(stream, options.env),
              prefix: s3.prefix,
              keyPattern: s3.keyPattern,
              timeZone: s3.timeZone,
              gzip: s3.gzip,
            }),
            ...(options.signal ? { signal: options.signal } : {}),
          });
          options.logger.info(
            { stream: stream.id, status: result.status, file: result.key, rows: result.rows },
            `extract ${stream.id}: ${result.status}`,
          );
          return { ...report(stream, result.status), key: result.key ?? null, rows: result.rows };
        } catch (error) {
          const failed = report(stream, 'failed');
          failed.error = describeError(error);
          failed.errorDetail = error;
          if (error instanceof TributaryError) failed.errorCode = error.code;
          return failed;
        }
      }),
    );
  } finally {
    await Promise.all([...sources.values()].map((pool) => pool.end().catch(() => undefined)));
  }
}

function report(stream: ExtractStreamConfig, status: ExtractReport['status']): ExtractReport {
  return { stream: stream.id, table: stream.source.postgres.table, status, key: null, rows: 0, error: null };
}

/**
 * After the loads: uploaded extract runs whose files were loaded become `loaded`, or `failed` on
 * a row-count mismatch (logged as an error: parity is a failure, not a warning).
 */
export async function reconcileExtracts(control: pg.Pool, logger: Logger): Promise<number> {
  const runs = await reconcileExtractRuns(control, { schema: CONTROL_SCHEMA });
  let failed = 0;
  for (const run of runs) {
    if (run.status === 'loaded') continue;
    failed++;
    logger.error(
      { stream: run.stream, file: run.key, rowsExtracted: run.rowsExtracted, rowsLoaded: run.rowsLoaded },
      `extract ${run.stream}: ${run.rowsExtracted} rows extracted but ${run.rowsLoaded} loaded from ${run.key}`,
    );
  }
  return failed;
}
