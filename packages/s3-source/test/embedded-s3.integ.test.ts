import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedS3, startEmbeddedS3 } from '../src/testing/index.js';

// The embedded server itself (not the one the harness may take from S3_ENDPOINT): it backs
// every suite on a fresh machine, so it must survive what the pipeline does to it.
describe('startEmbeddedS3', () => {
  let s3: EmbeddedS3;
  let client: S3Client;

  beforeAll(async () => {
    s3 = await startEmbeddedS3();
    client = new S3Client({
      endpoint: s3.endpoint,
      region: s3.region,
      forcePathStyle: true,
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    });
  });

  afterAll(async () => {
    client?.destroy();
    await s3?.stop();
  });

  it('survives a delete that empties a directory while a put writes into it', async () => {
    // An archive move deletes the last file of incoming/<day>/ while a producer uploads the
    // next one there. Unpatched s3rver removed the emptied directory under the upload and died
    // of an unhandled ENOENT within a few rounds; every later request was ECONNREFUSED.
    const bucket = 'race-bucket';
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
    for (let i = 0; i < 150; i++) {
      const dir = `incoming/d${i % 5}`;
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: `${dir}/k${i}`, Body: 'a' }));
      await Promise.all([
        client.send(new DeleteObjectCommand({ Bucket: bucket, Key: `${dir}/k${i}` })),
        client.send(new PutObjectCommand({ Bucket: bucket, Key: `${dir}/k${i}.next`, Body: 'b' })),
      ]);
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: `${dir}/k${i}.next` }));
    }
    // Directories left behind hold no objects: the listing is empty and the bucket deletes.
    const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
    expect(listed.KeyCount).toBe(0);
    await client.send(new DeleteBucketCommand({ Bucket: bucket }));
  });
});
