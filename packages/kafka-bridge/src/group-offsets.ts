import { type ReadContext, TributaryError } from '@tributary/core';
import type { KafkaClient } from './client/index.js';

export interface GroupOffsetsInput {
  client: KafkaClient;
  groupId: string;
  topic: string;
  streamFor: (topic: string, partition: number) => string;
}

/**
 * The topic's end offsets per partition at start (the idle check's goal), after moving the group
 * back where Kafka's committed offsets are ahead of the stored ones.
 *
 * The sink's stored offsets are the truth; Kafka's committed ones only follow them for lag
 * tooling. Where Kafka's is ahead (the database was restored from a backup, or a new sink took
 * over an old group), the group would start after rows never applied: move it back to the stored
 * offset before joining, so nothing is skipped.
 */
export async function prepareGroup(
  input: GroupOffsetsInput,
  context: ReadContext,
): Promise<Map<number, bigint>> {
  const { client, groupId, topic, streamFor } = input;
  const admin = await client.admin();
  try {
    const offsets = await admin.topicOffsets(topic);
    const start = new Map(offsets.map((o) => [o.partition, o.low]));
    const committed = await admin.committedOffsets(groupId, topic);
    const rewind: { partition: number; offset: bigint }[] = [];
    for (const { partition, offset } of committed) {
      const stored = await context.checkpoint(streamFor(topic, partition));
      const next = stored ? BigInt(String(stored['offset'])) + 1n : (start.get(partition) ?? 0n);
      if (offset <= next) continue;
      rewind.push({ partition, offset: next });
      context.emit({
        type: 'warning',
        stream: streamFor(topic, partition),
        message: `group ${groupId} had committed ${topic}/${partition}@${offset}, past the stored position; rewinding to ${next} so no message is skipped`,
      });
    }
    if (rewind.length) {
      try {
        await admin.setCommittedOffsets(groupId, topic, rewind);
      } catch (error) {
        throw new TributaryError(
          'SOURCE_FAILED',
          `group ${groupId}: Kafka's committed offsets are past the stored positions and could not be moved back (${(error as Error).message}); stop the group's other members and start again`,
          { cause: error, retriable: true },
        );
      }
    }
    return new Map(offsets.map((o) => [o.partition, o.high]));
  } finally {
    await admin.close().catch(() => undefined);
  }
}
