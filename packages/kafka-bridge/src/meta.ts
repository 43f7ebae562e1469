import type { Batch, BatchMeta, Row } from '@tributary/core';

/**
 * What the Kafka subscriber keeps in `meta.own` of its batches: the range of one partition they
 * carry. Its own `committed()` and the archive sink (which writes one file per range) read it.
 */
export interface KafkaRange {
  topic: string;
  partition: number;
  /** First and last offset of the range (strings: offsets are 64-bit). */
  firstOffset?: string;
  lastOffset?: string;
  /** The offset of each row, parallel to `rows` (dead letters removed). */
  offsets?: string[];
}

export type KafkaBatchMeta = BatchMeta<KafkaRange>;

/** The Kafka range of a subscriber's batch (its `own`, else its position). */
export function kafkaRange(batch: Batch<Row>): KafkaRange {
  const own = batch.meta.own as Partial<KafkaRange> | undefined;
  return {
    topic: String(own?.topic ?? batch.position['topic']),
    partition: Number(own?.partition ?? batch.position['partition']),
    ...(own?.firstOffset === undefined ? {} : { firstOffset: own.firstOffset }),
    ...(own?.lastOffset === undefined ? {} : { lastOffset: own.lastOffset }),
    ...(own?.offsets === undefined ? {} : { offsets: own.offsets }),
  };
}
