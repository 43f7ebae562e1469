import { type KafkaInput, toKafkaClient } from './client/index.js';
import type { SchemaLookup } from './encoding.js';

/**
 * Finds writer schemas published by `kafkaPublishSink` in `<topic>.schemas` (a compacted topic
 * keyed by the fingerprint in hex). Reads the topic from the start with a throwaway consumer group
 * on first miss; cached afterwards. `kafka`: a kafkajs instance or a `KafkaClient`.
 */
export function schemaTopicLookup(kafka: KafkaInput, topic: string): SchemaLookup {
  const client = toKafkaClient(kafka);
  const schemas = new Map<string, string>();
  let loading: Promise<void> | undefined;
  const load = async () => {
    const admin = await client.admin();
    let ends: { partition: number; high: bigint }[];
    try {
      ends = (await admin.topicOffsets(`${topic}.schemas`)).map((o) => ({
        partition: o.partition,
        high: o.high,
      }));
    } finally {
      await admin.close().catch(() => undefined);
    }
    const remaining = new Set(ends.filter((e) => e.high !== 0n).map((e) => e.partition));
    if (remaining.size === 0) return;
    const consumer = client.groupConsumer({
      groupId: `tributary-schemas-${process.pid}-${Date.now()}`,
      topic: `${topic}.schemas`,
      // kafkajs' defaults, but a short fetch wait: the topic is read once, to its end.
      sessionTimeout: 30_000,
      rebalanceTimeout: 60_000,
      heartbeatInterval: 3_000,
      maxWaitTimeInMs: 100,
      maxBytesPerPartition: 1 << 20,
      maxBytes: 10 << 20,
      readUncommitted: false,
    });
    try {
      await new Promise<void>((resolve, reject) => {
        consumer
          .run({
            fail: reject,
            eachBatch: async ({ partition, messages, resolveOffset }) => {
              for (const message of messages) {
                if (message.key && message.value)
                  schemas.set(message.key.toString(), message.value.toString());
                resolveOffset(message.offset);
                const end = ends.find((e) => e.partition === partition);
                if (end && BigInt(message.offset) + 1n >= end.high) remaining.delete(partition);
              }
              if (remaining.size === 0) resolve();
            },
          })
          .catch(reject);
      });
    } finally {
      await consumer.close();
    }
  };
  const loaded = async () => {
    loading ??= load().finally(() => {
      loading = undefined;
    });
    await loading;
  };
  const lookup = async (fingerprint: string) => {
    if (!schemas.has(fingerprint)) await loaded();
    return schemas.get(fingerprint);
  };
  return Object.assign(lookup, { prepare: loaded });
}
