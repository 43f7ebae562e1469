import { randomUUID } from 'node:crypto';
import { type Consumer, type EachMessagePayload, Kafka, type KafkaConfig, logLevel } from 'kafkajs';
import { onTestFinished } from 'vitest';
import { startTestBroker, type TestBroker, type TestBrokerOptions } from '../../src/testing/index.js';

// kafkajs reads this when a producer is created, so setting it here (before any test does) is enough.
process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';

/** The fast client settings from KAFKA_TEST_BROKER.md: failures surface in seconds, not minutes. */
export const consumerTimings = {
  sessionTimeout: 3000,
  rebalanceTimeout: 3000,
  heartbeatInterval: 100,
  maxWaitTimeInMs: 100,
} as const;

export function uniqueName(prefix: string): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

/** A broker on a free loopback port, stopped when the test finishes. */
export async function brokerForTest(options: TestBrokerOptions = {}): Promise<TestBroker> {
  const broker = await startTestBroker(options);
  onTestFinished(() => broker.stop());
  return broker;
}

export function kafkaFor(broker: { brokers: string[] }, overrides: Partial<KafkaConfig> = {}): Kafka {
  return new Kafka({
    clientId: uniqueName('test'),
    brokers: broker.brokers,
    logLevel: logLevel.NOTHING,
    connectionTimeout: 1000,
    requestTimeout: 5000,
    retry: { initialRetryTime: 50, maxRetryTime: 1000, retries: 5 },
    ...overrides,
  });
}

/** Registers a kafkajs client (producer, consumer, admin) for disconnection after the test. */
export function disconnectAfter<T extends { disconnect(): Promise<void> }>(client: T): T {
  onTestFinished(() => client.disconnect());
  return client;
}

export interface Received {
  /** Which consumer got it (the label given to `consume`). */
  by: string;
  topic: string;
  partition: number;
  offset: string;
  key: string | null;
  value: string | null;
}

/**
 * Messages received by one or more consumers. Tests wait on predicates over what arrived
 * (`until`), re-checked after every message, never on time.
 */
export class Inbox {
  readonly received: Received[] = [];
  private readonly waiters = new Set<{
    accept: (received: Received[]) => boolean;
    resolve: (received: Received[]) => void;
    reject: (error: unknown) => void;
  }>();
  private failure: { error: unknown } | null = null;

  push(message: Received): void {
    this.received.push(message);
    for (const waiter of this.waiters) {
      if (!waiter.accept(this.received)) continue;
      this.waiters.delete(waiter);
      waiter.resolve(this.received);
    }
  }

  fail(error: unknown): void {
    this.failure = { error };
    for (const waiter of this.waiters) waiter.reject(error);
    this.waiters.clear();
  }

  until(accept: (received: Received[]) => boolean): Promise<Received[]> {
    if (this.failure) return Promise.reject(this.failure.error);
    if (accept(this.received)) return Promise.resolve(this.received);
    return new Promise((resolve, reject) => this.waiters.add({ accept, resolve, reject }));
  }

  by(label: string): Received[] {
    return this.received.filter((message) => message.by === label);
  }
}

/** Runs `consumer`, recording every message into `inbox` after `onMessage` returned. */
export function consume(
  consumer: Consumer,
  inbox: Inbox,
  options: { label?: string; onMessage?: (payload: EachMessagePayload) => Promise<void> | void } = {},
): void {
  consumer.on(consumer.events.CRASH, (event) => inbox.fail(event.payload.error));
  consumer
    .run({
      eachMessage: async (payload) => {
        await options.onMessage?.(payload);
        inbox.push({
          by: options.label ?? '',
          topic: payload.topic,
          partition: payload.partition,
          offset: payload.message.offset,
          key: payload.message.key?.toString() ?? null,
          value: payload.message.value?.toString() ?? null,
        });
      },
    })
    .catch((error: unknown) => inbox.fail(error));
}

/** Runs one consumer until `until` holds for what it received. */
export function collect(
  consumer: Consumer,
  until: (received: Received[]) => boolean,
  onMessage?: (payload: EachMessagePayload) => Promise<void> | void,
): { done: Promise<Received[]>; received: Received[] } {
  const inbox = new Inbox();
  consume(consumer, inbox, onMessage ? { onMessage } : {});
  return { done: inbox.until(until), received: inbox.received };
}

export function values(received: Received[]): string[] {
  return received.map((message) => message.value ?? '').sort();
}

export function range<T>(count: number, label: (index: number) => T): T[] {
  return Array.from({ length: count }, (_, index) => label(index));
}
