import {
  type Batch,
  type EmitEvent,
  faultPoint,
  type Position,
  type RawCsv,
  type ReadContext,
  type Row,
  type Source,
  TributaryError,
} from '@tributary/core';
import {
  type ConsumedMessage,
  type FetchedBatch,
  type GroupConsumer,
  type GroupConsumerConfig,
  toKafkaClient,
} from './client/index.js';
import { type DeadLetter, deadLetter } from './dead-letter.js';
import type { Decoder } from './encoding.js';
import { prepareGroup } from './group-offsets.js';
import { type KafkaRange, kafkaRange } from './meta.js';
import { type ResolvedSubscribeOptions, resolveSubscribeOptions, type SubscribeOptions } from './options.js';

export interface KafkaPosition {
  topic: string;
  partition: number;
  /** Offset of the last message this batch covers. */
  offset: string;
}

export function defaultStreamFor(groupId: string): (topic: string, partition: number) => string {
  return (topic, partition) => `kafka/${groupId}/${topic}/${partition}`;
}

interface Pending {
  batch: Batch<Row>;
  done?: { resolve: () => void; reject: (e: unknown) => void };
}

/**
 * Subscribe source: topic → batches per partition, position `{ topic, partition, offset }`.
 *
 * Exactly-once effect comes from the sink: offsets are stored with the rows in one transaction.
 * Every fetched batch is filtered against the stored offset of its partition (read afresh), so
 * a rebalance, a restart or Kafka's own (lagging) committed offset never applies a message
 * twice. Kafka's committed offsets are written after the sink committed, for lag tooling only.
 */
export function kafkaSubscribeSource(input: SubscribeOptions): Source<Row> & { readonly consumed: number } {
  const options = resolveSubscribeOptions(input);
  const streamFor = options.streamFor ?? defaultStreamFor(options.groupId);
  const { maxRows, awaitCommit } = options;
  const client = toKafkaClient(options.kafka);
  let consumer: GroupConsumer | undefined;
  let consumed = 0;
  // Batches handed to the pipeline and not yet committed, with the fetch loop waiting on them.
  const pendingCommits = new Map<Batch<Row>, Pending>();

  return {
    name: 'kafka-subscribe',
    get consumed() {
      return consumed;
    },
    async *read(ctx: ReadContext) {
      const queue: Pending[] = [];
      let wake: (() => void) | undefined;
      let failure: unknown;
      let finished = false;
      // Set once read() ends: a slice decoded after that is never queued (nobody would commit
      // or release it, and the client's stop() would wait on its eachBatch forever).
      let closed = false;
      const notify = () => {
        const w = wake;
        wake = undefined;
        w?.();
      };
      const c = client.groupConsumer(groupConsumerConfig(options));
      consumer = c;
      // createDecoder()'s decoder reads the writer schemas while the group is joined.
      void (options.decode as Partial<Decoder>).prepare?.().catch(() => undefined);
      const endOffsets = await prepareGroup({ ...options, client, streamFor }, ctx);
      const dlq = deadLetter(client);

      const reached = new Map<number, bigint>();
      const lastPositions = new Map<number, KafkaPosition>();

      const isIdle = async (): Promise<boolean> => {
        for (const [partition, end] of endOffsets) {
          if (end === 0n) continue;
          const local = reached.get(partition) ?? 0n;
          if (local >= end) continue;
          const stored = await ctx.checkpoint(streamFor(options.topic, partition));
          if (!stored || BigInt(String(stored['offset'])) + 1n < end) return false;
        }
        return true;
      };

      const eachBatch = async (batch: FetchedBatch) => {
        const { resolveOffset, heartbeat, isStale } = batch;
        const partition = batch.partition;
        const stream = streamFor(batch.topic, partition);
        const lastOffset = batch.messages[batch.messages.length - 1]?.offset;
        // Read the stored offset afresh: another member may have applied this partition
        // before a rebalance handed it to us.
        const stored = await ctx.checkpoint(stream);
        const after = stored ? BigInt(String(stored['offset'])) : -1n;
        const messages = batch.messages.filter((m) => BigInt(m.offset) > after);
        // The stored position each batch continues from: the sink applies a batch only while it
        // still is the stored one, which fences a member that lost this partition in a
        // rebalance while its batch was in flight (no offset applied twice).
        let previous: Position | null = stored ? { ...stored } : null;
        // Slices handed over and not yet committed, oldest first. One may wait ahead of the one
        // being written, so its decoding overlaps the sink's work; every slice of this fetch is
        // committed before eachBatch returns (and before kafkajs fetches or rejoins).
        const ahead: { settled: Promise<void>; offset: string }[] = [];
        // A heartbeat reporting a rebalance, or a failure while decoding, stops this fetch; it
        // is thrown only once every slice already handed over has committed (or been fenced).
        let interrupted: { error: unknown } | undefined;
        let stopped = false;
        const settle = async (keep: number) => {
          while (ahead.length > keep) {
            const oldest = ahead.shift()!;
            if (awaitCommit) await oldest.settled;
            else await settledOrBounded(oldest.settled);
            resolveOffset(oldest.offset);
            if (interrupted) continue;
            try {
              await heartbeat();
            } catch (error) {
              interrupted = { error };
            }
          }
        };
        try {
          await handOver();
        } catch (error) {
          interrupted ??= { error };
        }
        // The next fetch (or a rejoin) waits for these commits, so a revoked partition's
        // batches are finished (or rolled back) before this member rejoins the group.
        await settle(0);
        if (interrupted) throw interrupted.error;
        if (stopped) return;
        if (!messages.length && lastOffset !== undefined) resolveOffset(lastOffset);
        // Only now is every message of this fetch handed over: the idle check may count it.
        if (lastOffset !== undefined) reached.set(partition, BigInt(lastOffset) + 1n);

        async function handOver(): Promise<void> {
          for (let start = 0; start < messages.length; start += maxRows) {
            if (interrupted || isStale() || ctx.signal.aborted) {
              stopped = true;
              return;
            }
            const slice = messages.slice(start, start + maxRows);
            const { rows, raw, offsets } = await decodeSlice(options, slice, {
              topic: batch.topic,
              partition,
              stream,
              dlq,
              emit: ctx.emit,
            });
            if (closed) {
              stopped = true;
              return;
            }
            consumed += slice.length;
            const last = slice[slice.length - 1]!;
            const position: KafkaPosition = { topic: batch.topic, partition, offset: last.offset };
            lastPositions.set(partition, position);
            const item: Pending = {
              batch: sliceBatch(stream, position, slice, { rows, raw, offsets }, previous),
            };
            previous = { ...position };
            const settled = new Promise<void>((resolve, reject) => {
              item.done = { resolve, reject };
            });
            settled.catch(() => undefined); // rejected on shutdown; awaited below only when needed
            queue.push(item);
            notify();
            ahead.push({ settled, offset: last.offset });
            await settle(1);
          }
        }
      };

      // Without awaiting each commit (rolling sinks), still bound what is queued ahead.
      const settledOrBounded = async (settled: Promise<void>) => {
        if (queue.length + pendingCommits.size < 4) return;
        await settled.catch(() => undefined);
      };

      await c.run({
        eachBatch,
        // The client gave up (kafkajs: a crash it does not restart from; our own errors): fail
        // the run. Rebalances and lost connections are retried inside the client.
        fail: (error) => {
          failure ??= error;
          notify();
        },
      });

      const next = (): Pending | undefined => {
        if (queue.length < 2) return queue.shift();
        const writing = new Set([...pendingCommits.keys()].map((b) => b.stream));
        const at = nextSlice(
          queue.map((q) => q.batch.stream),
          writing,
        );
        return queue.splice(at, 1)[0];
      };

      const tick = options.tickMs ? setInterval(() => notify(), options.tickMs) : undefined;
      try {
        while (!finished) {
          const item = next();
          if (item) {
            pendingCommits.set(item.batch, item);
            yield item.batch;
            continue;
          }
          if (failure)
            throw failure instanceof TributaryError
              ? failure
              : new TributaryError('SOURCE_FAILED', `Kafka consumer failed: ${(failure as Error).message}`, {
                  cause: failure,
                  retriable: true,
                });
          if (ctx.signal.aborted || ctx.stop?.aborted) return;
          // Idle: everything fetched was handed over (and, when each batch awaits its commit,
          // committed) and every partition reached the end offsets seen at start.
          if (options.exitWhenIdle && (!awaitCommit || pendingCommits.size === 0) && (await isIdle())) {
            finished = true;
            break;
          }
          if (options.tickMs) {
            for (const position of lastPositions.values()) {
              yield tickBatch(streamFor(position.topic, position.partition), position);
            }
          }
          await new Promise<void>((resolve) => {
            wake = resolve;
            const timer = setTimeout(resolve, options.exitWhenIdle ? 100 : 1000);
            timer.unref?.();
            ctx.stop?.addEventListener('abort', () => resolve(), { once: true });
            ctx.signal.addEventListener('abort', () => resolve(), { once: true });
          });
        }
        if (options.tickMs) {
          // Final flush: a committing empty batch per partition, so rolling sinks write what they hold.
          for (const position of lastPositions.values()) {
            yield {
              ...tickBatch(streamFor(position.topic, position.partition), position),
              meta: { ...tickBatch('', position).meta, commit: true, marker: 'flush' },
            };
          }
        }
      } finally {
        if (tick) clearInterval(tick);
        // Batches handed over or still queued never commit now: release every eachBatch call
        // waiting on them, or kafkajs' stop() would wait for them forever.
        closed = true;
        for (const item of [...pendingCommits.values(), ...queue.splice(0)])
          item.done?.reject(new TributaryError('ABORTED', 'subscriber stopped'));
        pendingCommits.clear();
        await c.close().catch(() => undefined);
        await dlq.close();
        consumer = undefined;
      }
    },
    async committed(batch) {
      const item = pendingCommits.get(batch);
      const { topic, partition } = kafkaRange(batch);
      faultPoint('kafka:subscriber-after-commit'); // Postgres committed, Kafka offset not yet (issue 7)
      // Kafka's committed offset follows the Postgres commit, for lag tooling only.
      if (consumer && batch.position['offset'] !== undefined) {
        await consumer
          .commit(topic, partition, BigInt(String(batch.position['offset'])) + 1n)
          .catch(() => undefined);
      }
      // A rolling sink commits several batches at once: settle every earlier batch of the partition.
      for (const [b, pending] of pendingCommits) {
        if (
          kafkaRange(b).partition === partition &&
          BigInt(String(b.position['offset'])) <= BigInt(String(batch.position['offset']))
        ) {
          pending.done?.resolve();
          pendingCommits.delete(b);
        }
      }
      item?.done?.resolve();
      pendingCommits.delete(batch);
    },
  };
}

/** The consumer settings both clients know by name; the rest of `consumer` passes through. */
const NAMED_CONSUMER_SETTINGS = [
  'sessionTimeout',
  'rebalanceTimeout',
  'heartbeatInterval',
  'maxWaitTimeInMs',
  'maxBytesPerPartition',
  'maxBytes',
  'readUncommitted',
] as const;

/**
 * The seam's consumer settings. Fetches are larger than kafkajs' 1 MiB by default (see the
 * schema): a fetch holding several batches lets the next one decode while the sink writes.
 */
function groupConsumerConfig(options: ResolvedSubscribeOptions): GroupConsumerConfig {
  const extra: Record<string, unknown> = { ...options.consumer };
  for (const name of NAMED_CONSUMER_SETTINGS) delete extra[name];
  const named = Object.fromEntries(NAMED_CONSUMER_SETTINGS.map((name) => [name, options.consumer[name]]));
  return {
    ...(named as Pick<GroupConsumerConfig, (typeof NAMED_CONSUMER_SETTINGS)[number]>),
    groupId: options.groupId,
    topic: options.topic,
    extra,
  };
}

/**
 * Which queued slice to hand on next, by the streams (partitions) of the queue, oldest first:
 * the oldest of a partition with none awaiting its commit, else the oldest. A sink that writes
 * partitions side by side then gets different ones to overlap, not two slices of one partition,
 * which it must write one after the other. Each partition's slices keep their order.
 */
export function nextSlice(queued: readonly string[], writing: ReadonlySet<string>): number {
  return Math.max(
    queued.findIndex((stream) => !writing.has(stream)),
    0,
  );
}

interface SliceOrigin {
  topic: string;
  partition: number;
  stream: string;
  dlq: DeadLetter;
  emit: ReadContext['emit'];
}

/** A slice's records: rows, or pass-through CSV (`rows` empty), with the offset of each record. */
interface SliceRecords {
  rows: Row[];
  raw?: RawCsv | undefined;
  offsets: string[];
}

/** The pass-through conversion of `createDecoder()`'s decoder, when `decode` is one. */
function rawCsvOf(decode: ResolvedSubscribeOptions['decode']): Decoder['rawCsv'] | undefined {
  const rawCsv = (decode as Partial<Decoder>).rawCsv;
  return typeof rawCsv === 'function' ? rawCsv : undefined;
}

/**
 * A slice of a fetch decoded into rows, with the offsets of the messages that became rows. An
 * undecodable message fails the stream (`poison: 'fail'`) or goes to the dead-letter topic.
 * When `decode` is `createDecoder()`'s and the slice is all Avro of one record of strings, it is
 * handed over as CSV instead (pass-through: the sink COPYs it, no row objects are made).
 */
async function decodeSlice(
  options: ResolvedSubscribeOptions,
  slice: readonly ConsumedMessage[],
  origin: SliceOrigin,
): Promise<SliceRecords> {
  const rawCsv = rawCsvOf(options.decode);
  if (rawCsv) {
    const raw = await rawCsv(slice.map((m) => m.value));
    if (raw) return { rows: [], raw, offsets: slice.map((m) => m.offset) };
  }
  const rows: Row[] = [];
  const offsets: string[] = [];
  for (const message of slice) {
    try {
      rows.push(await options.decode(message.value, message));
      offsets.push(message.offset);
    } catch (error) {
      const where = `${origin.topic}/${origin.partition}@${message.offset}`;
      if (options.poison !== 'dead-letter') {
        throw new TributaryError(
          'POISON_MESSAGE',
          `undecodable message at ${where}: ${(error as Error).message}`,
          {
            cause: error,
            stream: origin.stream,
            location: { file: where },
          },
        );
      }
      await origin.dlq.send(origin.topic, origin.partition, message, error as Error);
      origin.emit({
        type: 'warning',
        stream: origin.stream,
        message: `message ${where} sent to ${origin.topic}.dlq: ${(error as Error).message}`,
      });
    }
  }
  return { rows, offsets };
}

/** One slice as a committing batch, fenced on the stored position it continues from. */
function sliceBatch(
  stream: string,
  position: KafkaPosition,
  slice: readonly ConsumedMessage[],
  { rows, raw, offsets }: SliceRecords,
  previous: Position | null,
): Batch<Row> {
  const first = slice[0]!.offset;
  const records = raw ? raw.records : rows.length;
  return {
    stream,
    rows,
    ...(raw ? { raw } : {}),
    position: { ...position },
    meta: {
      source: `${position.topic}/${position.partition}/${first}-${position.offset}`,
      commit: true,
      lastOfUnit: true,
      rowsRead: slice.length,
      filtered: records < slice.length ? { 'dead-letter': slice.length - records } : {},
      fence: { after: previous },
      own: {
        topic: position.topic,
        partition: position.partition,
        firstOffset: first,
        lastOffset: position.offset,
        offsets,
      } satisfies KafkaRange,
    },
  };
}

function tickBatch(stream: string, position: KafkaPosition): Batch<Row> {
  return {
    stream,
    rows: [],
    position: { ...position },
    meta: {
      commit: false,
      rowsRead: 0,
      filtered: {},
      marker: 'tick',
      own: { topic: position.topic, partition: position.partition } satisfies KafkaRange,
    },
  };
}

export type { EmitEvent };
