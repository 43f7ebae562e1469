/**
 * The Kafka client seam (issue 18): the operations the bridge's stages use, and nothing more.
 * Two adapters implement it, `kafkajsClient(kafka)` and `platformaticClient(options)`; every
 * stage's `kafka` option takes either a kafkajs `Kafka` instance or a `KafkaClient`.
 */

export type KafkaClientKind = 'kafkajs' | 'platformatic';

/** Kafka's compression codecs, by their wire code (kafkajs' `CompressionTypes` uses the same numbers). */
export type CompressionCode = 0 | 1 | 2 | 3 | 4;

export interface OutgoingMessage {
  key: string | Buffer | null;
  value: string | Buffer | null;
  headers?: Record<string, string | Buffer>;
  /** Explicit partition; otherwise the key's murmur2 hash, the same on both clients (Java's). */
  partition?: number;
}

/**
 * An idempotent producer sending with acks=all: `send` resolves once the broker holds every
 * message (kafkajs' `send`, platformatic's `send`).
 */
export interface KafkaProducer {
  send(topic: string, messages: OutgoingMessage[], compression?: CompressionCode): Promise<void>;
  close(): Promise<void>;
}

export interface TopicSpec {
  topic: string;
  partitions: number;
  /** Unset: the broker's `default.replication.factor`. */
  replicationFactor?: number | undefined;
  /** `cleanup.policy=compact` (the `<topic>.schemas` topic). */
  compacted?: boolean;
}

export interface PartitionOffsets {
  partition: number;
  /** First offset still in the log. */
  low: bigint;
  /** Offset the next message will get (the end). */
  high: bigint;
}

export interface KafkaAdmin {
  listTopics(): Promise<string[]>;
  createTopics(topics: TopicSpec[]): Promise<void>;
  topicOffsets(topic: string): Promise<PartitionOffsets[]>;
  /** The group's committed offsets (next offset to read) of `topic`; partitions without one are left out. */
  committedOffsets(groupId: string, topic: string): Promise<{ partition: number; offset: bigint }[]>;
  setCommittedOffsets(
    groupId: string,
    topic: string,
    offsets: { partition: number; offset: bigint }[],
  ): Promise<void>;
  close(): Promise<void>;
}

/**
 * A consumed message as the stages and `decode` see it. Shaped like kafkajs' `KafkaMessage` (a
 * kafkajs message is one), so a `decode` written for kafkajs runs on either client.
 */
export interface ConsumedMessage {
  key: Buffer | null;
  value: Buffer | null;
  headers: Record<string, Buffer | string | (Buffer | string)[] | undefined>;
  offset: string;
  timestamp: string;
  attributes: number;
}

/** Messages of one partition fetched together, in offset order. */
export interface FetchedBatch {
  topic: string;
  partition: number;
  messages: ConsumedMessage[];
  /**
   * True once this member must stop handing the batch over: it is stopping, or a rebalance
   * may have moved the partition (what is left is refetched by whoever owns it).
   */
  isStale(): boolean;
  /** Tells the group this member is alive; throws when the group is rebalancing (kafkajs). */
  heartbeat(): Promise<void>;
  /** Marks messages up to `offset` as processed, so a refetch starts after them. */
  resolveOffset(offset: string): void;
}

export interface GroupConsumerConfig {
  groupId: string;
  topic: string;
  sessionTimeout: number;
  rebalanceTimeout: number;
  heartbeatInterval: number;
  maxWaitTimeInMs: number;
  maxBytesPerPartition: number;
  maxBytes: number;
  readUncommitted: boolean;
  /** Client-specific settings passed through (kafkajs `ConsumerConfig` fields). */
  extra?: Record<string, unknown>;
}

export interface GroupConsumerHandlers {
  /**
   * Called with one partition's batch; different partitions' batches may be in hand at once,
   * but a partition's next batch is not handed over before its last one settles. Throwing makes
   * the client rejoin and refetch (never a silent skip).
   */
  eachBatch(batch: FetchedBatch): Promise<void>;
  /** The client gave up (no rejoin will follow): the subscriber fails with this error. */
  fail(error: unknown): void;
}

/**
 * A member of a consumer group on one topic, starting from the group's committed offsets (the
 * earliest where none). Offsets are never committed by the client on its own.
 */
export interface GroupConsumer {
  /** Joins the group and starts handing batches over; resolves once running. */
  run(handlers: GroupConsumerHandlers): Promise<void>;
  /** Commits `next` (the offset after the last one applied) for lag tooling. */
  commit(topic: string, partition: number, next: bigint): Promise<void>;
  close(): Promise<void>;
}

export interface KafkaClient {
  readonly kind: KafkaClientKind;
  /** Idempotent (one request in flight), acks=all, never auto-creating topics. */
  producer(): KafkaProducer;
  admin(): Promise<KafkaAdmin>;
  groupConsumer(config: GroupConsumerConfig): GroupConsumer;
}
