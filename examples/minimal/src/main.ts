/**
 * The smallest useful Tributary service; copy it and change the names. CSV change files under
 * s3://$S3_BUCKET/orders/changes/, named by their time (e.g. 2026-06-22T15-50-39.csv), are
 * applied in time order to shop.orders: one transaction per file with its checkpoint, an upsert
 * on `id`, and the file moves to orders/processed/ once committed. Safe to kill at any moment
 * and run again (a cron tick); add `watch: { intervalMs: 60_000 }` to the source to keep polling.
 *
 *   DATABASE_URL=postgres://… S3_BUCKET=my-bucket node src/main.ts   (Node 22.18+ runs .ts)
 */
import { S3Client } from '@aws-sdk/client-s3';
import { pipeline } from '@tributary/core';
import { pgSink } from '@tributary/pg-sink';
import { s3Source } from '@tributary/s3-source';
import pg from 'pg';

const endpoint = process.env.S3_ENDPOINT; // unset: AWS; set: MinIO, s3rver, …
const source = s3Source({
  client: new S3Client(endpoint ? { endpoint, forcePathStyle: true } : {}),
  streams: [
    {
      id: 'orders',
      bucket: process.env.S3_BUCKET ?? 'shop',
      prefix: 'orders/changes/',
      keyPattern: 'YYYY-MM-DDTHH-mm-ss',
    },
  ],
});
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL });
const sink = pgSink({
  pool,
  targets: {
    orders: {
      schema: 'shop',
      table: 'orders',
      key: ['id'],
      createTable: true,
      columns: [
        { name: 'id', type: 'bigint' },
        { name: 'status', type: 'text' },
        { name: 'amount', type: 'numeric(12,2)' },
        { name: 'updated_at', type: 'timestamptz' },
      ],
    },
  },
});

const stop = new AbortController();
process.once('SIGTERM', () => stop.abort()); // finish the file in flight, then return
try {
  const result = await pipeline(source, sink, { stopSignal: stop.signal });
  console.log(`applied ${result.commits} files, ${result.rowsWritten} rows`);
} finally {
  await sink.close(); // releases the sink's sessions and locks
  await pool.end();
}
