/**
 * Which versions of which Kafka APIs the test broker speaks, and which of them are flexible.
 * broker.ts checks every request against these tables and answers ApiVersions from them;
 * README.md lists the same versions for readers.
 */
import { ApiKey } from './errors.js';

/**
 * The versions advertised per API key, `[min, max]`, every one of them handled. kafkajs and
 * @platformatic/kafka use the highest version they know up to `max`; librdkafka does too, but
 * first enables its features only when the ranges overlap fixed old versions (e.g. its
 * balanced consumer needs FindCoordinator 0 and JoinGroup 0, `ApiVersion` needs ApiVersions 0,
 * `OffsetTime` needs ListOffsets 1), so the minimums reach down to those.
 */
export const ADVERTISED: ReadonlyMap<number, readonly [number, number]> = new Map([
  [ApiKey.Produce, [3, 3]],
  [ApiKey.Fetch, [4, 4]],
  [ApiKey.ListOffsets, [1, 2]],
  [ApiKey.Metadata, [4, 4]],
  [ApiKey.OffsetCommit, [2, 2]],
  // OffsetFetch v0 would crash kafkajs (TypeError), v1 is the first that works.
  [ApiKey.OffsetFetch, [1, 1]],
  [ApiKey.FindCoordinator, [0, 1]],
  // v4+ first answers an unknown member MEMBER_ID_REQUIRED (KIP-394), as Kafka 2.2+ does;
  // v5 and SyncGroup/Heartbeat v3 carry a group instance id, read and ignored (no KIP-345).
  [ApiKey.JoinGroup, [0, 5]],
  [ApiKey.Heartbeat, [0, 3]],
  // v3 batches members (KIP-345): not implemented.
  [ApiKey.LeaveGroup, [0, 2]],
  [ApiKey.SyncGroup, [0, 3]],
  [ApiKey.DescribeGroups, [0, 0]],
  [ApiKey.ListGroups, [1, 1]],
  [ApiKey.ApiVersions, [0, 3]],
  [ApiKey.CreateTopics, [1, 1]],
  [ApiKey.DeleteTopics, [0, 0]],
  [ApiKey.InitProducerId, [0, 0]],
  [ApiKey.AddPartitionsToTxn, [0, 0]],
  [ApiKey.AddOffsetsToTxn, [0, 0]],
  [ApiKey.EndTxn, [0, 0]],
  [ApiKey.TxnOffsetCommit, [0, 0]],
  [ApiKey.CreatePartitions, [0, 0]],
  [ApiKey.DeleteGroups, [0, 0]],
]);

/**
 * The first flexible version (request header v2, response header v1, compact types, tagged
 * fields) of each API, from Kafka's message definitions (`flexibleVersions`). ApiVersions is
 * the exception on the way back: its response header stays v0 so any client can read it.
 */
const FIRST_FLEXIBLE: ReadonlyMap<number, number> = new Map([
  [ApiKey.Produce, 9],
  [ApiKey.Fetch, 12],
  [ApiKey.ListOffsets, 6],
  [ApiKey.Metadata, 9],
  [ApiKey.OffsetCommit, 8],
  [ApiKey.OffsetFetch, 6],
  [ApiKey.FindCoordinator, 3],
  [ApiKey.JoinGroup, 6],
  [ApiKey.Heartbeat, 4],
  [ApiKey.LeaveGroup, 4],
  [ApiKey.SyncGroup, 4],
  [ApiKey.DescribeGroups, 5],
  [ApiKey.ListGroups, 3],
  [ApiKey.ApiVersions, 3],
  [ApiKey.CreateTopics, 5],
  [ApiKey.DeleteTopics, 4],
  [ApiKey.InitProducerId, 2],
  [ApiKey.AddPartitionsToTxn, 3],
  [ApiKey.AddOffsetsToTxn, 3],
  [ApiKey.EndTxn, 3],
  [ApiKey.TxnOffsetCommit, 3],
  [ApiKey.CreatePartitions, 2],
  [ApiKey.DeleteGroups, 2],
]);

export function isFlexible(apiKey: number, apiVersion: number): boolean {
  const first = FIRST_FLEXIBLE.get(apiKey);
  return first !== undefined && apiVersion >= first;
}
