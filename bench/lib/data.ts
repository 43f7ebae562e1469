import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { mkdir, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  CreateBucketCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { csvChunks, generateBucket, SHAPES, TICKET_COLUMNS } from '@tributary/example-tickets';

export const DATA_DIR = process.env.BENCH_DATA_DIR ?? '/tmp/tributary-bench';
export const BASELINE_ROWS = SHAPES.inc.baselineRows;
export const BASELINE_STAMP = SHAPES.inc.baseline;

/**
 * The seed-shaped inc baseline with `rows` data rows (generateBucket at scale rows/34,849), as
 * a local CSV under DATA_DIR; generated once and reused between runs (deterministic bytes).
 */
export async function baselineCsv(rows: number): Promise<{ path: string; bytes: number; rows: number }> {
  await mkdir(DATA_DIR, { recursive: true });
  const path = join(DATA_DIR, `inc-baseline-${rows}.csv`);
  if (!existsSync(path)) {
    const file = generateBucket({ scale: rows / BASELINE_ROWS }).find(
      (f) => f.dataset === 'inc' && f.kind === 'baseline',
    )!;
    await pipeline(Readable.from(csvChunks(file, 1 << 20)), createWriteStream(`${path}.part`));
    await rename(`${path}.part`, path);
  }
  return { path, bytes: (await stat(path)).size, rows };
}

export async function ensureBucket(client: S3Client, bucket: string): Promise<void> {
  try {
    await client.send(new HeadBucketCommand({ Bucket: bucket }));
  } catch {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  }
}

/** Uploads a local file (one streamed PUT) unless the key already holds that many bytes. */
export async function uploadFile(client: S3Client, bucket: string, key: string, path: string): Promise<void> {
  const size = (await stat(path)).size;
  try {
    const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    if (head.ContentLength === size) return;
  } catch {
    // absent: upload
  }
  await client.send(
    new PutObjectCommand({ Bucket: bucket, Key: key, Body: createReadStream(path), ContentLength: size }),
  );
}

/**
 * The inc baseline of `rows` rows in the `bench` bucket under `bench/n<rows>`, where the
 * tickets example's inc stream finds it (generated and uploaded only when missing).
 */
export async function stageBaseline(
  client: S3Client,
  rows: number,
): Promise<{ csv: { path: string; bytes: number; rows: number }; prefix: string; key: string }> {
  const csv = await baselineCsv(rows);
  const prefix = `bench/n${rows}`;
  const key = changeKey(prefix, 'inc', BASELINE_STAMP);
  await ensureBucket(client, 'bench');
  await uploadFile(client, 'bench', key, csv.path);
  return { csv, prefix, key };
}

/** Where the tickets example's stream of `dataset` finds a change file stamped `stamp` under `prefix`. */
export function changeKey(prefix: string, dataset: string, stamp: string): string {
  return `${prefix}/${dataset}/changes/${stamp}.csv`;
}

/**
 * A key stamp (YYYY-MM-DDTHH-mm-ss) `index` minutes after 2026-06-23 00:00: later than every
 * file of the generated bucket, so a delta stamped with it is never late.
 */
export function deltaStamp(index: number): string {
  const t = new Date(Date.UTC(2026, 5, 23, 0, 0, 0) + index * 60_000);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${t.getUTCFullYear()}-${p(t.getUTCMonth() + 1)}-${p(t.getUTCDate())}T${p(t.getUTCHours())}-${p(t.getUTCMinutes())}-${p(t.getUTCSeconds())}`;
}

/** PUTs small objects held in memory, `concurrency` at a time. */
export async function putObjects(
  client: S3Client,
  bucket: string,
  objects: readonly { key: string; body: string | Uint8Array }[],
  concurrency = 8,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < objects.length) {
      const { key, body } = objects[next++]!;
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, objects.length) }, worker));
}

/** RFC 4180 quoting, as the generator writes it. */
function csvField(value: unknown): string {
  const text = value === null || value === undefined ? '' : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export function csvText(rows: Iterable<Record<string, unknown>>): string {
  let text = `${TICKET_COLUMNS.join(',')}\n`;
  for (const row of rows) text += `${TICKET_COLUMNS.map((c) => csvField(row[c])).join(',')}\n`;
  return text;
}
