import { PutObjectCommand } from '@aws-sdk/client-s3';
import { changeFiles, generateBucket, runDatasets } from '@tributary/example-tickets';
import { benchEnvironment, resetLibrary } from '../lib/apply.js';
import { runTicketsCli } from '../lib/cli.js';
import type { BenchContext } from '../lib/context.js';
import {
  BASELINE_STAMP,
  baselineCsv,
  changeKey,
  csvText,
  deltaStamp,
  ensureBucket,
  uploadFile,
} from '../lib/data.js';
import { percentile, round, type Summary, summarize } from '../lib/stats.js';

const PREFIX = 'bench/delta';

export interface DeltaResult {
  deltaRows: number;
  runs: number;
  /** Milliseconds from start to the commit (and archive) of the delta. */
  inProcess: { p50: number; p95: number; summary: Summary };
  cli: { p50: number; p95: number; summary: Summary };
}

/**
 * The 131-row delta of the seed, applied on top of the 34,849-row baseline: each run uploads it
 * again under the next minute's key with a new `updated_at` (so every row really changes), then
 * applies it — in process through `runDatasets` (what `run --apply` calls), or by spawning
 * `tickets-pipeline run --apply --dataset inc --json` (process start, tsx load included).
 * In-process and CLI runs alternate; two warm-up runs of each are not counted.
 */
export async function runDelta(ctx: BenchContext): Promise<DeltaResult> {
  const { services, pool, config, log } = ctx;
  const client = services.s3Client;
  await ensureBucket(client, 'bench');
  const csv = await baselineCsv(34_849);
  await resetLibrary(pool);
  await uploadFile(client, 'bench', changeKey(PREFIX, 'inc', BASELINE_STAMP), csv.path);
  const env = benchEnvironment(services.s3, PREFIX);
  const [baseline] = await runDatasets(env, client, pool, {
    datasets: ['inc'],
    apply: true,
    lateFiles: 'error',
  });
  if (baseline?.error) throw new Error(`baseline apply failed: ${baseline.error}`);
  const deltaFile = changeFiles(generateBucket({ scale: 1 }), 'inc').find((f) => f.rowCount === 131)!;
  const deltaRows = [...deltaFile.rows()];

  let index = 0;
  const upload = async () => {
    const stamp = `2026-07-${String(1 + (index % 28)).padStart(2, '0')} 12:00:00`;
    const body = csvText(deltaRows.map((row) => ({ ...row, updated_at: stamp, mttr: String(index) })));
    await client.send(
      new PutObjectCommand({
        Bucket: 'bench',
        Key: changeKey(PREFIX, 'inc', deltaStamp(index++)),
        Body: body,
      }),
    );
  };
  const inProcess = async (): Promise<number> => {
    await upload();
    const started = performance.now();
    const [report] = await runDatasets(env, client, pool, {
      datasets: ['inc'],
      apply: true,
      lateFiles: 'error',
    });
    const ms = performance.now() - started;
    if (report?.error || report?.files.length !== 1)
      throw new Error(`delta run failed: ${JSON.stringify(report)}`);
    return ms;
  };
  const cli = async (): Promise<number> => {
    await upload();
    return runTicketsCli(services, PREFIX);
  };
  for (let i = 0; i < 2; i++) {
    await inProcess();
    await cli();
  }
  const inMs: number[] = [];
  const cliMs: number[] = [];
  for (let i = 0; i < config.deltaRuns; i++) {
    inMs.push(await inProcess());
    cliMs.push(await cli());
  }
  log(`delta: in-process p50 ${round(percentile(inMs, 50))} ms, CLI p50 ${round(percentile(cliMs, 50))} ms`);
  return {
    deltaRows: deltaRows.length,
    runs: config.deltaRuns,
    inProcess: {
      p50: round(percentile(inMs, 50)),
      p95: round(percentile(inMs, 95)),
      summary: summarize(inMs),
    },
    cli: { p50: round(percentile(cliMs, 50)), p95: round(percentile(cliMs, 95)), summary: summarize(cliMs) },
  };
}
