/**
 * The floor of the steady-state section, as a process (`node bench/floor-process.mjs`, job on
 * stdin): for each key given, in order, one transaction of GetObject → the bytes unparsed into
 * COPY of a temp staging table → one INSERT … SELECT … ON CONFLICT (ticket_id) DO UPDATE merge
 * → COMMIT. No listing, no archive, no watermark: the least a correct loader of these files does.
 *
 * Job: { databaseUrl, s3, bucket, keys, setup, copy, merge } — the SQL comes from
 * bench/lib/apply.ts (floorSql), the same statements as the in-process floor.
 * Prints { files, rows }.
 */
import { pipeline } from 'node:stream/promises';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { from as copyFrom } from 'pg-copy-streams';
import { connect, done, readJob, s3Client } from './process-job.mjs';

const job = await readJob();
const s3 = s3Client(job.s3);
const db = await connect(job.databaseUrl, 'bench-floor');
await db.query(job.setup);
let rows = 0;
for (const key of job.keys) {
  await db.query('BEGIN');
  const object = await s3.send(new GetObjectCommand({ Bucket: job.bucket, Key: key }));
  await pipeline(object.Body, db.query(copyFrom(job.copy)));
  rows += (await db.query(job.merge)).rowCount ?? 0;
  await db.query('COMMIT');
}
await db.end();
s3.destroy();
done({ files: job.keys.length, rows });
