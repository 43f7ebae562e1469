import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { optionsTable, withOptionsTable } from '@tributary/core/options';
import { memorySink } from '@tributary/core/testing';
import { Kafka } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import {
  archiveOptionsSchema,
  kafkaArchiveSink,
  kafkaClientConfig,
  kafkaPublishSink,
  kafkaSubscribeSource,
  publishOptionsSchema,
  subscribeOptionsSchema,
} from '../src/index.js';
import { resolveSubscribeOptions } from '../src/options.js';
import { FAST_CONSUMER } from '../src/testing/index.js';

// No broker is contacted: creating a stage only validates its options.
const kafka = new Kafka({ brokers: ['127.0.0.1:9'], logLevel: 0 });
const decode = () => ({});

describe('Kafka stage options', () => {
  it('the README tables are generated from the schemas (`pnpm docs:options`)', async () => {
    const readme = await readFile(join(import.meta.dirname, '..', 'README.md'), 'utf8');
    let expected = readme;
    for (const [name, schema] of Object.entries({
      publish: publishOptionsSchema,
      subscribe: subscribeOptionsSchema,
      archive: archiveOptionsSchema,
    }))
      expected = withOptionsTable(expected, name, optionsTable(schema));
    // biome aligns the columns afterwards: compare cell contents, not padding.
    const cells = (text: string) => text.replaceAll(/ *\| */g, '|').replaceAll(/\|-+/g, '|-');
    expect(cells(readme)).toBe(cells(expected));
  });

  it('defaults are for a real cluster; the fast timings are opt-in from /testing', () => {
    const resolved = resolveSubscribeOptions({ kafka, topic: 't', groupId: 'g', decode });
    expect(resolved.consumer).toMatchObject({
      sessionTimeout: 30_000,
      heartbeatInterval: 3_000,
      rebalanceTimeout: 60_000,
      maxBytesPerPartition: 8 << 20,
      readUncommitted: false,
    });
    // A stock broker refuses sessions under group.min.session.timeout.ms (6 s).
    expect(resolved.consumer.sessionTimeout).toBeGreaterThanOrEqual(6_000);
    expect(kafkaClientConfig(['b:9092']).connectionTimeout).toBeGreaterThanOrEqual(5_000);
    const fast = resolveSubscribeOptions({
      kafka,
      topic: 't',
      groupId: 'g',
      decode,
      consumer: FAST_CONSUMER,
    });
    expect(fast.consumer.sessionTimeout).toBe(3000);
    expect(fast.consumer.maxBytes).toBe(32 << 20); // the rest keeps its defaults
  });

  it.each([
    [
      'a missing topic and a bad maxRows',
      () => kafkaSubscribeSource({ kafka, groupId: 'g', decode, maxRows: 0 } as never),
      /kafkaSubscribeSource\(\): topic: .*; maxRows: .*>=1/,
    ],
    [
      'a heartbeat not below the session timeout',
      () =>
        kafkaSubscribeSource({
          kafka,
          topic: 't',
          groupId: 'g',
          decode,
          consumer: { sessionTimeout: 6000, heartbeatInterval: 6000 },
        }),
      /consumer\.heartbeatInterval: heartbeatInterval must be below sessionTimeout/,
    ],
    [
      'a poison policy that does not exist',
      () => kafkaSubscribeSource({ kafka, topic: 't', groupId: 'g', decode, poison: 'skip' as never }),
      /poison: .*"error"\|"dead-letter"/,
    ],
    [
      'a misspelt option',
      () => kafkaSubscribeSource({ kafka, topic: 't', groupId: 'g', decode, exitWhenIdel: true } as never),
      /unknown option `exitWhenIdel`/,
    ],
    [
      'something that is neither a kafkajs instance nor a KafkaClient',
      () => kafkaSubscribeSource({ kafka: {} as never, topic: 't', groupId: 'g', decode }),
      /kafka: must be kafkajs Kafka or KafkaClient/,
    ],
    [
      'publish with no key columns',
      () => kafkaPublishSink({ kafka, topic: 't', key: [], columns: ['a'], checkpoints: memorySink() }),
      /kafkaPublishSink\(\): key: /,
    ],
    [
      'publish with a replication factor of 0',
      () =>
        kafkaPublishSink({
          kafka,
          topic: 't',
          key: ['a'],
          columns: ['a'],
          checkpoints: memorySink(),
          createTopics: { replicationFactor: 0 },
        }),
      /createTopics/,
    ],
    [
      'archive without a bucket',
      () => kafkaArchiveSink({ client: { send() {} } as never, bucket: '', prefix: 'p/' }),
      /kafkaArchiveSink\(\): bucket: /,
    ],
  ])('refuses %s, naming the option', (_name, create, message) => {
    expect(create).toThrow(
      expect.objectContaining({ code: 'INVALID_OPTIONS', message: expect.stringMatching(message) }),
    );
  });

  it('passes other kafkajs consumer settings through', () => {
    const resolved = resolveSubscribeOptions({
      kafka,
      topic: 't',
      groupId: 'g',
      decode,
      consumer: { minBytes: 1 },
    });
    expect(resolved.consumer).toMatchObject({ minBytes: 1 });
  });
});
