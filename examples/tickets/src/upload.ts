import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { CreateBucketCommand, HeadBucketCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { csvChunks, type GeneratedFile } from './generate.js';

/** Writes the generated bucket under `dir`, one file per key (placeholders become directories). */
export async function writeBucketToDir(files: GeneratedFile[], dir: string): Promise<void> {
  for (const file of files) {
    const path = join(dir, file.key);
    if (file.kind === 'placeholder') {
      await mkdir(path, { recursive: true });
      continue;
    }
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, Readable.from(csvChunks(file)));
  }
}

export async function ensureBucket(client: S3Client, bucket: string): Promise<void> {
  try {
    await client.send(new HeadBucketCommand({ Bucket: bucket }));
  } catch {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  }
}

/**
 * Uploads the generated bucket. Placeholders are zero-byte keys ending in `/` (what the S3
 * console creates for "folders"); big files go up as multipart uploads, streamed.
 */
export async function uploadBucket(
  files: GeneratedFile[],
  client: S3Client,
  bucket: string,
  onFile?: (key: string) => void,
): Promise<void> {
  await ensureBucket(client, bucket);
  for (const file of files) {
    if (file.kind === 'placeholder') {
      await client.send(
        new PutObjectCommand({ Bucket: bucket, Key: file.key, Body: Buffer.alloc(0), ContentLength: 0 }),
      );
    } else if (file.rowCount < 200_000) {
      // Up to ~80 MB: one PUT with a known length.
      await client.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: file.key,
          Body: Buffer.from([...csvChunks(file)].join('')),
        }),
      );
    } else {
      const upload = new Upload({
        client,
        params: {
          Bucket: bucket,
          Key: file.key,
          Body: Readable.from(csvChunks(file, 1 << 20)),
          ContentType: 'text/csv',
        },
        partSize: 16 * 1024 * 1024,
        queueSize: 2,
      });
      await upload.done();
    }
    onFile?.(file.key);
  }
}
