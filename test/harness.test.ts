import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { createTestBucket, createTestDatabase } from './support/services.js';

describe('test harness', () => {
  it('writes and reads through real PostgreSQL', async () => {
    const db = await createTestDatabase();
    await db.pool.query('CREATE TABLE t (id int PRIMARY KEY, v text)');
    await db.pool.query('INSERT INTO t VALUES ($1, $2)', [1, 'one']);
    const { rows } = await db.pool.query('SELECT v, version() AS version FROM t');
    expect(rows[0].v).toBe('one');
    expect(rows[0].version).toMatch(/^PostgreSQL \d+/);
  });

  it('writes and reads through a real S3 API', async () => {
    const { bucket, client } = await createTestBucket();
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'a/b.csv', Body: 'id\n1\n' }));
    const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'a/b.csv' }));
    expect(await got.Body!.transformToString()).toBe('id\n1\n');
  });
});
