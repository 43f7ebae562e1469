import type { KafkaConfig } from 'kafkajs';

/**
 * kafkajs settings tuned for loopback brokers and tests: short connection/request timeouts and
 * quick retries (kafkajs' defaults wait seconds between tries).
 */
export function fastKafkaConfig(brokers: string[], clientId = 'tributary'): KafkaConfig {
  return {
    clientId,
    brokers,
    connectionTimeout: 1000,
    requestTimeout: 5000,
    retry: { initialRetryTime: 50, maxRetryTime: 1000, retries: 8 },
    logLevel: 1, // ERROR
  };
}

/** Consumer timings for fast rebalances (the test broker does not enforce Kafka's 6 s minimum). */
export const FAST_CONSUMER = {
  sessionTimeout: 3000,
  rebalanceTimeout: 3000,
  heartbeatInterval: 100,
  maxWaitTimeInMs: 100,
} as const;

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
