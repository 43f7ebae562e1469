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

const transactionalProducer = (kafka: ReturnType<typeof kafkaFor>, transactionalId: string) =>
  kafka.producer({
    transactionalId,
    idempotent: true,
    maxInFlightRequests: 1,
    retry: { retries: 3, initialRetryTime: 50 },
  });

describe('test broker: transactions and restarts', () => {
  it('shows committed transactions and hides aborted ones from read_committed consumers', async () => {
    const broker = await brokerForTest();
    const topic = uniqueName('txn');
    broker.createTopic(topic, 2);
    const kafka = kafkaFor(broker);
    const producer = disconnectAfter(transactionalProducer(kafka, uniqueName('txn-producer')));
    await producer.connect();

    const aborted = await producer.transaction();
    await aborted.send({ topic, messages: range(3, (i) => ({ value: `aborted-${i}`, partition: i % 2 })) });
    await aborted.abort();
    const committed = await producer.transaction();
    await committed.send({
      topic,
      messages: range(4, (i) => ({ value: `committed-${i}`, partition: i % 2 })),
    });
    await committed.commit();

    // An open transaction holds back the last stable offset: its data must not show up yet.
    const open = await producer.transaction();
    await open.send({ topic, messages: [{ value: 'still-open', partition: 0 }] });

    const plain = disconnectAfter(kafka.producer());
    await plain.connect();
    await plain.send({ topic, messages: [{ value: 'after', partition: 1 }] });

    const consumer = disconnectAfter(
      kafka.consumer({ groupId: uniqueName('committed-reader'), ...consumerTimings }),
    );
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const { done, received } = collect(consumer, (got) => got.some((m) => m.value === 'still-open'));
    // Everything below the open transaction arrives; the open transaction stays invisible.
    await new Promise<void>((resolve) => {
      const remove = consumer.on(consumer.events.END_BATCH_PROCESS, () => {
        if (received.length < 5) return;
        remove();
        resolve();
      });
    });
    expect(values(received)).toEqual([...range(4, (i) => `committed-${i}`), 'after'].sort());

    await open.commit();
    expect(values(await done)).toEqual([...range(4, (i) => `committed-${i}`), 'after', 'still-open'].sort());
  });

  it('commits consumer offsets with the transaction (sendOffsets) and only then', async () => {
    const broker = await brokerForTest();
    const topic = uniqueName('eos');
    broker.createTopic(topic, 1);
    const kafka = kafkaFor(broker);
    const groupId = uniqueName('eos-group');
    const producer = disconnectAfter(transactionalProducer(kafka, uniqueName('eos-producer')));
    await producer.connect();

    const abandoned = await producer.transaction();
    await abandoned.sendOffsets({
      consumerGroupId: groupId,
      topics: [{ topic, partitions: [{ partition: 0, offset: '7' }] }],
    });
    await abandoned.abort();
    expect(broker.committedOffsets(groupId)).toEqual([]);

    const transaction = await producer.transaction();
    await transaction.send({ topic, messages: [{ value: 'out' }] });
    await transaction.sendOffsets({
      consumerGroupId: groupId,
      topics: [{ topic, partitions: [{ partition: 0, offset: '42' }] }],
    });
    await transaction.commit();
    expect(broker.committedOffsets(groupId)).toEqual([{ topic, partition: 0, offset: 42 }]);

    const admin = disconnectAfter(kafka.admin());
    await admin.connect();
    expect(await admin.fetchOffsets({ groupId, topics: [topic] })).toEqual([
      { topic, partitions: [expect.objectContaining({ partition: 0, offset: '42' })] },
    ]);
  });

  it('fences the previous session of a transactional id and aborts its open transaction', async () => {
    const broker = await brokerForTest();
    const topic = uniqueName('fence');
    broker.createTopic(topic, 1);
    const kafka = kafkaFor(broker);
    const transactionalId = uniqueName('fenced');
    const first = disconnectAfter(transactionalProducer(kafka, transactionalId));
    await first.connect();
    const dangling = await first.transaction();
    await dangling.send({ topic, messages: [{ value: 'dangling' }] });

    const second = disconnectAfter(transactionalProducer(kafka, transactionalId));
    await second.connect();
    const transaction = await second.transaction();
    await transaction.send({ topic, messages: [{ value: 'winner' }] });
    await transaction.commit();
    await expect(dangling.send({ topic, messages: [{ value: 'zombie' }] })).rejects.toThrow();

    const consumer = disconnectAfter(
      kafka.consumer({ groupId: uniqueName('fence-reader'), ...consumerTimings }),
    );
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const { done } = collect(consumer, (got) => got.length === 1);
    expect(values(await done)).toEqual(['winner']);
  });

  it('keeps topics, data and committed offsets across a restart on the same port', async () => {
    const broker = await brokerForTest();
    const topic = uniqueName('durable');
    broker.createTopic(topic, 2);
    const kafka = kafkaFor(broker);
    const groupId = uniqueName('durable-group');
    const producer = disconnectAfter(
      kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        retry: { retries: 5, initialRetryTime: 50 },
      }),
    );
    await producer.connect();
    await producer.send({ topic, messages: range(6, (i) => ({ value: `before-${i}`, partition: i % 2 })) });

    const consumer = disconnectAfter(kafka.consumer({ groupId, ...consumerTimings }));
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const { done, received } = collect(consumer, (got) => got.length === 6 + 4);
    const port = broker.port;
    await new Promise<void>((resolve) => {
      const remove = consumer.on(consumer.events.COMMIT_OFFSETS, () => {
        if (broker.committedOffsets(groupId).reduce((sum, c) => sum + c.offset, 0) < 6) return;
        remove();
        resolve();
      });
    });

    // Mid-stream restart: clients reconnect to the same address and carry on where they were.
    await broker.restart();
    expect(broker.port).toBe(port);
    expect(broker.endOffsets(topic).map((p) => p.offset)).toEqual([3, 3]);
    await producer.send({ topic, messages: range(4, (i) => ({ value: `after-${i}`, partition: i % 2 })) });
    await done;
    expect(values(received)).toEqual(
      [...range(6, (i) => `before-${i}`), ...range(4, (i) => `after-${i}`)].sort(),
    );
  });

  it('serves a new broker started on the same port with the state of a stopped one', async () => {
    const first = await brokerForTest();
    const topic = uniqueName('handover');
    first.createTopic(topic, 1);
    const kafka = kafkaFor(first);
    const producer = disconnectAfter(kafka.producer());
    await producer.connect();
    await producer.send({ topic, messages: [{ value: 'one' }] });
    await first.stop();

    // While the broker is down the send keeps retrying; it lands once the successor listens.
    const sending = producer.send({ topic, messages: [{ value: 'two' }] });
    const second = await brokerForTest({ port: first.port, state: first.state });
    await sending;
    expect(second.endOffsets(topic)).toEqual([{ topic, partition: 0, offset: 2 }]);

    const consumer = disconnectAfter(
      kafka.consumer({ groupId: uniqueName('handover-reader'), ...consumerTimings }),
    );
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const { done } = collect(consumer, (got) => got.length === 2);
    expect((await done).map((m) => m.value)).toEqual(['one', 'two']);
  });
});
