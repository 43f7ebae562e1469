import type { KafkaConfig } from 'kafkajs';
import type { PlatformaticClientOptions } from '../client/platformatic.js';

/**
 * kafkajs settings for loopback brokers and tests: short connection/request timeouts and quick
 * retries. Not for a real cluster: use `kafkaClientConfig` from the main entry.
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

/**
 * Consumer timings for fast rebalances in tests (`consumer: FAST_CONSUMER`). The test broker
 * does not enforce Kafka's 6 s minimum session timeout; a real broker refuses 3 s.
 */
export const FAST_CONSUMER = {
  sessionTimeout: 3000,
  rebalanceTimeout: 3000,
  heartbeatInterval: 100,
  maxWaitTimeInMs: 100,
} as const;

/**
 * `platformaticClient` options for loopback brokers and tests (the counterpart of
 * `fastKafkaConfig`): short connection/request timeouts and quick retries.
 */
export function fastPlatformaticOptions(
  brokers: string[],
  clientId = 'tributary',
): PlatformaticClientOptions {
  return { brokers, clientId, connectTimeout: 1000, timeout: 5000, retries: 8, retryDelay: 50 };
}
