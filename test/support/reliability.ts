import { PutObjectCommand } from '@aws-sdk/client-s3';
import {
  changeFiles,
  type Dataset,
  type GeneratedFile,
  generateBucket,
  uploadBucket,
} from '@tributary/example-tickets';
import { cliEnv } from './cli.js';
import { createTestBucket, createTestDatabase, type TestBucket, type TestDatabase } from './services.js';
import { diffAgainstOracle, listAll } from './tickets.js';

/**
 * Shared pieces of the reliability suite (issue 7): a world (database + bucket + generated
 * files + the binary's environment) and the exact end-state check every case ends with.
 */

export interface World extends TestBucket {
  db: TestDatabase;
  files: GeneratedFile[];
  env: NodeJS.ProcessEnv;
}

/** Small baselines keep each case fast; the shape (sentinel, alarms, deltas) is the seed's. */
export const SMALL = 0.05;

export async function world(
  options: { files?: GeneratedFile[]; scale?: number; extraEnv?: Record<string, string> } = {},
): Promise<World> {
  const db = await createTestDatabase();
  const bucket = await createTestBucket();
  const files = options.files ?? generateBucket({ scale: options.scale ?? SMALL });
  await uploadBucket(files, bucket.client, bucket.bucket);
  const env = cliEnv({
    databaseUrl: db.url,
    bucket: bucket.bucket,
    ...(options.extraEnv ? { extra: options.extraEnv } : {}),
  });
  return { db, ...bucket, files, env };
}

export async function putObject(w: TestBucket, key: string, body: string | Buffer): Promise<void> {
  await w.client.send(new PutObjectCommand({ Bucket: w.bucket, Key: key, Body: body }));
}

const base = (key: string) => key.split('/').pop()!;

/**
 * The end state after everything was applied: the table equals the oracle (the fold of the
 * change files computed in memory), every file has exactly one successful load row and it is
 * `archived`, changes/ is empty and processed/ holds every file once. Returns the problems
 * (empty means exact), so a failing case shows all of them at once.
 */
export async function exactProblems(
  w: World,
  datasets: readonly Dataset[] = ['inc', 'crq'],
): Promise<string[]> {
  const problems: string[] = [];
  for (const dataset of datasets) {
    const keys = changeFiles(w.files, dataset).map((f) => f.key);
    for (const p of await diffAgainstOracle(w.db.pool, dataset, w.files)) problems.push(`${dataset}: ${p}`);
    const loads = await w.db.pool.query<{ source: string; n: number; statuses: string[] }>(
      `SELECT source, count(*)::int AS n, array_agg(status ORDER BY status) AS statuses
         FROM tributary.loads WHERE stream = $1 AND status IN ('loaded', 'archived') GROUP BY source`,
      [`tickets/${dataset}`],
    );
    const bySource = new Map(loads.rows.map((r) => [r.source, r]));
    for (const key of keys) {
      const row = bySource.get(key);
      if (!row) problems.push(`${dataset}: no load row for ${key}`);
      else if (row.n !== 1) problems.push(`${dataset}: ${row.n} load rows for ${key} (${row.statuses})`);
      else if (row.statuses[0] !== 'archived') problems.push(`${dataset}: ${key} is ${row.statuses[0]}`);
    }
    for (const source of bySource.keys())
      if (!keys.includes(source)) problems.push(`${dataset}: unexpected load row ${source}`);
    const changes = await listAll(w.client, w.bucket, `automations/${dataset}/changes/`);
    if (changes.length) problems.push(`${dataset}: left in changes/: ${changes.map(base).join(', ')}`);
    const processed = (await listAll(w.client, w.bucket, `automations/${dataset}/processed/`)).map(base);
    const want = keys.map(base).sort();
    if (JSON.stringify(processed) !== JSON.stringify(want))
      problems.push(`${dataset}: processed/ has [${processed.join(', ')}], want [${want.join(', ')}]`);
  }
  return problems;
}

/** Counts of load rows per status for a stream (for mid-case assertions). */
export async function loadStatuses(w: World, stream = 'tickets/inc'): Promise<Record<string, number>> {
  const exists = await w.db.pool.query(`SELECT to_regclass('tributary.loads') IS NOT NULL AS ok`);
  if (!exists.rows[0].ok) return {};
  const { rows } = await w.db.pool.query<{ status: string; n: number }>(
    `SELECT status, count(*)::int AS n FROM tributary.loads WHERE stream = $1 GROUP BY status`,
    [stream],
  );
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
}

/** The stored checkpoint position of a stream (null when none). */
export async function checkpointOf(
  w: World,
  stream = 'tickets/inc',
): Promise<Record<string, unknown> | null> {
  const exists = await w.db.pool.query(`SELECT to_regclass('tributary.checkpoints') IS NOT NULL AS ok`);
  if (!exists.rows[0].ok) return null;
  const { rows } = await w.db.pool.query<{ position: Record<string, unknown> }>(
    `SELECT position FROM tributary.checkpoints WHERE stream = $1`,
    [stream],
  );
  return rows[0]?.position ?? null;
}

/** Polls observable state with a bounded number of tries (no sleeps as synchronisation). */
export async function pollUntil(
  what: string,
  check: () => Promise<boolean> | boolean,
  options: { tries?: number; everyMs?: number } = {},
): Promise<void> {
  const tries = options.tries ?? 600;
  for (let i = 0; i < tries; i++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, options.everyMs ?? 50));
  }
  throw new Error(`timed out waiting for: ${what}`);
}

/** Seeded randomness, so a failing random-kill run can be repeated. */
/**
 * Polls until `db`'s clock reads at least one second past `time`: extract file names have a
 * one-second resolution at best, and a run's upper bound is the source clock truncated to it.
 */
export async function sourceClockPast(db: TestDatabase, time: Date): Promise<void> {
  await pollUntil('the source clock to pass the last unit', async () => {
    const now = await db.pool.query<{ now: Date }>('SELECT now() AS now');
    return now.rows[0]!.now.getTime() >= time.getTime() + 1000;
  });
}

export { seededRandom } from '@tributary/example-tickets';
