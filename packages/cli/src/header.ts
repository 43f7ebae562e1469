import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { TributaryError } from '@tributary/core';
import { parse } from 'csv-parse/sync';

/**
 * The column names of a change file: its CSV header, or the keys of its first JSON line. Reads
 * only as far as the first line (gzip included) and then lets the body go.
 */
export async function readColumnNames(client: S3Client, bucket: string, key: string): Promise<string[]> {
  const object = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const body = object.Body as Readable;
  const text = key.endsWith('.gz') ? body.pipe(createGunzip()) : body;
  const lines = createInterface({ input: text, crlfDelay: Number.POSITIVE_INFINITY });
  let first: string | undefined;
  try {
    for await (const line of lines) {
      first = line.replace(/^\uFEFF/, '');
      break;
    }
  } finally {
    lines.close();
    body.destroy();
  }
  if (!first) {
    throw new TributaryError(
      'SCHEMA_DRIFT',
      `${key}: empty file: no header to create the target table from`,
      {
        location: { file: key, line: 1 },
      },
    );
  }
  if (/\.jsonl(\.gz)?$/.test(key)) return Object.keys(JSON.parse(first) as Record<string, unknown>);
  const [header] = parse(first) as string[][];
  return header ?? [];
}
