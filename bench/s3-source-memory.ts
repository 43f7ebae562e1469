/**
 * Memory of streaming one big CSV through @tributary/s3-source (invariant 7: flat memory).
 *
 *   node --conditions=@tributary/source --import tsx bench/s3-source-memory.ts [--mb 500] [--gzip]
 *
 * Generates a CSV of about `--mb` MiB (ticket-like rows with quoted fields), uploads it to S3
 * (S3_ENDPOINT + AWS_* when set, else an s3rver in a child process so its memory is not counted),
 * reads it through pipeline() into a sink that only counts rows, and prints the peak RSS of this
 * process (sampled every 50 ms and from getrusage), rows and throughput as JSON.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline as streamPipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { createGzip } from 'node:zlib';
import { CreateBucketCommand, DeleteObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { pipeline, type Sink } from '@tributary/core';
import { s3Source } from '@tributary/s3-source';

const args = process.argv.slice(2);
const mb = Number(args[args.indexOf('--mb') + 1] ?? 500) || 500;
const gzip = args.includes('--gzip');
const root = fileURLToPath(new URL('../', import.meta.url));

async function generate(path: string, bytes: number): Promise<number> {
  const out = createWriteStream(path);
  out.write(
    'ticket_id,source_type,region,raw_status,note,latitude,longitude,created_at,updated_at,is_alarm\n',
  );
  let written = 0;
  let rows = 0;
  while (written < bytes) {
    let chunk = '';
    for (let i = 0; i < 2000; i++, rows++) {
      chunk += `INC${String(rows).padStart(9, '0')},scoreboard,Nairobi West,Open,"customer says ""no signal"", since morning",-1.2921,36.8219,2026-06-22T15:50:39+03:00,2026-06-22T17:10:41+03:00,false\n`;
    }
    written += Buffer.byteLength(chunk);
    if (!out.write(chunk)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return rows;
}

async function s3(): Promise<{ client: S3Client; stop: () => Promise<void> }> {
  const common = {
    region: process.env.AWS_REGION ?? 'us-east-1',
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED' as const,
    responseChecksumValidation: 'WHEN_REQUIRED' as const,
  };
  if (process.env.S3_ENDPOINT) {
    return { client: new S3Client({ ...common, endpoint: process.env.S3_ENDPOINT }), stop: async () => {} };
  }
  const script = join(root, 'packages/s3-source/test/support/legacy-s3rver.ts');
  const child = spawn(process.execPath, ['--openssl-legacy-provider', '--import', 'tsx', script], {
    cwd: root,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const [line] = (await once(child.stdout, 'data')) as [Buffer];
  const { endpoint } = JSON.parse(line.toString()) as { endpoint: string };
  const client = new S3Client({
    ...common,
    endpoint,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
  });
  return {
    client,
    stop: async () => {
      client.destroy();
      const exited = once(child, 'exit');
      child.stdin.end();
      await exited;
    },
  };
}

const dir = await mkdtemp(join(tmpdir(), 'tributary-bench-'));
const { client, stop } = await s3();
const bucket = `bench-${Date.now()}`;
const key = `bench/changes/20260622.csv${gzip ? '.gz' : ''}`;
try {
  const csvPath = join(dir, 'data.csv');
  const rowsWritten = await generate(csvPath, mb * 1024 * 1024);
  let uploadPath = csvPath;
  if (gzip) {
    uploadPath = `${csvPath}.gz`;
    await streamPipeline(createReadStream(csvPath), createGzip(), createWriteStream(uploadPath));
  }
  const size = (await stat(uploadPath)).size;
  await client.send(new CreateBucketCommand({ Bucket: bucket })).catch(() => undefined);
  await client.send(
    new PutObjectCommand({
      Bucket: bucket,
      Key: key,
      Body: createReadStream(uploadPath),
      ContentLength: size,
    }),
  );

  global.gc?.();
  const baselineRss = process.memoryUsage().rss;
  let peakRss = baselineRss;
  let peakHeap = 0;
  const sampler = setInterval(() => {
    const m = process.memoryUsage();
    peakRss = Math.max(peakRss, m.rss);
    peakHeap = Math.max(peakHeap, m.heapUsed);
  }, 50);

  let rows = 0;
  const countingSink: Sink = {
    name: 'count',
    async checkpoint() {
      return null;
    },
    async write(batch) {
      rows += batch.rows.length;
      return { committed: batch.meta.commit };
    },
  };
  const started = performance.now();
  await pipeline(
    s3Source({
      client,
      archive: false,
      streams: [{ id: 'bench/memory', bucket, prefix: 'bench/changes/', keyPattern: 'YYYYMMDD' }],
    }),
    countingSink,
  );
  const seconds = (performance.now() - started) / 1000;
  clearInterval(sampler);
  const toMiB = (n: number) => Math.round((n / 1024 / 1024) * 10) / 10;
  const csvBytes = (await stat(csvPath)).size;
  console.log(
    JSON.stringify(
      {
        file: key,
        csvMiB: toMiB(csvBytes),
        storedMiB: toMiB(size),
        rows,
        rowsExpected: rowsWritten,
        seconds: Math.round(seconds * 10) / 10,
        csvMiBPerSecond: Math.round((toMiB(csvBytes) / seconds) * 10) / 10,
        rowsPerSecond: Math.round(rows / seconds),
        baselineRssMiB: toMiB(baselineRss),
        peakRssMiB: toMiB(peakRss),
        peakHeapUsedMiB: toMiB(peakHeap),
      },
      null,
      2,
    ),
  );
  if (rows !== rowsWritten) process.exitCode = 1;
  await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key })).catch(() => undefined);
} finally {
  await stop();
  await rm(dir, { recursive: true, force: true });
}
