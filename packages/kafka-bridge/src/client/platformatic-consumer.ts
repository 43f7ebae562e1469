import type { BaseOptions, Consumer, Message, MessagesStream } from '@platformatic/kafka';
import { TributaryError } from '@tributary/core';
import { loadPlatformatic } from './platformatic-module.js';
import type { ConsumedMessage, GroupConsumer, GroupConsumerConfig, GroupConsumerHandlers } from './types.js';

type Stream = MessagesStream<Buffer, Buffer, Buffer, Buffer>;

/**
 * A consumer group member on `@platformatic/kafka`, turning its message stream into the
 * per-partition batches the subscriber hands over (what kafkajs' `eachBatch` gives).
 *
 * platformatic heartbeats and rejoins on its own timers, and its stream keeps fetching ahead of
 * what we hand over. So whenever part of what it delivered is not handed over (a partition was
 * revoked, a batch went stale or failed), the stream is replaced by a new one that starts from
 * the group's committed offsets. Those only follow the offsets stored with the rows, so the new
 * stream never starts past a message that was not applied, and the subscriber's stored-offset
 * filter drops what it refetches twice. Without the replacement, messages the old stream already
 * buffered past the skipped ones could be applied after a rebalance gave the partition back: a
 * gap. The new stream is opened before the old one closes, so the member does not rejoin.
 */
export function platformaticGroupConsumer(base: BaseOptions, config: GroupConsumerConfig): GroupConsumer {
  const { groupId, topic } = config;
  // Created in run(): loading @platformatic/kafka is deferred to first use.
  let consumer: Consumer<Buffer, Buffer, Buffer, Buffer> | undefined;
  const createConsumer = async () => {
    const { Consumer, FetchIsolationLevels } = await loadPlatformatic();
    const created = new Consumer<Buffer, Buffer, Buffer, Buffer>({
      ...base,
      ...config.extra,
      groupId,
      autocommit: false,
      autocreateTopics: false,
      sessionTimeout: config.sessionTimeout,
      rebalanceTimeout: config.rebalanceTimeout,
      heartbeatInterval: config.heartbeatInterval,
      maxWaitTime: config.maxWaitTimeInMs,
      maxBytes: config.maxBytes,
      maxBytesPerPartition: config.maxBytesPerPartition,
      isolationLevel: config.readUncommitted
        ? FetchIsolationLevels.READ_UNCOMMITTED
        : FetchIsolationLevels.READ_COMMITTED,
    });
    // A long-lived emitter never emits 'error' with nobody listening (STYLE.md).
    created.on('error' as never, (error: unknown) => fail(error));
    return created;
  };
  let stream: Stream | undefined;
  let running = false;
  let loop: Promise<void> | undefined;
  let fail: (error: unknown) => void = () => undefined;

  const openStream = async (): Promise<Stream> => {
    const opened = await consumer!.consume({
      topics: [topic],
      // Where the group committed (the stored offsets moved it back if needed); earliest when
      // nothing is committed yet, like kafkajs' `fromBeginning: true`.
      mode: 'committed',
      fallbackMode: 'earliest',
      autocommit: false,
    });
    opened.on('error', (error) => {
      if (running && opened === stream) fail(error);
    });
    return opened;
  };

  const replaceStream = async () => {
    const old = stream;
    stream = await openStream();
    await old?.close().catch(() => undefined);
  };

  const assigned = (partition: number) =>
    consumer?.assignments?.some((a) => a.topic === topic && a.partitions.includes(partition)) ?? false;

  async function deliver(handlers: GroupConsumerHandlers): Promise<void> {
    while (running) {
      const current = stream!;
      const messages = await take(current);
      if (!running) return;
      if (messages === null) {
        if (current !== stream) continue;
        throw new TributaryError('SOURCE_FAILED', `Kafka consumer stream of ${topic} ended unexpectedly`, {
          retriable: true,
        });
      }
      // Each partition's batch is handed over at once, so that one partition's rows decode
      // while another's are written (kafkajs: `partitionsConsumedConcurrently`).
      const outcomes = await Promise.allSettled(
        [...byPartition(messages)].map(async ([partition, batch]): Promise<boolean> => {
          if (!running || !assigned(partition)) return false;
          const last = batch[batch.length - 1]!.offset;
          let resolved = -1n;
          await handlers.eachBatch({
            topic,
            partition,
            messages: batch.map(toConsumedMessage),
            isStale: () => !running || current !== stream || !assigned(partition),
            heartbeat: async () => undefined, // platformatic heartbeats on its own timer
            resolveOffset: (offset) => {
              const o = BigInt(offset);
              if (o > resolved) resolved = o;
            },
          });
          return resolved >= last;
        }),
      );
      if (!running) return;
      const failed = outcomes.find((o) => o.status === 'rejected');
      if (failed) throw failed.reason;
      const complete = outcomes.every((o) => o.status === 'fulfilled' && o.value);
      if (!complete && running) await replaceStream();
    }
  }

  return {
    async run(handlers) {
      fail = (error) => handlers.fail(error);
      running = true;
      consumer = await createConsumer();
      try {
        stream = await openStream();
      } catch (error) {
        // Joining failed: leave nothing running (its timers would keep the process alive).
        running = false;
        await consumer.close(true).catch(() => undefined);
        throw error;
      }
      loop = deliver(handlers).catch((error: unknown) => {
        if (running) handlers.fail(error);
      });
    },
    async commit(topicName, partition, next) {
      if (!consumer) return; // not running: nothing to report lag for
      await consumer.commit({ offsets: [{ topic: topicName, partition, offset: next, leaderEpoch: -1 }] });
    },
    async close() {
      running = false;
      const open = stream;
      stream = undefined;
      await open?.close().catch(() => undefined);
      await loop;
      await consumer?.close(true).catch(() => undefined);
    },
  };
}

/** Every message the stream holds now, waiting for the next fetch when it holds none; null at its end. */
function take(stream: Stream): Promise<Message<Buffer, Buffer, Buffer, Buffer>[] | null> {
  return new Promise((resolve, reject) => {
    const drain = (): boolean => {
      const out: Message<Buffer, Buffer, Buffer, Buffer>[] = [];
      for (let m = stream.read(); m !== null; m = stream.read()) out.push(m);
      if (!out.length) return false;
      cleanup();
      resolve(out);
      return true;
    };
    const onEnd = () => {
      cleanup();
      resolve(null);
    };
    const onError = (error: Error) => {
      cleanup();
      reject(error);
    };
    const onReadable = () => {
      drain();
    };
    function cleanup() {
      stream.off('readable', onReadable);
      stream.off('end', onEnd);
      stream.off('close', onEnd);
      stream.off('error', onError);
    }
    if (stream.destroyed || stream.readableEnded) {
      resolve(null);
      return;
    }
    stream.on('readable', onReadable);
    stream.on('end', onEnd);
    stream.on('close', onEnd);
    stream.on('error', onError);
    drain();
  });
}

/** Messages grouped by partition, each group in offset order, partitions in arrival order. */
function byPartition(
  messages: Message<Buffer, Buffer, Buffer, Buffer>[],
): Map<number, Message<Buffer, Buffer, Buffer, Buffer>[]> {
  const groups = new Map<number, Message<Buffer, Buffer, Buffer, Buffer>[]>();
  for (const message of messages) {
    let group = groups.get(message.partition);
    if (!group) {
      group = [];
      groups.set(message.partition, group);
    }
    group.push(message);
  }
  return groups;
}

/**
 * platformatic's message in the seam's shape. The headers (a map of buffers there, a record of
 * names here) are converted when first read, as the pass-through path never reads them; the
 * getters are own properties, so a copy of the message (`{ ...message }`) still has them.
 */
function toConsumedMessage(message: Message<Buffer, Buffer, Buffer, Buffer>): ConsumedMessage {
  let headers: Record<string, Buffer> | undefined;
  return {
    key: message.key ?? null,
    value: message.value ?? null,
    get headers() {
      if (!headers) {
        headers = {};
        for (const [name, value] of message.headers) headers[name.toString()] = value;
      }
      return headers;
    },
    offset: message.offset.toString(),
    get timestamp() {
      return message.timestamp.toString();
    },
    attributes: 0,
  };
}
