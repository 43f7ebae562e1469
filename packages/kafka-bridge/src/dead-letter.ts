import type { Kafka, KafkaMessage, Producer } from 'kafkajs';
import { HEADER } from './options.js';

/**
 * The subscriber's dead-letter topic writer (`poison: 'dead-letter'`): an undecodable message goes
 * to `<topic>.dlq` with its key, value and headers, plus headers naming the error and where it came
 * from. The idempotent producer connects on the first poison message only.
 */
export interface DeadLetter {
  send(topic: string, partition: number, message: KafkaMessage, error: Error): Promise<void>;
  close(): Promise<void>;
}

export function deadLetter(kafka: Kafka): DeadLetter {
  let producer: Producer | undefined;
  return {
    async send(topic, partition, message, error) {
      if (!producer) {
        producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
        await producer.connect();
      }
      await producer.send({
        topic: `${topic}.dlq`,
        acks: -1,
        messages: [
          {
            key: message.key,
            value: message.value,
            headers: {
              ...message.headers,
              [HEADER.error]: error.message.slice(0, 1000),
              [HEADER.originTopic]: topic,
              [HEADER.originPartition]: String(partition),
              [HEADER.originOffset]: message.offset,
            },
          },
        ],
      });
    },
    async close() {
      const open = producer;
      producer = undefined;
      await open?.disconnect().catch(() => undefined);
    },
  };
}
