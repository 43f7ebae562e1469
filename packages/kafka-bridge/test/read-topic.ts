import { randomBytes } from 'node:crypto';
import { type ConsumedMessage, type KafkaInput, toKafkaClient } from '../src/client/index.js';
import { FAST_CONSUMER } from '../src/testing/index.js';

/**
 * Every message of a topic, read from its start by a fresh consumer group until `total` have
 * arrived (default: as many as the topic's end offsets say it holds).
 */
export async function readTopic(k: KafkaInput, topic: string, total?: number): Promise<ConsumedMessage[]> {
  const client = toKafkaClient(k);
  let expected = total;
  if (expected === undefined) {
    const admin = await client.admin();
    try {
      expected = (await admin.topicOffsets(topic)).reduce((n, o) => n + Number(o.high), 0);
    } finally {
      await admin.close();
    }
  }
  const messages: ConsumedMessage[] = [];
  if (expected === 0) return messages;
  const consumer = client.groupConsumer({
    ...FAST_CONSUMER,
    maxBytesPerPartition: 1 << 20,
    maxBytes: 1 << 20,
    readUncommitted: false,
    groupId: `read-${topic}-${randomBytes(3).toString('hex')}`,
    topic,
  });
  try {
    await new Promise<void>((resolve, reject) => {
      consumer
        .run({
          fail: reject,
          eachBatch: async ({ messages: batch, resolveOffset }) => {
            for (const message of batch) {
              messages.push(message);
              resolveOffset(message.offset);
            }
            if (messages.length >= expected) resolve();
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.close();
  }
  return messages;
}
