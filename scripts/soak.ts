/**
 * `pnpm soak [--minutes 10] [--interval 5] [--every 3] [--rows 200] [--scale 0.2] [--json]`
 *
 * The soak test of issue 7 (not part of `pnpm test`): the real `tickets-pipeline run --apply
 * --watch` runs for `--minutes` while a generator uploads a delta file every `--every` seconds.
 * Every few seconds it samples the binary's RSS; for every delta it measures the freshness lag
 * (upload finished → its load row committed). At the end the binary is stopped with SIGTERM and
 * the table is compared exactly with the fold of every file.
 *
 * Fails (exit 1) when RSS keeps growing (each quarter's median above the previous one and the
 * last quarter ≥ 15 % above the first), when a file's lag exceeds two watch intervals, when the
 * binary dies, or when the table is not exact. Uses DATABASE_URL / S3_ENDPOINT when set;
 * otherwise starts an embedded PostgreSQL and s3rver (like `tickets-pipeline demo`).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import type { Row } from '@tributary/core';
import {
  csvChunks,
  type GeneratedFile,
  generateBucket,
  seededRandom,
  TICKET_COLUMNS,
  uploadBucket,
} from '@tributary/example-tickets';
import { localPostgres } from '@tributary/pg-sink/testing';
import { localS3, localS3Client } from '@tributary/s3-source/testing';
import pg from 'pg';
import { diffAgainstOracle } from '../test/support/tickets.js';

const ROOT = join(import.meta.dirname, '..');
const CLI = join(ROOT, 'examples', 'tickets', 'src', 'cli.ts');

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    interval: { type: 'string', default: '5' },
    every: { type: 'string', default: '3' },
    rows: { type: 'string', default: '200' },
    scale: { type: 'string', default: '0.2' },
    json: { type: 'boolean', default: false },
  },
});

function positive(name: string, text: string | undefined): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) {
    process.stderr.write(`soak: --${name} must be a positive number, got ${JSON.stringify(text)}\n`);
    process.exit(2);
  }
  return n;
}

const minutes = positive('minutes', args.minutes);
const intervalS = positive('interval', args.interval);
const everyS = positive('every', args.every);
const rowsPerDelta = Math.round(positive('rows', args.rows));
const scale = positive('scale', args.scale);

const log = (text: string) =>
  process.stderr.write(`[soak ${new Date().toISOString().slice(11, 19)}] ${text}\n`);

const pad = (n: number, w = 2) => String(n).padStart(w, '0');
function stamp(d: Date, sep: string): string {
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}${sep}${pad(d.getUTCHours())}${sep === 'T' ? '-' : ':'}${pad(d.getUTCMinutes())}${sep === 'T' ? '-' : ':'}${pad(d.getUTCSeconds())}`;
}

/** One delta file: a third new tickets, the rest updates of baseline tickets. */
function deltaFile(index: number, baselineCount: number, firstNew: number): GeneratedFile {
  // Synthetic key clock: one minute per delta after the generated bucket's last file, so every
  // delta is newer than the watermark whatever the wall clock says.
  const at = new Date(Date.UTC(2026, 5, 23, 0, 0, 0) + index * 60_000);
  const key = `automations/inc/changes/${stamp(at, 'T')}.csv`;
  const rows: Row[] = [];
  const rand = seededRandom(1_000_003 * (index + 1));
  const newCount = Math.ceil(rowsPerDelta / 3);
  for (let i = 0; i < rowsPerDelta; i++) {
    const n = i < newCount ? firstNew + i : 1 + Math.floor(rand() * (baselineCount - 1));
    const updated = new Date(Date.UTC(2026, 5, 23) + index * 60_000 + i * 1000);
    const row: Row = Object.fromEntries(TICKET_COLUMNS.map((c) => [c, '']));
    Object.assign(row, {
      ticket_id: `INC${pad(n, 8)}`,
      source_type: 'noc',
      service_type: 'FTTH',
      bucket: 'open',
      raw_status: ['Open', 'In-Progress', 'resolved '][Math.floor(rand() * 3)],
      normalized_status: 'OPEN',
      created_at_service: '2026-06-01 08:00:00',
      first_seen_at: '2026-06-01 08:00:00',
      last_seen_at: stamp(updated, ' '),
      week_start: '2026-06-01',
      week_end: '2026-06-07',
      region: ['nairobi-east', 'Mombasa', ' coast '][Math.floor(rand() * 3)],
      location_name: `Soak site ${index}`,
      latitude: (-1 - rand()).toFixed(6),
      longitude: (36 + rand()).toFixed(6),
      mttr: (rand() * 10).toFixed(2),
      is_auto_created: 'false',
      is_auto_closed: 'false',
      is_alarm: rand() < 0.02 ? 'true' : 'false',
      is_actionable: rand() < 0.8 ? 'true' : 'false',
      created_at: '2026-06-01 08:00:00',
      updated_at: stamp(updated, ' '),
    });
    rows.push(row);
  }
  return { key, dataset: 'inc', kind: 'delta', rowCount: rows.length, rows: () => rows };
}

function rssBytes(pid: number): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = /VmRSS:\s+(\d+)\s+kB/.exec(status);
    return kb ? Number(kb[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

const median = (xs: number[]) => {
  if (!xs.length) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};
const percentile = (xs: number[], p: number) => {
  if (!xs.length) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
};

async function main(): Promise<number> {
  const stops: Array<() => Promise<void>> = [];
  try {
    const name = `soak_${randomBytes(4).toString('hex')}`;
    const postgres = await localPostgres({ database: name, log });
    stops.push(() => postgres.stop());
    const s3 = await localS3({ log });
    stops.push(() => s3.stop());

    // A database (above) and a bucket of our own.
    const databaseUrl = postgres.url;
    const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
    pool.on('error', () => {});
    stops.push(() => pool.end());

    const client = localS3Client(s3);
    stops.push(async () => client.destroy());
    const bucket = name.replace('_', '-');
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
    const generated = generateBucket({ scale }).filter((f) => f.dataset === 'inc');
    await uploadBucket(generated, client, bucket);
    const baselineCount = generated.find((f) => f.kind === 'baseline')!.rowCount;
    let nextNew = baselineCount + 1000;
    const files: GeneratedFile[] = [...generated];

    log(
      `watch mode for ${minutes} min: interval ${intervalS}s, a ${rowsPerDelta}-row delta every ${everyS}s, baseline ${baselineCount} rows`,
    );
    const child: ChildProcess = spawn(
      process.execPath,
      [
        '--conditions=@tributary/source',
        '--import',
        'tsx',
        CLI,
        'run',
        '--dataset',
        'inc',
        '--apply',
        '--watch',
        '--interval',
        String(intervalS),
      ],
      {
        cwd: ROOT,
        env: {
          PATH: process.env.PATH,
          HOME: process.env.HOME,
          DATABASE_URL: databaseUrl,
          S3_ENDPOINT: s3.endpoint,
          S3_BUCKET: bucket,
          AWS_REGION: s3.region,
          AWS_ACCESS_KEY_ID: s3.accessKeyId,
          AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
          LOG_LEVEL: 'warn',
        },
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      stderr = (stderr + d).slice(-20_000);
    });
    let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    const exit = new Promise<void>((resolve) =>
      child.on('exit', (code, signal) => {
        exited = { code, signal };
        resolve();
      }),
    );
    stops.push(async () => {
      if (!exited) {
        child.kill('SIGKILL');
        await exit;
      }
    });

    const uploadedAt = new Map<string, { at: number; rows: number }>();
    const lags: { key: string; seconds: number; appliedAt: number; rows: number }[] = [];
    const rss: { t: number; bytes: number }[] = [];
    const started = Date.now();
    const deadline = started + minutes * 60_000;
    let deltas = 0;
    const seen = new Set<string>();

    const pollLoads = async () => {
      const { rows } = await pool
        .query<{ source: string; finished: number; rows_read: string }>(
          `SELECT source, extract(epoch FROM finished_at) * 1000 AS finished, rows_read
             FROM tributary.loads WHERE stream = 'tickets/inc' AND status IN ('loaded', 'archived')`,
        )
        .catch(() => ({ rows: [] as { source: string; finished: number; rows_read: string }[] }));
      for (const row of rows) {
        if (seen.has(row.source)) continue;
        seen.add(row.source);
        const up = uploadedAt.get(row.source);
        if (up) {
          const appliedAt = Number(row.finished);
          lags.push({ key: row.source, seconds: (appliedAt - up.at) / 1000, appliedAt, rows: up.rows });
        }
      }
    };

    let nextDelta = started;
    let nextSample = started;
    let nextReport = started + 60_000;
    while (Date.now() < deadline && !exited) {
      const now = Date.now();
      if (now >= nextDelta) {
        const file = deltaFile(deltas++, baselineCount, nextNew);
        nextNew += Math.ceil(rowsPerDelta / 3);
        files.push(file);
        await client.send(
          new PutObjectCommand({ Bucket: bucket, Key: file.key, Body: [...csvChunks(file)].join('') }),
        );
        uploadedAt.set(file.key, { at: Date.now(), rows: file.rowCount });
        nextDelta += everyS * 1000;
      }
      if (now >= nextSample) {
        const bytes = rssBytes(child.pid!);
        if (bytes !== undefined) rss.push({ t: now - started, bytes });
        nextSample += 5000;
      }
      await pollLoads();
      if (now >= nextReport) {
        const recent = lags.filter((l) => l.appliedAt > now - 60_000);
        log(
          `minute ${Math.round((now - started) / 60_000)}: ${recent.length} files, ${recent.reduce((n, l) => n + l.rows, 0)} rows, lag max ${Math.max(0, ...recent.map((l) => l.seconds)).toFixed(1)}s, RSS ${((rss.at(-1)?.bytes ?? 0) / 2 ** 20).toFixed(0)} MB`,
        );
        nextReport += 60_000;
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }

    // Let the last uploads land (bounded by two intervals plus the apply), then stop gracefully.
    const drainUntil = Date.now() + (2 * intervalS + 10) * 1000;
    const pending = () => [...uploadedAt.keys()].some((key) => !seen.has(key));
    while (!exited && pending() && Date.now() < drainUntil) {
      await pollLoads();
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const crashed = exited !== undefined;
    if (!exited) child.kill('SIGTERM');
    await exit;

    // Results.
    const problems: string[] = [];
    if (crashed) problems.push(`the binary exited during the soak: ${JSON.stringify(exited)}: ${stderr}`);
    else if (exited?.code !== 0) problems.push(`SIGTERM exit code ${JSON.stringify(exited)}: ${stderr}`);
    const missing = [...uploadedAt.keys()].filter((k) => !seen.has(k));
    if (missing.length) problems.push(`${missing.length} deltas never applied, e.g. ${missing[0]}`);
    const limit = 2 * intervalS;
    const slow = lags.filter((l) => l.seconds > limit);
    if (slow.length)
      problems.push(
        `${slow.length} files took longer than two intervals (${limit}s), worst ${Math.max(...slow.map((l) => l.seconds)).toFixed(1)}s`,
      );
    const diff = await diffAgainstOracle(pool, 'inc', files);
    if (diff.length) problems.push(`table differs from the oracle: ${diff.slice(0, 5).join('; ')}`);

    // RSS: skip the first 20 % (warm-up: JIT, pools), compare quarter medians of the rest.
    const steady = rss.slice(Math.floor(rss.length / 5));
    const q = 4;
    const quarters = Array.from({ length: q }, (_, i) =>
      median(
        steady
          .slice(Math.floor((i * steady.length) / q), Math.floor(((i + 1) * steady.length) / q))
          .map((s) => s.bytes),
      ),
    );
    const growing =
      steady.length >= 8 &&
      quarters.every((m, i) => i === 0 || m > quarters[i - 1]!) &&
      quarters[q - 1]! > quarters[0]! * 1.15;
    if (growing)
      problems.push(
        `RSS keeps growing: quarter medians ${quarters.map((b) => (b / 2 ** 20).toFixed(1)).join(' → ')} MB`,
      );

    const elapsedS = (Date.now() - started) / 1000;
    const appliedRows = lags.reduce((n, l) => n + l.rows, 0);
    const perMinute = [];
    for (let m = 0; m < Math.ceil(minutes); m++) {
      const from = started + m * 60_000;
      const to = from + 60_000;
      const inMinute = lags.filter((l) => l.appliedAt >= from && l.appliedAt < to);
      const samples = rss.filter((s) => s.t >= m * 60_000 && s.t < (m + 1) * 60_000);
      perMinute.push({
        minute: m + 1,
        files: inMinute.length,
        rowsPerSecond: Number((inMinute.reduce((n, l) => n + l.rows, 0) / 60).toFixed(1)),
        lagP50: Number(
          percentile(
            inMinute.map((l) => l.seconds),
            0.5,
          ).toFixed(2),
        ),
        lagMax: Number(Math.max(0, ...inMinute.map((l) => l.seconds)).toFixed(2)),
        rssMB: Number((median(samples.map((s) => s.bytes)) / 2 ** 20).toFixed(1)),
      });
    }
    const summary = {
      ok: problems.length === 0,
      minutes,
      intervalSeconds: intervalS,
      deltaEverySeconds: everyS,
      rowsPerDelta,
      deltasUploaded: uploadedAt.size,
      deltasApplied: lags.length,
      rowsApplied: appliedRows,
      rowsPerSecond: Number((appliedRows / elapsedS).toFixed(1)),
      lagSeconds: {
        p50: Number(
          percentile(
            lags.map((l) => l.seconds),
            0.5,
          ).toFixed(2),
        ),
        p95: Number(
          percentile(
            lags.map((l) => l.seconds),
            0.95,
          ).toFixed(2),
        ),
        max: Number(Math.max(0, ...lags.map((l) => l.seconds)).toFixed(2)),
        limit,
      },
      rssMB: {
        first: Number(((rss[0]?.bytes ?? 0) / 2 ** 20).toFixed(1)),
        quarterMedians: quarters.map((b) => Number((b / 2 ** 20).toFixed(1))),
        max: Number((Math.max(0, ...rss.map((s) => s.bytes)) / 2 ** 20).toFixed(1)),
        last: Number(((rss.at(-1)?.bytes ?? 0) / 2 ** 20).toFixed(1)),
      },
      tableExact: diff.length === 0,
      perMinute,
      problems,
    };
    if (args.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
    else {
      process.stdout.write(
        `\nminute  files  rows/s  lag p50  lag max  RSS MB\n${perMinute
          .map(
            (m) =>
              `${String(m.minute).padStart(6)}  ${String(m.files).padStart(5)}  ${String(m.rowsPerSecond).padStart(6)}  ${m.lagP50.toFixed(2).padStart(7)}  ${m.lagMax.toFixed(2).padStart(7)}  ${m.rssMB.toFixed(1).padStart(6)}`,
          )
          .join('\n')}\n\n${JSON.stringify({ ...summary, perMinute: undefined }, null, 2)}\n`,
      );
      process.stdout.write(summary.ok ? '\nsoak: OK\n' : `\nsoak: FAILED\n  ${problems.join('\n  ')}\n`);
    }
    return summary.ok ? 0 : 1;
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
  }
}

process.exitCode = await main();
