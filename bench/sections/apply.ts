import {
  applyFloor,
  applyLibrary,
  applyNaive,
  benchEnvironment,
  prepareBaselines,
  resetLibrary,
  tableDigest,
} from '../lib/apply.js';
import { runTicketsCli } from '../lib/cli.js';
import type { BenchContext } from '../lib/context.js';
import { stageBaseline, uploadFile } from '../lib/data.js';
import { measure, round, type Summary, summarize } from '../lib/stats.js';

export interface ApplySizeResult {
  rows: number;
  csvMiB: number;
  rowsWritten: number;
  /** Wall seconds per method. */
  seconds: Record<string, Summary>;
  rowsPerSecond: Record<string, number>;
  peakRssMiB: Record<string, Summary>;
  ratios: { oursOverFloor: number; naiveOverOurs?: number; cliOverFloor?: number };
  tablesAgree: boolean;
}

/**
 * Baseline apply at each size: ours / floor / naive interleaved in every iteration (so drift on
 * a shared machine hits all three alike), each from an empty table.
 */
export async function runApply(ctx: BenchContext): Promise<ApplySizeResult[]> {
  const { services, pool, config, log } = ctx;
  const client = services.s3Client;
  const out: ApplySizeResult[] = [];
  for (const rows of config.sizes) {
    const { csv, prefix, key } = await stageBaseline(client, rows);
    const env = benchEnvironment(services.s3, prefix);
    const withNaive = rows <= config.naiveMaxRows;
    // The CLI beside the in-process figure (issue 8), at the seed's size: process start, tsx
    // load and the archive move included.
    const withCli = rows === config.sizes[0];
    const times: Record<string, number[]> = {
      ours: [],
      floor: [],
      ...(withNaive ? { naive: [] } : {}),
      ...(withCli ? { cli: [] } : {}),
    };
    const rss: Record<string, number[]> = { ours: [], floor: [], ...(withNaive ? { naive: [] } : {}) };
    let rowsWritten = 0;
    let tablesAgree = true;
    for (let i = 0; i < config.runs; i++) {
      await resetLibrary(pool);
      const ours = await measure(() => applyLibrary(client, pool, env));
      rowsWritten = ours.value.rowsWritten;
      times['ours']!.push(ours.ms);
      rss['ours']!.push(ours.rssMiB);
      if (i === 0) await prepareBaselines(pool);
      await pool.query('TRUNCATE bench_floor.inc');
      const floor = await measure(() => applyFloor(client, pool, 'bench', key));
      times['floor']!.push(floor.ms);
      rss['floor']!.push(floor.rssMiB);
      if (withCli) {
        await resetLibrary(pool);
        times['cli']!.push(await runTicketsCli(services, prefix));
        await uploadFile(client, 'bench', key, csv.path); // run --apply archived it
      }
      if (withNaive) {
        await pool.query('TRUNCATE bench_naive.inc');
        const naive = await measure(() => applyNaive(client, pool, 'bench', key));
        times['naive']!.push(naive.ms);
        rss['naive']!.push(naive.rssMiB);
      }
      if (i === 0) {
        const [a, b, c] = await Promise.all([
          tableDigest(pool, 'tickets.inc'),
          tableDigest(pool, 'bench_floor.inc'),
          withNaive ? tableDigest(pool, 'bench_naive.inc') : undefined,
        ]);
        tablesAgree = a.md5 === b.md5 && (c === undefined || c.md5 === a.md5);
        if (!tablesAgree) log(`WARNING: tables differ at ${rows} rows: ${JSON.stringify([a, b, c])}`);
      }
      log(
        `apply ${rows} rows, run ${i + 1}/${config.runs}: ours ${round(ours.ms)} ms, floor ${round(floor.ms)} ms` +
          (withCli ? `, CLI ${round(times['cli']!.at(-1)!)} ms` : '') +
          (withNaive ? `, naive ${round(times['naive']!.at(-1)!)} ms` : ''),
      );
    }
    const seconds = Object.fromEntries(
      Object.entries(times).map(([k, v]) => [k, summarize(v.map((ms) => ms / 1000))]),
    );
    const peakRssMiB = Object.fromEntries(Object.entries(rss).map(([k, v]) => [k, summarize(v)]));
    out.push({
      rows,
      csvMiB: round(csv.bytes / 2 ** 20, 1),
      rowsWritten,
      seconds,
      rowsPerSecond: Object.fromEntries(
        Object.entries(seconds).map(([k, s]) => [k, Math.round(rows / s.median)]),
      ),
      peakRssMiB,
      ratios: {
        oursOverFloor: round(seconds['ours']!.median / seconds['floor']!.median),
        ...(withNaive ? { naiveOverOurs: round(seconds['naive']!.median / seconds['ours']!.median) } : {}),
        ...(withCli ? { cliOverFloor: round(seconds['cli']!.median / seconds['floor']!.median) } : {}),
      },
      tablesAgree,
    });
  }
  return out;
}
