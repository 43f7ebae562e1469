import type { S3Client } from '@aws-sdk/client-s3';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import {
  changeFiles,
  type Dataset,
  expectedTable,
  type GeneratedFile,
  SENTINEL_PREFIX,
} from '@tributary/example-tickets';
import type pg from 'pg';

/** Every key under a prefix (paginated). */
export async function listAll(client: S3Client, bucket: string, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    for (const o of page.Contents ?? []) keys.push(o.Key!);
    token = page.NextContinuationToken;
  } while (token);
  return keys.sort();
}

/**
 * Compares `tickets.<dataset>` with the fold of `files` computed independently in memory
 * (the oracle). Returns the differences; empty means exact.
 */
export async function diffAgainstOracle(
  pool: pg.Pool,
  dataset: Dataset,
  files: GeneratedFile[],
): Promise<string[]> {
  const expected = expectedTable(changeFiles(files, dataset));
  const { rows } = await pool.query<Record<string, string | null>>(
    `SELECT ticket_id, raw_status, region, location_name, mttr::text AS mttr, is_actionable::text AS is_actionable,
            to_char(updated_at AT TIME ZONE 'Africa/Nairobi', 'YYYY-MM-DD HH24:MI:SS') AS updated_at,
            to_char(closed_at AT TIME ZONE 'Africa/Nairobi', 'YYYY-MM-DD HH24:MI:SS') AS closed_at
       FROM tickets.${dataset}`,
  );
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const row of rows) {
    const id = row['ticket_id']!;
    seen.add(id);
    const want = expected.rows.get(id);
    if (!want) {
      problems.push(`unexpected row ${id}`);
      continue;
    }
    const text = (v: unknown) => (v === '' || v === undefined || v === null ? null : String(v));
    const mttr = want['mttr'] ? String(Number(want['mttr'])) : null;
    const checks: [string, unknown, unknown][] = [
      ['raw_status', row['raw_status'], text(want['raw_status'])],
      ['region', row['region'], text(want['region'])],
      ['location_name', row['location_name'], text(want['location_name'])],
      ['updated_at', row['updated_at'], text(want['updated_at'])],
      ['closed_at', row['closed_at'], text(want['closed_at'])],
      ['mttr', row['mttr'] === null ? null : String(Number(row['mttr'])), mttr],
      ['is_actionable', row['is_actionable'], want['is_actionable'] === 'true' ? 'true' : 'false'],
    ];
    for (const [column, got, exp] of checks)
      if (got !== exp) problems.push(`${id}.${column}: ${String(got)} != ${String(exp)}`);
  }
  for (const id of expected.rows.keys()) if (!seen.has(id)) problems.push(`missing row ${id}`);
  return problems.slice(0, 20);
}

/**
 * The messages `publish` sends for a dataset: every row of its change files but the export's
 * `EXPORT STOPPED…` sentinel, which is not a row and is not published.
 */
export function publishedMessages(files: readonly GeneratedFile[], dataset: Dataset): number {
  let messages = 0;
  for (const file of files) {
    if (file.dataset !== dataset || (file.kind !== 'baseline' && file.kind !== 'delta')) continue;
    for (const row of file.rows()) if (!String(row['ticket_id']).startsWith(SENTINEL_PREFIX)) messages++;
  }
  return messages;
}
