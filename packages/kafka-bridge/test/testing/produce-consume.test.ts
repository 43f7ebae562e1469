import { CompressionTypes } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import {
  brokerForTest,
  collect,
  consumerTimings,
  disconnectAfter,
  kafkaFor,
  range,
  uniqueName,
  values,
} from './helpers.js';

describe('test broker: admin, produce, fetch', () => {
  it('creates, lists and describes topics with several partitions', async () => {
    const broker = await brokerForTest();
    const admin = disconnectAfter(kafkaFor(broker).admin());
    await admin.connect();
    const [orders, audit] = [uniqueName('orders'), uniqueName('audit')];

    const created = await admin.createTopics({
      topics: [
        { topic: orders, numPartitions: 3 },
        { topic: audit, numPartitions: 2 },
      ],
    });
    expect(created).toBe(true);
    // An existing topic is not an error for kafkajs: createTopics answers false.
    expect(await admin.createTopics({ topics: [{ topic: orders, numPartitions: 3 }] })).toBe(false);
    // validate_only creates nothing (kafkajs must not wait for its leaders).
    const dryRun = { topics: [{ topic: uniqueName('dry') }], validateOnly: true, waitForLeaders: false };
    expect(await admin.createTopics(dryRun)).toBe(true);

    expect((await admin.listTopics()).sort()).toEqual([audit, orders].sort());
    const metadata = await admin.fetchTopicMetadata({ topics: [orders] });
    expect(metadata.topics[0]?.partitions.map((p) => p.partitionId).sort()).toEqual([0, 1, 2]);
    expect(await admin.fetchTopicOffsets(orders)).toEqual(
      [0, 1, 2].map((partition) => expect.objectContaining({ partition, offset: '0', low: '0', high: '0' })),
    );

    await admin.createPartitions({ topicPartitions: [{ topic: audit, count: 4 }] });
    expect((await admin.fetchTopicOffsets(audit)).length).toBe(4);
    await admin.deleteTopics({ topics: [audit] });
    expect(await admin.listTopics()).toEqual([orders]);
  });

  it('stores plain, idempotent and gzip batches and reports their offsets', async () => {
    const broker = await brokerForTest();
    const kafka = kafkaFor(broker);
    const admin = disconnectAfter(kafka.admin());
    await admin.connect();
    const topic = uniqueName('mixed');
    await admin.createTopics({ topics: [{ topic, numPartitions: 2 }] });

    const plain = disconnectAfter(kafka.producer());
    const idempotent = disconnectAfter(
      kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        retry: { retries: 3, initialRetryTime: 50 },
      }),
    );
    await Promise.all([plain.connect(), idempotent.connect()]);

    const first = await plain.send({
      topic,
      messages: range(5, (i) => `plain-${i}`).map((value) => ({ value, partition: 0 })),
    });
    expect(first).toEqual([
      expect.objectContaining({ topicName: topic, partition: 0, baseOffset: '0', errorCode: 0 }),
    ]);
    await idempotent.send({
      topic,
      acks: -1,
      messages: range(4, (i) => `idem-${i}`).map((value) => ({ value, partition: 1 })),
    });
    await plain.send({
      topic,
      compression: CompressionTypes.GZIP,
      messages: range(3, (i) => `gzip-${i}`).map((value) => ({ value, key: value, partition: 0 })),
    });

    expect(broker.endOffsets(topic)).toEqual([
      { topic, partition: 0, offset: 8 },
      { topic, partition: 1, offset: 4 },
    ]);
    const offsets = await admin.fetchTopicOffsets(topic);
    expect(offsets.find((o) => o.partition === 0)).toMatchObject({ low: '0', high: '8' });

    const consumer = disconnectAfter(kafka.consumer({ groupId: uniqueName('reader'), ...consumerTimings }));
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const { done } = collect(consumer, (received) => received.length >= 12);
    const received = await done;
    expect(values(received)).toEqual(
      [
        ...range(5, (i) => `plain-${i}`),
        ...range(4, (i) => `idem-${i}`),
        ...range(3, (i) => `gzip-${i}`),
      ].sort(),
    );
    // Offsets are dense and ordered within each partition.
    const partition0 = received.filter((m) => m.partition === 0).map((m) => Number(m.offset));
    expect(partition0).toEqual(range(8, (i) => String(i)).map(Number));
    expect(received.find((m) => m.value === 'gzip-1')?.key).toBe('gzip-1');
  });

  it('auto-creates a topic a producer writes to', async () => {
    const broker = await brokerForTest({ defaultPartitions: 2 });
    const producer = disconnectAfter(kafkaFor(broker).producer({ allowAutoTopicCreation: true }));
    await producer.connect();
    const topic = uniqueName('auto');
    await producer.send({ topic, messages: [{ value: 'hello' }] });
    expect(broker.endOffsets(topic).map((p) => p.partition)).toEqual([0, 1]);
    expect(broker.endOffsets(topic).reduce((sum, p) => sum + p.offset, 0)).toBe(1);
  });

  it('answers a waiting fetch as soon as data arrives (long poll)', async () => {
    const broker = await brokerForTest();
    const topic = uniqueName('longpoll');
    broker.createTopic(topic, 1);
    const kafka = kafkaFor(broker);
    // A long max wait: the message must arrive through the held fetch being woken, not its timeout.
    const consumer = disconnectAfter(
      kafka.consumer({ groupId: uniqueName('poll'), ...consumerTimings, maxWaitTimeInMs: 20_000 }),
    );
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const fetchStarted = new Promise<void>((resolve) => {
      const remove = consumer.on(consumer.events.FETCH_START, () => {
        remove();
        resolve();
      });
    });
    const { done } = collect(consumer, (received) => received.length === 1);
    await fetchStarted;

    const producer = disconnectAfter(kafka.producer());
    await producer.connect();
    await producer.send({ topic, messages: [{ value: 'wake up' }] });
    expect(values(await done)).toEqual(['wake up']);
  });

  it('seeks a running consumer back to an earlier offset', async () => {
    const broker = await brokerForTest();
    const topic = uniqueName('seek');
    broker.createTopic(topic, 1);
    const kafka = kafkaFor(broker);
    const producer = disconnectAfter(kafka.producer());
    await producer.connect();
    await producer.send({ topic, messages: range(6, (i) => ({ value: `m${i}` })) });

    const consumer = disconnectAfter(kafka.consumer({ groupId: uniqueName('seeker'), ...consumerTimings }));
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    let seeked = false;
    const { done } = collect(
      consumer,
      (received) => received.length === 6 + 3,
      ({ message }) => {
        // After the last message, rewind to offset 3 once: m3..m5 come again.
        if (message.offset === '5' && !seeked) {
          seeked = true;
          consumer.seek({ topic, partition: 0, offset: '3' });
        }
      },
    );
    const received = await done;
    expect(received.map((m) => m.value)).toEqual(['m0', 'm1', 'm2', 'm3', 'm4', 'm5', 'm3', 'm4', 'm5']);
  });

  it('finds offsets by timestamp and reports earliest/latest', async () => {
    const broker = await brokerForTest();
    const topic = uniqueName('time');
    broker.createTopic(topic, 1);
    const kafka = kafkaFor(broker);
    const producer = disconnectAfter(kafka.producer());
    await producer.connect();
    await producer.send({ topic, messages: [{ value: 'a', timestamp: '1000' }] });
    await producer.send({ topic, messages: [{ value: 'b', timestamp: '2000' }] });
    await producer.send({ topic, messages: [{ value: 'c', timestamp: '3000' }] });
    const admin = disconnectAfter(kafka.admin());
    await admin.connect();
    expect(await admin.fetchTopicOffsetsByTimestamp(topic, 1500)).toEqual([{ partition: 0, offset: '1' }]);
    expect(await admin.fetchTopicOffsetsByTimestamp(topic, 3000)).toEqual([{ partition: 0, offset: '2' }]);
    expect(await admin.fetchTopicOffsets(topic)).toEqual([
      { partition: 0, offset: '3', high: '3', low: '0' },
    ]);
  });

  it('answers nothing for acks=0 and keeps serving the connection', async () => {
    const broker = await brokerForTest();
    const topic = uniqueName('noack');
    broker.createTopic(topic, 1);
    const producer = disconnectAfter(kafkaFor(broker).producer());
    await producer.connect();
    await producer.send({ topic, acks: 0, messages: [{ value: 'fire' }] });
    await producer.send({ topic, acks: 1, messages: [{ value: 'and forget' }] });
    expect(broker.endOffsets(topic)).toEqual([{ topic, partition: 0, offset: 2 }]);
  });
});
