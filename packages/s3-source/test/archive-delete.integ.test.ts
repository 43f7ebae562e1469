import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestBucket, type TestBucket, testS3Client } from '../../../test/support/services.js';
import { batchedDeleter } from '../src/archive.js';
import { objectExists } from './helpers.js';

let t: TestBucket;
beforeAll(async () => {
  t = await createTestBucket();
});

/** A client that counts commands by name and can refuse one of them. */
function countingClient(refuse?: string): { client: S3Client; sent: Record<string, number> } {
  const client = testS3Client();
  const sent: Record<string, number> = {};
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const name = context.commandName ?? '';
      sent[name] = (sent[name] ?? 0) + 1;
      if (name === refuse) throw Object.assign(new Error('NotImplemented'), { name: 'NotImplemented' });
      return next(args);
    },
    { step: 'initialize', name: 'countCommands' },
  );
  return { client, sent };
}

describe('batchedDeleter (the last step of an archive move)', () => {
  it('deletes asked for while one is in flight go out in one DeleteObjects', async () => {
    const keys = Array.from({ length: 6 }, (_, i) => `batch/k${i}.csv`);
    for (const key of keys)
      await t.client.send(new PutObjectCommand({ Bucket: t.bucket, Key: key, Body: 'x' }));
    const { client, sent } = countingClient();
    const remove = batchedDeleter(client);
    await Promise.all(keys.map((key) => remove(t.bucket, key)));
    for (const key of keys) expect(await objectExists(t.client, t.bucket, key)).toBe(false);
    // The first goes alone; the five queued behind it share one request.
    expect(sent).toEqual({ DeleteObjectCommand: 1, DeleteObjectsCommand: 1 });
  });

  it('a server that refuses DeleteObjects gets one DeleteObject per key', async () => {
    const keys = ['fallback/a.csv', 'fallback/b.csv', 'fallback/c.csv'];
    for (const key of keys)
      await t.client.send(new PutObjectCommand({ Bucket: t.bucket, Key: key, Body: 'x' }));
    const { client, sent } = countingClient('DeleteObjectsCommand');
    const remove = batchedDeleter(client);
    await Promise.all(keys.map((key) => remove(t.bucket, key)));
    for (const key of keys) expect(await objectExists(t.client, t.bucket, key)).toBe(false);
    expect(sent).toEqual({ DeleteObjectCommand: 3, DeleteObjectsCommand: 1 });
  });
});
