/**
 * The reference of the steady-state section: what the team's `import_tickets.py --from-bucket
 * --apply` does today (seed 000), as a plain Node process (`node bench/script-process.mjs`, job
 * on stdin). List the changes/ prefix, sort the keys, skip those at or before the watermark row;
 * then per file, serially: GetObject, parse the CSV, the consumer rules in code, multi-row
 * `INSERT … VALUES (…), (…) ON CONFLICT (ticket_id) DO UPDATE` with parameters in pages of 100
 * rows (psycopg2's execute_values), upsert the watermark row, all in one transaction; commit;
 * then CopyObject to processed/ and DeleteObject.
 *
 * Job: { databaseUrl, s3, bucket, prefix, processedPrefix, stream, table, watermarkTable,
 * columns: [{ name, type }], timeZone }. Prints { files, rows }.
 * The rules come from the built example (`applyRules`), the same code the tests' oracle uses.
 */
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
} from '@aws-sdk/client-s3';
import { parse } from 'csv-parse';
import { applyRules } from '../examples/tickets/dist/tickets.js';
import { connect, done, readJob, s3Client } from './process-job.mjs';

const PAGE = 100;
const job = await readJob();
const s3 = s3Client(job.s3);
const db = await connect(job.databaseUrl, 'bench-script');
await db.query(`SET TimeZone = '${job.timeZone}'`);

const keys = [];
let token;
do {
  const page = await s3.send(
    new ListObjectsV2Command({ Bucket: job.bucket, Prefix: job.prefix, ContinuationToken: token }),
  );
  for (const object of page.Contents ?? []) if (object.Key.endsWith('.csv')) keys.push(object.Key);
  token = page.IsTruncated ? page.NextContinuationToken : undefined;
} while (token);
keys.sort();

const watermark = (
  await db.query(`SELECT source_max_key FROM ${job.watermarkTable} WHERE stream = $1`, [job.stream])
).rows[0]?.source_max_key;
const pending = keys.filter((key) => watermark === undefined || key > watermark);

const names = job.columns.map((c) => c.name);
const cast = (c, n) => `$${n}${c.type === 'text' ? '' : `::${c.type}`}`;
const update = names
  .filter((n) => n !== 'ticket_id')
  .map((n) => `"${n}" = EXCLUDED."${n}"`)
  .join(', ');
function upsert(count) {
  const values = [];
  for (let r = 0; r < count; r++)
    values.push(`(${job.columns.map((c, i) => cast(c, r * names.length + i + 1)).join(', ')})`);
  return `INSERT INTO ${job.table} (${names.map((n) => `"${n}"`).join(', ')}) VALUES ${values.join(', ')}
    ON CONFLICT (ticket_id) DO UPDATE SET ${update}`;
}

let rows = 0;
let first = watermark === undefined;
for (const key of pending) {
  const object = await s3.send(new GetObjectCommand({ Bucket: job.bucket, Key: key }));
  const byKey = new Map();
  for await (const record of object.Body.pipe(parse({ columns: true, bom: true, skip_empty_lines: true }))) {
    for (const c in record) if (record[c] === '') record[c] = null;
    const row = applyRules(record);
    if (row) byKey.set(row.ticket_id, row); // last row per key wins
  }
  const all = [...byKey.values()];
  await db.query('BEGIN');
  for (let i = 0; i < all.length; i += PAGE) {
    const page = all.slice(i, i + PAGE);
    await db.query(
      upsert(page.length),
      page.flatMap((row) => names.map((n) => row[n] ?? null)),
    );
  }
  await db.query(
    `INSERT INTO ${job.watermarkTable} (stream, source_max_key, export_type, updated_at) VALUES ($1, $2, $3, now())
     ON CONFLICT (stream) DO UPDATE SET source_max_key = EXCLUDED.source_max_key,
       export_type = EXCLUDED.export_type, updated_at = EXCLUDED.updated_at`,
    [job.stream, key, first ? 'baseline' : 'delta'],
  );
  await db.query('COMMIT');
  first = false;
  rows += all.length;
  const processed = job.processedPrefix + key.slice(job.prefix.length);
  await s3.send(
    new CopyObjectCommand({
      Bucket: job.bucket,
      Key: processed,
      CopySource: `${job.bucket}/${key.split('/').map(encodeURIComponent).join('/')}`,
    }),
  );
  await s3.send(new DeleteObjectCommand({ Bucket: job.bucket, Key: key }));
}
await db.end();
s3.destroy();
done({ files: pending.length, rows });
