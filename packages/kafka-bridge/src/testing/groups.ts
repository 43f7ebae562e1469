import { randomUUID } from 'node:crypto';
import { ErrorCode } from './errors.js';
import { type Group, type Member, offsetKey, type TestBrokerState } from './state.js';

export interface JoinRequest {
  groupId: string;
  sessionTimeout: number;
  rebalanceTimeout: number;
  memberId: string;
  protocolType: string;
  protocols: { name: string; metadata: Buffer }[];
  /** JoinGroup v4+: a first join without a member id gets one back with MEMBER_ID_REQUIRED. */
  requireKnownMemberId: boolean;
}

export interface JoinResult {
  errorCode: number;
  generation: number;
  protocol: string;
  leaderId: string;
  memberId: string;
  /** Filled for the leader only. */
  members: { memberId: string; metadata: Buffer }[];
}

export interface SyncRequest {
  groupId: string;
  generation: number;
  memberId: string;
  assignments: { memberId: string; assignment: Buffer }[];
}

export interface SyncResult {
  errorCode: number;
  assignment: Buffer;
}

type Reply<T> = (result: T) => void;

interface GroupRuntime {
  heldJoins: Map<string, Reply<JoinResult>>;
  heldSyncs: Map<string, Reply<SyncResult>>;
  rebalanceTimer: NodeJS.Timeout | null;
  sessionTimers: Map<string, NodeJS.Timeout>;
  /** Member ids handed out with MEMBER_ID_REQUIRED, valid for one session timeout. */
  pendingMembers: Map<string, NodeJS.Timeout>;
}

const EMPTY = Buffer.alloc(0);

/**
 * The group coordinator: Empty → PreparingRebalance → CompletingRebalance → Stable, with the
 * durable part (members, generation, offsets) in `TestBrokerState` and the live part (held
 * JoinGroup/SyncGroup replies, timers) here, so a restarted broker picks the groups up again.
 */
export class GroupCoordinator {
  private readonly runtimes = new Map<string, GroupRuntime>();

  constructor(
    private readonly state: TestBrokerState,
    private readonly log: (line: string) => void,
  ) {
    // After a restart the held requests are gone with their sockets: members still in the
    // group get a fresh session, and an unfinished rebalance starts over.
    for (const group of state.groups.values()) {
      for (const memberId of group.members.keys()) this.touch(group, memberId);
      if (group.phase === 'PreparingRebalance' || group.phase === 'CompletingRebalance') {
        group.phase = 'Stable';
        this.prepareRebalance(group, 'broker restarted');
      }
    }
  }

  private runtime(group: Group): GroupRuntime {
    let runtime = this.runtimes.get(group.groupId);
    if (!runtime) {
      runtime = {
        heldJoins: new Map(),
        heldSyncs: new Map(),
        rebalanceTimer: null,
        sessionTimers: new Map(),
        pendingMembers: new Map(),
      };
      this.runtimes.set(group.groupId, runtime);
    }
    return runtime;
  }

  join(request: JoinRequest, clientId: string, clientHost: string, reply: Reply<JoinResult>): void {
    const failure = (errorCode: number): JoinResult => ({
      errorCode,
      generation: -1,
      protocol: '',
      leaderId: '',
      memberId: request.memberId,
      members: [],
    });
    const fail = (errorCode: number) => reply(failure(errorCode));
    if (request.groupId === '') {
      fail(ErrorCode.INVALID_GROUP_ID);
      return;
    }
    const group = this.state.group(request.groupId);
    const runtime = this.runtime(group);
    if (request.memberId === '' && request.requireKnownMemberId) {
      // KIP-394: the member id comes back first, so a client that retries its first join
      // cannot leave orphan members behind; the join with that id is the real one.
      const memberId = `${clientId}-${randomUUID()}`;
      const timer = setTimeout(() => runtime.pendingMembers.delete(memberId), request.sessionTimeout);
      timer.unref();
      runtime.pendingMembers.set(memberId, timer);
      reply({ ...failure(ErrorCode.MEMBER_ID_REQUIRED), memberId });
      return;
    }
    const pending = runtime.pendingMembers.get(request.memberId);
    if (request.memberId !== '' && !group.members.has(request.memberId) && !pending) {
      fail(ErrorCode.UNKNOWN_MEMBER_ID);
      return;
    }
    if (group.members.size > 0 && group.protocolType !== request.protocolType) {
      fail(ErrorCode.INCONSISTENT_GROUP_PROTOCOL);
      return;
    }
    const others = [...group.members.values()].filter((member) => member.memberId !== request.memberId);
    const shared = request.protocols.some((protocol) =>
      others.every((member) => member.protocols.some((theirs) => theirs.name === protocol.name)),
    );
    if (!shared) {
      fail(ErrorCode.INCONSISTENT_GROUP_PROTOCOL);
      return;
    }

    const memberId = request.memberId === '' ? `${clientId}-${randomUUID()}` : request.memberId;
    if (pending) clearTimeout(pending);
    runtime.pendingMembers.delete(memberId);
    const existing = group.members.get(memberId);
    const member: Member = {
      memberId,
      clientId,
      clientHost,
      sessionTimeout: request.sessionTimeout,
      rebalanceTimeout: request.rebalanceTimeout,
      protocols: request.protocols,
      assignment: existing?.assignment ?? EMPTY,
    };
    group.members.set(memberId, member);
    group.protocolType = request.protocolType;
    runtime.heldJoins.set(memberId, reply);
    this.touch(group, memberId);
    if (group.phase !== 'PreparingRebalance') {
      this.prepareRebalance(group, existing ? `${memberId} rejoined` : `${memberId} joined`);
    }
    this.completeJoinIfReady(group);
  }

  sync(request: SyncRequest, reply: Reply<SyncResult>): void {
    const group = this.state.groups.get(request.groupId);
    const member = group?.members.get(request.memberId);
    if (!group || !member) {
      reply({ errorCode: ErrorCode.UNKNOWN_MEMBER_ID, assignment: EMPTY });
      return;
    }
    this.touch(group, member.memberId);
    if (request.generation !== group.generation) {
      reply({ errorCode: ErrorCode.ILLEGAL_GENERATION, assignment: EMPTY });
      return;
    }
    if (group.phase === 'PreparingRebalance') {
      reply({ errorCode: ErrorCode.REBALANCE_IN_PROGRESS, assignment: EMPTY });
      return;
    }
    if (group.phase === 'Stable') {
      reply({ errorCode: ErrorCode.NONE, assignment: member.assignment });
      return;
    }

    const runtime = this.runtime(group);
    runtime.heldSyncs.set(member.memberId, reply);
    if (member.memberId !== group.leaderId) return;
    for (const target of group.members.values()) target.assignment = EMPTY;
    for (const { memberId, assignment } of request.assignments) {
      const target = group.members.get(memberId);
      if (target) target.assignment = assignment;
    }
    group.phase = 'Stable';
    this.log(
      `group ${group.groupId} stable at generation ${group.generation} (${group.members.size} members)`,
    );
    for (const [memberId, held] of runtime.heldSyncs) {
      held({ errorCode: ErrorCode.NONE, assignment: group.members.get(memberId)?.assignment ?? EMPTY });
    }
    runtime.heldSyncs.clear();
  }

  heartbeat(groupId: string, generation: number, memberId: string): number {
    const group = this.state.groups.get(groupId);
    if (!group?.members.has(memberId)) return ErrorCode.UNKNOWN_MEMBER_ID;
    this.touch(group, memberId);
    if (group.phase === 'PreparingRebalance') return ErrorCode.REBALANCE_IN_PROGRESS;
    if (generation !== group.generation) return ErrorCode.ILLEGAL_GENERATION;
    return ErrorCode.NONE;
  }

  leave(groupId: string, memberId: string): number {
    const group = this.state.groups.get(groupId);
    if (!group?.members.has(memberId)) return ErrorCode.UNKNOWN_MEMBER_ID;
    this.removeMember(group, memberId, `${memberId} left`);
    return ErrorCode.NONE;
  }

  /**
   * The error for an OffsetCommit. Commits are accepted during PreparingRebalance: kafkajs
   * commits what it processed when a heartbeat says REBALANCE_IN_PROGRESS, before rejoining.
   */
  commitError(groupId: string, generation: number, memberId: string): number {
    const group = this.state.groups.get(groupId);
    // A commit outside the group protocol (admin setOffsets, generation -1) needs an idle group.
    if (generation < 0 && memberId === '') {
      return !group || group.phase === 'Empty' ? ErrorCode.NONE : ErrorCode.UNKNOWN_MEMBER_ID;
    }
    if (!group?.members.has(memberId)) return ErrorCode.UNKNOWN_MEMBER_ID;
    this.touch(group, memberId);
    if (generation !== group.generation) return ErrorCode.ILLEGAL_GENERATION;
    if (group.phase === 'CompletingRebalance') return ErrorCode.REBALANCE_IN_PROGRESS;
    return ErrorCode.NONE;
  }

  commit(groupId: string, topic: string, partition: number, offset: number, metadata: string | null): void {
    this.state.group(groupId).offsets.set(offsetKey(topic, partition), { offset, metadata });
  }

  /** Drops held replies and timers; the group data stays in the state for a restart. */
  close(): void {
    for (const runtime of this.runtimes.values()) {
      if (runtime.rebalanceTimer) clearTimeout(runtime.rebalanceTimer);
      for (const timer of runtime.sessionTimers.values()) clearTimeout(timer);
      for (const timer of runtime.pendingMembers.values()) clearTimeout(timer);
    }
    this.runtimes.clear();
  }

  private touch(group: Group, memberId: string): void {
    const runtime = this.runtime(group);
    const member = group.members.get(memberId);
    if (!member) return;
    const existing = runtime.sessionTimers.get(memberId);
    if (existing) clearTimeout(existing);
    const timer = setTimeout(() => this.expire(group, memberId), member.sessionTimeout);
    timer.unref();
    runtime.sessionTimers.set(memberId, timer);
  }

  private expire(group: Group, memberId: string): void {
    const runtime = this.runtime(group);
    runtime.sessionTimers.delete(memberId);
    // A member waiting in JoinGroup is alive; the rebalance timeout decides about it.
    if (runtime.heldJoins.has(memberId)) return;
    if (group.members.has(memberId)) this.removeMember(group, memberId, `${memberId} session expired`);
  }

  private removeMember(group: Group, memberId: string, reason: string): void {
    const runtime = this.runtime(group);
    group.members.delete(memberId);
    const timer = runtime.sessionTimers.get(memberId);
    if (timer) clearTimeout(timer);
    runtime.sessionTimers.delete(memberId);
    const join = runtime.heldJoins.get(memberId);
    runtime.heldJoins.delete(memberId);
    join?.({
      errorCode: ErrorCode.UNKNOWN_MEMBER_ID,
      generation: -1,
      protocol: '',
      leaderId: '',
      memberId,
      members: [],
    });
    const sync = runtime.heldSyncs.get(memberId);
    runtime.heldSyncs.delete(memberId);
    sync?.({ errorCode: ErrorCode.UNKNOWN_MEMBER_ID, assignment: EMPTY });
    if (group.members.size === 0) {
      this.becomeEmpty(group, reason);
      return;
    }
    if (group.phase !== 'PreparingRebalance') this.prepareRebalance(group, reason);
    this.completeJoinIfReady(group);
  }

  private becomeEmpty(group: Group, reason: string): void {
    const runtime = this.runtime(group);
    if (runtime.rebalanceTimer) clearTimeout(runtime.rebalanceTimer);
    runtime.rebalanceTimer = null;
    for (const held of runtime.heldSyncs.values()) {
      held({ errorCode: ErrorCode.REBALANCE_IN_PROGRESS, assignment: EMPTY });
    }
    runtime.heldSyncs.clear();
    group.phase = 'Empty';
    group.leaderId = '';
    group.protocol = '';
    this.log(`group ${group.groupId} empty: ${reason}`);
  }

  private prepareRebalance(group: Group, reason: string): void {
    const runtime = this.runtime(group);
    group.phase = 'PreparingRebalance';
    this.log(`group ${group.groupId} rebalancing: ${reason}`);
    for (const held of runtime.heldSyncs.values()) {
      held({ errorCode: ErrorCode.REBALANCE_IN_PROGRESS, assignment: EMPTY });
    }
    runtime.heldSyncs.clear();
    if (runtime.rebalanceTimer) clearTimeout(runtime.rebalanceTimer);
    const timeout = Math.max(0, ...[...group.members.values()].map((member) => member.rebalanceTimeout));
    runtime.rebalanceTimer = setTimeout(() => this.rebalanceTimedOut(group), timeout);
    runtime.rebalanceTimer.unref();
  }

  private rebalanceTimedOut(group: Group): void {
    const runtime = this.runtime(group);
    runtime.rebalanceTimer = null;
    for (const memberId of [...group.members.keys()]) {
      if (runtime.heldJoins.has(memberId)) continue;
      group.members.delete(memberId);
      const timer = runtime.sessionTimers.get(memberId);
      if (timer) clearTimeout(timer);
      runtime.sessionTimers.delete(memberId);
      this.log(`group ${group.groupId}: ${memberId} did not rejoin in time`);
    }
    if (group.members.size === 0) this.becomeEmpty(group, 'no member rejoined');
    else this.completeJoinIfReady(group);
  }

  private completeJoinIfReady(group: Group): void {
    const runtime = this.runtime(group);
    if (group.phase !== 'PreparingRebalance' || group.members.size === 0) return;
    for (const memberId of group.members.keys()) if (!runtime.heldJoins.has(memberId)) return;

    if (runtime.rebalanceTimer) clearTimeout(runtime.rebalanceTimer);
    runtime.rebalanceTimer = null;
    const members = [...group.members.values()];
    if (!group.members.has(group.leaderId)) group.leaderId = members[0]!.memberId;
    const leader = group.members.get(group.leaderId)!;
    const protocol = leader.protocols.find((candidate) =>
      members.every((member) => member.protocols.some((theirs) => theirs.name === candidate.name)),
    );
    group.protocol = protocol?.name ?? leader.protocols[0]?.name ?? '';
    group.generation += 1;
    group.phase = 'CompletingRebalance';
    const metadataOf = (member: Member) =>
      member.protocols.find((candidate) => candidate.name === group.protocol)?.metadata ?? EMPTY;
    const memberList = members.map((member) => ({ memberId: member.memberId, metadata: metadataOf(member) }));
    const replies = [...runtime.heldJoins];
    runtime.heldJoins.clear();
    for (const [memberId, reply] of replies) {
      // The session clock restarts once a member stops waiting in JoinGroup.
      this.touch(group, memberId);
      reply({
        errorCode: ErrorCode.NONE,
        generation: group.generation,
        protocol: group.protocol,
        leaderId: group.leaderId,
        memberId,
        members: memberId === group.leaderId ? memberList : [],
      });
    }
  }
}
