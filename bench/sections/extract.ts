import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type ExtractTarget, extractTable } from '@tributary/pg-source';
import { to as copyTo } from 'pg-copy-streams';
import type { BenchContext } from '../lib/context.js';
import { measure, round, type Summary, summarize } from '../lib/stats.js';

export interface ExtractBenchResult {
  rows: number;
  seconds: { ours: Summary; bareCopy: Summary };
  rowsPerSecond: { ours: number; bareCopy: number };
  /** ours / bare (time): ≤ 1.5 is the target (issue 15). */
  oursOverBare: number;
  /** Peak RSS of this process while `extractTable` ran, MiB (median over runs). */
  peakRssMiB: Summary;
}

const SCHEMA = 'bench_extract';
const CONTROL = 'bench_extract_control';

/** A target writing the file to local disk: the extract's own cost, not S3's. */
function fileTarget(path: string): ExtractTarget {
  let unit = 0;
  return {
    location: `file://${path}`,
    // Every run is a new unit (the bench does not wait for the clock).
    unitFor: (time) => ({ key: `${path}.${unit++}`, time }),
    async write(_key, body: Readable) {
      const out = createWriteStream(path);
      await pipeline(body, out);
      return { bytes: out.bytesWritten };
    },
  };
}

/**
 * `extractTable()` (watermarked COPY in a read-only snapshot, run log on the DWH side) into a
 * local file vs a bare `COPY (SELECT … ORDER BY …) TO STDOUT` into a file, same table, same
 * process run. The peak RSS shows that memory does not grow with the table.
 */
export async function runExtract(ctx: BenchContext): Promise<ExtractBenchResult> {
  const { config, pool, log } = ctx;
  const rows = config.quick ? 100_000 : 5_000_000;
  log(`extract: creating ${rows} rows`);
  await pool.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE; DROP SCHEMA IF EXISTS ${CONTROL} CASCADE`);
  await pool.query(`CREATE SCHEMA ${SCHEMA}`);
  await pool.query(
    `CREATE TABLE ${SCHEMA}.trips (id bigint PRIMARY KEY, name text, amount numeric, inserted_at timestamptz NOT NULL)`,
  );
  await pool.query(
    `INSERT INTO ${SCHEMA}.trips SELECT g, 'trip ' || g, g / 100.0, now() - interval '1 day' + g * interval '1 ms' FROM generate_series(1, $1::int) g`,
    [rows],
  );
  await pool.query(`CREATE INDEX ON ${SCHEMA}.trips (inserted_at); ANALYZE ${SCHEMA}.trips`);
  const path = join(tmpdir(), `tributary-bench-extract-${process.pid}.csv`);
  const times = { ours: [] as number[], bare: [] as number[] };
  const rss: number[] = [];
  try {
    for (let i = 0; i < Math.max(config.runs, 1); i++) {
      const ours = await measure(() =>
        extractTable({
          stream: `bench/extract-${i}`,
          source: pool,
          control: pool,
          schema: CONTROL,
          table: `${SCHEMA}.trips`,
          watermark: 'inserted_at',
          key: ['id'],
          target: fileTarget(path),
        }),
      );
      if (ours.value.rows !== rows) throw new Error(`extract wrote ${ours.value.rows} rows of ${rows}`);
      times.ours.push(ours.ms / 1000);
      rss.push(ours.rssMiB);
      const client = await pool.connect();
      try {
        const started = performance.now();
        await pipeline(
          client.query(
            copyTo(
              `COPY (SELECT * FROM ${SCHEMA}.trips ORDER BY inserted_at, id) TO STDOUT (FORMAT csv, HEADER)`,
            ),
          ),
          createWriteStream(path),
        );
        times.bare.push((performance.now() - started) / 1000);
      } finally {
        client.release();
      }
    }
  } finally {
    await rm(path, { force: true });
    await pool.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE; DROP SCHEMA IF EXISTS ${CONTROL} CASCADE`);
  }
  const s = { ours: summarize(times.ours), bareCopy: summarize(times.bare) };
  const result: ExtractBenchResult = {
    rows,
    seconds: s,
    rowsPerSecond: {
      ours: Math.round(rows / s.ours.median),
      bareCopy: Math.round(rows / s.bareCopy.median),
    },
    oursOverBare: round(s.ours.median / s.bareCopy.median),
    peakRssMiB: summarize(rss),
  };
  log(
    `extract: ours ${result.rowsPerSecond.ours} rows/s, bare COPY ${result.rowsPerSecond.bareCopy} rows/s, peak RSS ${round(result.peakRssMiB.median, 0)} MiB`,
  );
  return result;
}
