/**
 * Smoke test of the Kafka test broker with the three clients it serves (issue #18): kafkajs,
 * @platformatic/kafka and librdkafka (through `kcat`). Each starts its own broker, so this runs
 * the same with or without KAFKA_BROKERS. kcat tests skip when `kcat` is not on PATH
 * (`.ci/run` installs it where it can).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { Consumer, Producer, stringDeserializers, stringSerializers } from '@platformatic/kafka';
import { describe, expect, it, onTestFinished } from 'vitest';
import type { TestBroker } from '../src/testing/index.js';
import {
  brokerForTest,
  collect,
  consumerTimings,
  disconnectAfter,
  kafkaFor,
  uniqueName,
  values,
} from './testing/helpers.js';

/** Every wait below is on an observable condition, bounded by this. */
const WAIT_MS = 20_000;

const KCAT = spawnSync('kcat', ['-V'], { stdio: 'ignore' }).error === undefined;
/** Skipped kcat tests say why in their name. */
const kcatTest = (name: string) =>
  KCAT ? name : `${name} [skipped: kcat is not on PATH; apt-get install kcat, as .ci/run does when it can]`;

/** Resolves when `condition` holds, re-checked by `poke()`; rejects after `ms` with `what`. */
class Condition {
  private readonly checks = new Set<() => void>();

  poke(): void {
    for (const check of [...this.checks]) check();
  }

  until(condition: () => boolean, what: string, ms = WAIT_MS): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.checks.delete(check);
        reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
      }, ms);
      const check = () => {
        if (!condition()) return;
        clearTimeout(timer);
        this.checks.delete(check);
        resolve();
      };
      this.checks.add(check);
      check();
    });
  }
}

/** A running kcat with its stdout (messages) and stderr (`%` status lines) split into lines. */
class Kcat {
  readonly stdout: string[] = [];
  readonly stderr: string[] = [];
  private readonly changed = new Condition();
  readonly child: ChildProcess;
  exitCode: number | null = null;

  constructor(args: string[], input?: string) {
    this.child = spawn('kcat', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.collect(this.child.stdout!, this.stdout);
    this.collect(this.child.stderr!, this.stderr);
    this.child.on('exit', (code) => {
      this.exitCode = code ?? -1;
      this.changed.poke();
    });
    this.child.stdin!.end(input ?? '');
    onTestFinished(() => this.stop());
  }

  private collect(stream: NodeJS.ReadableStream, lines: string[]): void {
    let partial = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      const parts = (partial + chunk).split('\n');
      partial = parts.pop() ?? '';
      lines.push(...parts);
      this.changed.poke();
    });
  }

  until(condition: (kcat: this) => boolean, what: string): Promise<void> {
    return this.changed.until(() => condition(this), `${what}; kcat stderr:\n${this.stderr.join('\n')}`);
  }

  async exited(): Promise<number> {
    await this.until((kcat) => kcat.exitCode !== null, 'kcat to exit');
    return this.exitCode!;
  }

  /** SIGTERM: kcat closes its consumer, which leaves the group. */
  async stop(): Promise<void> {
    if (this.exitCode !== null) return;
    const exit = once(this.child, 'exit');
    this.child.kill('SIGTERM');
    await exit;
  }

  /** Partitions of the latest `assigned:` line at or after `from` in stderr, or null. */
  assignedSince(from: number): number[] | null {
    for (let index = this.stderr.length - 1; index >= from; index--) {
      const line = this.stderr[index]!;
      if (!line.includes('assigned:')) continue;
      return [...line.matchAll(/\[(\d+)\]/g)].map((match) => Number(match[1])).sort();
    }
    return null;
  }
}

/** librdkafka settings for quick group changes on loopback. */
const KCAT_GROUP_SETTINGS = [
  '-X',
  'session.timeout.ms=6000',
  '-X',
  'heartbeat.interval.ms=100',
  '-X',
  'fetch.wait.max.ms=100',
  '-X',
  'topic.metadata.refresh.interval.ms=1000',
];

/** Produces one message per line with librdkafka's idempotent producer (InitProducerId). */
async function kcatProduce(broker: TestBroker, topic: string, lines: string[], partition?: number) {
  const args = ['-b', broker.brokers[0]!, '-X', 'enable.idempotence=true', '-P', '-t', topic];
  if (partition !== undefined) args.push('-p', String(partition));
  const producer = new Kcat(args, `${lines.join('\n')}\n`);
  expect(await producer.exited(), producer.stderr.join('\n')).toBe(0);
}

describe('test broker: clients other than kafkajs', () => {
  it('kafkajs: produces and consumes in a group', async () => {
    const broker = await brokerForTest();
    const topic = uniqueName('kafkajs');
    broker.createTopic(topic, 2);
    const kafka = kafkaFor(broker);
    const producer = disconnectAfter(kafka.producer({ idempotent: true, retry: { retries: 3 } }));
    await producer.connect();
    await producer.send({ topic, messages: ['a', 'b', 'c'].map((value) => ({ key: value, value })) });

    const consumer = disconnectAfter(kafka.consumer({ groupId: uniqueName('group'), ...consumerTimings }));
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const { done } = collect(consumer, (received) => received.length >= 3);
    expect(values(await done)).toEqual(['a', 'b', 'c']);
  });

  it('@platformatic/kafka: produces (idempotent) and consumes in a group', async () => {
    const broker = await brokerForTest();
    const topic = uniqueName('platformatic');
    broker.createTopic(topic, 2);
    const common = { bootstrapBrokers: broker.brokers, timeout: 5000, retries: 3, retryDelay: 100 };

    const producer = new Producer({
      ...common,
      clientId: uniqueName('producer'),
      serializers: stringSerializers,
      idempotent: true,
    });
    onTestFinished(() => producer.close());
    await producer.send({
      messages: ['a', 'b', 'c'].map((value) => ({ topic, key: value, value })),
    });

    const consumer = new Consumer({
      ...common,
      clientId: uniqueName('consumer'),
      groupId: uniqueName('group'),
      deserializers: stringDeserializers,
      sessionTimeout: 6000,
      heartbeatInterval: 200,
      maxWaitTime: 100,
    });
    onTestFinished(() => consumer.close(true));
    const stream = await consumer.consume({ topics: [topic], mode: 'earliest' });
    const received: string[] = [];
    const arrived = new Condition();
    stream.on('data', (message) => {
      received.push(message.value);
      arrived.poke();
    });
    await arrived.until(() => received.length >= 3, 'three messages');
    expect(received.sort()).toEqual(['a', 'b', 'c']);
    await stream.close();
  });

  it.skipIf(!KCAT)(kcatTest('kcat: produces and consumes (librdkafka)'), async () => {
    const broker = await brokerForTest();
    const topic = uniqueName('kcat');
    broker.createTopic(topic, 1);
    await kcatProduce(broker, topic, ['one', 'two', 'three']);
    expect(broker.endOffsets(topic)).toEqual([{ topic, partition: 0, offset: 3 }]);

    const consumer = new Kcat(['-b', broker.brokers[0]!, '-C', '-t', topic, '-o', 'beginning', '-e']);
    expect(await consumer.exited()).toBe(0);
    expect(consumer.stdout.filter((line) => line !== '')).toEqual(['one', 'two', 'three']);
  });

  it.skipIf(!KCAT)(kcatTest('kcat: a two-member group rebalances when one member leaves'), async () => {
    const broker = await brokerForTest();
    const topic = uniqueName('kcat-group');
    const group = uniqueName('group');
    broker.createTopic(topic, 2);
    const member = () =>
      new Kcat([
        '-b',
        broker.brokers[0]!,
        '-u',
        '-G',
        group,
        ...KCAT_GROUP_SETTINGS,
        '-o',
        'beginning',
        topic,
      ]);

    const first = member();
    await first.until(
      (kcat) => kcat.assignedSince(0)?.length === 2,
      'the first member to get both partitions',
    );
    const firstMark = first.stderr.length;
    const second = member();
    await second.until(
      (kcat) => kcat.assignedSince(0)?.length === 1,
      'the second member to get one partition',
    );
    await first.until(
      (kcat) => kcat.assignedSince(firstMark)?.length === 1,
      'the first member to keep one partition',
    );
    expect([...first.assignedSince(firstMark)!, ...second.assignedSince(0)!].sort()).toEqual([0, 1]);

    await kcatProduce(broker, topic, ['before-0'], 0);
    await kcatProduce(broker, topic, ['before-1'], 1);
    const bothGotOne = (kcat: Kcat) => kcat.stdout.some((line) => line.startsWith('before-'));
    await first.until(bothGotOne, 'the first member to consume its partition');
    await second.until(bothGotOne, 'the second member to consume its partition');

    const leaveMark = first.stderr.length;
    await second.stop();
    await first.until(
      (kcat) => kcat.assignedSince(leaveMark)?.length === 2,
      'the remaining member to get both partitions',
    );
    await kcatProduce(broker, topic, ['after-0'], 0);
    await kcatProduce(broker, topic, ['after-1'], 1);
    await first.until(
      (kcat) => kcat.stdout.includes('after-0') && kcat.stdout.includes('after-1'),
      'the remaining member to consume new messages on both partitions',
    );
    // Closing commits what it consumed (OffsetCommit from librdkafka): the group is at the end.
    await first.stop();
    const committed = broker.committedOffsets(group).sort((a, b) => a.partition - b.partition);
    expect(committed).toEqual(broker.endOffsets(topic));
  });
});
