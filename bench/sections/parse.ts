import { createReadStream } from 'node:fs';
import type { S3Client } from '@aws-sdk/client-s3';
import { TICKET_COLUMNS } from '@tributary/example-tickets';
import {
  DEFAULT_BATCH_BYTES,
  DEFAULT_BATCH_ROWS,
  DEFAULT_RETRY,
  readFileBatches,
} from '@tributary/s3-source';
import { parse } from 'csv-parse';
import type { BenchContext } from '../lib/context.js';
import { baselineCsv } from '../lib/data.js';
import { round, type Summary, summarize } from '../lib/stats.js';

export interface ParseResult {
  file: string;
  rows: number;
  csvMiB: number;
  seconds: { ours: Summary; passThrough: Summary; bareCsvParse: Summary };
  mibPerSecond: { ours: number; passThrough: number; bareCsvParse: number };
  rowsPerSecond: { ours: number; passThrough: number; bareCsvParse: number };
  /** ours / bare (time): ≤ 1.3 is the target. */
  oursOverBare: number;
}

/** An S3Client stand-in whose GetObject streams a local file: the source's read path, no network. */
function localClient(path: string): S3Client {
  return {
    send: async () => ({ Body: createReadStream(path, { highWaterMark: 64 * 1024 }), ETag: '"local"' }),
  } as unknown as S3Client;
}

async function ours(path: string, passThrough = false): Promise<number> {
  let rows = 0;
  for await (const chunk of readFileBatches({
    passThrough,
    client: localClient(path),
    bucket: 'local',
    key: 'inc/changes/baseline.csv',
    etag: 'local',
    stream: 'bench/parse',
    format: 'csv',
    columns: [...TICKET_COLUMNS],
    columnCheck: 'exact',
    emptyAsNull: true,
    batchRows: DEFAULT_BATCH_ROWS,
    batchBytes: DEFAULT_BATCH_BYTES,
    retry: DEFAULT_RETRY,
  })) {
    rows += chunk.raw ? chunk.raw.records : chunk.rows.length;
  }
  return rows;
}

/** What a quick script does: the file through csv-parse's stream API into row objects. */
async function bare(path: string): Promise<number> {
  let rows = 0;
  const parser = createReadStream(path, { highWaterMark: 64 * 1024 }).pipe(
    parse({ columns: true, bom: true, skip_empty_lines: true }),
  );
  parser.on('data', () => {
    rows++;
  });
  await new Promise<void>((resolve, reject) => {
    parser.once('end', resolve);
    parser.once('error', reject);
  });
  return rows;
}

/** The source's CSV path (read.ts: stream → parse → row objects with locations → batches) vs bare csv-parse. */
export async function runParse(ctx: BenchContext): Promise<ParseResult> {
  const { config, log } = ctx;
  const rows = config.quick ? 34_849 : 100_000;
  const csv = await baselineCsv(rows);
  const times = { ours: [] as number[], raw: [] as number[], bare: [] as number[] };
  await ours(csv.path); // warm-up (JIT)
  await ours(csv.path, true);
  await bare(csv.path);
  for (let i = 0; i < Math.max(config.runs, 1); i++) {
    let t = performance.now();
    const a = await ours(csv.path);
    times.ours.push((performance.now() - t) / 1000);
    t = performance.now();
    const r = await ours(csv.path, true);
    times.raw.push((performance.now() - t) / 1000);
    t = performance.now();
    const b = await bare(csv.path);
    times.bare.push((performance.now() - t) / 1000);
    if (a !== rows || b !== rows || r !== rows)
      throw new Error(`row counts differ: ours ${a}, pass-through ${r}, bare ${b}, file ${rows}`);
  }
  const s = {
    ours: summarize(times.ours),
    passThrough: summarize(times.raw),
    bareCsvParse: summarize(times.bare),
  };
  const mib = csv.bytes / 2 ** 20;
  const result: ParseResult = {
    file: `inc baseline, ${rows} rows`,
    rows,
    csvMiB: round(mib, 1),
    seconds: s,
    mibPerSecond: {
      ours: round(mib / s.ours.median, 1),
      passThrough: round(mib / s.passThrough.median, 1),
      bareCsvParse: round(mib / s.bareCsvParse.median, 1),
    },
    rowsPerSecond: {
      ours: Math.round(rows / s.ours.median),
      passThrough: Math.round(rows / s.passThrough.median),
      bareCsvParse: Math.round(rows / s.bareCsvParse.median),
    },
    oursOverBare: round(s.ours.median / s.bareCsvParse.median),
  };
  log(
    `parse: ours ${result.mibPerSecond.ours} MiB/s, pass-through ${result.mibPerSecond.passThrough} MiB/s, bare csv-parse ${result.mibPerSecond.bareCsvParse} MiB/s`,
  );
  return result;
}
