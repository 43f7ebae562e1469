import { randomUUID } from 'node:crypto';
import { type BatchHeader, type ControlType, controlBatch, setBaseOffset } from './records.js';

/** One transaction's outcome, shared by every batch it wrote in every partition. */
export interface TransactionOutcome {
  state: 'open' | 'committed' | 'aborted';
}

export interface StoredBatch {
  baseOffset: number;
  lastOffset: number;
  maxTimestamp: number;
  bytes: Buffer;
  /** Null for non-transactional batches and for control batches. */
  transaction: TransactionOutcome | null;
}

interface SequenceEntry {
  epoch: number;
  baseSequence: number;
  baseOffset: number;
}

/** How many batches per producer and partition are remembered to absorb retries (Kafka keeps 5). */
const REMEMBERED_SEQUENCES = 5;

export class PartitionLog {
  readonly batches: StoredBatch[] = [];
  highWatermark = 0;
  /** First offset of each open transaction in this partition, by producer id (LSO). */
  readonly openTransactions = new Map<number, number>();
  private readonly sequences = new Map<number, SequenceEntry[]>();

  lastStableOffset(): number {
    let stable = this.highWatermark;
    for (const first of this.openTransactions.values()) stable = Math.min(stable, first);
    return stable;
  }

  /** The exclusive end of what a consumer at this isolation level may read. */
  visibleEnd(readCommitted: boolean): number {
    return readCommitted ? this.lastStableOffset() : this.highWatermark;
  }

  /** Index of the first batch whose last offset is at or after `offset` (batches.length if none). */
  firstBatchAtOrAfter(offset: number): number {
    let low = 0;
    let high = this.batches.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.batches[middle]!.lastOffset < offset) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  /**
   * Appends a produced batch and returns its base offset. A retried idempotent batch (same
   * producer, epoch and base sequence) is not appended again: the first base offset is returned.
   * Sequence gaps are not enforced: kafkajs treats OUT_OF_ORDER_SEQUENCE_NUMBER as fatal.
   */
  append(batch: BatchHeader, transaction: TransactionOutcome | null): number {
    const idempotent = batch.producerId >= 0 && batch.baseSequence >= 0;
    if (idempotent) {
      const seen = this.sequences
        .get(batch.producerId)
        ?.find((entry) => entry.epoch === batch.producerEpoch && entry.baseSequence === batch.baseSequence);
      if (seen) return seen.baseOffset;
    }
    const baseOffset = this.highWatermark;
    setBaseOffset(batch.bytes, baseOffset);
    this.batches.push({
      baseOffset,
      lastOffset: baseOffset + batch.lastOffsetDelta,
      maxTimestamp: batch.maxTimestamp,
      bytes: batch.bytes,
      transaction,
    });
    this.highWatermark = baseOffset + batch.lastOffsetDelta + 1;
    if (idempotent) {
      const entries = this.sequences.get(batch.producerId) ?? [];
      entries.push({ epoch: batch.producerEpoch, baseSequence: batch.baseSequence, baseOffset });
      if (entries.length > REMEMBERED_SEQUENCES) entries.shift();
      this.sequences.set(batch.producerId, entries);
    }
    if (transaction && !this.openTransactions.has(batch.producerId)) {
      this.openTransactions.set(batch.producerId, baseOffset);
    }
    return baseOffset;
  }

  /** Writes the commit/abort marker of a producer's transaction and releases the LSO. */
  endTransaction(producerId: number, producerEpoch: number, type: ControlType): void {
    const baseOffset = this.highWatermark;
    this.batches.push({
      baseOffset,
      lastOffset: baseOffset,
      maxTimestamp: Date.now(),
      bytes: controlBatch({ baseOffset, producerId, producerEpoch, type, timestamp: Date.now() }),
      transaction: null,
    });
    this.highWatermark = baseOffset + 1;
    this.openTransactions.delete(producerId);
  }
}

export interface Topic {
  name: string;
  partitions: PartitionLog[];
}

export interface CommittedOffset {
  offset: number;
  metadata: string | null;
}

export interface Member {
  memberId: string;
  clientId: string;
  clientHost: string;
  sessionTimeout: number;
  rebalanceTimeout: number;
  protocols: { name: string; metadata: Buffer }[];
  assignment: Buffer;
}

export type GroupPhase = 'Empty' | 'PreparingRebalance' | 'CompletingRebalance' | 'Stable';

export interface Group {
  groupId: string;
  phase: GroupPhase;
  generation: number;
  protocolType: string;
  protocol: string;
  leaderId: string;
  members: Map<string, Member>;
  /** Committed offsets keyed by `offsetKey(topic, partition)`. */
  offsets: Map<string, CommittedOffset>;
}

export interface Transaction {
  transactionalId: string;
  producerId: number;
  producerEpoch: number;
  /** The transaction in progress, if any partition or offset was added since the last EndTxn. */
  outcome: TransactionOutcome | null;
  partitions: Map<string, { topic: string; partition: number }>;
  /** TxnOffsetCommit offsets, applied to their groups at commit. */
  offsets: Map<string, Map<string, CommittedOffset>>;
}

export function offsetKey(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}

/**
 * Everything a broker keeps in memory: topics and their logs, groups and committed offsets,
 * producer ids and transactions. Pass the same state to `startTestBroker` to restart a broker
 * without losing it, as a real broker keeps its log on disk.
 */
export class TestBrokerState {
  readonly clusterId = `tributary-test-${randomUUID()}`;
  readonly topics = new Map<string, Topic>();
  readonly groups = new Map<string, Group>();
  readonly transactions = new Map<string, Transaction>();
  readonly transactionsByProducerId = new Map<number, Transaction>();
  private nextProducerIdValue = 1000;

  allocateProducerId(): number {
    return this.nextProducerIdValue++;
  }

  createTopic(name: string, partitions: number): Topic {
    const topic: Topic = {
      name,
      partitions: Array.from({ length: partitions }, () => new PartitionLog()),
    };
    this.topics.set(name, topic);
    return topic;
  }

  partition(topic: string, partition: number): PartitionLog | undefined {
    return this.topics.get(topic)?.partitions[partition];
  }

  group(groupId: string): Group {
    let group = this.groups.get(groupId);
    if (!group) {
      group = {
        groupId,
        phase: 'Empty',
        generation: 0,
        protocolType: '',
        protocol: '',
        leaderId: '',
        members: new Map(),
        offsets: new Map(),
      };
      this.groups.set(groupId, group);
    }
    return group;
  }
}
