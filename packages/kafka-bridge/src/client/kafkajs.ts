import { TributaryError } from '@tributary/core';
import type { Consumer, IHeaders, Kafka, Producer } from 'kafkajs';
import type {
  ConsumedMessage,
  GroupConsumer,
  GroupConsumerConfig,
  GroupConsumerHandlers,
  KafkaAdmin,
  KafkaClient,
  KafkaProducer,
  OutgoingMessage,
} from './types.js';

/**
 * The seam over the user's kafkajs `Kafka` instance (the design's client, kept as it was): its
 * producer, admin and `eachBatch` consumer, with the settings the stages always used.
 */
export function kafkajsClient(kafka: Kafka): KafkaClient {
  return {
    kind: 'kafkajs',
    producer: () => kafkajsProducer(kafka),
    admin: () => kafkajsAdmin(kafka),
    groupConsumer: (config) => kafkajsGroupConsumer(kafka, config),
  };
}

function kafkajsProducer(kafka: Kafka): KafkaProducer {
  let connected: Promise<Producer> | undefined;
  const connect = () => {
    connected ??= (async () => {
      const producer = kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        allowAutoTopicCreation: false,
        retry: { retries: 8 },
      });
      await producer.connect();
      return producer;
    })();
    return connected;
  };
  return {
    async send(topic, messages, compression) {
      const producer = await connect();
      // acks=all on an idempotent producer: resolved only when the broker has the messages.
      await producer.send({
        topic,
        acks: -1,
        messages: messages.map(toKafkajsMessage),
        ...(compression ? { compression } : {}),
      });
    },
    async close() {
      const open = connected;
      connected = undefined;
      await (await open?.catch(() => undefined))?.disconnect().catch(() => undefined);
    },
  };
}

function toKafkajsMessage(message: OutgoingMessage) {
  return {
    key: message.key,
    value: message.value,
    ...(message.headers ? { headers: message.headers as IHeaders } : {}),
    ...(message.partition !== undefined ? { partition: message.partition } : {}),
  };
}

async function kafkajsAdmin(kafka: Kafka): Promise<KafkaAdmin> {
  const admin = kafka.admin();
  await admin.connect();
  return {
    listTopics: () => admin.listTopics(),
    async createTopics(topics) {
      await admin.createTopics({
        waitForLeaders: true,
        topics: topics.map((t) => ({
          topic: t.topic,
          numPartitions: t.partitions,
          // Unset: the broker's default.replication.factor (kafkajs sends -1).
          ...(t.replicationFactor ? { replicationFactor: t.replicationFactor } : {}),
          ...(t.compacted ? { configEntries: [{ name: 'cleanup.policy', value: 'compact' }] } : {}),
        })),
      });
    },
    async topicOffsets(topic) {
      const offsets = await admin.fetchTopicOffsets(topic);
      return offsets.map((o) => ({ partition: o.partition, low: BigInt(o.low), high: BigInt(o.high) }));
    },
    async committedOffsets(groupId, topic) {
      const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
      return (committed?.partitions ?? [])
        .map((p) => ({ partition: p.partition, offset: BigInt(p.offset) }))
        .filter((p) => p.offset >= 0n);
    },
    async setCommittedOffsets(groupId, topic, offsets) {
      await admin.setOffsets({
        groupId,
        topic,
        partitions: offsets.map((o) => ({ partition: o.partition, offset: o.offset.toString() })),
      });
    },
    close: () => admin.disconnect(),
  };
}

function kafkajsGroupConsumer(kafka: Kafka, config: GroupConsumerConfig): GroupConsumer {
  const { groupId, topic, extra, ...timings } = config;
  const consumer: Consumer = kafka.consumer({
    ...extra,
    ...timings,
    groupId,
    allowAutoTopicCreation: false,
  });
  return {
    async run(handlers: GroupConsumerHandlers) {
      // kafkajs restarts the consumer itself after retriable crashes (rebalances, lost
      // coordinators); only a crash it gives up on fails the pipeline.
      consumer.on(consumer.events.CRASH, (event) => {
        if (!event.payload.restart) handlers.fail(event.payload.error);
      });
      try {
        await consumer.connect();
        await consumer.subscribe({ topic, fromBeginning: true });
      } catch (error) {
        // Joining failed: leave nothing connected (its timers would keep the process alive).
        await consumer.disconnect().catch(() => undefined);
        throw error;
      }
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        // Several partitions' batches at once: one decodes while another's is written, and a
        // sink with independent streams (pg-sink) writes them side by side.
        partitionsConsumedConcurrently: 8,
        eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
          try {
            await handlers.eachBatch({
              topic: batch.topic,
              partition: batch.partition,
              messages: batch.messages as ConsumedMessage[],
              isStale: () => !isRunning() || isStale(),
              heartbeat,
              resolveOffset,
            });
          } catch (error) {
            // A rebalance or a lost connection surfaces here too (heartbeat, fetch): kafkajs
            // rejoins and refetches from offsets we never committed, and the stored-offset
            // filter drops what was already applied. Only our own errors fail the run.
            if (!isKafkajsRetriable(error)) handlers.fail(error);
            throw error;
          }
        },
      });
    },
    async commit(topic, partition, next) {
      await consumer.commitOffsets([{ topic, partition, offset: next.toString() }]);
    },
    async close() {
      await consumer.stop().catch(() => undefined);
      await consumer.disconnect().catch(() => undefined);
    },
  };
}

/** kafkajs marks protocol errors it recovers from (REBALANCE_IN_PROGRESS, …) as retriable. */
function isKafkajsRetriable(error: unknown): boolean {
  if (error instanceof TributaryError) return false;
  const e = error as { name?: unknown; retriable?: unknown; type?: unknown };
  return (
    typeof e?.name === 'string' &&
    e.name.startsWith('KafkaJS') &&
    (e.retriable === true || e.type === 'REBALANCE_IN_PROGRESS' || e.type === 'UNKNOWN_MEMBER_ID')
  );
}
