import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  brokerForTest,
  collect,
  consumerTimings,
  disconnectAfter,
  kafkaFor,
  range,
  uniqueName,
} from './helpers.js';

/** Opens a raw socket, writes `bytes`, resolves when the broker closes the connection. */
async function rawExchange(port: number, bytes: Buffer): Promise<void> {
  const socket = connect({ port, host: '127.0.0.1' });
  socket.on('error', () => {});
  await once(socket, 'connect');
  socket.write(bytes);
  socket.resume();
  await once(socket, 'close');
}

function frame(apiKey: number, apiVersion: number, body: Buffer): Buffer {
  const header = Buffer.alloc(10);
  header.writeInt16BE(apiKey, 0);
  header.writeInt16BE(apiVersion, 2);
  header.writeInt32BE(7, 4);
  header.writeInt16BE(-1, 8); // null client id
  const size = Buffer.alloc(4);
  size.writeInt32BE(header.length + body.length);
  return Buffer.concat([size, header, body]);
}

describe('test broker: robustness and tooling', () => {
  it('drops connections that send garbage or unsupported versions and keeps serving others', async () => {
    const logged: string[] = [];
    const broker = await brokerForTest({ log: (line) => logged.push(line) });
    await rawExchange(broker.port, Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3]));
    await rawExchange(broker.port, frame(3, 12, Buffer.alloc(0))); // Metadata v12: not advertised
    await rawExchange(broker.port, frame(3, 4, Buffer.from([0, 0]))); // Metadata v4, truncated body
    expect(logged.some((line) => line.includes('unsupported request: api 3 v12'))).toBe(true);
    expect(logged.some((line) => line.includes('cannot handle api 3 v4'))).toBe(true);

    const admin = disconnectAfter(kafkaFor(broker).admin());
    await admin.connect();
    const topic = uniqueName('still-alive');
    await admin.createTopics({ topics: [{ topic }] });
    expect(await admin.listTopics()).toEqual([topic]);
  });

  it('lets admin tools list, describe, read and delete a group', async () => {
    const broker = await brokerForTest();
    const topic = uniqueName('admin-group');
    broker.createTopic(topic, 2);
    const kafka = kafkaFor(broker);
    const producer = disconnectAfter(kafka.producer());
    await producer.connect();
    await producer.send({ topic, messages: range(6, (i) => ({ value: `${i}`, partition: 1 })) });

    const groupId = uniqueName('tools');
    const consumer = kafka.consumer({ groupId, ...consumerTimings });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const { done } = collect(consumer, (received) => received.length === 6);
    await done;

    const admin = disconnectAfter(kafka.admin());
    await admin.connect();
    const stable = await admin.describeGroups([groupId]);
    expect(stable.groups[0]).toMatchObject({ groupId, state: 'Stable', protocolType: 'consumer' });
    expect(stable.groups[0]?.members).toHaveLength(1);
    expect((await admin.listGroups()).groups).toEqual([{ groupId, protocolType: 'consumer' }]);
    // A group with members cannot be deleted, as on Kafka.
    await expect(admin.deleteGroups([groupId])).rejects.toThrow();

    // Leaving commits what was processed (kafkajs commits the next offset to read).
    await consumer.disconnect();
    expect((await admin.describeGroups([groupId])).groups[0]?.state).toBe('Empty');
    const offsets = await admin.fetchOffsets({ groupId, topics: [topic] });
    expect(offsets[0]?.partitions.find((p) => p.partition === 1)?.offset).toBe('6');
    expect(await admin.deleteGroups([groupId])).toEqual([expect.objectContaining({ groupId, errorCode: 0 })]);
    expect(broker.committedOffsets(groupId)).toEqual([]);
  });

  it('runs standalone: prints the address, serves clients, exits on SIGTERM', async () => {
    const cli = fileURLToPath(new URL('../../src/testing/cli.ts', import.meta.url));
    const child = spawn(
      process.execPath,
      ['--conditions=@tributary/source', '--import', 'tsx', cli, '--port', '0'],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    const exited = once(child, 'exit');
    const [firstLine] = (await once(child.stdout.setEncoding('utf8'), 'data')) as [string];
    expect(firstLine).toMatch(/^listening on 127\.0\.0\.1:\d+\n$/);
    const address = firstLine.trim().slice('listening on '.length);

    const admin = kafkaFor({ brokers: [address] }).admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic: 'cli-topic' }] });
    expect(await admin.listTopics()).toEqual(['cli-topic']);
    await admin.disconnect();

    child.kill('SIGTERM');
    const [code] = await exited;
    expect(code).toBe(0);
  });
});
