import type { Kafka } from 'kafkajs';
import { kafkajsClient } from './kafkajs.js';
import type { KafkaClient } from './types.js';

export { kafkajsClient } from './kafkajs.js';
export { type PlatformaticClientOptions, platformaticClient } from './platformatic.js';
export type * from './types.js';

/** What a stage's `kafka` option takes: the user's kafkajs instance, or a client from the seam. */
export type KafkaInput = Kafka | KafkaClient;

export function isKafkaClient(value: unknown): value is KafkaClient {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as KafkaClient).groupConsumer === 'function' &&
    typeof (value as KafkaClient).admin === 'function' &&
    typeof (value as KafkaClient).producer === 'function'
  );
}

export function isKafkajsInstance(value: unknown): value is Kafka {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Kafka).consumer === 'function' &&
    typeof (value as Kafka).producer === 'function'
  );
}

/** The seam for a stage's `kafka` option (a kafkajs instance is wrapped, unchanged). */
export function toKafkaClient(kafka: KafkaInput): KafkaClient {
  return isKafkaClient(kafka) ? kafka : kafkajsClient(kafka);
}
