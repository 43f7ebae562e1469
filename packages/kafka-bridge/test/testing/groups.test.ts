import type { Consumer } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { GroupCoordinator } from '../../src/testing/groups.js';
import { TestBrokerState } from '../../src/testing/state.js';
import {
  brokerForTest,
  collect,
  consume,
  consumerTimings,
  disconnectAfter,
  Inbox,
  kafkaFor,
  type Received,
  range,
  uniqueName,
  values,
} from './helpers.js';

/** Resolves on the next GROUP_JOIN event of `consumer` that satisfies `accept`. */
function nextJoin(
  consumer: Consumer,
  accept: (assigned: Record<string, number[]>) => boolean,
): Promise<void> {
  return new Promise((resolve) => {
    const remove = consumer.on(consumer.events.GROUP_JOIN, (event) => {
      if (!accept(event.payload.memberAssignment)) return;
      remove();
      resolve();
    });
  });
}

function partitionsOf(received: Received[]): number[] {
  return [...new Set(received.map((m) => m.partition))].sort();
}

describe('test broker: consumer groups', () => {
  it('splits partitions between two members and rebalances when one leaves, each message once', async () => {
    const broker = await brokerForTest();
    const topic = uniqueName('group');
    broker.createTopic(topic, 4);
    const kafka = kafkaFor(broker);
    const groupId = uniqueName('workers');
    const producer = disconnectAfter(kafka.producer());
    await producer.connect();

    const consumerA = kafka.consumer({ groupId, ...consumerTimings });
    const consumerB = disconnectAfter(kafka.consumer({ groupId, ...consumerTimings }));
    await Promise.all([consumerA.connect(), consumerB.connect()]);
    await consumerA.subscribe({ topic, fromBeginning: true });
    await consumerB.subscribe({ topic, fromBeginning: true });

    const inbox = new Inbox();
    const bothHaveTwo = (assigned: Record<string, number[]>) => assigned[topic]?.length === 2;
    const balanced = Promise.all([nextJoin(consumerA, bothHaveTwo), nextJoin(consumerB, bothHaveTwo)]);
    consume(consumerA, inbox, { label: 'A' });
    consume(consumerB, inbox, { label: 'B' });
    await balanced;
    // Produced only once the group is balanced, so neither member read anything while alone.
    const firstWave = range(40, (i) => `first-${i}`);
    await producer.send({ topic, messages: firstWave.map((value, i) => ({ value, partition: i % 4 })) });
    await inbox.until((received) => received.length >= 40);
    expect(partitionsOf(inbox.by('A'))).toHaveLength(2);
    expect(partitionsOf(inbox.by('B'))).toHaveLength(2);
    expect(new Set(inbox.received.map((m) => m.partition)).size).toBe(4);

    // A leaves: B must take over all four partitions and read the second wave entirely.
    const takesAll = nextJoin(consumerB, (assigned) => assigned[topic]?.length === 4);
    await consumerA.disconnect();
    await takesAll;
    const secondWave = range(20, (i) => `second-${i}`);
    await producer.send({ topic, messages: secondWave.map((value, i) => ({ value, partition: i % 4 })) });
    await inbox.until((received) => received.length >= 60);

    // Exactly once across the group: no message lost or repeated over the rebalance.
    expect(values(inbox.received)).toEqual([...firstWave, ...secondWave].sort());
    expect(inbox.by('B').filter((m) => m.value?.startsWith('second'))).toHaveLength(20);
    const committed = broker.committedOffsets(groupId);
    expect(committed.map((c) => c.partition).sort()).toEqual([0, 1, 2, 3]);
  });

  it('evicts a member that stops heartbeating and hands its partitions over', async () => {
    const broker = await brokerForTest();
    const topic = uniqueName('stuck');
    broker.createTopic(topic, 2);
    const kafka = kafkaFor(broker);
    const groupId = uniqueName('stuck-group');
    const timings = { ...consumerTimings, sessionTimeout: 1000, rebalanceTimeout: 1000 };
    const producer = disconnectAfter(kafka.producer());
    await producer.connect();

    // kafkajs heartbeats between messages only, so a handler that never returns silences a member.
    let release: () => void = () => {};
    const blocked = new Promise<void>((resolve) => {
      release = resolve;
    });
    const stuck = kafka.consumer({ groupId, ...timings });
    await stuck.connect();
    await stuck.subscribe({ topic, fromBeginning: true });
    const stuckJoined = nextJoin(stuck, (assigned) => assigned[topic]?.length === 2);
    const stuckGotMessage = new Promise<void>((resolve) => {
      stuck.run({
        eachMessage: async () => {
          resolve();
          await blocked;
        },
      });
    });
    await stuckJoined;
    await producer.send({ topic, messages: [{ value: 'p0', partition: 0 }] });
    await stuckGotMessage;

    const healthy = disconnectAfter(kafka.consumer({ groupId, ...timings }));
    await healthy.connect();
    await healthy.subscribe({ topic, fromBeginning: true });
    const ownsBoth = nextJoin(healthy, (assigned) => assigned[topic]?.length === 2);
    const { done } = collect(healthy, (received) => received.length === 2);
    await ownsBoth;
    await producer.send({ topic, messages: [{ value: 'p1', partition: 1 }] });
    const received = await done;
    // The stuck member never committed p0, so the new owner reads it again: at-least-once.
    expect(values(received)).toEqual(['p0', 'p1']);

    release();
    await stuck.disconnect();
  });

  it('expires a silent member after its session timeout (coordinator unit)', async () => {
    const state = new TestBrokerState();
    let expired: () => void = () => {};
    const sawExpiry = new Promise<void>((resolve) => {
      expired = resolve;
    });
    const coordinator = new GroupCoordinator(state, (line) => {
      if (line.includes('session expired')) expired();
    });
    const joined = new Promise<string>((resolve) =>
      coordinator.join(
        {
          groupId: 'g',
          sessionTimeout: 50,
          rebalanceTimeout: 50,
          memberId: '',
          protocolType: 'consumer',
          protocols: [{ name: 'range', metadata: Buffer.alloc(0) }],
          requireKnownMemberId: false,
        },
        'client',
        '127.0.0.1',
        (result) => resolve(result.memberId),
      ),
    );
    const memberId = await joined;
    const synced = new Promise<number>((resolve) =>
      coordinator.sync({ groupId: 'g', generation: 1, memberId, assignments: [] }, (r) =>
        resolve(r.errorCode),
      ),
    );
    expect(await synced).toBe(0);
    expect(state.groups.get('g')?.phase).toBe('Stable');
    await sawExpiry;
    expect(state.groups.get('g')?.phase).toBe('Empty');
    expect(coordinator.heartbeat('g', 1, memberId)).toBe(25);
    coordinator.close();
  });
});
