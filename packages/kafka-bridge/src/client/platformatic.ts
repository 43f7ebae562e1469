import type { BaseOptions, CompressionAlgorithmValue, Producer } from '@platformatic/kafka';
import { TributaryError } from '@tributary/core';
import { platformaticGroupConsumer } from './platformatic-consumer.js';
import { loadPlatformatic } from './platformatic-module.js';
import type { CompressionCode, KafkaAdmin, KafkaClient, KafkaProducer, OutgoingMessage } from './types.js';

/**
 * Options of `platformaticClient`: the brokers, and any other `@platformatic/kafka` client
 * option (`tls`, `sasl`, `timeout`, `retries`, `retryDelay`, …) passed through unchanged.
 */
export type PlatformaticClientOptions = { brokers: string[]; clientId?: string } & Partial<
  Omit<BaseOptions, 'bootstrapBrokers' | 'clientId'>
>;

/** Settings for a production cluster; the caller's options win. */
const CLUSTER_DEFAULTS = {
  connectTimeout: 10_000,
  timeout: 30_000,
  retries: 8,
  retryDelay: 300,
} as const;

/**
 * The seam over `@platformatic/kafka` (maintained, pure JavaScript): each stage creates the
 * producer, admin or consumer it needs from these options and closes it when done.
 */
export function platformaticClient(options: PlatformaticClientOptions): KafkaClient {
  const { brokers, clientId = 'tributary', ...rest } = options;
  if (!Array.isArray(brokers) || brokers.length === 0 || !brokers.every((b) => typeof b === 'string'))
    throw new TributaryError(
      'INVALID_OPTIONS',
      'platformaticClient(): brokers: give at least one `host:port` string',
    );
  const base = (): BaseOptions => ({ ...CLUSTER_DEFAULTS, ...rest, clientId, bootstrapBrokers: brokers });
  return {
    kind: 'platformatic',
    producer: () => platformaticProducer(base()),
    admin: () => platformaticAdmin(base()),
    groupConsumer: (config) => platformaticGroupConsumer(base(), config),
  };
}

const COMPRESSION: Record<CompressionCode, CompressionAlgorithmValue> = {
  0: 'none',
  1: 'gzip',
  2: 'snappy',
  3: 'lz4',
  4: 'zstd',
};

function platformaticProducer(base: BaseOptions): KafkaProducer {
  let producer: Promise<Producer> | undefined;
  const ACKS_ALL = -1;
  return {
    async send(topic, messages, compression) {
      producer ??= loadPlatformatic().then(
        ({ Producer, compatibilityPartitioner }) =>
          new Producer({
            ...base,
            idempotent: true,
            acks: ACKS_ALL,
            autocreateTopics: false,
            // Java's (and kafkajs') key → partition mapping: a key stays in its partition whichever
            // client published it, so per-key order survives switching clients.
            partitioner: compatibilityPartitioner,
          }),
      );
      await (await producer).send({
        messages: toPlatformaticMessages(topic, messages),
        acks: ACKS_ALL,
        ...(compression ? { compression: COMPRESSION[compression] } : {}),
      });
    },
    async close() {
      const open = producer;
      producer = undefined;
      await (await open?.catch(() => undefined))?.close().catch(() => undefined);
    },
  };
}

const toBuffer = (v: string | Buffer): Buffer => (typeof v === 'string' ? Buffer.from(v) : v);

/**
 * Messages in platformatic's shape. Header names and most header values (stream, source file,
 * kind, schema) repeat across a request: each distinct string is encoded once per request.
 */
function toPlatformaticMessages(topic: string, messages: OutgoingMessage[]) {
  const encoded = new Map<string, Buffer>();
  const cached = (text: string): Buffer => {
    let buffer = encoded.get(text);
    if (!buffer) {
      buffer = Buffer.from(text);
      encoded.set(text, buffer);
    }
    return buffer;
  };
  return messages.map((message) => {
    let headers: Map<Buffer, Buffer> | undefined;
    if (message.headers) {
      headers = new Map();
      for (const [name, value] of Object.entries(message.headers))
        headers.set(cached(name), typeof value === 'string' ? cached(value) : value);
    }
    return {
      topic,
      ...(message.key !== null ? { key: toBuffer(message.key) } : {}),
      ...(message.value !== null ? { value: toBuffer(message.value) } : {}),
      ...(headers ? { headers } : {}),
      ...(message.partition !== undefined ? { partition: message.partition } : {}),
    };
  });
}

async function platformaticAdmin(base: BaseOptions): Promise<KafkaAdmin> {
  const { Admin, ListOffsetTimestamps, findErrorBy } = await loadPlatformatic();
  const admin = new Admin(base);
  const partitionsOf = async (topic: string): Promise<number[]> => {
    const metadata = await admin.metadata({ topics: [topic], forceUpdate: true });
    const count = metadata.topics.get(topic)?.partitionsCount ?? 0;
    return Array.from({ length: count }, (_, i) => i);
  };
  const listOffsets = async (topic: string, partitions: number[], timestamp: bigint) => {
    const [listed] = await admin.listOffsets({
      topics: [
        { name: topic, partitions: partitions.map((partitionIndex) => ({ partitionIndex, timestamp })) },
      ],
    });
    return new Map((listed?.partitions ?? []).map((p) => [p.partitionIndex, p.offset]));
  };
  // Like kafkajs' `waitForLeaders`: a created topic takes a moment to have a leader per
  // partition on a real cluster, and a produce before that fails.
  const waitForLeaders = async (names: string[]) => {
    const attempts = typeof base.retries === 'number' ? Math.max(1, base.retries) : 8;
    const delay = typeof base.retryDelay === 'number' ? base.retryDelay : 300;
    for (let attempt = 1; ; attempt++) {
      const metadata = await admin.metadata({ topics: names, forceUpdate: true }).catch(() => undefined);
      const ready = names.every((name) => {
        const topic = metadata?.topics.get(name);
        return (
          topic !== undefined && topic.partitionsCount > 0 && topic.partitions.every((p) => p.leader >= 0)
        );
      });
      if (ready) return;
      if (attempt >= attempts)
        throw new TributaryError(
          'SINK_FAILED',
          `topics ${names.join(', ')} were created but have no leader for every partition yet`,
          { retriable: true },
        );
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  };
  return {
    listTopics: () => admin.listTopics(),
    async createTopics(topics) {
      // One request per topic: platformatic applies `configs` to every topic of a request, and
      // only the schemas topic is compacted.
      for (const t of topics) {
        try {
          await admin.createTopics({
            topics: [t.topic],
            partitions: t.partitions,
            ...(t.replicationFactor ? { replicas: t.replicationFactor } : {}),
            ...(t.compacted ? { configs: [{ name: 'cleanup.policy', value: 'compact' }] } : {}),
          });
        } catch (error) {
          // Another publisher created it in between: what we wanted.
          if (!findErrorBy(error as Error, 'apiId', 'TOPIC_ALREADY_EXISTS')) throw error;
        }
      }
      await waitForLeaders(topics.map((t) => t.topic));
    },
    async topicOffsets(topic) {
      const partitions = await partitionsOf(topic);
      const low = await listOffsets(topic, partitions, ListOffsetTimestamps.EARLIEST);
      const high = await listOffsets(topic, partitions, ListOffsetTimestamps.LATEST);
      return partitions.map((partition) => ({
        partition,
        low: low.get(partition) ?? 0n,
        high: high.get(partition) ?? 0n,
      }));
    },
    async committedOffsets(groupId, topic) {
      const partitions = await partitionsOf(topic);
      const [group] = await admin.listConsumerGroupOffsets({
        groups: [{ groupId, topics: [{ name: topic, partitionIndexes: partitions }] }],
      });
      const listed = group?.topics.find((t) => t.name === topic)?.partitions ?? [];
      return listed
        .filter((p) => p.committedOffset >= 0n)
        .map((p) => ({ partition: p.partitionIndex, offset: p.committedOffset }));
    },
    async setCommittedOffsets(groupId, topic, offsets) {
      await admin.alterConsumerGroupOffsets({
        groupId,
        topics: [{ name: topic, partitionOffsets: offsets }],
      });
    },
    close: () => admin.close(),
  };
}
