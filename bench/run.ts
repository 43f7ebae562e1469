/**
 * `pnpm bench [--quick] [--sizes 34849,500000] [--runs 5] [--sections apply,delta,memory,parse,kafka,steady,extract]
 *             [--memory-mb 100,1024,3072] [--delta-runs 30] [--naive-max-rows 34849] [--steady-files 400]
 *             [--no-build] [--no-write]`
 *
 * Tributary beside its baselines, every pair measured in this one process run (issue 8):
 *   apply   library end to end vs the floor (raw CSV bytes → COPY → one merge) vs a per-row upsert loop
 *   delta   the 131-row delta: `tickets-pipeline run --apply` (process start included) and in process
 *   memory  peak RSS of a child process applying 100 MB / 1 GB / 3 GB CSVs through the library
 *   parse   the source's CSV path over a local file vs a bare csv-parse loop over the same bytes
 *   kafka   publish / subscribe vs bare kafkajs producer / consumer loops on the same broker
 *   extract extractTable() (PostgreSQL → CSV file) vs a bare COPY … TO STDOUT into a file, peak RSS
 *   steady  the built binary as a process: 400 small deltas and the seed's stream vs a floor process
 *           and today's script, a no-op run, watch-mode latency over inc and crq (`pnpm build`
 *           first when dist/ is older than the sources, unless --no-build)
 * Every figure is the median of the runs with min and max. Services: DATABASE_URL / S3_ENDPOINT /
 * KAFKA_BROKERS when set, else embedded PostgreSQL, s3rver and the test broker.
 * Writes bench/results/latest.json and docs/benchmarks.md (unless --no-write).
 */

import { readFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { type Report, writeReport } from './lib/report.js';
import { ROOT, startServices } from './lib/services.js';
import { runApply } from './sections/apply.js';
import { runDelta } from './sections/delta.js';
import { runExtract } from './sections/extract.js';
import { runKafka } from './sections/kafka.js';
import { runMemory } from './sections/memory.js';
import { runParse } from './sections/parse.js';
import { runSteady } from './sections/steady.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    sizes: { type: 'string' },
    runs: { type: 'string' },
    sections: { type: 'string' },
    'memory-mb': { type: 'string' },
    'delta-runs': { type: 'string' },
    'naive-max-rows': { type: 'string' },
    'steady-files': { type: 'string' },
    'no-build': { type: 'boolean', default: false },
    'no-write': { type: 'boolean', default: false },
  },
  strict: true,
});

const numbers = (text: string) =>
  text.split(',').map((s) => {
    const n = Number(s.trim());
    if (!Number.isFinite(n) || n <= 0) throw new Error(`not a positive number: ${JSON.stringify(s)}`);
    return n;
  });

export interface BenchConfig {
  quick: boolean;
  sizes: number[];
  runs: number;
  memoryMb: number[];
  deltaRuns: number;
  naiveMaxRows: number;
  /** Delta files of the steady section's many-small-files case. */
  steadyFiles: number;
  /** Whether the steady section may run `pnpm build` when dist/ is stale. */
  build: boolean;
}

const SECTIONS = ['apply', 'delta', 'memory', 'parse', 'kafka', 'steady', 'extract'];
const quick = values.quick;
const config: BenchConfig = {
  quick,
  sizes: numbers(values.sizes ?? (quick ? '34849' : '34849,500000')),
  runs: Number(values.runs ?? (quick ? 1 : 5)),
  memoryMb: numbers(values['memory-mb'] ?? (quick ? '20' : '100,1024,3072')),
  deltaRuns: Number(values['delta-runs'] ?? (quick ? 3 : 30)),
  naiveMaxRows: Number(values['naive-max-rows'] ?? 34849),
  steadyFiles: numbers(values['steady-files'] ?? '400')[0]!,
  build: !values['no-build'],
};
const sections = new Set((values.sections ?? SECTIONS.join(',')).split(',').map((s) => s.trim()));
const unknown = [...sections].filter((s) => !SECTIONS.includes(s));
if (unknown.length)
  throw new Error(`--sections: unknown ${unknown.join(', ')} (known: ${SECTIONS.join(', ')})`);
const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);

const started = new Date();
const services = await startServices(log);
const pool = new pg.Pool({
  connectionString: services.databaseUrl,
  max: 6,
  application_name: 'tributary-bench',
});
pool.on('error', () => {});
const results: Record<string, unknown> = {};
try {
  const version = await pool.query<{ server_version: string }>('SHOW server_version');
  const machine = {
    cores: cpus().length,
    cpu: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    postgres: version.rows[0]!.server_version,
    postgresServer: services.postgresLabel,
    s3: services.s3Label,
  };
  log(`machine: ${JSON.stringify(machine)}`);
  const context = { config, services, pool, log };
  if (sections.has('apply')) results['apply'] = await runApply(context);
  if (sections.has('delta')) results['delta'] = await runDelta(context);
  if (sections.has('parse')) results['parse'] = await runParse(context);
  if (sections.has('kafka')) results['kafka'] = await runKafka(context);
  if (sections.has('memory')) results['memory'] = await runMemory(context);
  if (sections.has('steady')) results['steady'] = await runSteady(context);
  if (sections.has('extract')) results['extract'] = await runExtract(context);
  const report: Report = {
    date: started.toISOString(),
    durationSeconds: Math.round((Date.now() - started.getTime()) / 1000),
    machine,
    config: { ...config, sections: [...sections], argv: process.argv.slice(2) },
    results: results as Report['results'],
  };
  if (!values['no-write']) {
    // A run of some sections keeps the others' last figures, labelled with their date, so the
    // page never loses a section (`pnpm bench --sections steady` after a full run).
    const previous = JSON.parse(
      await readFile(join(ROOT, 'bench/results/latest.json'), 'utf8').catch(() => '{}'),
    ) as Partial<Report>;
    for (const [section, value] of Object.entries(previous.results ?? {})) {
      if (sections.has(section) || value === undefined) continue;
      (report.results as Record<string, unknown>)[section] = value;
      report.carried = { ...report.carried, [section]: previous.carried?.[section] ?? previous.date ?? '?' };
    }
  }
  if (!values['no-write'])
    await writeReport(report, log, await readFile(join(ROOT, 'bench/NOTES.md'), 'utf8').catch(() => ''));
  else process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
} finally {
  await pool.end();
  await services.stop();
}
