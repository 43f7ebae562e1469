#!/usr/bin/env node
// `pnpm demo:dwh`: seed 001's extract → blob → load, end to end on embedded services. It creates
// a source database with examples/dwh/source.sql (1,000 trips, 3 devices), runs the built
// `tributary` binary on examples/dwh/dwh.yaml unchanged (extract each table to a timestamped
// CSV in S3, then load those files into bronze.* in a DWH database), and checks that the DWH
// equals the source. Uses DATABASE_URL / S3_ENDPOINT when set, else embedded PostgreSQL and S3.
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { localPostgres } from '@tributary/pg-sink/testing';
import { localS3, localS3Client } from '@tributary/s3-source/testing';
import pg from 'pg';

const root = fileURLToPath(new URL('../../', import.meta.url));
const example = fileURLToPath(new URL('./', import.meta.url));
const log = (line) => process.stderr.write(`demo:dwh: ${line}\n`);

const source = await localPostgres({ database: 'dwh_demo_source', log });
// The DWH is a second database on the same server.
const dwh = await localPostgres({ database: 'dwh_demo_dwh', env: { DATABASE_URL: source.adminUrl } });
const s3 = await localS3({ log });
let failed = false;
try {
  const bucket = 'dwh-demo';
  await localS3Client(s3)
    .send(new CreateBucketCommand({ Bucket: bucket }))
    .catch((error) => {
      if (error?.name !== 'BucketAlreadyOwnedByYou') throw error;
    });
  const sourceDb = new pg.Client({ connectionString: source.url });
  const dwhDb = new pg.Client({ connectionString: dwh.url });
  await Promise.all([sourceDb.connect(), dwhDb.connect()]);
  try {
    await sourceDb.query(await readFile(`${example}source.sql`, 'utf8'));
    const run = await tributary(['run', '--config', `${example}dwh.yaml`, '--apply', '--json'], {
      DATABASE_URL: dwh.url,
      SOURCE_DATABASE_URL: source.url,
      S3_BUCKET: bucket,
      S3_ENDPOINT: s3.endpoint,
      AWS_REGION: s3.region,
      ...(s3.accessKeyId ? { AWS_ACCESS_KEY_ID: s3.accessKeyId } : {}),
      ...(s3.secretAccessKey ? { AWS_SECRET_ACCESS_KEY: s3.secretAccessKey } : {}),
    });
    for (const extract of run.extracts ?? [])
      console.log(`extract ${extract.stream}: ${extract.rowsExtracted} rows → s3://${bucket}/${extract.key}`);
    for (const stream of run.streams ?? [])
      console.log(
        `load ${stream.stream}: ${stream.files.length} file(s), ${stream.error ? `error ${stream.error}` : 'ok'}`,
      );

    const checks = [
      [
        'bronze.trips = public.trips (count, km)',
        'SELECT count(*)::int AS n, sum(distance_km)::numeric(20,3)::text AS km FROM bronze.trips',
        'SELECT count(*)::int AS n, (sum(distance_m) / 1000.0)::numeric(20,3)::text AS km FROM public.trips',
      ],
      [
        'bronze.devices = public.devices',
        "SELECT string_agg(id || ':' || label, ',' ORDER BY id) AS rows FROM bronze.devices",
        "SELECT string_agg(id || ':' || label, ',' ORDER BY id) AS rows FROM public.devices",
      ],
      [
        'every extract run loaded, rows extracted = rows loaded',
        "SELECT count(*) FILTER (WHERE status = 'loaded')::int AS loaded, count(*)::int AS runs FROM tributary.extract_runs",
        'SELECT 2 AS loaded, 2 AS runs',
      ],
    ];
    for (const [what, dwhSql, expectedSql] of checks) {
      const [got, want] = await Promise.all([
        dwhDb.query(dwhSql),
        (expectedSql.includes('public.') ? sourceDb : dwhDb).query(expectedSql),
      ]);
      const ok = JSON.stringify(got.rows) === JSON.stringify(want.rows);
      console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}: ${JSON.stringify(got.rows[0])}`);
      if (!ok) failed = true;
    }
  } finally {
    await Promise.all([sourceDb.end(), dwhDb.end()]);
  }
  console.log(failed ? 'Demo FAILED: the DWH differs from the source' : 'Demo verified');
} finally {
  await dwh.stop();
  await source.stop();
  await s3.stop();
}
process.exitCode = failed ? 1 : 0;

/** The built `tributary` binary with `args`; resolves with its parsed `--json` output. */
async function tributary(args, env) {
  const child = spawn(process.execPath, [`${root}packages/cli/bin/tributary.js`, ...args], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (chunk) => {
    out += chunk;
  });
  const code = await new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', resolve);
  });
  if (code !== 0) throw new Error(`tributary ${args[0]} exited ${code}:\n${out}`);
  return JSON.parse(out);
}
