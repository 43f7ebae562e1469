import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Upload } from '@aws-sdk/lib-storage';
import { csvChunks, generateBucket } from '@tributary/example-tickets';
import { resetLibrary } from '../lib/apply.js';
import { runNode } from '../lib/cli.js';
import type { BenchContext } from '../lib/context.js';
import { BASELINE_ROWS, BASELINE_STAMP, baselineCsv, DATA_DIR, ensureBucket } from '../lib/data.js';
import { round, type Summary, summarize } from '../lib/stats.js';

export interface MemoryResult {
  mb: number;
  csvMiB: number;
  rows: number;
  runs: number;
  peakRssMiB: Summary;
  seconds: Summary;
  rowsPerSecond: number;
}

/** A ticket CSV of about `mb` MiB: the generator's baseline at the matching scale. */
async function csvOfSize(mb: number): Promise<{ path: string; bytes: number; rows: number }> {
  const sample = await baselineCsv(BASELINE_ROWS);
  const rows = Math.round(((mb * 2 ** 20) / sample.bytes) * BASELINE_ROWS);
  const path = join(DATA_DIR, `inc-${mb}mb.csv`);
  if (!existsSync(path)) {
    const file = generateBucket({ scale: rows / BASELINE_ROWS }).find(
      (f) => f.dataset === 'inc' && f.kind === 'baseline',
    )!;
    await pipeline(Readable.from(csvChunks(file, 1 << 20)), createWriteStream(`${path}.part`));
    await rename(`${path}.part`, path);
  }
  return { path, bytes: (await stat(path)).size, rows };
}

/**
 * Peak RSS of a fresh child process (bench/memory-child.ts) applying one CSV through the library
 * (s3Source → ticket transforms → pgSink), one child per size and run, so nothing the parent did
 * counts. Sizes ≥ 1 GiB run once unless --runs says otherwise for all.
 */
export async function runMemory(ctx: BenchContext): Promise<MemoryResult[]> {
  const { services, pool, config, log } = ctx;
  const client = services.s3Client;
  await ensureBucket(client, 'bench');
  const out: MemoryResult[] = [];
  for (const mb of config.memoryMb) {
    const csv = await csvOfSize(mb);
    const prefix = `bench/mem${mb}`;
    const key = `${prefix}/inc/changes/${BASELINE_STAMP}.csv`;
    log(`memory: uploading ${round(csv.bytes / 2 ** 20)} MiB…`);
    await new Upload({
      client,
      params: { Bucket: 'bench', Key: key, Body: createReadStream(csv.path) },
      partSize: 64 * 2 ** 20,
      queueSize: 2,
    }).done();
    const runs =
      mb >= 1024 && !process.env.BENCH_MEMORY_RUNS ? 1 : Number(process.env.BENCH_MEMORY_RUNS ?? config.runs);
    const rss: number[] = [];
    const seconds: number[] = [];
    for (let i = 0; i < runs; i++) {
      await resetLibrary(pool);
      const result = await child({
        databaseUrl: services.databaseUrl,
        s3: services.s3,
        prefix,
      });
      if (result.rowsRead !== csv.rows)
        throw new Error(`memory child read ${result.rowsRead} of ${csv.rows} rows`);
      rss.push(result.peakRssMiB);
      seconds.push(result.seconds);
      log(
        `memory ${mb} MB run ${i + 1}/${runs}: peak RSS ${round(result.peakRssMiB)} MiB, ${round(result.seconds)} s`,
      );
    }
    await resetLibrary(pool);
    if (mb >= 1024 && !process.env.BENCH_KEEP_DATA) await unlink(csv.path).catch(() => undefined);
    const s = summarize(seconds);
    out.push({
      mb,
      csvMiB: round(csv.bytes / 2 ** 20, 1),
      rows: csv.rows,
      runs,
      peakRssMiB: summarize(rss),
      seconds: s,
      rowsPerSecond: Math.round(csv.rows / s.median),
    });
  }
  return out;
}

async function child(input: unknown): Promise<{ peakRssMiB: number; seconds: number; rowsRead: number }> {
  const { stdout } = await runNode(
    ['--conditions=@tributary/source', '--import', 'tsx', 'bench/memory-child.ts'],
    {
      input: JSON.stringify(input),
      what: 'memory child',
    },
  );
  return JSON.parse(stdout.trim().split('\n').at(-1)!);
}
