import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { afterAll, inject } from 'vitest';
import { createTestBucket, randomName, type TestBucket } from '../../../../test/support/services.js';
import { localS3Client } from '../../src/testing/index.js';

/**
 * A bucket on an S3 server that can page listings: the shared one when it is real S3 or MinIO
 * (S3_ENDPOINT), else an s3rver child process with the legacy OpenSSL provider (see
 * legacy-s3rver.ts for why the shared s3rver cannot list more than 1,000 keys on Node 24).
 */
export async function createPaginatingBucket(): Promise<TestBucket> {
  if (inject('s3').source === 'env') return createTestBucket();
  const script = fileURLToPath(new URL('./legacy-s3rver.ts', import.meta.url));
  const child = spawn(process.execPath, ['--openssl-legacy-provider', '--import', 'tsx', script], {
    cwd: fileURLToPath(new URL('../../../../', import.meta.url)),
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const [line] = (await once(child.stdout, 'data')) as [Buffer];
  const { endpoint } = JSON.parse(line.toString()) as { endpoint: string };
  const client = localS3Client({
    endpoint,
    region: 'us-east-1',
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
  });
  const bucket = randomName('p').replace('_', '-');
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  afterAll(async () => {
    client.destroy();
    const exited = once(child, 'exit');
    child.stdin.end();
    await exited;
  });
  return { bucket, client };
}
