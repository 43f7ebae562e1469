// The consumer test's driver, run with plain `node` from a project that installed the packed
// tarballs with npm: services the way test/support/global-setup.ts gets them (DATABASE_URL /
// S3_ENDPOINT, else the packages' own embedded PostgreSQL and s3rver), then the library service,
// the installed tickets-pipeline bin, and the installed Kafka test broker bin.

import { strict as assert } from 'node:assert';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { changeFiles, expectedTable, generateBucket, uploadBucket } from '@tributary/example-tickets';
import { localPostgres } from '@tributary/pg-sink/testing';
import { localS3, localS3Client } from '@tributary/s3-source/testing';
import { Kafka, logLevel } from 'kafkajs';
import pg from 'pg';
import { runService } from './service.js';

const stops: Array<() => Promise<void>> = [];
const log = (line: string) => process.stdout.write(`consumer: ${line}\n`);

async function services() {
  // A database of its own, so a shared server (DATABASE_URL) is left as it was.
  const postgres = await localPostgres({ database: `tributary_consumer_${randomBytes(4).toString('hex')}` });
  stops.push(() => postgres.stop());
  const s3 = await localS3();
  stops.push(() => s3.stop());
  const { endpoint, region, accessKeyId = '', secretAccessKey = '' } = s3;
  return { databaseUrl: postgres.url, s3: { endpoint, region, accessKeyId, secretAccessKey } };
}

function csv(rows: string[][]): string {
  return `${rows.map((row) => row.join(',')).join('\n')}\n`;
}

async function libraryService(env: Awaited<ReturnType<typeof services>>): Promise<void> {
  const client = localS3Client(env.s3);
  const bucket = `consumer-${randomBytes(4).toString('hex')}`;
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  const files: Record<string, string[][]> = {
    'shop/orders/changes/2026-01-01T00-00-00.csv': [
      ['order_id', 'customer_id', 'amount', 'status', 'internal_note'],
      ['1', '10', '12.50', 'open', 'a'],
      ['2', '11', '3.00', 'open', 'b'],
      ['3', '10', '99.99', 'cancelled', 'c'],
    ],
    // A delta named to sort first by name but later by time (01-02 10:00 > 01-01): applied second.
    'shop/orders/changes/2026-01-02T10-00-00.csv': [
      ['order_id', 'customer_id', 'amount', 'status', 'internal_note'],
      ['2', '11', '4.00', 'shipped', 'd'],
      ['4', '12', '1.25', 'open', 'e'],
    ],
    'shop/customers/changes/2026-01-01T00-00-00.csv': [
      ['customer_id', 'name', 'status', 'internal_note'],
      ['10', 'Ada', 'active', 'x'],
      ['11', 'Grace', 'active', 'y'],
      ['12', 'Edsger', 'cancelled', 'z'],
    ],
  };
  for (const [key, rows] of Object.entries(files)) {
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: csv(rows) }));
  }
  client.destroy();
  await runService({ databaseUrl: env.databaseUrl, bucket, s3: env.s3 });
  const db = new pg.Client({ connectionString: env.databaseUrl });
  await db.connect();
  try {
    const orders = await db.query('SELECT * FROM shop.orders ORDER BY order_id');
    assert.deepEqual(orders.rows, [
      { order_id: 1, customer_id: 10, amount: '12.50', status: 'open' },
      { order_id: 2, customer_id: 11, amount: '4.00', status: 'shipped' },
      { order_id: 4, customer_id: 12, amount: '1.25', status: 'open' },
    ]);
    const customers = await db.query('SELECT * FROM shop.customers ORDER BY customer_id');
    assert.deepEqual(customers.rows, [
      { customer_id: 10, name: 'Ada', status: 'active' },
      { customer_id: 11, name: 'Grace', status: 'active' },
    ]);
    const loads = await db.query(
      `SELECT stream, count(*)::int AS files FROM tributary.loads WHERE status IN ('loaded', 'archived') GROUP BY stream ORDER BY stream`,
    );
    assert.deepEqual(loads.rows, [
      { stream: 'shop/customers', files: 1 },
      { stream: 'shop/orders', files: 2 },
    ]);
  } finally {
    await db.end();
  }
  log('library service: two streams applied through filter + dropFields, tables exact');
}

function bin(name: string, args: string[], env: NodeJS.ProcessEnv = process.env) {
  const result = spawnSync(`node_modules/.bin/${name}`, args, { env, encoding: 'utf8' });
  if (result.status !== 0) {
    throw new Error(`${name} ${args.join(' ')} exited ${result.status}:\n${result.stdout}\n${result.stderr}`);
  }
  return result.stdout;
}

async function ticketsBinary(env: Awaited<ReturnType<typeof services>>): Promise<void> {
  const help = bin('tickets-pipeline', ['--help']);
  assert.match(help, /Usage: tickets-pipeline/);
  assert.match(help, /\brun\b/);
  const bucket = `tickets-${randomBytes(4).toString('hex')}`;
  const files = generateBucket({ scale: 0.02 });
  const client = localS3Client(env.s3);
  await uploadBucket(files, client, bucket);
  client.destroy();
  const out = bin('tickets-pipeline', ['run', '--dataset', 'inc,crq', '--apply', '--json'], {
    ...process.env,
    DATABASE_URL: env.databaseUrl,
    S3_ENDPOINT: env.s3.endpoint,
    S3_BUCKET: bucket,
    AWS_REGION: env.s3.region,
    AWS_ACCESS_KEY_ID: env.s3.accessKeyId,
    AWS_SECRET_ACCESS_KEY: env.s3.secretAccessKey,
  });
  const json = JSON.parse(out.trim().split('\n').at(-1) ?? '') as {
    dryRun: boolean;
    streams: { stream: string; error: string | null; files: { status: string }[] }[];
  };
  assert.equal(json.dryRun, false);
  const db = new pg.Client({ connectionString: env.databaseUrl });
  await db.connect();
  try {
    for (const dataset of ['inc', 'crq'] as const) {
      const stream = json.streams.find((s) => s.stream === `tickets/${dataset}`);
      assert.ok(stream, `tickets/${dataset} in the run's JSON`);
      assert.equal(stream.error, null);
      const datasetFiles = changeFiles(files, dataset);
      assert.deepEqual(
        stream.files.map((f) => f.status),
        datasetFiles.map(() => 'loaded'),
      );
      const expected = expectedTable(datasetFiles);
      const count = await db.query(`SELECT count(*)::int AS n FROM tickets.${dataset}`);
      assert.equal(count.rows[0].n, expected.rows.size, `tickets.${dataset} rows`);
    }
  } finally {
    await db.end();
  }
  log('tickets-pipeline bin: --help, and run --apply of inc and crq with the expected row counts');
  assert.match(bin('tributary', ['--help']), /Usage: tributary/);
  log('tributary bin: --help');
}

async function kafkaBroker(): Promise<void> {
  const child: ChildProcess = spawn('node_modules/.bin/tributary-kafka-test-broker', ['--port', '0'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  stops.push(async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    }
  });
  const address = await new Promise<string>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`tributary-kafka-test-broker exited ${code}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const match = /^listening on (\S+)$/.exec(line);
      if (match) resolve(match[1]!);
    });
  });
  const kafka = new Kafka({ clientId: 'consumer-test', brokers: [address], logLevel: logLevel.NOTHING });
  const producer = kafka.producer();
  await producer.connect();
  await producer.send({ topic: 'consumer.test', messages: [{ key: 'k', value: 'hello from npm' }] });
  await producer.disconnect();
  const consumer = kafka.consumer({ groupId: 'consumer-test' });
  await consumer.connect();
  await consumer.subscribe({ topic: 'consumer.test', fromBeginning: true });
  const value = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no message consumed within 30 s')), 30_000);
    void consumer.run({
      eachMessage: async ({ message }) => {
        clearTimeout(timer);
        resolve(message.value?.toString() ?? '');
      },
    });
  });
  await consumer.disconnect();
  assert.equal(value, 'hello from npm');
  log(`kafka test broker bin on ${address}: kafkajs produced and consumed one message`);
}

try {
  const env = await services();
  await libraryService(env);
  await ticketsBinary(env);
  await kafkaBroker();
  log('all checks passed');
} finally {
  for (const stop of stops.reverse()) await stop().catch((error: unknown) => console.error(error));
}
