process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';

import { randomBytes } from 'node:crypto';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { cleanText, pipeline, type Row, skipRows } from '@tributary/core';
import { memorySink, memorySource } from '@tributary/core/testing';
import { pgSink } from '@tributary/pg-sink';
import { Kafka } from 'kafkajs';
import { afterEach, beforeEach, describe, expect, inject, it } from 'vitest';
import { createTestBucket, createTestDatabase } from '../../../test/support/services.js';
import { type KafkaInput, toKafkaClient } from '../src/client/index.js';
import {
  createDecoder,
  HEADER,
  type KafkaBatchMeta,
  kafkaArchiveSink,
  kafkaPublishSink,
  kafkaSubscribeSource,
  platformaticClient,
  schemaTopicLookup,
} from '../src/index.js';
import { FAST_CONSUMER, fastKafkaConfig, fastPlatformaticOptions } from '../src/testing/index.js';

const clientId = () => `test-${randomBytes(3).toString('hex')}`;
/** Every test runs on both clients the seam offers (issue 18); kafkajs as the user's own instance. */
const CLIENTS: { name: string; kafka: () => KafkaInput; quiet: boolean }[] = [
  // kafkajs 2.2.4 prints TimeoutNegativeWarning on Node 24 (kafkajs#1751): not checked there.
  {
    name: 'kafkajs',
    kafka: () => new Kafka(fastKafkaConfig(inject('kafkaBrokers'), clientId())),
    quiet: false,
  },
  {
    name: '@platformatic/kafka',
    kafka: () => platformaticClient(fastPlatformaticOptions(inject('kafkaBrokers'), clientId())),
    quiet: true,
  },
];

/** Node process warnings (TimeoutNegativeWarning, …) emitted while a test runs. */
const warnings: Error[] = [];
process.on('warning', (warning) => warnings.push(warning));
const topicName = () => `t.${randomBytes(4).toString('hex')}`;
const rows = (from: number, n: number, tag = 'v1'): Row[] =>
  Array.from({ length: n }, (_, i) => ({ id: `K${from + i}`, value: `${tag}-${from + i}` }));

async function publish(k: KafkaInput, topic: string, units: Row[][][], stream = 'files/x') {
  const checkpoints = memorySink();
  const sink = kafkaPublishSink({
    kafka: k,
    topic,
    key: ['id'],
    columns: ['id', 'value'],
    createTopics: { partitions: 3 },
    checkpoints,
  });
  const source = memorySource({ stream, units });
  await pipeline(source, sink);
  await sink.close();
  return { checkpoints, source, sink };
}

/** A new one-partition topic holding these rows as keyed JSON messages, in order. */
async function jsonTopic(k: KafkaInput, values: Row[]): Promise<string> {
  const topic = topicName();
  const admin = await toKafkaClient(k).admin();
  await admin.createTopics([{ topic, partitions: 1 }]);
  await admin.close();
  await produce(k, topic, values);
  return topic;
}

/** Sends the rows as keyed JSON messages through the seam's producer. */
async function produce(k: KafkaInput, topic: string, values: Row[], partition?: number) {
  const producer = toKafkaClient(k).producer();
  await producer.send(
    topic,
    values.map((r) => ({
      key: String(r['id']),
      value: JSON.stringify(r),
      ...(partition === undefined ? {} : { partition }),
    })),
  );
  await producer.close();
}

async function endOffsets(k: KafkaInput, topic: string) {
  const admin = await toKafkaClient(k).admin();
  try {
    return await admin.topicOffsets(topic);
  } finally {
    await admin.close();
  }
}

/** A memory sink whose first write waits until `open()`: shows what the source reads meanwhile. */
function sinkHoldingFirstWrite() {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => {
    open = resolve;
  });
  const target = memorySink({
    beforeWrite: async (_batch, writes) => {
      if (writes === 0) await gate;
    },
  });
  return { target, open };
}

describe.each(CLIENTS)('kafka bridge on $name (over TCP)', ({ kafka, quiet }) => {
  beforeEach(() => {
    warnings.length = 0;
  });
  afterEach(async () => {
    // Warnings are emitted on a later tick than the call that caused them.
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (quiet) expect(warnings.map((w) => `${w.name}: ${w.message}`)).toEqual([]);
  });

  it('publishes keyed Avro messages with provenance, moves the checkpoint after acks, then subscribes', async () => {
    const k = kafka();
    const topic = topicName();
    const { checkpoints, source } = await publish(k, topic, [[rows(0, 40), rows(40, 10)], [rows(50, 5)]]);
    // The position committed once per unit, after its messages were acknowledged.
    expect(await checkpoints.checkpoint('files/x')).toEqual({ unit: 1, batch: 0 });
    expect(source.committedBatches).toHaveLength(2);

    const offsets = await endOffsets(k, topic);
    expect(offsets).toHaveLength(3);
    expect(offsets.reduce((n, o) => n + Number(o.high), 0)).toBe(55);

    const target = memorySink();
    const decode = createDecoder({ schemas: schemaTopicLookup(k, topic) });
    const seen: { key: string; headers: Record<string, string> }[] = [];
    const subscriber = kafkaSubscribeSource({
      consumer: FAST_CONSUMER,
      kafka: k,
      topic,
      groupId: `g-${topic}`,
      decode: (value, message) => {
        const headers = Object.fromEntries(
          Object.entries(message.headers ?? {}).map(([h, v]) => [h, String(v)]),
        );
        seen.push({ key: String(message.key), headers });
        return decode(value);
      },
      exitWhenIdle: true,
    });
    await pipeline(subscriber, target);
    expect(seen.find((m) => m.key === 'K41')?.headers).toMatchObject({
      [HEADER.stream]: 'files/x',
      [HEADER.source]: 'unit-0',
      [HEADER.row]: expect.stringMatching(/^\d+$/),
      [HEADER.schema]: expect.stringMatching(/^[0-9a-f]{16}$/),
    });
    // Keyed: every message of one key lands in one partition, so per-key order holds.
    expect(new Set(seen.map((m) => m.key)).size).toBe(55);
    expect(target.rows.map((r) => r['id']).sort()).toEqual(
      rows(0, 55)
        .map((r) => r['id'])
        .sort(),
    );
    // Positions are per topic-partition and group.
    const stored = await Promise.all(
      [0, 1, 2].map((p) => target.checkpoint(`kafka/g-${topic}/${topic}/${p}`)),
    );
    expect(stored.map((s) => Number(s?.['offset']) + 1).reduce((a, b) => a + b, 0)).toBe(55);
  });

  // Pass-through: createDecoder's Avro of strings reaches pg-sink as CSV (no row objects); the
  // table must hold exactly what the row path gives, declarative transforms run in SQL included.
  it.each([
    { values: 'empty strings, no nulls', empty: '', emptyAsNull: false },
    { values: 'nulls, no empty strings', empty: null, emptyAsNull: true },
  ])(
    'subscribes Avro as raw CSV into pg-sink with $values, as the row path does',
    async ({ empty, emptyAsNull }) => {
      const k = kafka();
      const topic = topicName();
      const nasty = [
        'a,b',
        'say "hi"',
        'two\nlines',
        'cr\r\nlf',
        '  Grüße 🎉  ',
        '"',
        ',',
        'DROP',
        '\\.',
        'x',
      ];
      const published = Array.from({ length: 60 }, (_, i) => ({
        id: `K${i}`,
        value: i % 7 === 3 ? empty : nasty[i % nasty.length],
        note: i % 5 === 0 ? empty : ` ${nasty[(i + 3) % nasty.length]} `,
      }));
      const checkpoints = memorySink();
      const publisher = kafkaPublishSink({
        kafka: k,
        topic,
        key: ['id'],
        columns: ['id', 'value', 'note'],
        createTopics: { partitions: 2 },
        checkpoints,
      });
      await pipeline(memorySource({ stream: 'files/nasty', units: [[published]] }), publisher);
      await publisher.close();

      const db = await createTestDatabase();
      const decoder = createDecoder({ schemas: schemaTopicLookup(k, topic) });
      const subscribe = async (
        table: string,
        decode: typeof decoder | ((value: Buffer | null) => Promise<Row>),
      ) => {
        const sink = pgSink({
          pool: db.pool,
          schema: `ctl_${table}`,
          lock: { enabled: false },
          targets: () => ({
            schema: 'public',
            table,
            key: ['id'],
            columns: [
              { name: 'id', type: 'text' },
              { name: 'value', type: 'text' },
              { name: 'note', type: 'text' },
            ],
            createTable: true,
            mode: 'upsert',
          }),
        });
        const seen = { raw: 0, rows: 0, emptyAsNull: new Set<boolean>() };
        const write = sink.write.bind(sink);
        sink.write = (batch) => {
          if (batch.raw) {
            seen.raw++;
            seen.emptyAsNull.add(batch.raw.emptyAsNull);
          } else seen.rows += batch.rows.length;
          return write(batch);
        };
        const filtered: Record<string, number> = {};
        await pipeline(
          kafkaSubscribeSource({
            consumer: FAST_CONSUMER,
            kafka: k,
            topic,
            groupId: `g-${table}`,
            decode,
            maxRows: 7,
            exitWhenIdle: true,
          }),
          skipRows('dropped', { column: 'value', oneOf: ['drop'], trim: true, ignoreCase: true }),
          cleanText({
            note: { trim: true, case: 'upper', collapse: { chars: ' \n', into: '_' }, emptyToNull: false },
          }),
          sink,
          {
            onEvent: (event) => {
              if (event.type === 'batch-written')
                for (const [name, n] of Object.entries(event.filtered))
                  filtered[name] = (filtered[name] ?? 0) + n;
            },
          },
        );
        await sink.close();
        const content = await db.pool.query<Row>(`SELECT id, value, note FROM public.${table} ORDER BY id`);
        return { content: content.rows, seen, filtered };
      };
      const rowPath = await subscribe('by_rows', (value) => decoder(value));
      const rawPath = await subscribe('by_raw', decoder);
      expect(rowPath.seen.raw).toBe(0);
      expect(rawPath.seen.rows).toBe(0);
      // A slice without nulls reads empty fields as '' (emptyAsNull false) either way.
      expect(rawPath.seen.emptyAsNull.has(emptyAsNull)).toBe(true);
      expect(rawPath.seen.raw).toBeGreaterThan(0);
      expect(rawPath.content).toEqual(rowPath.content);
      expect(rawPath.filtered).toEqual(rowPath.filtered);
      expect(rowPath.filtered['dropped']).toBe(published.filter((r) => r.value === 'DROP').length);
      expect(rawPath.content).toHaveLength(published.length - rowPath.filtered['dropped']!);
      expect(rawPath.content.find((r) => r['id'] === 'K3')).toEqual({
        id: 'K3',
        value: empty,
        note: expect.any(String),
      });
      expect(rawPath.content.find((r) => r['id'] === 'K2')?.['value']).toBe('two\nlines');
    },
  );

  it('a restarted subscriber resumes after the stored offsets: nothing applied twice', async () => {
    const k = kafka();
    const topic = topicName();
    await publish(k, topic, [[rows(0, 30)]]);
    const target = memorySink();
    const decode = createDecoder({ schemas: schemaTopicLookup(k, topic) });
    await pipeline(
      kafkaSubscribeSource({
        consumer: FAST_CONSUMER,
        kafka: k,
        topic,
        groupId: 'g1',
        decode,
        exitWhenIdle: true,
      }),
      target,
    );
    expect(target.rows).toHaveLength(30);
    await publish(k, topic, [[rows(30, 7)]], 'files/y');
    // Same stored positions (the memory sink), new consumer instance: only the 7 new rows.
    await pipeline(
      kafkaSubscribeSource({
        consumer: FAST_CONSUMER,
        kafka: k,
        topic,
        groupId: 'g1',
        decode,
        exitWhenIdle: true,
      }),
      target,
    );
    expect(target.rows).toHaveLength(37);
    expect(new Set(target.rows.map((r) => r['id'])).size).toBe(37);
  });

  it("a restored database (stored offsets behind the group's committed ones): the group rewinds, nothing skipped", async () => {
    const k = kafka();
    const topic = await jsonTopic(k, rows(0, 12));
    const decode = (value: Buffer | null) => JSON.parse(String(value)) as Row;
    const subscribe = () =>
      kafkaSubscribeSource({
        consumer: FAST_CONSUMER,
        kafka: k,
        topic,
        groupId: 'restored',
        decode,
        exitWhenIdle: true,
      });
    const before = memorySink({ key: 'id' });
    await pipeline(subscribe(), before);
    expect(before.rows).toHaveLength(12); // Kafka's committed offset is now 12
    // The database comes back from a backup taken after the first 5 rows.
    const restored = memorySink({ key: 'id' });
    await restored.write({
      stream: `kafka/restored/${topic}/0`,
      rows: rows(0, 5),
      position: { topic, partition: 0, offset: '4' },
      meta: { source: 'backup', commit: true, lastOfUnit: true, rowsRead: 5, filtered: {} },
    });
    const warnings: string[] = [];
    await pipeline(subscribe(), restored, {
      onEvent: (e) => {
        if (e.type === 'warning') warnings.push(e.message);
      },
    });
    expect(restored.rows.map((r) => r['id']).sort()).toEqual(
      rows(0, 12)
        .map((r) => r['id'])
        .sort(),
    );
    expect(await restored.checkpoint(`kafka/restored/${topic}/0`)).toMatchObject({ offset: '11' });
    expect(warnings.join('\n')).toMatch(/committed .*@12, past the stored position; rewinding to 5/);
  });

  it('a second member joins mid-stream: whichever member applies a partition, every offset is applied once', async () => {
    const k = kafka();
    const topic = topicName();
    const admin = await toKafkaClient(k).admin();
    await admin.createTopics([{ topic, partitions: 3 }]);
    await admin.close();
    await produce(k, topic, rows(0, 300));
    const db = await createTestDatabase();
    const member = () => {
      const sink = pgSink({
        pool: db.pool,
        schema: 'ctl',
        // Kafka's group membership is the one writer per partition; the fence guards the handover.
        lock: { enabled: false },
        targets: () => ({
          schema: 'public',
          table: 'rows',
          key: ['id'],
          columns: [
            { name: 'id', type: 'text' },
            { name: 'value', type: 'text' },
          ],
          createTable: true,
          mode: 'upsert',
        }),
      });
      const source = kafkaSubscribeSource({
        consumer: FAST_CONSUMER,
        kafka: k,
        topic,
        groupId: `g-${topic}`,
        decode: (value) => JSON.parse(String(value)) as Row,
        maxRows: 10,
        exitWhenIdle: true,
      });
      return { sink, source };
    };
    const first = member();
    let second: Promise<unknown> | undefined;
    await pipeline(first.source, first.sink, {
      onEvent: (event) => {
        // The second member joins once the first has applied its first slice: a rebalance with
        // batches of the first member maybe still in flight. Which member applies what depends on
        // timing; the deterministic in-flight case is test/reliability/kafka-faults.test.ts.
        if (event.type === 'committed' && !second) {
          const m = member();
          second = pipeline(m.source, m.sink).finally(() => m.sink.close());
        }
      },
    });
    await first.sink.close();
    await second;
    const table = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM public.rows');
    expect(table.rows[0]!.n).toBe(300);
    // Exactly once: the applied ranges add up to the topic, none counted twice.
    const loads = await db.pool.query<{ n: number }>(
      `SELECT coalesce(sum(rows_read), 0)::int AS n FROM ctl.loads WHERE status IN ('loaded', 'archived')`,
    );
    expect(loads.rows[0]!.n).toBe(300);
  });

  it('a fetch larger than maxRows: the next batch is handed over while the sink writes; all commit in order', async () => {
    const k = kafka();
    const topic = await jsonTopic(k, rows(0, 12));

    // The first write waits until the source has handed over the second batch: without the
    // look-ahead the source waits for that write's commit first, and this never finishes.
    let read = 0;
    const { target, open: secondRead } = sinkHoldingFirstWrite();
    const offsets: string[] = [];
    await pipeline(
      kafkaSubscribeSource({
        consumer: FAST_CONSUMER,
        kafka: k,
        topic,
        groupId: `g-${topic}`,
        decode: createDecoder(),
        maxRows: 3,
        exitWhenIdle: true,
      }),
      target,
      {
        onEvent: (event) => {
          if (event.type === 'batch-read' && ++read === 2) secondRead();
          if (event.type === 'batch-written')
            offsets.push(String((event.meta as KafkaBatchMeta).own?.lastOffset));
        },
      },
    );
    expect(target.rows.map((r) => r['id'])).toEqual(rows(0, 12).map((r) => r['id']));
    expect(offsets).toEqual(['2', '5', '8', '11']);
    expect(await target.checkpoint(`kafka/g-${topic}/${topic}/0`)).toMatchObject({ offset: '11' });
  });

  it("a fetch's partitions are handed over together: one partition's batch is read while another's is written", async () => {
    const k = kafka();
    const topic = topicName();
    const admin = await toKafkaClient(k).admin();
    await admin.createTopics([{ topic, partitions: 2 }]);
    await admin.close();
    await produce(k, topic, rows(0, 4), 0);
    await produce(k, topic, rows(4, 4), 1);

    // The first write waits until both partitions have a batch read: handed over one partition
    // at a time, the second waits for the first's commit, and this never finishes.
    const streams = new Set<string>();
    const { target, open: bothRead } = sinkHoldingFirstWrite();
    await pipeline(
      kafkaSubscribeSource({
        consumer: FAST_CONSUMER,
        kafka: k,
        topic,
        groupId: `g-${topic}`,
        decode: createDecoder(),
        exitWhenIdle: true,
      }),
      target,
      {
        onEvent: (event) => {
          if (event.type === 'batch-read' && streams.add(event.stream).size === 2) bothRead();
        },
      },
    );
    expect(target.rows.map((r) => r['id']).sort()).toEqual(
      rows(0, 8)
        .map((r) => r['id'])
        .sort(),
    );
  });

  it('poison messages: error stops without advancing; dead-letter moves on and records the error', async () => {
    const k = kafka();
    const topic = topicName();
    await publish(k, topic, [[rows(0, 3)]]);
    const producer = toKafkaClient(k).producer();
    await producer.send(topic, [{ key: 'K0', value: Buffer.from('garbage'), partition: 0 }]);
    await producer.close();
    const decode = createDecoder({ schemas: schemaTopicLookup(k, topic) });

    const strict = memorySink();
    const error = await pipeline(
      kafkaSubscribeSource({
        consumer: FAST_CONSUMER,
        kafka: k,
        topic,
        groupId: 'strict',
        decode,
        exitWhenIdle: true,
      }),
      strict,
    ).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'POISON_MESSAGE' });
    expect((error as Error).message).toMatch(new RegExp(`${topic}/0@\\d+`));
    const p0 = await strict.checkpoint(`kafka/strict/${topic}/0`);
    expect(p0 === null || Number(p0['offset']) < 3).toBe(true);

    const lenient = memorySink();
    await pipeline(
      kafkaSubscribeSource({
        consumer: FAST_CONSUMER,
        kafka: k,
        topic,
        groupId: 'dlq',
        decode,
        exitWhenIdle: true,
        poison: 'dead-letter',
      }),
      lenient,
    );
    expect(lenient.rows).toHaveLength(3);
    // Read the dead letters back with the subscriber itself (JSON of the message and its error).
    const dlq = memorySink();
    await pipeline(
      kafkaSubscribeSource({
        consumer: FAST_CONSUMER,
        kafka: k,
        topic: `${topic}.dlq`,
        groupId: `read-${topic}`,
        decode: (value, message) => ({
          value: String(value),
          error: String(message.headers[HEADER.error]),
        }),
        exitWhenIdle: true,
      }),
      dlq,
    );
    expect(dlq.rows).toEqual([{ value: 'garbage', error: expect.stringMatching(/undecodable/) }]);
  });

  it('archives a topic to S3 rolled by count, deterministic keys, readable back', async () => {
    const k = kafka();
    const topic = await jsonTopic(k, rows(0, 25));
    const { bucket, client } = await createTestBucket();

    const archiveOnce = async (group: string) => {
      const sink = kafkaArchiveSink({
        client,
        bucket,
        prefix: 'kafka/archive',
        maxRecords: 10,
        maxAgeMs: 3_600_000,
      });
      const source = kafkaSubscribeSource({
        consumer: FAST_CONSUMER,
        kafka: k,
        topic,
        groupId: group,
        decode: createDecoder(),
        exitWhenIdle: true,
        awaitCommit: false,
        maxRows: 10,
        tickMs: 50,
      });
      await pipeline(source, sink);
      return sink.objects;
    };
    const first = await archiveOnce('arch-1');
    const pad = (n: number) => String(n).padStart(20, '0');
    expect(first).toEqual([
      `kafka/archive/${topic}/partition=0/${pad(0)}-${pad(9)}.jsonl`,
      `kafka/archive/${topic}/partition=0/${pad(10)}-${pad(19)}.jsonl`,
      `kafka/archive/${topic}/partition=0/${pad(20)}-${pad(24)}.jsonl`,
    ]);
    // A re-run from scratch (new group) writes the same keys: it overwrites, never duplicates.
    expect(await archiveOnce('arch-2')).toEqual(first);
    const body = await (
      await client.send(new GetObjectCommand({ Bucket: bucket, Key: first[2]! }))
    ).Body!.transformToString();
    expect(
      body
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l)),
    ).toEqual(rows(20, 5));
  });

  it('archive rolls a partial file by age', async () => {
    const k = kafka();
    const topic = topicName();
    const admin = await toKafkaClient(k).admin();
    await admin.createTopics([{ topic, partitions: 1 }]);
    await admin.close();
    await produce(k, topic, rows(0, 3));
    const { bucket, client } = await createTestBucket();
    let clock = 0;
    const sink = kafkaArchiveSink({
      client,
      bucket,
      prefix: 'a/',
      maxRecords: 1000,
      maxAgeMs: 60_000,
      now: () => clock,
    });
    const stop = new AbortController();
    const source = kafkaSubscribeSource({
      consumer: FAST_CONSUMER,
      kafka: k,
      topic,
      groupId: 'age',
      decode: createDecoder(),
      awaitCommit: false,
      tickMs: 20,
    });
    const run = pipeline(source, sink, {
      stopSignal: stop.signal,
      onEvent: (event) => {
        // Once the three rows are buffered, let the clock pass the age limit; stop after the roll.
        if (event.type === 'batch-written' && event.rows === 3) clock = 61_000;
        if (event.type === 'committed') stop.abort();
      },
    });
    await run;
    expect(sink.objects).toHaveLength(1);
    expect(sink.objects[0]).toMatch(/partition=0\/0{20}-0{19}2\.jsonl$/);
  });
});

describe('kafka bridge across clients', () => {
  it('a key lands in the same partition whichever client publishes it (per-key order survives a switch)', async () => {
    const topic = topicName();
    const keys = rows(0, 30);
    const [viaKafkajs, viaPlatformatic] = CLIENTS.map((c) => c.kafka());
    const admin = await toKafkaClient(viaKafkajs!).admin();
    await admin.createTopics([{ topic, partitions: 5 }]);
    await admin.close();
    await produce(viaKafkajs!, topic, keys);
    await produce(viaPlatformatic!, topic, keys);

    const partitionsOf = new Map<string, Set<number>>();
    const consumer = toKafkaClient(viaPlatformatic!).groupConsumer({
      ...FAST_CONSUMER,
      maxBytesPerPartition: 1 << 20,
      maxBytes: 1 << 20,
      readUncommitted: false,
      groupId: `g-${topic}`,
      topic,
    });
    let seen = 0;
    await new Promise<void>((resolve, reject) => {
      consumer
        .run({
          fail: reject,
          eachBatch: async ({ partition, messages, resolveOffset }) => {
            for (const message of messages) {
              const key = String(message.key);
              partitionsOf.set(key, (partitionsOf.get(key) ?? new Set()).add(partition));
              resolveOffset(message.offset);
              seen++;
            }
            if (seen === 2 * keys.length) resolve();
          },
        })
        .catch(reject);
    });
    await consumer.close();
    expect(partitionsOf.size).toBe(keys.length);
    for (const [key, partitions] of partitionsOf) expect([key, partitions.size]).toEqual([key, 1]);
  });
});
