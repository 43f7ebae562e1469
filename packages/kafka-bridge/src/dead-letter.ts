import type { ConsumedMessage, KafkaClient, KafkaProducer } from './client/index.js';
import { HEADER } from './options.js';

/**
 * The subscriber's dead-letter topic writer (`poison: 'dead-letter'`): an undecodable message goes
 * to `<topic>.dlq` with its key, value and headers, plus headers naming the error and where it came
 * from. The idempotent producer connects on the first poison message only, and creates the
 * dead-letter topic (one partition) when missing: producers never rely on auto-creation.
 */
export interface DeadLetter {
  send(topic: string, partition: number, message: ConsumedMessage, error: Error): Promise<void>;
  close(): Promise<void>;
}

export function deadLetter(client: KafkaClient): DeadLetter {
  let producer: KafkaProducer | undefined;
  const ready = new Set<string>();
  const ensureTopic = async (dlqTopic: string) => {
    if (ready.has(dlqTopic)) return;
    const admin = await client.admin();
    try {
      if (!(await admin.listTopics()).includes(dlqTopic))
        await admin.createTopics([{ topic: dlqTopic, partitions: 1 }]);
    } finally {
      await admin.close().catch(() => undefined);
    }
    ready.add(dlqTopic);
  };
  return {
    async send(topic, partition, message, error) {
      await ensureTopic(`${topic}.dlq`);
      producer ??= client.producer();
      const headers: Record<string, string | Buffer> = {};
      for (const [name, value] of Object.entries(message.headers)) {
        if (value === undefined) continue;
        // A repeated header keeps its last value (the DLQ names the origin; the original is there).
        headers[name] = Array.isArray(value) ? value[value.length - 1]! : value;
      }
      await producer.send(`${topic}.dlq`, [
        {
          key: message.key,
          value: message.value,
          headers: {
            ...headers,
            [HEADER.error]: error.message.slice(0, 1000),
            [HEADER.originTopic]: topic,
            [HEADER.originPartition]: String(partition),
            [HEADER.originOffset]: message.offset,
          },
        },
      ]);
    },
    async close() {
      const open = producer;
      producer = undefined;
      await open?.close();
    },
  };
}
