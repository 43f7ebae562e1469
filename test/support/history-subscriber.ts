/**
 * A test-only subscriber process: Kafka topic → tickets transforms → pg-sink in history mode.
 * The e2e suite kills it with SIGKILL (TRIBUTARY_FAULT) and restarts it. Configured by env:
 * DATABASE_URL, KAFKA_BROKERS, TOPIC, GROUP, TABLE.
 */
process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';

import { pipeline } from '@tributary/core';
import { type Dataset, ticketTarget, ticketTransforms } from '@tributary/example-tickets';
import { createDecoder, kafkaSubscribeSource, schemaTopicLookup } from '@tributary/kafka-bridge';
import { FAST_CONSUMER, fastKafkaConfig } from '@tributary/kafka-bridge/testing';
import { pgSink } from '@tributary/pg-sink';
import { Kafka } from 'kafkajs';
import pg from 'pg';

const env = (name: string): string => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required`);
  return value;
};
const kafka = new Kafka(fastKafkaConfig(env('KAFKA_BROKERS').split(','), 'history-subscriber'));
const topic = env('TOPIC');
const pool = new pg.Pool({ connectionString: env('DATABASE_URL'), max: 4 });
const sink = pgSink({
  pool,
  lock: { enabled: false },
  targets: () => ticketTarget(env('TABLE') as Dataset, 'history'),
});
const source = kafkaSubscribeSource({
  consumer: FAST_CONSUMER,
  kafka,
  topic,
  groupId: env('GROUP'),
  decode: createDecoder({ schemas: schemaTopicLookup(kafka, topic) }),
  exitWhenIdle: true,
  maxRows: 50, // many small commits, so a crash lands mid-stream
});
try {
  await pipeline(source, ...ticketTransforms(), sink);
} finally {
  await sink.close();
  await pool.end();
}
