// A small service built on the published packages, as a user would write it (README "Install as
// a library"): two streams of change files, S3 → transforms → PostgreSQL, one-shot.
import { S3Client } from '@aws-sdk/client-s3';
import { dropFields, filter, pipeline } from '@tributary/core';
import { pgSink } from '@tributary/pg-sink';
import { s3Source } from '@tributary/s3-source';
import pg from 'pg';

export interface ServiceConfig {
  databaseUrl: string;
  bucket: string;
  s3: { endpoint: string; region: string; accessKeyId: string; secretAccessKey: string };
}

export const STREAMS = ['shop/orders', 'shop/customers'] as const;

export async function runService(config: ServiceConfig): Promise<void> {
  const client = new S3Client({
    endpoint: config.s3.endpoint,
    region: config.s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: config.s3.accessKeyId, secretAccessKey: config.s3.secretAccessKey },
  });
  const source = s3Source({
    client,
    streams: STREAMS.map((id) => ({
      id,
      bucket: config.bucket,
      prefix: `${id}/changes/`,
      keyPattern: 'YYYY-MM-DDTHH-mm-ss',
      timeZone: 'UTC',
      format: 'csv' as const,
    })),
  });
  const pool = new pg.Pool({ connectionString: config.databaseUrl, max: 6 });
  const sink = pgSink({
    pool,
    targets: {
      'shop/orders': {
        schema: 'shop',
        table: 'orders',
        key: ['order_id'],
        createTable: true,
        columns: [
          { name: 'order_id', type: 'integer' },
          { name: 'customer_id', type: 'integer' },
          { name: 'amount', type: 'numeric(12,2)' },
          { name: 'status', type: 'text' },
        ],
      },
      'shop/customers': {
        schema: 'shop',
        table: 'customers',
        key: ['customer_id'],
        createTable: true,
        columns: [
          { name: 'customer_id', type: 'integer' },
          { name: 'name', type: 'text' },
          { name: 'status', type: 'text' },
        ],
      },
    },
  });
  try {
    await pipeline(
      source,
      filter('cancelled', (row) => row.status !== 'cancelled'),
      dropFields(['internal_note']),
      sink,
    );
  } finally {
    await sink.close();
    await pool.end();
    client.destroy();
  }
}
