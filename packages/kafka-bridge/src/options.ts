import type { S3Client } from '@aws-sdk/client-s3';
import type { RetryPolicy, Row, Sink } from '@tributary/core';
import { fn, instance, optionsResolver } from '@tributary/core/options';
import type { CompressionTypes, KafkaConfig } from 'kafkajs';
import { z } from 'zod';
import { isKafkaClient, isKafkajsInstance, type KafkaInput } from './client/index.js';
import type { ConsumedMessage } from './client/types.js';
import type { EncodingOptions } from './encoding.js';

/**
 * The Kafka stages' options (issue 16): one zod schema per stage is the type, the defaults, the
 * validation (errors name the option path) and the README's tables (`pnpm docs:options`).
 * Defaults are for a real cluster; the fast timings for loopback brokers and tests are in
 * `@tributary/kafka-bridge/testing` (`FAST_CONSUMER`, `fastKafkaConfig`).
 */

const kafkaInstance = instance<KafkaInput>(
  'kafkajs Kafka or KafkaClient',
  (v) => isKafkaClient(v) || isKafkajsInstance(v),
);
const positive = () => z.number().int().min(1);

/** kafkajs client settings for a production cluster (`new Kafka(kafkaClientConfig(brokers))`). */
export function kafkaClientConfig(brokers: string[], clientId = 'tributary'): KafkaConfig {
  return {
    clientId,
    brokers,
    connectionTimeout: 10_000,
    requestTimeout: 30_000,
    retry: { initialRetryTime: 300, maxRetryTime: 30_000, retries: 8 },
    logLevel: 2, // WARN
  };
}

export const consumerOptionsSchema = z
  .looseObject({
    sessionTimeout: positive()
      .default(30_000)
      .describe(
        'ms without a heartbeat before the group drops the member; brokers accept 6 s to 30 min by default (`group.min/max.session.timeout.ms`)',
      ),
    rebalanceTimeout: positive().default(60_000).describe('ms the group waits for members to rejoin'),
    heartbeatInterval: positive().default(3_000).describe('ms between heartbeats; below `sessionTimeout`'),
    maxWaitTimeInMs: positive().default(5_000).describe('longest a fetch waits for data'),
    maxBytesPerPartition: positive()
      .default(8 << 20)
      .describe('fetch size per partition (8 MiB: several batches per fetch, decoded while the sink writes)'),
    maxBytes: positive()
      .default(32 << 20)
      .describe('fetch size per request; the client holds this per broker, plus the batches in flight'),
    readUncommitted: z.boolean().default(false).describe('read messages of open transactions'),
  })
  .refine((c) => c.heartbeatInterval < c.sessionTimeout, {
    message: 'heartbeatInterval must be below sessionTimeout',
    path: ['heartbeatInterval'],
  })
  .describe(
    'consumer settings, for either client; other fields pass through to the client (kafkajs `ConsumerConfig`, platformatic `ConsumerOptions`)',
  );

export const subscribeOptionsSchema = z.strictObject({
  kafka: kafkaInstance.describe(
    "the user's kafkajs `Kafka` instance, or a `KafkaClient`: `kafkajsClient(kafka)` or `platformaticClient({ brokers })`",
  ),
  topic: z.string().min(1).describe('topic to consume'),
  groupId: z.string().min(1).describe('consumer group'),
  decode: fn<(value: Buffer | null, message: ConsumedMessage) => Promise<Row> | Row>().describe(
    '`(value, message) => row`; `createDecoder()` handles single-object Avro, Confluent and JSON',
  ),
  streamFor: fn<(topic: string, partition: number) => string>()
    .optional()
    .describe('stream id of a partition; default `kafka/<group>/<topic>/<partition>` (one checkpoint each)'),
  maxRows: positive().default(5000).describe('rows per batch'),
  poison: z
    .enum(['error', 'dead-letter'])
    .default('error')
    .describe(
      "undecodable messages: `'error'` stops, offset not advanced, naming topic/partition/offset; `'dead-letter'` sends to `<topic>.dlq` with `tributary-error` and origin headers and moves on",
    ),
  exitWhenIdle: z
    .boolean()
    .default(false)
    .describe('stop once every partition is consumed up to the end offsets seen at start'),
  awaitCommit: z
    .boolean()
    .default(true)
    .describe('wait for each batch to commit before fetching more; false for rolling sinks (the archiver)'),
  tickMs: positive()
    .optional()
    .describe('emit empty batches this often when idle, so rolling sinks can roll by age'),
  consumer: consumerOptionsSchema.prefault({}),
});

export type SubscribeOptions = z.input<typeof subscribeOptionsSchema>;
export type ResolvedSubscribeOptions = z.output<typeof subscribeOptionsSchema>;
export const resolveSubscribeOptions = optionsResolver('kafkaSubscribeSource', subscribeOptionsSchema);

export const publishOptionsSchema = z.strictObject({
  kafka: kafkaInstance.describe(
    "the user's kafkajs `Kafka` instance, or a `KafkaClient`: `kafkajsClient(kafka)` or `platformaticClient({ brokers })`",
  ),
  topic: z
    .union([z.string().min(1), fn<(stream: string) => string>()])
    .describe("topic, or topic per stream (e.g. `(stream) => 'tickets.inc'`)"),
  key: z
    .array(z.string().min(1))
    .min(1)
    .readonly()
    .describe('key columns: the message key is their values joined by `|`, so per-key order holds'),
  encoding: instance<EncodingOptions>(
    'EncodingOptions',
    (v) =>
      typeof v === 'object' &&
      v !== null &&
      ['avro', 'confluent', 'json'].includes((v as { kind: string }).kind),
  )
    .optional()
    .describe(
      "value encoding: `{ kind: 'avro', type }`, `{ kind: 'confluent', type, registry, subject }` or `{ kind: 'json' }`; default single-object Avro of nullable strings from `columns`",
    ),
  columns: z
    .array(z.string())
    .readonly()
    .optional()
    .describe('columns of the rows (for the default Avro schema)'),
  createTopics: z
    .union([
      z.literal(false),
      z.strictObject({
        partitions: positive().default(3).describe('partitions of a created topic'),
        replicationFactor: positive()
          .optional()
          .describe(
            "replication factor of a created topic; default the broker's `default.replication.factor`",
          ),
      }),
    ])
    .prefault({})
    .describe('create missing topics (and `<topic>.schemas`); `false` never creates'),
  checkpoints: instance<Sink<Row>>(
    'Sink',
    (v) => typeof v === 'object' && v !== null && typeof (v as Sink<Row>).write === 'function',
  ).describe(
    'where positions are committed once a unit is acknowledged (pg-sink with `targets: () => null`)',
  ),
  maxMessagesPerRequest: positive().default(1000).describe('messages per produce request'),
  compression: instance<CompressionTypes>('CompressionTypes', (v) => typeof v === 'number')
    .optional()
    .describe('kafkajs `CompressionTypes`; default none'),
});

export type PublishOptions = z.input<typeof publishOptionsSchema>;
export const resolvePublishOptions = optionsResolver('kafkaPublishSink', publishOptionsSchema);

const retryPolicySchema = z.strictObject({
  retries: z.number().int().min(0),
  minDelayMs: z.number().int().min(0),
  maxDelayMs: z.number().int().min(0),
});

export const archiveOptionsSchema = z.strictObject({
  client: instance<S3Client>('S3Client', (v) => typeof v === 'object' && v !== null && 'send' in v).describe(
    "the user's S3 client",
  ),
  bucket: z.string().min(1).describe('bucket to write to'),
  prefix: z.string().describe('key prefix, e.g. `cubic/kafka/sample/`'),
  maxRecords: positive().default(10_000).describe('roll a file after this many records (the Cubic ADR)'),
  maxAgeMs: positive().default(3_600_000).describe('… or when its oldest record is this old (one hour)'),
  gzip: z.boolean().default(false).describe('gzip the objects (`.jsonl.gz`)'),
  now: fn<() => number>().optional().describe('clock for age decisions (tests pass their own)'),
  retry: (retryPolicySchema as z.ZodType<RetryPolicy, RetryPolicy>)
    .optional()
    .describe("retries of a failed PUT (core's `RetryPolicy`; default 4 retries, 200 ms to 10 s)"),
});

export type ArchiveOptions = z.input<typeof archiveOptionsSchema>;
export const resolveArchiveOptions = optionsResolver('kafkaArchiveSink', archiveOptionsSchema);

export const HEADER = {
  stream: 'tributary-stream',
  source: 'tributary-source',
  row: 'tributary-row',
  kind: 'tributary-kind',
  schema: 'tributary-schema',
  error: 'tributary-error',
  originTopic: 'tributary-origin-topic',
  originPartition: 'tributary-origin-partition',
  originOffset: 'tributary-origin-offset',
} as const;
