import { describeError, type Logger, progressRenderer, table } from '@tributary/cli';
import { startEmbeddedPostgres } from '@tributary/pg-sink/testing';
import { localS3Client, startEmbeddedS3 } from '@tributary/s3-source/testing';
import pg from 'pg';
import type { Environment } from './config.js';
import { changeFiles, expectedTable, generateBucket } from './generate.js';
import { runDatasets, type StreamReport } from './run.js';
import { DATASETS } from './tickets.js';
import { uploadBucket } from './upload.js';

export interface DemoOptions {
  keep: boolean;
  scale: number;
  json: boolean;
  tty: boolean;
  logger: Logger;
}

const EXAMPLE_QUERIES = [
  {
    title: 'Open tickets by region (normalised)',
    sql: `SELECT region, count(*) AS tickets FROM tickets.inc WHERE closed_at IS NULL GROUP BY region ORDER BY tickets DESC LIMIT 5`,
  },
  {
    title: 'What each file did (load log)',
    sql: `SELECT stream, source, kind, status, rows_read, rows_filtered, rows_inserted, rows_updated FROM tributary.loads ORDER BY stream, source`,
  },
  {
    title: 'Freshness per stream',
    sql: `SELECT stream, last_loaded_at, date_trunc('second', lag)::text AS lag, loads_last_24h, rows_changed_last_24h FROM tributary.v_stream_freshness ORDER BY stream`,
  },
];

/**
 * `tickets-pipeline demo`: embedded PostgreSQL and S3, a generated bucket, `run --apply` for inc
 * and crq, then a summary that the demo checks against the generator's own fold of the files.
 * Returns the exit code.
 */
export async function runDemo(options: DemoOptions): Promise<number> {
  const out = (text: string) => {
    if (!options.json) process.stdout.write(text);
  };
  out('Starting embedded PostgreSQL and S3…\n');
  const [pgStart, s3Start] = await Promise.allSettled([startEmbeddedPostgres(), startEmbeddedS3()]);
  if (pgStart.status === 'rejected' || s3Start.status === 'rejected') {
    // Stop the one that started, or its server keeps the process alive after the error.
    if (pgStart.status === 'fulfilled') await pgStart.value.stop();
    if (s3Start.status === 'fulfilled') await s3Start.value.stop();
    throw pgStart.status === 'rejected' ? pgStart.reason : (s3Start as PromiseRejectedResult).reason;
  }
  const [pgServer, s3Server] = [pgStart.value, s3Start.value];
  const stopAll = async () => {
    await Promise.allSettled([pgServer.stop(), s3Server.stop()]);
  };
  let keepRunning = false;
  try {
    const env: Environment = {
      databaseUrl: pgServer.url,
      s3Endpoint: s3Server.endpoint,
      bucket: 'tickets',
      prefix: 'automations',
      forcePathStyle: true,
      region: s3Server.region,
    };
    const client = localS3Client(s3Server);
    const pool = new pg.Pool({ connectionString: pgServer.url, max: 4, application_name: 'tickets-demo' });
    // pool.end() resolves before its connections finish closing; the embedded server stopping
    // right after may terminate one of them, which is expected here and must not crash the demo.
    pool.on('error', () => undefined);
    try {
      out(`Generating the synthetic tickets bucket (scale ${options.scale})…\n`);
      const files = generateBucket({ scale: options.scale });
      await uploadBucket(files, client, env.bucket);
      out(`Applying inc and crq from s3://${env.bucket}/${env.prefix}/…\n`);
      const renderer = progressRenderer(options.logger, options.tty);
      const started = performance.now();
      let reports: StreamReport[];
      try {
        reports = await runDatasets(env, client, pool, {
          datasets: [...DATASETS],
          apply: true,
          lateFiles: 'error',
          onEvent: (event) => renderer.onEvent(event),
        });
      } finally {
        renderer.stop();
      }
      const seconds = (performance.now() - started) / 1000;

      // Verify: the tables must equal the fold of the generated files under the same rules.
      const checks: { dataset: string; expected: number; actual: number; mismatched: number }[] = [];
      for (const dataset of DATASETS) {
        const expected = expectedTable(changeFiles(files, dataset));
        const { rows } = await pool.query<{
          ticket_id: string;
          raw_status: string | null;
          region: string | null;
          updated_at: string;
        }>(
          `SELECT ticket_id, raw_status, region, to_char(updated_at AT TIME ZONE 'Africa/Nairobi', 'YYYY-MM-DD HH24:MI:SS') AS updated_at FROM tickets.${dataset}`,
        );
        let mismatched = 0;
        for (const row of rows) {
          const want = expected.rows.get(row.ticket_id);
          if (
            !want ||
            want['raw_status'] !== row.raw_status ||
            want['region'] !== row.region ||
            want['updated_at'] !== row.updated_at
          )
            mismatched++;
        }
        checks.push({ dataset, expected: expected.rows.size, actual: rows.length, mismatched });
      }
      const ok =
        reports.every((r) => !r.error) && checks.every((c) => c.expected === c.actual && c.mismatched === 0);

      const totalRows = reports.reduce((n, r) => n + r.files.reduce((m, f) => m + f.rowsRead, 0), 0);
      const totalFiles = reports.reduce((n, r) => n + r.files.length, 0);
      const results = [];
      for (const query of EXAMPLE_QUERIES) results.push({ ...query, result: await pool.query(query.sql) });

      if (options.json) {
        process.stdout.write(
          `${JSON.stringify({ ok, files: totalFiles, rowsRead: totalRows, seconds: Number(seconds.toFixed(3)), rowsPerSecond: Math.round(totalRows / seconds), checks })}\n`,
        );
      } else {
        out('\nSummary\n');
        out(
          `${table(
            ['stream', 'files', 'rows read', 'filtered', 'upserted', 'table rows', 'expected', 'check'],
            reports.map((r) => {
              const check = checks.find((c) => `tickets/${c.dataset}` === r.stream)!;
              const sum = (k: 'rowsRead' | 'rowsFiltered' | 'rowsUpserted') =>
                r.files.reduce((n, f) => n + f[k], 0);
              const verdict =
                check.actual === check.expected && check.mismatched === 0
                  ? 'ok'
                  : `MISMATCH (${check.mismatched})`;
              return [
                r.stream,
                r.files.length,
                sum('rowsRead'),
                sum('rowsFiltered'),
                sum('rowsUpserted'),
                check.actual,
                check.expected,
                verdict,
              ];
            }),
          )}\n`,
        );
        out(
          `\n${totalFiles} files, ${totalRows} rows in ${seconds.toFixed(2)} s (${Math.round(totalRows / seconds)} rows/s)\n`,
        );
        for (const r of reports)
          if (r.error) out(`error: ${describeError(r.errorDetail ?? r.error, r.stream)}\n`);
        for (const { title, sql, result } of results) {
          out(`\n-- ${title}\n${sql};\n`);
          out(
            `${table(
              result.fields.map((f) => f.name),
              result.rows.map((row) => result.fields.map((f) => formatCell(row[f.name]))),
            )}\n`,
          );
        }
        out(
          ok
            ? '\nDemo verified: the tables equal the fold of all generated files.\n'
            : '\nDemo FAILED verification.\n',
        );
      }
      if (options.keep) {
        keepRunning = true;
        out(
          `\nKeeping the services running (Ctrl-C to stop):\n  DATABASE_URL=${pgServer.url}\n  S3_ENDPOINT=${s3Server.endpoint}  (bucket tickets; AWS_ACCESS_KEY_ID=${s3Server.accessKeyId} AWS_SECRET_ACCESS_KEY=${s3Server.secretAccessKey}: s3rver's fixed local credentials)\n`,
        );
        await new Promise<void>((resolve) => {
          process.once('SIGINT', resolve);
          process.once('SIGTERM', resolve);
        });
      }
      return ok ? 0 : 1;
    } finally {
      await pool.end();
      client.destroy();
    }
  } finally {
    if (keepRunning) out('Stopping…\n');
    await stopAll();
  }
}

function formatCell(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (value instanceof Date) return value.toISOString();
  return String(value);
}
