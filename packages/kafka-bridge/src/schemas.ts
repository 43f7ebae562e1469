import type { Kafka } from 'kafkajs';
import type { SchemaLookup } from './encoding.js';

/**
 * Finds writer schemas published by `kafkaPublishSink` in `<topic>.schemas` (a compacted topic
 * keyed by the fingerprint in hex). Reads the topic from the start with a plain consumer-less
 * fetch loop on first miss; cached afterwards.
 */
export function schemaTopicLookup(kafka: Kafka, topic: string): SchemaLookup {
  const schemas = new Map<string, string>();
  let loading: Promise<void> | undefined;
  const load = async () => {
    const admin = kafka.admin();
    await admin.connect();
    let ends: { partition: number; high: string }[];
    try {
      ends = (await admin.fetchTopicOffsets(`${topic}.schemas`)).map((o) => ({
        partition: o.partition,
        high: o.high,
      }));
    } finally {
      await admin.disconnect();
    }
    const remaining = new Set(ends.filter((e) => e.high !== '0').map((e) => e.partition));
    if (remaining.size === 0) return;
    const consumer = kafka.consumer({
      groupId: `tributary-schemas-${process.pid}-${Date.now()}`,
      maxWaitTimeInMs: 100,
    });
    await consumer.connect();
    try {
      await consumer.subscribe({ topic: `${topic}.schemas`, fromBeginning: true });
      await new Promise<void>((resolve, reject) => {
        consumer
          .run({
            autoCommit: false,
            eachMessage: async ({ partition, message }) => {
              if (message.key && message.value) schemas.set(message.key.toString(), message.value.toString());
              const end = ends.find((e) => e.partition === partition);
              if (end && BigInt(message.offset) + 1n >= BigInt(end.high)) remaining.delete(partition);
              if (remaining.size === 0) resolve();
            },
          })
          .catch(reject);
      });
    } finally {
      await consumer.disconnect();
    }
  };
  return async (fingerprint) => {
    if (!schemas.has(fingerprint)) {
      loading ??= load().finally(() => {
        loading = undefined;
      });
      await loading;
    }
    return schemas.get(fingerprint);
  };
}
