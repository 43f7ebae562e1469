import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Row } from '@tributary/core';
import {
  changeFiles,
  csvChunks,
  type Dataset,
  DEFAULT_DROP_FIELDS,
  type GeneratedFile,
  generateBucket,
  runDatasets,
  TIME_ZONE,
  tableColumns,
} from '@tributary/example-tickets';
import {
  applyFloor,
  benchEnvironment,
  floorSql,
  prepareBaselines,
  resetLibrary,
  STAGE_COLUMNS,
  tableDigest,
} from '../lib/apply.js';
import { runNode, runTickets, spawnTickets } from '../lib/cli.js';
import type { BenchContext } from '../lib/context.js';
import {
  BASELINE_ROWS,
  BASELINE_STAMP,
  baselineCsv,
  changeKey,
  csvText,
  deltaStamp,
  ensureBucket,
  putObjects,
} from '../lib/data.js';
import { ROOT, type Services } from '../lib/services.js';
import { measure, round, type Summary, summarize } from '../lib/stats.js';

/**
 * Steady state, the way users run it: the BUILT binary as a process, beside plain-JavaScript
 * processes doing the same work.
 *   small  a 500-row baseline + N (400) three-row deltas: `tickets-pipeline run --apply` vs the
 *          floor process (bench/floor-process.mjs) vs today's script (bench/script-process.mjs)
 *   seed   the seed's 34,849-row baseline + its 1, 22 and 131-row deltas: binary vs floor
 *          process, and in process (`runDatasets`) vs the in-process floor (`applyFloor`)
 *   noop   `run --apply` with nothing pending
 *   watch  `run --dataset inc,crq --apply --watch --interval 1`: upload → commit latency
 */

const BUCKET = 'bench';
const SMALL_BASELINE_ROWS = 500;
const ROWS_PER_DELTA = 3;
const WATCH_INTERVAL_S = 1;
const WATCH_UPLOADS_PER_DATASET = 5;
const POLL_MS = 20;

interface ProcessTimes {
  runs: number;
  seconds: Record<string, Summary>;
}

export interface SteadyResult {
  binary: string;
  small: ProcessTimes & {
    files: number;
    baselineRows: number;
    rowsPerDelta: number;
    filesPerSecond: Record<string, number>;
    msPerFile: Record<string, number>;
    ratios: { oursOverFloor: number; oursOverScript: number };
    tablesAgree: boolean;
  };
  seed: ProcessTimes & {
    files: number;
    rows: number;
    ratios: { processOverFloor: number; inProcessOverFloor: number };
    tablesAgree: boolean;
  };
  noop: { runs: number; ms: Summary };
  watch: {
    intervalSeconds: number;
    timeoutSeconds: number;
    baselinesApplied: Record<string, boolean>;
    uploads: { dataset: string; key: string; latencyMs: number | null }[];
    applied: number;
    latencyMs: Summary | null;
    exit: { code: number | null; signal: string | null };
  };
}

type CliJson = { streams: { stream: string; files: { status: string }[]; error: unknown }[] };

/** The last stdout line of `run --json`, checked: no error and `files` files, all loaded. */
function checkRun(stdout: string, files: number): void {
  const json = JSON.parse(stdout.trim().split('\n').at(-1)!) as CliJson;
  const stream = json.streams[0]!;
  const loaded = stream.files.filter((f) => f.status === 'loaded').length;
  if (stream.error || loaded !== files || stream.files.length !== files)
    throw new Error(
      `run --apply: expected ${files} files loaded, got ${loaded} of ${stream.files.length}: ${JSON.stringify(stream.error)}`,
    );
}

/** Newest modification time (ms) of any file under `dir`. */
function newest(dir: string): number {
  let t = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true }))
    if (entry.isFile()) t = Math.max(t, statSync(join(entry.parentPath, entry.name)).mtimeMs);
  return t;
}

/**
 * The section measures the built binary, so dist/ must hold today's sources: `pnpm build` when
 * any workspace source is newer than the build (tsc rewrites every output), unless --no-build.
 */
function ensureBuilt(build: boolean, log: (line: string) => void): void {
  const packages = ['core', 's3-source', 'pg-sink', 'kafka-bridge'].map((p) => join(ROOT, 'packages', p));
  const projects = [...packages, join(ROOT, 'examples/tickets')];
  const outputs = projects.map((p) => join(p, 'dist', p.endsWith('tickets') ? 'cli.js' : 'index.js'));
  const stale = () =>
    outputs.some((out, i) => !existsSync(out) || statSync(out).mtimeMs < newest(join(projects[i]!, 'src')));
  if (!stale()) return;
  if (!build)
    throw new Error(
      'steady: the built binary is missing or older than its sources; run `pnpm build` (or drop --no-build)',
    );
  log('steady: dist/ is missing or stale, running `pnpm build`…');
  const result = spawnSync('pnpm', ['build'], { cwd: ROOT, encoding: 'utf8' });
  if (result.status !== 0)
    throw new Error(
      `steady: \`pnpm build\` failed (${result.error?.message ?? `exit ${result.status}`}): ${(result.stdout + result.stderr).slice(-3000)}`,
    );
  if (stale()) log('steady: WARNING: a source changed during `pnpm build`; measuring the build as it is');
}

/**
 * `count` deltas of ROWS_PER_DELTA full row images each, stamped after the baseline: two updates
 * of baseline tickets (a new `updated_at`, so the row really changes) and one new ticket.
 */
function smallDeltas(
  dataset: Dataset,
  baseline: Row[],
  count: number,
  firstIndex = 0,
  step = 1,
): { stamp: string; body: string }[] {
  return Array.from({ length: count }, (_, n) => {
    const index = firstIndex + n * step;
    const stamp = deltaStamp(index);
    const at = stamp.replace('T', ' ').replace(/-(\d\d)-(\d\d)$/, ':$1:$2');
    const rows: Row[] = Array.from({ length: ROWS_PER_DELTA }, (_, j) => ({
      // baseline[0] is the export's sentinel row
      ...baseline[1 + ((index * ROWS_PER_DELTA + j) % (baseline.length - 1))]!,
      updated_at: at,
      last_seen_at: at,
      mttr: String(index % 97),
    }));
    rows[0]!['ticket_id'] = `${dataset.toUpperCase()}${String(10_000_000 + index).padStart(8, '0')}`;
    return { stamp, body: csvText(rows) };
  });
}

const text = (file: GeneratedFile) => [...csvChunks(file)].join('');

/**
 * The many-small-files stream: the generator's inc baseline at SMALL_BASELINE_ROWS rows, then
 * `deltas` deltas of ROWS_PER_DELTA rows (also the generated bucket, for the crq baseline).
 */
export function smallStream(deltas: number): {
  files: { stamp: string; body: string }[];
  baseline: (dataset: Dataset) => GeneratedFile;
  incRows: Row[];
} {
  const generated = generateBucket({ scale: SMALL_BASELINE_ROWS / BASELINE_ROWS });
  const baseline = (dataset: Dataset) =>
    generated.find((f) => f.dataset === dataset && f.kind === 'baseline')!;
  const incRows = [...baseline('inc').rows()];
  return {
    files: [{ stamp: BASELINE_STAMP, body: text(baseline('inc')) }, ...smallDeltas('inc', incRows, deltas)],
    baseline,
    incRows,
  };
}

/** The floor process's job for these keys: a temp stage, the floor's COPY and merge. */
function floorJob(services: Services, keys: string[]): string {
  const stage = 'pg_temp.stage';
  return JSON.stringify({
    databaseUrl: services.databaseUrl,
    s3: services.s3,
    bucket: BUCKET,
    keys,
    setup: `SET TimeZone = '${TIME_ZONE}'; CREATE TEMP TABLE stage (${STAGE_COLUMNS}) ON COMMIT DELETE ROWS`,
    ...floorSql(stage),
  });
}

function scriptJob(services: Services, prefix: string): string {
  return JSON.stringify({
    databaseUrl: services.databaseUrl,
    s3: services.s3,
    bucket: BUCKET,
    prefix: `${prefix}/inc/changes/`,
    processedPrefix: `${prefix}/inc/processed/`,
    stream: 'tickets/inc',
    table: 'bench_script.inc',
    watermarkTable: 'bench_script.watermark',
    columns: tableColumns(DEFAULT_DROP_FIELDS),
    timeZone: TIME_ZONE,
  });
}

/** What a reference process reported of its own start: Node start and its imports. */
const imports = (result: { stdout: string }) =>
  ` (${round(JSON.parse(result.stdout.trim().split('\n').at(-1)!).importedMs, 0)} ms to import)`;

const seconds = (times: Record<string, number[]>) =>
  Object.fromEntries(Object.entries(times).map(([k, v]) => [k, summarize(v.map((ms) => ms / 1000))]));

export async function runSteady(ctx: BenchContext): Promise<SteadyResult> {
  const { services, pool, config, log } = ctx;
  const client = services.s3Client;
  ensureBuilt(config.build, log);
  await ensureBucket(client, BUCKET);
  const runTag = `bench/steady/${Date.now().toString(36)}`;
  const { files, baseline, incRows } = smallStream(config.steadyFiles);

  // 1 + 3. Many small files, and the no-op run after them.
  const smallTimes: Record<string, number[]> = { ours: [], floor: [], script: [] };
  const noopMs: number[] = [];
  let smallAgree = true;
  for (let i = 0; i < config.runs; i++) {
    const ours = `${runTag}/small${i}/ours`;
    const script = `${runTag}/small${i}/script`;
    const put = (prefix: string) =>
      files.map((f) => ({ key: changeKey(prefix, 'inc', f.stamp), body: f.body }));
    await putObjects(client, BUCKET, [...put(ours), ...put(script)]);
    await resetLibrary(pool);
    const run = await runTickets(services, ours, { built: true });
    checkRun(run.stdout, files.length);
    smallTimes['ours']!.push(run.ms);
    const noop = await runTickets(services, ours, { built: true });
    checkRun(noop.stdout, 0);
    noopMs.push(noop.ms);
    if (i === 0) await prepareReferences(ctx);
    await pool.query('TRUNCATE bench_floor.inc; TRUNCATE bench_script.inc, bench_script.watermark');
    const floor = await runNode(['bench/floor-process.mjs'], {
      input: floorJob(
        services,
        put(script).map((o) => o.key),
      ),
      what: 'floor process',
    });
    smallTimes['floor']!.push(floor.ms);
    const scripted = await runNode(['bench/script-process.mjs'], {
      input: scriptJob(services, script),
      what: 'script process',
    });
    if (JSON.parse(scripted.stdout).files !== files.length)
      throw new Error(`script process applied ${scripted.stdout.trim()}, expected ${files.length} files`);
    smallTimes['script']!.push(scripted.ms);
    if (i === 0) smallAgree = await tablesAgree(ctx, ['tickets.inc', 'bench_floor.inc', 'bench_script.inc']);
    log(
      `steady ${files.length} small files, run ${i + 1}/${config.runs}: binary ${round(run.ms)} ms, ` +
        `floor ${round(floor.ms)} ms${imports(floor)}, script ${round(scripted.ms)} ms${imports(scripted)}; ` +
        `no-op ${round(noop.ms)} ms`,
    );
  }
  const smallSeconds = seconds(smallTimes);

  // 2. The seed-sized stream: as processes, and in process.
  const seedFiles = changeFiles(generateBucket({ scale: 1 }), 'inc');
  const seedObjects = await Promise.all(
    seedFiles.map(async (f) => ({
      name: basename(f.key),
      body: f.kind === 'baseline' ? await readFile((await baselineCsv(BASELINE_ROWS)).path) : text(f),
    })),
  );
  const seedAt = (prefix: string) =>
    seedObjects.map((o) => ({ key: `${prefix}/inc/changes/${o.name}`, body: o.body }));
  const seedMaster = seedAt(`${runTag}/seed`);
  await putObjects(client, BUCKET, seedMaster);
  const seedKeys = seedMaster.map((o) => o.key);
  const seedTimes: Record<string, number[]> = { ours: [], floor: [], oursInProcess: [], floorInProcess: [] };
  let seedAgree = true;
  for (let i = 0; i < config.runs; i++) {
    const proc = `${runTag}/seed${i}/process`;
    const lib = `${runTag}/seed${i}/library`;
    await putObjects(client, BUCKET, [...seedAt(proc), ...seedAt(lib)]);
    await resetLibrary(pool);
    const run = await runTickets(services, proc, { built: true });
    checkRun(run.stdout, seedFiles.length);
    seedTimes['ours']!.push(run.ms);
    await pool.query('TRUNCATE bench_floor.inc');
    const floor = await runNode(['bench/floor-process.mjs'], {
      input: floorJob(services, seedKeys),
      what: 'floor process',
    });
    seedTimes['floor']!.push(floor.ms);
    if (i === 0) seedAgree = await tablesAgree(ctx, ['tickets.inc', 'bench_floor.inc']);
    await resetLibrary(pool);
    const inProcess = await measure(() =>
      runDatasets(benchEnvironment(services.s3, lib), client, pool, {
        datasets: ['inc'],
        apply: true,
        lateFiles: 'error',
      }),
    );
    const [report] = inProcess.value;
    if (report?.error || report?.files.length !== seedFiles.length)
      throw new Error(`seed stream in process failed: ${JSON.stringify(report)}`);
    seedTimes['oursInProcess']!.push(inProcess.ms);
    await pool.query('TRUNCATE bench_floor.inc');
    const floorInProcess = await measure(async () => {
      for (const key of seedKeys) await applyFloor(client, pool, BUCKET, key);
    });
    seedTimes['floorInProcess']!.push(floorInProcess.ms);
    log(
      `steady seed stream, run ${i + 1}/${config.runs}: binary ${round(run.ms)} ms, floor process ${round(floor.ms)} ms${imports(floor)}, ` +
        `in process ${round(inProcess.ms)} ms, floor in process ${round(floorInProcess.ms)} ms`,
    );
  }
  const seedSeconds = seconds(seedTimes);

  // 4. Watch mode over two streams.
  const watch = await watchLatency(ctx, `${runTag}/watch`, baseline, incRows);

  const ratio = (a: Summary, b: Summary) => round(a.median / b.median);
  return {
    binary: 'node examples/tickets/bin/tickets-pipeline.js (examples/tickets/dist/cli.js)',
    small: {
      runs: config.runs,
      files: files.length,
      baselineRows: SMALL_BASELINE_ROWS,
      rowsPerDelta: ROWS_PER_DELTA,
      seconds: smallSeconds,
      filesPerSecond: Object.fromEntries(
        Object.entries(smallSeconds).map(([k, s]) => [k, Math.round(files.length / s.median)]),
      ),
      msPerFile: Object.fromEntries(
        Object.entries(smallSeconds).map(([k, s]) => [k, round((s.median * 1000) / files.length)]),
      ),
      ratios: {
        oursOverFloor: ratio(smallSeconds['ours']!, smallSeconds['floor']!),
        oursOverScript: ratio(smallSeconds['ours']!, smallSeconds['script']!),
      },
      tablesAgree: smallAgree,
    },
    seed: {
      runs: config.runs,
      files: seedFiles.length,
      rows: seedFiles.reduce((n, f) => n + f.rowCount, 0),
      seconds: seedSeconds,
      ratios: {
        processOverFloor: ratio(seedSeconds['ours']!, seedSeconds['floor']!),
        inProcessOverFloor: ratio(seedSeconds['oursInProcess']!, seedSeconds['floorInProcess']!),
      },
      tablesAgree: seedAgree,
    },
    noop: { runs: noopMs.length, ms: summarize(noopMs) },
    watch,
  };
}

/** bench_floor.inc (the floor's target) and bench_script.inc + its watermark table, shaped like tickets.inc. */
async function prepareReferences({ pool }: BenchContext): Promise<void> {
  await prepareBaselines(pool);
  await pool.query(`CREATE SCHEMA IF NOT EXISTS bench_script;
    CREATE TABLE IF NOT EXISTS bench_script.inc (LIKE tickets.inc INCLUDING ALL);
    CREATE TABLE IF NOT EXISTS bench_script.watermark (stream text PRIMARY KEY, source_max_key text NOT NULL,
      export_type text NOT NULL, updated_at timestamptz NOT NULL)`);
}

async function tablesAgree({ pool, log }: BenchContext, tables: string[]): Promise<boolean> {
  const digests = await Promise.all(tables.map((t) => tableDigest(pool, t)));
  const agree = digests.every((d) => d.md5 === digests[0]!.md5 && d.rows === digests[0]!.rows);
  if (!agree) log(`WARNING: steady: tables differ: ${JSON.stringify(tables.map((t, i) => [t, digests[i]]))}`);
  return agree;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Starts the built binary in watch mode over inc and crq (both with a baseline), waits until
 * tributary.loads shows both baselines (or the timeout), then uploads small deltas alternately to
 * inc and crq and polls tributary.loads every 20 ms for each: upload done → its load committed.
 * An upload not applied within the timeout is reported as such, never waited on forever. Then
 * SIGTERM, and the exit code.
 */
async function watchLatency(
  ctx: BenchContext,
  prefix: string,
  baseline: (dataset: Dataset) => GeneratedFile,
  incRows: Row[],
): Promise<SteadyResult['watch']> {
  const { services, pool, config, log } = ctx;
  const client = services.s3Client;
  const timeoutMs = (config.quick ? 5 : 15) * 1000;
  const datasets: Dataset[] = ['inc', 'crq'];
  const baselines = datasets.map((dataset) => ({
    key: changeKey(prefix, dataset, BASELINE_STAMP),
    body: text(baseline(dataset)),
  }));
  for (const dataset of datasets) await resetLibrary(pool, dataset);
  await putObjects(client, BUCKET, baselines);

  const child = spawnTickets(
    services,
    prefix,
    ['run', '--dataset', 'inc,crq', '--apply', '--watch', '--interval', String(WATCH_INTERVAL_S), '--json'],
    { built: true },
  );
  let output = '';
  const keep = (d: Buffer) => {
    output = (output + d).slice(-20_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let exit: { code: number | null; signal: string | null } | undefined;
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      resolve();
    }),
  );
  const loaded = async (dataset: Dataset, key: string): Promise<boolean> => {
    const { rowCount } = await pool
      .query(
        `SELECT 1 FROM tributary.loads WHERE stream = $1 AND source = $2 AND status IN ('loaded', 'archived')`,
        [`tickets/${dataset}`, key],
      )
      .catch(() => ({ rowCount: 0 })); // before the binary created the control schema
    return Boolean(rowCount);
  };
  /** Milliseconds from `from` until the key's load row is committed; null at the timeout or exit. */
  const waitLoaded = async (dataset: Dataset, key: string, from: number): Promise<number | null> => {
    while (performance.now() - from < timeoutMs && !exit) {
      if (await loaded(dataset, key)) return performance.now() - from;
      await sleep(POLL_MS);
    }
    return (await loaded(dataset, key)) ? performance.now() - from : null;
  };

  try {
    const started = performance.now();
    const baselinesApplied: Record<string, boolean> = {};
    for (const [i, dataset] of datasets.entries())
      baselinesApplied[dataset] = (await waitLoaded(dataset, baselines[i]!.key, started)) !== null;
    log(`steady watch: baselines applied ${JSON.stringify(baselinesApplied)}`);
    if (!baselinesApplied['inc'])
      throw new Error(`steady watch: the inc baseline was not applied within ${timeoutMs} ms: ${output}`);

    const deltas = Object.fromEntries(
      datasets.map((dataset, d) => {
        const rows = dataset === 'inc' ? incRows : [...baseline(dataset).rows()];
        return [dataset, smallDeltas(dataset, rows, WATCH_UPLOADS_PER_DATASET, d, datasets.length)];
      }),
    ) as Record<Dataset, { stamp: string; body: string }[]>;
    const uploads: SteadyResult['watch']['uploads'] = [];
    for (let n = 0; n < WATCH_UPLOADS_PER_DATASET && !exit; n++) {
      for (const dataset of datasets) {
        const delta = deltas[dataset][n]!;
        const key = changeKey(prefix, dataset, delta.stamp);
        await putObjects(client, BUCKET, [{ key, body: delta.body }]);
        const latencyMs = await waitLoaded(dataset, key, performance.now());
        uploads.push({ dataset, key, latencyMs: latencyMs === null ? null : round(latencyMs) });
        log(
          `steady watch: ${dataset} delta ${n + 1}: ${latencyMs === null ? `not applied within ${timeoutMs} ms` : `${round(latencyMs)} ms`}`,
        );
      }
    }
    const latencies = uploads.flatMap((u) => (u.latencyMs === null ? [] : [u.latencyMs]));
    if (!exit) child.kill('SIGTERM');
    await Promise.race([exited, sleep(30_000)]);
    if (!exit) log(`steady watch: no exit 30 s after SIGTERM: ${output.slice(-2000)}`);
    else if (exit.code !== 0) log(`steady watch: exit ${JSON.stringify(exit)}: ${output.slice(-2000)}`);
    return {
      intervalSeconds: WATCH_INTERVAL_S,
      timeoutSeconds: timeoutMs / 1000,
      baselinesApplied,
      uploads,
      applied: latencies.length,
      latencyMs: latencies.length ? summarize(latencies) : null,
      exit: exit ?? { code: null, signal: 'none within 30 s of SIGTERM' },
    };
  } finally {
    if (!exit) {
      child.kill('SIGKILL');
      await exited;
    }
  }
}
