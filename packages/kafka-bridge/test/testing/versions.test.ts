import { once } from 'node:events';
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { Reader, Writer } from '../../src/testing/codec.js';
import { brokerForTest } from './helpers.js';

/** Sends one request frame and resolves with the first response frame (size prefix removed). */
async function exchange(port: number, request: Buffer): Promise<Buffer> {
  const socket = connect({ port, host: '127.0.0.1' });
  await once(socket, 'connect');
  socket.write(request);
  let received = Buffer.alloc(0);
  for await (const chunk of socket) {
    received = Buffer.concat([received, chunk as Buffer]);
    if (received.length >= 4 && received.length >= 4 + received.readInt32BE(0)) break;
  }
  socket.destroy();
  return received.subarray(4, 4 + received.readInt32BE(0));
}

/** Request header v1 (classic) or v2 (flexible: an empty tagged-field section after it). */
function frame(apiKey: number, apiVersion: number, body: Writer, flexible: boolean): Buffer {
  const header = new Writer().int16(apiKey).int16(apiVersion).int32(42).string('versions-test');
  if (flexible) header.taggedFields();
  const payload = Buffer.concat([header.toBuffer(), body.toBuffer()]);
  return Buffer.concat([new Writer().int32(payload.length).toBuffer(), payload]);
}

type Range = [key: number, min: number, max: number];

describe('test broker: API versions (issue #18)', () => {
  it('answers ApiVersions v0 with a [min, max] range per API, reaching librdkafka’s probes', async () => {
    const broker = await brokerForTest();
    const reader = new Reader(await exchange(broker.port, frame(18, 0, new Writer(), false)));
    expect(reader.int32()).toBe(42);
    expect(reader.int16()).toBe(0);
    const ranges = reader.array((r): Range => [r.int16(), r.int16(), r.int16()]);
    const byKey = new Map(ranges.map(([key, min, max]) => [key, [min, max]]));
    // librdkafka enables its balanced consumer only if FindCoordinator 0 and JoinGroup 0 overlap.
    expect(byKey.get(10)).toEqual([0, 1]);
    expect(byKey.get(11)).toEqual([0, 5]);
    expect(byKey.get(18)).toEqual([0, 3]);
    expect(byKey.get(2)).toEqual([1, 2]);
  });

  it('answers flexible ApiVersions v3 with compact arrays and tagged fields, header v0', async () => {
    const broker = await brokerForTest();
    const body = new Writer().compactString('librdkafka').compactString('2.0.2').taggedFields();
    const reader = new Reader(await exchange(broker.port, frame(18, 3, body, true)));
    expect(reader.int32()).toBe(42); // response header v0: no tagged fields, even for v3
    expect(reader.int16()).toBe(0);
    const ranges = reader.compactArray((r): Range => {
      const range: Range = [r.int16(), r.int16(), r.int16()];
      r.taggedFields();
      return range;
    });
    expect(ranges).toContainEqual([3, 4, 4]);
    expect(reader.int32()).toBe(0); // throttle time
    reader.taggedFields();
  });

  it('answers an ApiVersions version newer than it knows with UNSUPPORTED_VERSION', async () => {
    const broker = await brokerForTest();
    const reader = new Reader(await exchange(broker.port, frame(18, 9, new Writer(), false)));
    expect(reader.int32()).toBe(42);
    expect(reader.int16()).toBe(35);
  });

  it('answers FindCoordinator v0 and ListOffsets v1, the old layouts librdkafka may use', async () => {
    const broker = await brokerForTest();
    broker.createTopic('old-versions', 1);

    const coordinator = new Reader(
      await exchange(broker.port, frame(10, 0, new Writer().string('group'), false)),
    );
    expect(coordinator.int32()).toBe(42);
    expect([coordinator.int16(), coordinator.int32(), coordinator.string(), coordinator.int32()]).toEqual([
      0,
      1,
      '127.0.0.1',
      broker.port,
    ]);

    const request = new Writer()
      .int32(-1)
      .array(['old-versions'], (w, topic) => w.string(topic).array([0], (pw, p) => pw.int32(p).int64(-1)));
    const offsets = new Reader(await exchange(broker.port, frame(2, 1, request, false)));
    expect(offsets.int32()).toBe(42);
    const topics = offsets.array((r) => ({
      topic: r.string(),
      partitions: r.array((pr) => [pr.int32(), pr.int16(), pr.int64(), pr.int64()]),
    }));
    expect(topics).toEqual([{ topic: 'old-versions', partitions: [[0, 0, -1, 0]] }]);
  });

  it('answers a first JoinGroup v4+ without a member id MEMBER_ID_REQUIRED, then admits that id', async () => {
    const broker = await brokerForTest();
    const join = (memberId: string) =>
      new Writer()
        .string('kip-394')
        .int32(3000)
        .int32(3000)
        .string(memberId)
        .nullableString(null) // v5: group instance id
        .string('consumer')
        .array(['range'], (w, name) => w.string(name).bytes(Buffer.alloc(0)));
    const readJoin = (bytes: Buffer) => {
      const reader = new Reader(bytes);
      reader.int32(); // correlation id
      reader.int32(); // throttle time
      const errorCode = reader.int16();
      const generation = reader.int32();
      reader.string(); // protocol
      reader.string(); // leader
      return { errorCode, generation, memberId: reader.string() };
    };

    const first = readJoin(await exchange(broker.port, frame(11, 5, join(''), false)));
    expect(first.errorCode).toBe(79);
    expect(first.memberId).toMatch(/^versions-test-/);
    const second = readJoin(await exchange(broker.port, frame(11, 5, join(first.memberId), false)));
    expect(second).toEqual({ errorCode: 0, generation: 1, memberId: first.memberId });
  });
});

describe('codec: compact types', () => {
  it('round-trips compact strings, bytes, arrays, nulls and multi-byte varints', () => {
    const long = 'x'.repeat(300); // a length that needs a two-byte unsigned varint
    const written = new Writer()
      .compactString(long)
      .compactNullableString(null)
      .compactBytes(Buffer.from([1, 2, 3]))
      .compactArray([7, 8], (w, n) => w.int32(n))
      .uvarint(2 ** 31)
      .taggedFields()
      .toBuffer();
    const reader = new Reader(written);
    expect(reader.compactString()).toBe(long);
    expect(reader.compactNullableString()).toBeNull();
    expect([...reader.compactBytes()]).toEqual([1, 2, 3]);
    expect(reader.compactArray((r) => r.int32())).toEqual([7, 8]);
    expect(reader.uvarint()).toBe(2 ** 31);
    reader.taggedFields();
  });

  it('skips tagged fields it does not know', () => {
    const withTags = new Writer().uvarint(2).uvarint(0).uvarint(2).int16(5).uvarint(9).uvarint(0).int8(1);
    const reader = new Reader(withTags.toBuffer());
    reader.taggedFields();
    expect(reader.int8()).toBe(1);
  });
});
