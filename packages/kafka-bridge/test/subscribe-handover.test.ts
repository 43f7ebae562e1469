import { pipeline, type TributaryError } from '@tributary/core';
import { deferred, memorySink } from '@tributary/core/testing';
import { describe, expect, it } from 'vitest';
import type {
  ConsumedMessage,
  GroupConsumerConfig,
  GroupConsumerHandlers,
  KafkaClient,
} from '../src/index.js';
import { kafkaSubscribeSource } from '../src/index.js';
import { nextSlice } from '../src/subscribe.js';

// The subscriber's hand-over logic against an in-memory client seam: which partition's batch
// arrives when is chosen here, which no broker lets a test do deterministically.

const message = (value: string): ConsumedMessage => ({
  key: null,
  value: Buffer.from(value),
  headers: {},
  offset: '0',
  timestamp: '0',
  attributes: 0,
});

describe('kafkaSubscribeSource stopping with partitions in flight', () => {
  it('a partition still decoding when another fails is let go, so the client can stop', async () => {
    const released = deferred();
    let slowPartition: Promise<void> | undefined;
    const client: KafkaClient = {
      kind: 'kafkajs',
      producer: () => {
        throw new Error('this test sends nothing');
      },
      admin: async () => ({
        listTopics: async () => ['t'],
        createTopics: async () => undefined,
        topicOffsets: async () => [
          { partition: 0, low: 0n, high: 1n },
          { partition: 1, low: 0n, high: 1n },
        ],
        committedOffsets: async () => [],
        setCommittedOffsets: async () => undefined,
        close: async () => undefined,
      }),
      groupConsumer: () => ({
        async run(handlers: GroupConsumerHandlers) {
          const handOver = (partition: number, value: string) =>
            handlers.eachBatch({
              topic: 't',
              partition,
              messages: [message(value)],
              isStale: () => false,
              heartbeat: async () => undefined,
              resolveOffset: () => undefined,
            });
          // Partition 1 is still decoding when partition 0's poison message fails the run.
          slowPartition = handOver(1, 'slow').catch(() => undefined);
          handOver(0, 'poison').catch((error: unknown) => handlers.fail(error));
        },
        commit: async () => undefined,
        async close() {
          // As kafkajs' stop(): let the batch in hand finish, and wait for it.
          released.resolve();
          await slowPartition;
        },
      }),
    };
    const decode = async (value: Buffer | null) => {
      if (String(value) === 'poison') throw new Error('not a ticket');
      await released.promise;
      return { value: String(value) };
    };
    const sink = memorySink();
    const source = kafkaSubscribeSource({ kafka: client, topic: 't', groupId: 'g', decode });
    const error = (await pipeline(source, sink).catch((e: unknown) => e)) as TributaryError;
    expect(error.code).toBe('POISON_MESSAGE');
    expect(sink.rows).toEqual([]);
  });
});

describe('nextSlice', () => {
  it('hands on a partition that is not being written before a second slice of one that is', () => {
    expect(nextSlice(['p0', 'p0', 'p1'], new Set(['p0']))).toBe(2);
    expect(nextSlice(['p0', 'p1', 'p0'], new Set(['p0']))).toBe(1);
  });

  it('otherwise the oldest, so no partition waits behind the others', () => {
    expect(nextSlice(['p0', 'p0', 'p1'], new Set())).toBe(0);
    expect(nextSlice(['p0', 'p1'], new Set(['p0', 'p1']))).toBe(0);
  });
});

describe('kafkaSubscribeSource consumer settings', () => {
  it('hands the client the named settings and passes the rest through as extra', async () => {
    let seen: GroupConsumerConfig | undefined;
    const client: KafkaClient = {
      kind: 'kafkajs',
      producer: () => {
        throw new Error('this test sends nothing');
      },
      admin: async () => ({
        listTopics: async () => ['t'],
        createTopics: async () => undefined,
        topicOffsets: async () => [{ partition: 0, low: 0n, high: 0n }],
        committedOffsets: async () => [],
        setCommittedOffsets: async () => undefined,
        close: async () => undefined,
      }),
      groupConsumer: (config) => {
        seen = config;
        return { run: async () => undefined, commit: async () => undefined, close: async () => undefined };
      },
    };
    const source = kafkaSubscribeSource({
      kafka: client,
      topic: 't',
      groupId: 'g',
      decode: () => ({}),
      exitWhenIdle: true,
      consumer: { sessionTimeout: 9000, maxBytes: 1024, minBytes: 7 },
    });
    await pipeline(source, memorySink());
    expect(seen).toEqual({
      groupId: 'g',
      topic: 't',
      sessionTimeout: 9000,
      rebalanceTimeout: 60_000,
      heartbeatInterval: 3000,
      maxWaitTimeInMs: 5000,
      maxBytesPerPartition: 8 << 20,
      maxBytes: 1024,
      readUncommitted: false,
      extra: { minBytes: 7 },
    });
  });
});
