import { readFileSync } from 'node:fs';
import type { S3Client } from '@aws-sdk/client-s3';
import { Consumer, Producer, stringDeserializers, stringSerializers } from '@platformatic/kafka';
import { pipeline } from '@tributary/core';
import {
  DEFAULT_DROP_FIELDS,
  type Environment,
  TICKET_COLUMNS,
  TIME_ZONE,
  tableColumns,
  ticketStream,
  ticketTransforms,
} from '@tributary/example-tickets';
import {
  createDecoder,
  type KafkaInput,
  kafkaPublishSink,
  kafkaSubscribeSource,
  platformaticClient,
  schemaTopicLookup,
} from '@tributary/kafka-bridge';
import { FAST_CONSUMER, fastKafkaConfig, fastPlatformaticOptions } from '@tributary/kafka-bridge/testing';
import { pgSink } from '@tributary/pg-sink';
import { s3Source } from '@tributary/s3-source';
import { parse } from 'csv-parse/sync';
import { Kafka, type Message } from 'kafkajs';
import type pg from 'pg';
import { applyLibrary, benchEnvironment, resetLibrary } from '../lib/apply.js';
import type { BenchContext } from '../lib/context.js';
import { stageBaseline } from '../lib/data.js';
import { startKafka } from '../lib/services.js';
import { measure, round, type Summary, summarize } from '../lib/stats.js';

export interface KafkaResult {
  broker: string;
  rows: number;
  seconds: {
    direct: Summary;
    publish: Summary;
    barePublish: Summary;
    subscribe: Summary;
    bareSubscribe: Summary;
  };
  rowsPerSecond: Record<string, number>;
  ratios: { publishOverBare: number; subscribeOverBare: number; kafkaPathOverDirect: number };
  /** The same legs on @platformatic/kafka, against its own bare loops (issue 18); absent in older results. */
  platformatic?: {
    seconds: { publish: Summary; barePublish: Summary; subscribe: Summary; bareSubscribe: Summary };
    rowsPerSecond: Record<string, number>;
    ratios: { publishOverBare: number; subscribeOverBare: number; kafkaPathOverDirect: number };
  };
}

const PARTITIONS = 3;

/**
 * The 34,849-row baseline through Kafka vs straight into PostgreSQL, and each Kafka leg vs a
 * bare kafkajs loop moving the same number of messages (same keys, JSON row values) through
 * the same broker. Every iteration uses fresh topics and consumer groups.
 */
export async function runKafka(ctx: BenchContext): Promise<KafkaResult> {
  const { services, pool, config, log } = ctx;
  const client = services.s3Client;
  const broker = await startKafka();
  process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
  const kafka = new Kafka(fastKafkaConfig(broker.brokers, 'tributary-bench'));
  const admin = kafka.admin();
  await admin.connect();
  try {
    const rows = 34_849;
    const { csv, prefix } = await stageBaseline(client, rows);
    const env = benchEnvironment(services.s3, prefix);
    // The bare loops' messages, built before timing: what the publish sink sends, minus encoding.
    const records = parse(readFileSync(csv.path), { columns: true, bom: true }) as Record<string, string>[];
    const messages: Message[] = records.map((r) => ({ key: r['ticket_id']!, value: JSON.stringify(r) }));

    const times: Record<string, number[]> = {
      direct: [],
      publish: [],
      barePublish: [],
      subscribe: [],
      bareSubscribe: [],
    };
    const platformaticTimes: Record<string, number[]> = {
      publish: [],
      barePublish: [],
      subscribe: [],
      bareSubscribe: [],
    };
    const platformatic = platformaticClient(fastPlatformaticOptions(broker.brokers, 'tributary-bench'));
    for (let i = 0; i < config.runs; i++) {
      const run = `${Date.now()}-${i}`;
      // Direct S3 → PostgreSQL, same file, same run.
      await resetLibrary(pool);
      times['direct']!.push((await measure(() => applyLibrary(client, pool, env))).ms / 1000);

      // Publish: s3Source → kafkaPublishSink (Avro, idempotent, acks=all), checkpoint in PG.
      const topic = `bench.inc.${run}`;
      await resetPublish(pool);
      const publish = await measure(() => publishLeg({ kafka, pool, client, env, topic, rows }));
      times['publish']!.push(publish.ms / 1000);

      // Subscribe: kafkaSubscribeSource → ticket transforms → pgSink (offsets stored with rows).
      await resetSubscribe(pool);
      const subscribe = await measure(() =>
        subscribeLeg({ kafka, pool, topic, groupId: `bench-sub-${run}`, rows }),
      );
      times['subscribe']!.push(subscribe.ms / 1000);

      // Bare producer: same number of keyed messages, 1,000 per request, idempotent, acks=all.
      const bareTopic = `bench.bare.${run}`;
      await admin.createTopics({
        topics: [{ topic: bareTopic, numPartitions: PARTITIONS }],
        waitForLeaders: true,
      });
      const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
      await producer.connect();
      const barePublish = await measure(async () => {
        for (let start = 0; start < messages.length; start += 1000) {
          await producer.send({ topic: bareTopic, acks: -1, messages: messages.slice(start, start + 1000) });
        }
      });
      await producer.disconnect();
      times['barePublish']!.push(barePublish.ms / 1000);

      // Bare consumer: a fresh group reads the topic from the beginning until every message arrived.
      const consumer = kafka.consumer({ groupId: `bench-bare-${run}`, ...FAST_CONSUMER });
      const bareSubscribe = await measure(async () => {
        await consumer.connect();
        await consumer.subscribe({ topic: bareTopic, fromBeginning: true });
        let seen = 0;
        await new Promise<void>((resolve, reject) => {
          consumer
            .run({
              eachBatch: async ({ batch }) => {
                seen += batch.messages.length;
                if (seen >= messages.length) resolve();
              },
            })
            .catch(reject);
        });
      });
      await consumer.disconnect();
      times['bareSubscribe']!.push(bareSubscribe.ms / 1000);
      log(
        `kafka run ${i + 1}/${config.runs}: direct ${round(times['direct']!.at(-1)!)} s, publish ${round(publish.ms / 1000)} s (bare ${round(barePublish.ms / 1000)}), subscribe ${round(subscribe.ms / 1000)} s (bare ${round(bareSubscribe.ms / 1000)})`,
      );

      // The same legs on @platformatic/kafka, each against its own bare loop.
      const pTopic = `bench.pinc.${run}`;
      await resetPublish(pool);
      const pPublish = await measure(() =>
        publishLeg({ kafka: platformatic, pool, client, env, topic: pTopic, rows }),
      );
      platformaticTimes['publish']!.push(pPublish.ms / 1000);
      await resetSubscribe(pool);
      const pSubscribe = await measure(() =>
        subscribeLeg({ kafka: platformatic, pool, topic: pTopic, groupId: `bench-psub-${run}`, rows }),
      );
      platformaticTimes['subscribe']!.push(pSubscribe.ms / 1000);
      const pBareTopic = `bench.pbare.${run}`;
      await admin.createTopics({
        topics: [{ topic: pBareTopic, numPartitions: PARTITIONS }],
        waitForLeaders: true,
      });
      const pBarePublish = await barePlatformaticPublish(broker.brokers, pBareTopic, messages);
      platformaticTimes['barePublish']!.push(pBarePublish / 1000);
      const pBareSubscribe = await barePlatformaticSubscribe(
        broker.brokers,
        pBareTopic,
        `bench-pbare-${run}`,
        messages.length,
      );
      platformaticTimes['bareSubscribe']!.push(pBareSubscribe / 1000);
      log(
        `kafka run ${i + 1}/${config.runs} on @platformatic/kafka: publish ${round(pPublish.ms / 1000)} s (bare ${round(pBarePublish / 1000)}), subscribe ${round(pSubscribe.ms / 1000)} s (bare ${round(pBareSubscribe / 1000)})`,
      );
    }
    const p = Object.fromEntries(
      Object.entries(platformaticTimes).map(([k, v]) => [k, summarize(v)]),
    ) as NonNullable<KafkaResult['platformatic']>['seconds'];
    const s = Object.fromEntries(
      Object.entries(times).map(([k, v]) => [k, summarize(v)]),
    ) as KafkaResult['seconds'];
    return {
      broker: broker.label,
      rows,
      seconds: s,
      rowsPerSecond: Object.fromEntries(Object.entries(s).map(([k, v]) => [k, Math.round(rows / v.median)])),
      ratios: {
        publishOverBare: round(s.publish.median / s.barePublish.median),
        subscribeOverBare: round(s.subscribe.median / s.bareSubscribe.median),
        kafkaPathOverDirect: round((s.publish.median + s.subscribe.median) / s.direct.median),
      },
      platformatic: {
        seconds: p,
        rowsPerSecond: Object.fromEntries(
          Object.entries(p).map(([k, v]) => [k, Math.round(rows / v.median)]),
        ),
        ratios: {
          publishOverBare: round(p.publish.median / p.barePublish.median),
          subscribeOverBare: round(p.subscribe.median / p.bareSubscribe.median),
          kafkaPathOverDirect: round((p.publish.median + p.subscribe.median) / s.direct.median),
        },
      },
    };
  } finally {
    await admin.disconnect().catch(() => undefined);
    await broker.stop();
  }
}

/**
 * A bare @platformatic/kafka producer: the same keyed messages, 1,000 per request, idempotent,
 * acks=all. Milliseconds, client creation and first metadata included (as kafkajs' connect is).
 */
async function barePlatformaticPublish(
  brokers: string[],
  topic: string,
  messages: Message[],
): Promise<number> {
  const batches: { topic: string; key: string; value: string }[][] = [];
  for (let start = 0; start < messages.length; start += 1000)
    batches.push(
      messages.slice(start, start + 1000).map((m) => ({ topic, key: String(m.key), value: String(m.value) })),
    );
  let producer: Producer<string, string, string, string> | undefined;
  try {
    const { ms } = await measure(async () => {
      producer = new Producer({
        ...fastPlatformaticBase(brokers, 'bench-bare-producer'),
        serializers: stringSerializers,
        idempotent: true,
        acks: -1,
      });
      for (const batch of batches) await producer.send({ messages: batch });
    });
    return ms;
  } finally {
    await producer?.close().catch(() => undefined);
  }
}

/** A bare @platformatic/kafka group consumer reading the topic from the start until `total` arrived. */
async function barePlatformaticSubscribe(
  brokers: string[],
  topic: string,
  groupId: string,
  total: number,
): Promise<number> {
  const consumer = new Consumer({
    ...fastPlatformaticBase(brokers, 'bench-bare-consumer'),
    groupId,
    deserializers: stringDeserializers,
    sessionTimeout: FAST_CONSUMER.sessionTimeout,
    rebalanceTimeout: FAST_CONSUMER.rebalanceTimeout,
    heartbeatInterval: FAST_CONSUMER.heartbeatInterval,
    maxWaitTime: FAST_CONSUMER.maxWaitTimeInMs,
    autocommit: false,
  });
  try {
    const { ms } = await measure(async () => {
      const stream = await consumer.consume({ topics: [topic], mode: 'earliest', autocommit: false });
      let seen = 0;
      await new Promise<void>((resolve, reject) => {
        stream.on('error', reject);
        stream.on('data', () => {
          if (++seen === total) resolve();
        });
      });
      await stream.close();
    });
    return ms;
  } finally {
    await consumer.close(true).catch(() => undefined);
  }
}

function fastPlatformaticBase(brokers: string[], clientId: string) {
  const { brokers: bootstrapBrokers, ...rest } = fastPlatformaticOptions(brokers, clientId);
  return { ...rest, clientId, bootstrapBrokers };
}

interface LegOptions {
  kafka: KafkaInput;
  pool: pg.Pool;
  topic: string;
  rows: number;
}

/** Forget the publisher's checkpoint, so the file is published again (outside the timing). */
export async function resetPublish(pool: pg.Pool): Promise<void> {
  await pool
    .query(`DELETE FROM tributary_kafka.checkpoints WHERE stream = 'tickets/inc'`)
    .catch(() => undefined);
  await pool.query(`DELETE FROM tributary_kafka.loads WHERE stream = 'tickets/inc'`).catch(() => undefined);
}

/** Start the subscriber's table afresh (outside the timing). */
export async function resetSubscribe(pool: pg.Pool): Promise<void> {
  await pool.query('CREATE SCHEMA IF NOT EXISTS bench_kafka_t');
  await pool.query('DROP TABLE IF EXISTS bench_kafka_t.inc');
}

/** s3Source → kafkaPublishSink (Avro, idempotent, acks=all), checkpoint in PostgreSQL. */
export async function publishLeg(
  options: LegOptions & { client: S3Client; env: Environment },
): Promise<void> {
  const { kafka, pool, client, env, topic, rows } = options;
  const sink = kafkaPublishSink({
    kafka,
    topic,
    key: ['ticket_id'],
    columns: TICKET_COLUMNS,
    createTopics: { partitions: PARTITIONS, replicationFactor: 1 },
    checkpoints: pgSink({ pool, schema: 'tributary_kafka', targets: () => null }),
  });
  try {
    const source = s3Source({
      client,
      streams: [ticketStream(env, 'inc', { lateFiles: 'error' })],
      archive: false,
    });
    await pipeline(source, sink);
    if (sink.published !== rows) throw new Error(`published ${sink.published} of ${rows}`);
  } finally {
    await sink.close();
  }
}

/** kafkaSubscribeSource → ticket transforms → pgSink (offsets stored with the rows), fresh table. */
export async function subscribeLeg(options: LegOptions & { groupId: string }): Promise<void> {
  const { kafka, pool, topic, groupId, rows } = options;
  const sink = pgSink({
    pool,
    schema: 'tributary_kafka',
    lock: { enabled: false },
    targets: () => ({
      schema: 'bench_kafka_t',
      table: 'inc',
      key: ['ticket_id'],
      columns: tableColumns(DEFAULT_DROP_FIELDS),
      createTable: true,
      mode: 'upsert',
      timeZone: TIME_ZONE,
    }),
  });
  try {
    const source = kafkaSubscribeSource({
      consumer: FAST_CONSUMER,
      kafka,
      topic,
      groupId,
      decode: createDecoder({ schemas: schemaTopicLookup(kafka, topic) }),
      exitWhenIdle: true,
    });
    const result = await pipeline(source, ...ticketTransforms(), sink);
    if (result.rowsRead !== rows) throw new Error(`subscribed ${result.rowsRead} of ${rows}`);
  } finally {
    await sink.close();
  }
}
