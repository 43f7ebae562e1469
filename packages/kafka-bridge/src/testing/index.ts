/**
 * `@tributary/kafka-bridge/testing`: a single-node, in-memory Kafka-protocol broker that real
 * clients (kafkajs 2.2.4, @platformatic/kafka, librdkafka) talk to over loopback, for tests
 * where no Kafka is available.
 */
export {
  startTestBroker,
  type TestBroker,
  type TestBrokerOptions,
  type TopicPartitionOffset,
} from './broker.js';
export { FAST_CONSUMER, fastKafkaConfig, fastPlatformaticOptions } from './fast.js';
export { TestBrokerState } from './state.js';
