import { randomBytes } from 'node:crypto';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { Batch, Row } from '@tributary/core';
import { memorySink, sinkConformance, sourceConformance } from '@tributary/core/testing';
import { Kafka } from 'kafkajs';
import { beforeAll, describe, inject, it } from 'vitest';
import { createTestBucket, type TestBucket } from '../../../test/support/services.js';
import { type KafkaInput, toKafkaClient } from '../src/client/index.js';
import {
  kafkaArchiveSink,
  kafkaPublishSink,
  kafkaSubscribeSource,
  platformaticClient,
} from '../src/index.js';
import { FAST_CONSUMER, fastKafkaConfig, fastPlatformaticOptions } from '../src/testing/index.js';
import { readTopic } from './read-topic.js';

/**
 * The Kafka stages against the contracts every source and sink keeps (issue 16), over both
 * clients (kafkajs, @platformatic/kafka) and a real Kafka-protocol broker. Publish is at-least-once by design (what was sent stays
 * sent); the archive keeps its positions in Kafka's committed offsets.
 */

const clientId = () => `conf-${randomBytes(3).toString('hex')}`;
/** The source and the publish sink keep the contracts on both clients the seam offers (issue 18). */
const CLIENTS: { name: string; kafka: () => KafkaInput }[] = [
  { name: 'kafkajs', kafka: () => new Kafka(fastKafkaConfig(inject('kafkaBrokers'), clientId())) },
  {
    name: '@platformatic/kafka',
    kafka: () => platformaticClient(fastPlatformaticOptions(inject('kafkaBrokers'), clientId())),
  },
];
const name = (what: string) => `conf.${what}.${randomBytes(4).toString('hex')}`;

async function createTopic(k: KafkaInput, topic: string, partitions: number): Promise<void> {
  const admin = await toKafkaClient(k).admin();
  await admin.createTopics([{ topic, partitions }]);
  await admin.close();
}

/** Every message of a topic as rows, last value per id winning (what an upserting reader keeps). */
async function topicRows(k: KafkaInput, topic: string, stream: string): Promise<Row[]> {
  const byId = new Map<string, Row>();
  for (const message of await readTopic(k, topic)) {
    const row = JSON.parse(String(message.value)) as Row;
    if (String(message.headers['tributary-stream']) === stream) byId.set(String(row['id']), row);
  }
  return [...byId.values()];
}

let bucket: TestBucket;
beforeAll(async () => {
  bucket = await createTestBucket();
});

describe.each(CLIENTS)('sourceConformance: kafkaSubscribeSource on $name', ({ kafka }) => {
  const checks = sourceConformance({
    create: async (fixture) => {
      // One partition per fixture stream, in order; one row per message. A unit is what one
      // commit batch closes: with maxRows 1, each message (fixture units are no longer here).
      const k = kafka();
      const topic = name('sub');
      await createTopic(k, topic, fixture.length);
      const producer = toKafkaClient(k).producer();
      for (const [partition, { units }] of fixture.entries()) {
        await producer.send(
          topic,
          units.flat().map(([id, v]) => ({ partition, key: id, value: JSON.stringify({ id, v }) })),
        );
      }
      await producer.close();
      const streams = fixture.map((f) => f.stream);
      return {
        source: kafkaSubscribeSource({
          kafka: k,
          topic,
          groupId: name('group'),
          decode: (value) => JSON.parse(String(value)) as Row,
          streamFor: (_topic, partition) => streams[partition]!,
          exitWhenIdle: true,
          maxRows: 1,
          consumer: FAST_CONSUMER,
        }),
      };
    },
  });
  for (const check of checks) it(check.name, () => check.run());
});

describe.each(CLIENTS)('sinkConformance: kafkaPublishSink on $name (at-least-once)', ({ kafka }) => {
  const checks = sinkConformance({
    delivery: 'at-least-once',
    create: async () => {
      const k = kafka();
      const topic = name('pub');
      const sink = kafkaPublishSink({
        kafka: k,
        topic,
        key: ['id'],
        encoding: { kind: 'json' },
        createTopics: { partitions: 1 },
        checkpoints: memorySink(),
      });
      return { sink, rows: (stream) => topicRows(k, topic, stream) };
    },
  });
  for (const check of checks) it(check.name, () => check.run());
});

describe('sinkConformance: kafkaArchiveSink (positions in Kafka)', () => {
  // The archive rolls files per partition; a commit batch here flushes (as the subscriber's
  // idle and stop markers do), and offsets come from the batch's Kafka range.
  const offsets = new Map<string, number>();
  const fromKafka = (batch: Batch<Row>): Batch<Row> => {
    const first = offsets.get(batch.stream) ?? 0;
    const own = {
      topic: 'conf',
      partition: batch.stream.endsWith('/b') ? 1 : 0,
      firstOffset: String(first),
      lastOffset: String(first + batch.rows.length - 1),
      offsets: batch.rows.map((_, i) => String(first + i)),
    };
    offsets.set(batch.stream, first + batch.rows.length);
    return {
      ...batch,
      meta: { ...batch.meta, own, ...(batch.meta.commit ? { marker: 'flush' as const } : {}) },
    };
  };
  const checks = sinkConformance({
    positions: 'source',
    prepare: fromKafka,
    create: async () => {
      offsets.clear();
      const prefix = `${name('archive')}/`;
      const sink = kafkaArchiveSink({ client: bucket.client, bucket: bucket.bucket, prefix });
      const rows = async (stream: string) => {
        const partition = stream.endsWith('/b') ? 1 : 0;
        const listed = await bucket.client.send(
          new ListObjectsV2Command({
            Bucket: bucket.bucket,
            Prefix: `${prefix}conf/partition=${partition}/`,
          }),
        );
        const byId = new Map<string, Row>();
        for (const object of (listed.Contents ?? []).sort((a, b) => (a.Key! < b.Key! ? -1 : 1))) {
          const body = await bucket.client.send(
            new GetObjectCommand({ Bucket: bucket.bucket, Key: object.Key }),
          );
          for (const line of (await body.Body!.transformToString()).split('\n').filter(Boolean)) {
            const row = JSON.parse(line) as Row;
            byId.set(String(row['id']), row);
          }
        }
        return [...byId.values()];
      };
      return { sink, rows };
    },
  });
  for (const check of checks) it(check.name, () => check.run());
});
