import { randomBytes } from 'node:crypto';
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
  ListObjectsV2Command,
  type S3Client,
} from '@aws-sdk/client-s3';
import { localS3Client } from '@tributary/s3-source/testing';
import pg from 'pg';
import { afterAll, inject } from 'vitest';

// Cleanups run after the test file, in reverse order; the hook is registered when this module
// is imported (collection time), so factories may be called from tests and hooks alike.
const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  cleanups.length = 0;
});

/** A short random suffix for names of databases, buckets, schemas and topics. */
export function randomName(prefix: string): string {
  return `${prefix}_${randomBytes(5).toString('hex')}`;
}

/** The connection string of `database` on the test server. */
export function databaseUrl(database: string): string {
  const url = new URL(inject('pgAdminUrl'));
  url.pathname = `/${database}`;
  return url.toString();
}

export interface TestDatabase {
  name: string;
  url: string;
  pool: pg.Pool;
}

/**
 * A fresh database, dropped after the calling test file (with its connections).
 */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = randomName('t');
  const admin = new pg.Client({ connectionString: inject('pgAdminUrl') });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  const url = databaseUrl(name);
  const pool = new pg.Pool({ connectionString: url, max: 8 });
  pool.on('error', () => {}); // terminated idle clients in fault tests must not crash the worker
  cleanups.push(async () => {
    await pool.end().catch(() => undefined);
    const cleanup = new pg.Client({ connectionString: inject('pgAdminUrl') });
    await cleanup.connect();
    try {
      // A test's own pool may still be closing its connections (its end() resolved before the
      // server saw them go). Forced off, such a connection errors after its owner stopped
      // listening: an unhandled error that fails the whole run. Give them a moment to close.
      for (let i = 0; i < 100; i++) {
        const { rows } = await cleanup.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1',
          [name],
        );
        if (rows[0]!.n === 0) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      await cleanup.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    } finally {
      await cleanup.end();
    }
  });
  return { name, url, pool };
}

/** An S3 client for the test S3 service (path-style, checksums only when required: s3rver). */
export function testS3Client(): S3Client {
  return localS3Client(inject('s3'));
}

export interface TestBucket {
  bucket: string;
  client: S3Client;
}

/** A fresh bucket, emptied and deleted after the calling test file. */
export async function createTestBucket(): Promise<TestBucket> {
  const client = testS3Client();
  const bucket = randomName('b').replace('_', '-');
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  cleanups.push(async () => {
    let token: string | undefined;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
      const keys = (page.Contents ?? []).map((o) => ({ Key: o.Key! }));
      if (keys.length)
        await client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys } }));
      token = page.NextContinuationToken;
    } while (token);
    await client.send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => undefined);
    client.destroy();
  });
  return { bucket, client };
}

/**
 * A login role that may only SELECT `tables` of `db` (the DWH manual's read-only source
 * credential), and `db`'s URL for it. Roles are cluster-wide: dropped after the calling file,
 * before its database.
 */
export async function createReadOnlyRole(db: TestDatabase, tables: readonly string[]): Promise<string> {
  const role = randomName('ro');
  // A password: the embedded server (CI's default) authenticates TCP logins, unlike a trust setup.
  const password = randomName('pw');
  await db.pool.query(
    `CREATE ROLE ${role} LOGIN PASSWORD '${password}'; GRANT SELECT ON ${tables.join(', ')} TO ${role}`,
  );
  cleanups.push(async () => {
    await db.pool.query(`DROP OWNED BY ${role}; DROP ROLE ${role}`);
  });
  const url = new URL(db.url);
  url.username = role;
  url.password = password;
  return url.toString();
}
