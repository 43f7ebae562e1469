/**
 * The test broker's server: connections, framing and one handler per Kafka API it implements
 * (the table built in the constructor). It is one file on purpose (issue 16 allows it): each
 * handler is a short decode → state call → encode over the same `Broker`, the state lives in
 * state.ts and groups.ts, the wire codec in codec.ts, so splitting the handlers would only
 * scatter the API table; the versions it speaks are in versions.ts. What it implements and
 * leaves out: ./README.md (its spec is `shared/KAFKA_TEST_BROKER.md` beside the repository).
 */
import { createServer, type Server, type Socket } from 'node:net';
import { MalformedRequestError, Reader, Writer } from './codec.js';
import { ApiKey, ErrorCode } from './errors.js';
import { GroupCoordinator } from './groups.js';
import { parseRecordSet } from './records.js';
import {
  offsetKey,
  PartitionLog,
  TestBrokerState,
  type Transaction,
  type TransactionOutcome,
} from './state.js';
import { ADVERTISED, isFlexible } from './versions.js';

export interface TestBrokerOptions {
  /** Port to listen on; 0 (the default) picks a free one. */
  port?: number;
  /** Interface to listen on and to advertise in Metadata. Default `127.0.0.1`. */
  host?: string;
  /** Receives one line per notable event (topics created, rebalances, dropped connections). */
  log?: (line: string) => void;
  /** State of a previous broker to carry over a restart. Default: a fresh, empty state. */
  state?: TestBrokerState;
  /** Partitions of auto-created topics and of CreateTopics with num_partitions -1. Default 1. */
  defaultPartitions?: number;
  /** Create unknown topics when Metadata allows it, as Kafka's auto.create.topics.enable. Default true. */
  autoCreateTopics?: boolean;
}

export interface TopicPartitionOffset {
  topic: string;
  partition: number;
  offset: number;
}

export interface TestBroker {
  /** `['<host>:<port>']`, ready for `new Kafka({ brokers })`. */
  readonly brokers: string[];
  readonly host: string;
  readonly port: number;
  /** The in-memory log, groups and transactions; hand it to `startTestBroker` to restart. */
  readonly state: TestBrokerState;
  /** Creates a topic; false if it already exists. */
  createTopic(name: string, partitions?: number): boolean;
  /** The next offset to be written, per partition (the high watermark). */
  endOffsets(topic: string): TopicPartitionOffset[];
  /** Offsets a group committed (kafkajs commits the next offset to read). */
  committedOffsets(groupId: string): TopicPartitionOffset[];
  /** Destroys every client connection while staying up, as a network blip would. */
  dropConnections(): void;
  /** Stops and listens again on the same port with the same state. */
  restart(): Promise<void>;
  /** Destroys connections, drops held requests, clears timers and closes the listener. */
  stop(): Promise<void>;
}

const NODE_ID = 1;
/** Kafka's default socket.request.max.bytes. */
const MAX_REQUEST_BYTES = 100 * 1024 * 1024;
const TOPIC_NAME = /^[a-zA-Z0-9._-]{1,249}$/;
const READ_COMMITTED = 1;
const LATEST_TIMESTAMP = -1;
const EARLIEST_TIMESTAMP = -2;

interface RequestHeader {
  apiKey: number;
  apiVersion: number;
  correlationId: number;
  clientId: string;
  /** Request header v2 (and, but for ApiVersions, response header v1). */
  flexible: boolean;
}

/** Reads one request body and replies through `reply`, at once or later (held requests). */
type Handler = (request: {
  reader: Reader;
  connection: Connection;
  header: RequestHeader;
  reply: (body: Writer) => void;
}) => void;

interface HeldFetch {
  connection: Connection;
  request: FetchRequest;
  reply: (body: Writer) => void;
  timer: NodeJS.Timeout;
}

interface FetchRequest {
  maxBytes: number;
  readCommitted: boolean;
  topics: { topic: string; partitions: { partition: number; offset: number; maxBytes: number }[] }[];
}

class Connection {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  readonly clientHost: string;

  constructor(
    readonly socket: Socket,
    private readonly onFrame: (connection: Connection, frame: Buffer) => void,
  ) {
    this.clientHost = socket.remoteAddress ?? '';
    socket.on('data', (chunk) => this.receive(chunk));
  }

  private receive(chunk: Buffer): void {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    while (this.pendingBytes >= 4 && !this.socket.destroyed) {
      let buffered = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
      this.pending = [buffered];
      const size = buffered.readInt32BE(0);
      if (size < 0 || size > MAX_REQUEST_BYTES) {
        // Not a Kafka client (or a corrupt stream): nothing after this can be framed.
        this.socket.destroy();
        return;
      }
      if (this.pendingBytes < 4 + size) return;
      const frame = buffered.subarray(4, 4 + size);
      buffered = buffered.subarray(4 + size);
      this.pending = buffered.length > 0 ? [buffered] : [];
      this.pendingBytes = buffered.length;
      this.onFrame(this, frame);
    }
  }

  /** Response header v0 (correlation id), or v1 (plus an empty tagged-field section). */
  send(correlationId: number, body: Writer, headerTaggedFields: boolean): void {
    if (this.socket.destroyed || !this.socket.writable) return;
    const payload = body.toBuffer();
    const headSize = headerTaggedFields ? 9 : 8;
    const head = Buffer.allocUnsafe(headSize);
    head.writeInt32BE(payload.length + headSize - 4, 0);
    head.writeInt32BE(correlationId, 4);
    if (headerTaggedFields) head.writeUInt8(0, 8);
    this.socket.write(Buffer.concat([head, payload]));
  }
}

/**
 * A single-node, in-memory Kafka broker speaking the protocol versions kafkajs 2.2.4,
 * @platformatic/kafka and librdkafka negotiate with it (see README.md). For tests only:
 * nothing in a product code path imports it.
 */
export async function startTestBroker(options: TestBrokerOptions = {}): Promise<TestBroker> {
  const broker = new Broker(options);
  await broker.listen(options.port ?? 0);
  return broker;
}

class Broker implements TestBroker {
  readonly host: string;
  readonly state: TestBrokerState;
  private currentPort = 0;
  private server: Server | null = null;
  private readonly connections = new Set<Connection>();
  private readonly heldFetches = new Set<HeldFetch>();
  private groups: GroupCoordinator;
  private readonly log: (line: string) => void;
  private readonly defaultPartitions: number;
  private readonly autoCreateTopics: boolean;
  private readonly handlers: ReadonlyMap<number, Handler>;

  constructor(options: TestBrokerOptions) {
    this.host = options.host ?? '127.0.0.1';
    this.state = options.state ?? new TestBrokerState();
    this.log = options.log ?? (() => {});
    this.defaultPartitions = options.defaultPartitions ?? 1;
    this.autoCreateTopics = options.autoCreateTopics ?? true;
    this.groups = new GroupCoordinator(this.state, this.log);
    this.handlers = new Map<number, Handler>([
      [ApiKey.ApiVersions, ({ header, reply }) => this.apiVersions(header, reply)],
      [ApiKey.Metadata, ({ reader, connection, reply }) => reply(this.metadata(reader, connection))],
      [ApiKey.Produce, ({ reader, reply }) => this.produce(reader, reply)],
      [ApiKey.Fetch, ({ reader, connection, reply }) => this.fetch(reader, connection, reply)],
      [ApiKey.ListOffsets, ({ reader, header, reply }) => reply(this.listOffsets(reader, header.apiVersion))],
      [ApiKey.CreateTopics, ({ reader, reply }) => reply(this.createTopics(reader))],
      [ApiKey.DeleteTopics, ({ reader, reply }) => reply(this.deleteTopics(reader))],
      [ApiKey.CreatePartitions, ({ reader, reply }) => reply(this.createPartitions(reader))],
      [
        ApiKey.FindCoordinator,
        ({ reader, connection, header, reply }) =>
          reply(this.findCoordinator(reader, connection, header.apiVersion)),
      ],
      [
        ApiKey.JoinGroup,
        ({ reader, connection, header, reply }) => this.joinGroup(reader, connection, header, reply),
      ],
      [ApiKey.SyncGroup, ({ reader, header, reply }) => this.syncGroup(reader, header.apiVersion, reply)],
      [ApiKey.Heartbeat, ({ reader, header, reply }) => reply(this.heartbeat(reader, header.apiVersion))],
      [ApiKey.LeaveGroup, ({ reader, header, reply }) => reply(this.leaveGroup(reader, header.apiVersion))],
      [ApiKey.DescribeGroups, ({ reader, reply }) => reply(this.describeGroups(reader))],
      [ApiKey.ListGroups, ({ reply }) => reply(this.listGroups())],
      [ApiKey.DeleteGroups, ({ reader, reply }) => reply(this.deleteGroups(reader))],
      [ApiKey.OffsetCommit, ({ reader, reply }) => reply(this.offsetCommit(reader))],
      [ApiKey.OffsetFetch, ({ reader, reply }) => reply(this.offsetFetch(reader))],
      [ApiKey.InitProducerId, ({ reader, reply }) => reply(this.initProducerId(reader))],
      [ApiKey.AddPartitionsToTxn, ({ reader, reply }) => reply(this.addPartitionsToTxn(reader))],
      [ApiKey.AddOffsetsToTxn, ({ reader, reply }) => reply(this.addOffsetsToTxn(reader))],
      [ApiKey.EndTxn, ({ reader, reply }) => reply(this.endTxn(reader))],
      [ApiKey.TxnOffsetCommit, ({ reader, reply }) => reply(this.txnOffsetCommit(reader))],
    ]);
  }

  get port(): number {
    return this.currentPort;
  }

  get brokers(): string[] {
    const host = this.host === '0.0.0.0' ? '127.0.0.1' : this.host === '::' ? '::1' : this.host;
    return [`${host}:${this.currentPort}`];
  }

  async listen(port: number): Promise<void> {
    const server = createServer((socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port, host: this.host }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    // A listener error after startup must not become an unhandled 'error' event.
    server.on('error', (error) => this.log(`listener error: ${error.message}`));
    const address = server.address();
    this.currentPort = typeof address === 'object' && address ? address.port : port;
    this.server = server;
    this.log(`listening on ${this.host}:${this.currentPort}`);
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const held of this.heldFetches) clearTimeout(held.timer);
    this.heldFetches.clear();
    this.groups.close();
    for (const connection of this.connections) connection.socket.destroy();
    this.connections.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  async restart(): Promise<void> {
    const port = this.currentPort;
    await this.stop();
    this.groups = new GroupCoordinator(this.state, this.log);
    await this.listen(port);
  }

  dropConnections(): void {
    for (const connection of [...this.connections]) connection.socket.destroy();
  }

  createTopic(name: string, partitions = this.defaultPartitions): boolean {
    if (this.state.topics.has(name)) return false;
    this.state.createTopic(name, partitions);
    this.log(`created topic ${name} with ${partitions} partition(s)`);
    return true;
  }

  endOffsets(topic: string): TopicPartitionOffset[] {
    return (this.state.topics.get(topic)?.partitions ?? []).map((log, partition) => ({
      topic,
      partition,
      offset: log.highWatermark,
    }));
  }

  committedOffsets(groupId: string): TopicPartitionOffset[] {
    const group = this.state.groups.get(groupId);
    if (!group) return [];
    return [...group.offsets].map(([key, committed]) => {
      const [topic = '', partition = '0'] = key.split('\u0000');
      return { topic, partition: Number(partition), offset: committed.offset };
    });
  }

  // --- connections -------------------------------------------------------------------------

  private accept(socket: Socket): void {
    if (!this.server) {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    const connection = new Connection(socket, (conn, frame) => this.receive(conn, frame));
    this.connections.add(connection);
    socket.on('error', () => {}); // ECONNRESET from clients that go away is normal.
    socket.on('close', () => {
      this.connections.delete(connection);
      for (const held of this.heldFetches) {
        if (held.connection !== connection) continue;
        clearTimeout(held.timer);
        this.heldFetches.delete(held);
      }
    });
  }

  private receive(connection: Connection, frame: Buffer): void {
    const reader = new Reader(frame);
    let header: RequestHeader | null = null;
    try {
      const apiKey = reader.int16();
      const apiVersion = reader.int16();
      header = {
        apiKey,
        apiVersion,
        correlationId: reader.int32(),
        clientId: reader.string(), // a classic nullable string in header v2 too
        flexible: isFlexible(apiKey, apiVersion),
      };
      const handler = this.handlers.get(header.apiKey);
      const [min, max] = ADVERTISED.get(header.apiKey) ?? [0, -1];
      // Any ApiVersions version is answered: a newer one gets UNSUPPORTED_VERSION and retries.
      const versionOk =
        header.apiKey === ApiKey.ApiVersions
          ? header.apiVersion >= 0
          : header.apiVersion >= min && header.apiVersion <= max;
      if (!handler || !versionOk) {
        this.log(`unsupported request: api ${header.apiKey} v${header.apiVersion}; closing connection`);
        connection.socket.destroy();
        return;
      }
      // An ApiVersions request newer than ours may have a header we cannot know: not read.
      if (header.flexible && header.apiVersion <= max) reader.taggedFields();
      const { correlationId } = header;
      const headerTaggedFields = header.flexible && header.apiKey !== ApiKey.ApiVersions;
      handler({
        reader,
        connection,
        header,
        reply: (body) => connection.send(correlationId, body, headerTaggedFields),
      });
    } catch (error) {
      // A request we cannot parse leaves the stream in an unknown state: drop the connection,
      // as Kafka does, rather than answer garbage.
      const api = header ? `api ${header.apiKey} v${header.apiVersion}` : 'request header';
      const reason = error instanceof MalformedRequestError ? error.message : String(error);
      this.log(`cannot handle ${api}: ${reason}; closing connection`);
      connection.socket.destroy();
    }
  }

  private advertisedHost(connection: Connection): string {
    // Advertise what the client dialled, or kafkajs opens a second connection to a "new" broker.
    if (this.host !== '0.0.0.0' && this.host !== '::') return this.host;
    return (connection.socket.localAddress ?? '127.0.0.1').replace(/^::ffff:/, '');
  }

  // --- ApiVersions, Metadata, topics ---------------------------------------------------------

  private apiVersions(header: RequestHeader, reply: (body: Writer) => void): void {
    const body = new Writer();
    const [, max] = ADVERTISED.get(ApiKey.ApiVersions)!;
    if (header.apiVersion > max) {
      // kafkajs, librdkafka and @platformatic/kafka fall back to a lower version on this error.
      reply(body.int16(ErrorCode.UNSUPPORTED_VERSION).int32(0));
      return;
    }
    body.int16(ErrorCode.NONE);
    if (header.flexible) {
      // The body's client_software_name/version are only informative; not read.
      body.compactArray([...ADVERTISED], (w, [key, [min, max]]) => {
        w.int16(key).int16(min).int16(max).taggedFields();
      });
      reply(body.int32(0).taggedFields());
      return;
    }
    body.array([...ADVERTISED], (w, [key, [min, max]]) => w.int16(key).int16(min).int16(max));
    if (header.apiVersion >= 1) body.int32(0);
    reply(body);
  }

  private metadata(reader: Reader, connection: Connection): Writer {
    const requested = reader.nullableArray((r) => r.string());
    const allowAutoCreation = reader.boolean();
    // kafkajs encodes "all topics" as an empty list.
    const names = requested && requested.length > 0 ? requested : null;
    const body = new Writer()
      .int32(0)
      .array([NODE_ID], (w, nodeId) => {
        w.int32(nodeId).string(this.advertisedHost(connection)).int32(this.currentPort).nullableString(null);
      })
      .nullableString(this.state.clusterId)
      .int32(NODE_ID); // the controller: admin requests and InitProducerId go there
    const topics: { name: string; errorCode: number; partitions: number }[] = [];
    for (const name of names ?? [...this.state.topics.keys()]) {
      let topic = this.state.topics.get(name);
      if (!topic && allowAutoCreation && this.autoCreateTopics && TOPIC_NAME.test(name)) {
        this.createTopic(name);
        topic = this.state.topics.get(name);
      }
      topics.push(
        topic
          ? { name, errorCode: ErrorCode.NONE, partitions: topic.partitions.length }
          : {
              name,
              errorCode: TOPIC_NAME.test(name)
                ? ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                : ErrorCode.INVALID_TOPIC_EXCEPTION,
              partitions: 0,
            },
      );
    }
    body.array(topics, (w, topic) => {
      w.int16(topic.errorCode).string(topic.name).boolean(false);
      w.array(
        Array.from({ length: topic.partitions }, (_, partition) => partition),
        (pw, partition) => {
          pw.int16(ErrorCode.NONE).int32(partition).int32(NODE_ID);
          pw.array([NODE_ID], (rw, id) => rw.int32(id)).array([NODE_ID], (rw, id) => rw.int32(id));
        },
      );
    });
    return body;
  }

  private createTopics(reader: Reader): Writer {
    const requests = reader.array((r) => ({
      name: r.string(),
      partitions: r.int32(),
      replicationFactor: r.int16(),
      assignment: r.array((ar) => ({ partition: ar.int32(), replicas: ar.array((rr) => rr.int32()) })),
      configs: r.array((cr) => ({ name: cr.string(), value: cr.nullableString() })),
    }));
    reader.int32(); // timeout
    const validateOnly = reader.boolean();
    const results = requests.map((request) => {
      const partitions =
        request.partitions === -1 ? request.assignment.length || this.defaultPartitions : request.partitions;
      let errorCode: number = ErrorCode.NONE;
      let message: string | null = null;
      if (!TOPIC_NAME.test(request.name)) {
        errorCode = ErrorCode.INVALID_TOPIC_EXCEPTION;
        message = `invalid topic name ${JSON.stringify(request.name)}`;
      } else if (this.state.topics.has(request.name)) {
        errorCode = ErrorCode.TOPIC_ALREADY_EXISTS;
        message = `topic ${request.name} already exists`;
      } else if (partitions < 1) {
        errorCode = ErrorCode.INVALID_PARTITIONS;
        message = 'number of partitions must be at least 1';
      } else if (request.replicationFactor > 1) {
        // As a real single-broker cluster answers, so tests behave the same against both.
        errorCode = ErrorCode.INVALID_REPLICATION_FACTOR;
        message = `replication factor ${request.replicationFactor} is larger than the 1 available broker`;
      } else if (!validateOnly) {
        this.createTopic(request.name, partitions);
      }
      return { name: request.name, errorCode, message };
    });
    return new Writer().array(results, (w, result) => {
      w.string(result.name).int16(result.errorCode).nullableString(result.message);
    });
  }

  private deleteTopics(reader: Reader): Writer {
    const names = reader.array((r) => r.string());
    reader.int32(); // timeout
    const results = names.map((name) => {
      if (!this.state.topics.delete(name)) return { name, errorCode: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION };
      this.log(`deleted topic ${name}`);
      return { name, errorCode: ErrorCode.NONE };
    });
    this.wakeFetches();
    return new Writer().array(results, (w, result) => w.string(result.name).int16(result.errorCode));
  }

  private createPartitions(reader: Reader): Writer {
    const requests = reader.array((r) => ({
      name: r.string(),
      count: r.int32(),
      assignment: r.nullableArray((ar) => ar.array((rr) => rr.int32())),
    }));
    reader.int32(); // timeout
    const validateOnly = reader.boolean();
    const results = requests.map(({ name, count }) => {
      const topic = this.state.topics.get(name);
      if (!topic) return { name, errorCode: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, message: 'unknown topic' };
      if (count <= topic.partitions.length) {
        return {
          name,
          errorCode: ErrorCode.INVALID_PARTITIONS,
          message: `topic has ${topic.partitions.length} partitions`,
        };
      }
      if (!validateOnly) {
        while (topic.partitions.length < count) topic.partitions.push(new PartitionLog());
        this.log(`topic ${name} now has ${count} partitions`);
      }
      return { name, errorCode: ErrorCode.NONE, message: null };
    });
    return new Writer().int32(0).array(results, (w, result) => {
      w.string(result.name).int16(result.errorCode).nullableString(result.message);
    });
  }

  // --- Produce ---------------------------------------------------------------------------------

  private produce(reader: Reader, reply: (body: Writer) => void): void {
    reader.nullableString(); // transactional id: the batches' producer id identifies the transaction
    const acks = reader.int16();
    reader.int32(); // timeout
    const topics = reader.array((r) => ({
      topic: r.string(),
      partitions: r.array((pr) => ({ partition: pr.int32(), records: pr.nullableBytes() })),
    }));
    const results = topics.map(({ topic, partitions }) => ({
      topic,
      partitions: partitions.map(({ partition, records }) => ({
        partition,
        ...this.appendRecords(topic, partition, records),
      })),
    }));
    this.wakeFetches();
    // acks=0: the client expects no response at all.
    if (acks === 0) return;
    const body = new Writer().array(results, (w, result) => {
      w.string(result.topic).array(result.partitions, (pw, p) => {
        pw.int32(p.partition).int16(p.errorCode).int64(p.baseOffset).int64(-1);
      });
    });
    reply(body.int32(0));
  }

  private appendRecords(
    topic: string,
    partition: number,
    records: Buffer | null,
  ): { errorCode: number; baseOffset: number } {
    const log = this.state.partition(topic, partition);
    if (!log) return { errorCode: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, baseOffset: -1 };
    let batches: ReturnType<typeof parseRecordSet>;
    try {
      batches = parseRecordSet(records ?? Buffer.alloc(0));
    } catch (error) {
      this.log(`rejected records for ${topic}/${partition}: ${(error as Error).message}`);
      return { errorCode: 2 /* CORRUPT_MESSAGE */, baseOffset: -1 };
    }
    let baseOffset = -1;
    for (const batch of batches) {
      let outcome: TransactionOutcome | null = null;
      if (batch.transactional) {
        const transaction = this.state.transactionsByProducerId.get(batch.producerId);
        if (!transaction || transaction.producerEpoch !== batch.producerEpoch) {
          return { errorCode: ErrorCode.INVALID_PRODUCER_EPOCH, baseOffset: -1 };
        }
        if (!transaction.outcome || !transaction.partitions.has(offsetKey(topic, partition))) {
          return { errorCode: ErrorCode.INVALID_TXN_STATE, baseOffset: -1 };
        }
        outcome = transaction.outcome;
      }
      const offset = log.append(batch, outcome);
      if (baseOffset < 0) baseOffset = offset;
    }
    return { errorCode: ErrorCode.NONE, baseOffset };
  }

  // --- Fetch and ListOffsets ---------------------------------------------------------------------

  private fetch(reader: Reader, connection: Connection, reply: (body: Writer) => void): void {
    reader.int32(); // replica id
    const maxWait = reader.int32();
    const minBytes = reader.int32();
    const request: FetchRequest = {
      maxBytes: reader.int32(),
      readCommitted: reader.int8() === READ_COMMITTED,
      topics: reader.array((r) => ({
        topic: r.string(),
        partitions: r.array((pr) => ({ partition: pr.int32(), offset: pr.int64(), maxBytes: pr.int32() })),
      })),
    };
    const { body, ready } = this.fetchResponse(request);
    if (ready || maxWait <= 0 || minBytes <= 0) {
      reply(body);
      return;
    }
    // Long poll: answer when data arrives (wakeFetches) or after max_wait_time.
    const held: HeldFetch = {
      connection,
      request,
      reply,
      timer: setTimeout(() => {
        this.heldFetches.delete(held);
        reply(this.fetchResponse(request).body);
      }, maxWait),
    };
    this.heldFetches.add(held);
  }

  /** Re-checks held fetches after anything that can make data visible (produce, EndTxn…). */
  private wakeFetches(): void {
    for (const held of this.heldFetches) {
      const { body, ready } = this.fetchResponse(held.request);
      if (!ready) continue;
      clearTimeout(held.timer);
      this.heldFetches.delete(held);
      held.reply(body);
    }
  }

  private fetchResponse(request: FetchRequest): { body: Writer; ready: boolean } {
    let ready = false;
    let budget = request.maxBytes;
    const body = new Writer().int32(0);
    body.array(request.topics, (w, { topic, partitions }) => {
      w.string(topic).array(partitions, (pw, { partition, offset, maxBytes }) => {
        const log = this.state.partition(topic, partition);
        if (!log) {
          ready = true;
          pw.int32(partition).int16(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION).int64(-1).int64(-1);
          pw.array([], () => {}).bytes(null);
          return;
        }
        if (offset < 0 || offset > log.highWatermark) {
          ready = true;
          pw.int32(partition).int16(ErrorCode.OFFSET_OUT_OF_RANGE);
          pw.int64(log.highWatermark)
            .int64(log.lastStableOffset())
            .array([], () => {});
          pw.bytes(null);
          return;
        }
        const batches = this.readBatches(log, offset, request.readCommitted, Math.min(maxBytes, budget));
        const size = batches.reduce((total, batch) => total + batch.length, 0);
        budget = Math.max(0, budget - size);
        if (batches.length > 0) ready = true;
        pw.int32(partition).int16(ErrorCode.NONE).int64(log.highWatermark).int64(log.lastStableOffset());
        // Aborted batches are left out instead of listed, so the list is always empty.
        pw.array([], () => {});
        pw.int32(size);
        for (const batch of batches) pw.raw(batch);
      });
    });
    return { body, ready };
  }

  /**
   * Whole batches from the first one whose last offset is at or after `offset` (a batch wholly
   * below it would make kafkajs skip a record), up to the visible end, at least one batch even
   * past `maxBytes` so a large batch cannot stall a consumer.
   */
  private readBatches(log: PartitionLog, offset: number, readCommitted: boolean, maxBytes: number): Buffer[] {
    const end = log.visibleEnd(readCommitted);
    const batches: Buffer[] = [];
    let size = 0;
    for (let index = log.firstBatchAtOrAfter(offset); index < log.batches.length; index++) {
      const batch = log.batches[index]!;
      if (batch.baseOffset >= end) break;
      if (readCommitted && batch.transaction?.state === 'aborted') continue;
      if (batches.length > 0 && size + batch.bytes.length > maxBytes) break;
      batches.push(batch.bytes);
      size += batch.bytes.length;
    }
    return batches;
  }

  private listOffsets(reader: Reader, version: number): Writer {
    reader.int32(); // replica id
    // v1 has no isolation level (read uncommitted) and no throttle time.
    const readCommitted = version >= 2 && reader.int8() === READ_COMMITTED;
    const topics = reader.array((r) => ({
      topic: r.string(),
      partitions: r.array((pr) => ({ partition: pr.int32(), timestamp: pr.int64() })),
    }));
    const body = new Writer();
    if (version >= 2) body.int32(0);
    return body.array(topics, (w, { topic, partitions }) => {
      w.string(topic).array(partitions, (pw, { partition, timestamp }) => {
        const log = this.state.partition(topic, partition);
        if (!log) {
          pw.int32(partition).int16(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION).int64(-1).int64(-1);
          return;
        }
        if (timestamp === EARLIEST_TIMESTAMP || timestamp === LATEST_TIMESTAMP) {
          const offset = timestamp === EARLIEST_TIMESTAMP ? 0 : log.visibleEnd(readCommitted);
          pw.int32(partition).int16(ErrorCode.NONE).int64(-1).int64(offset);
          return;
        }
        const match = log.batches.find((batch) => batch.maxTimestamp >= timestamp);
        pw.int32(partition).int16(ErrorCode.NONE);
        if (match) pw.int64(match.maxTimestamp).int64(match.baseOffset);
        else pw.int64(-1).int64(-1);
      });
    });
  }

  // --- Consumer groups -----------------------------------------------------------------------

  private findCoordinator(reader: Reader, connection: Connection, version: number): Writer {
    // key: this broker coordinates every group and transaction; v1+ adds the key type.
    reader.string();
    if (version >= 1) reader.int8();
    const body = new Writer();
    if (version >= 1) body.int32(0);
    body.int16(ErrorCode.NONE);
    if (version >= 1) body.nullableString(null);
    return body.int32(NODE_ID).string(this.advertisedHost(connection)).int32(this.currentPort);
  }

  private joinGroup(
    reader: Reader,
    connection: Connection,
    header: RequestHeader,
    reply: (body: Writer) => void,
  ): void {
    const version = header.apiVersion;
    const groupId = reader.string();
    const sessionTimeout = reader.int32();
    // v0 has no rebalance timeout: Kafka uses the session timeout for it.
    const rebalanceTimeout = version >= 1 ? reader.int32() : sessionTimeout;
    const memberId = reader.string();
    if (version >= 5) reader.nullableString(); // group instance id: members are all dynamic here
    const request = {
      groupId,
      sessionTimeout,
      rebalanceTimeout,
      memberId,
      protocolType: reader.string(),
      protocols: reader.array((r) => ({ name: r.string(), metadata: Buffer.from(r.bytes()) })),
      requireKnownMemberId: version >= 4,
    };
    this.groups.join(request, header.clientId, connection.clientHost, (result) => {
      const body = new Writer();
      if (version >= 2) body.int32(0);
      body
        .int16(result.errorCode)
        .int32(result.generation)
        .string(result.protocol)
        .string(result.leaderId)
        .string(result.memberId)
        .array(result.members, (w, member) => {
          w.string(member.memberId);
          if (version >= 5) w.nullableString(null);
          w.bytes(member.metadata);
        });
      reply(body);
    });
  }

  private syncGroup(reader: Reader, version: number, reply: (body: Writer) => void): void {
    const groupId = reader.string();
    const generation = reader.int32();
    const memberId = reader.string();
    if (version >= 3) reader.nullableString(); // group instance id
    const assignments = reader.array((r) => ({ memberId: r.string(), assignment: Buffer.from(r.bytes()) }));
    this.groups.sync({ groupId, generation, memberId, assignments }, (result) => {
      const body = new Writer();
      if (version >= 1) body.int32(0);
      // The assignment is BYTES but never null: kafkajs decodes it unconditionally.
      reply(body.int16(result.errorCode).bytes(result.assignment));
    });
  }

  private heartbeat(reader: Reader, version: number): Writer {
    const groupId = reader.string();
    const generation = reader.int32();
    const memberId = reader.string();
    if (version >= 3) reader.nullableString(); // group instance id
    const body = new Writer();
    if (version >= 1) body.int32(0);
    return body.int16(this.groups.heartbeat(groupId, generation, memberId));
  }

  private leaveGroup(reader: Reader, version: number): Writer {
    const errorCode = this.groups.leave(reader.string(), reader.string());
    const body = new Writer();
    if (version >= 1) body.int32(0);
    return body.int16(errorCode);
  }

  private describeGroups(reader: Reader): Writer {
    const groupIds = reader.array((r) => r.string());
    return new Writer().array(groupIds, (w, groupId) => {
      const group = this.state.groups.get(groupId);
      w.int16(ErrorCode.NONE).string(groupId);
      if (!group) {
        w.string('Dead')
          .string('')
          .string('')
          .array([], () => {});
        return;
      }
      w.string(group.phase).string(group.protocolType).string(group.protocol);
      w.array([...group.members.values()], (mw, member) => {
        const metadata = member.protocols.find((p) => p.name === group.protocol)?.metadata ?? Buffer.alloc(0);
        mw.string(member.memberId).string(member.clientId).string(member.clientHost);
        mw.bytes(metadata).bytes(member.assignment);
      });
    });
  }

  private listGroups(): Writer {
    const groups = [...this.state.groups.values()];
    return new Writer()
      .int32(0)
      .int16(ErrorCode.NONE)
      .array(groups, (w, group) => w.string(group.groupId).string(group.protocolType));
  }

  private deleteGroups(reader: Reader): Writer {
    const groupIds = reader.array((r) => r.string());
    return new Writer().int32(0).array(groupIds, (w, groupId) => {
      const group = this.state.groups.get(groupId);
      let errorCode: number = ErrorCode.NONE;
      if (!group) errorCode = ErrorCode.GROUP_ID_NOT_FOUND;
      else if (group.members.size > 0) errorCode = ErrorCode.NON_EMPTY_GROUP;
      else this.state.groups.delete(groupId);
      w.string(groupId).int16(errorCode);
    });
  }

  private offsetCommit(reader: Reader): Writer {
    const groupId = reader.string();
    const generation = reader.int32();
    const memberId = reader.string();
    reader.int64(); // retention: offsets are kept for the broker's lifetime
    const topics = reader.array((r) => ({
      topic: r.string(),
      partitions: r.array((pr) => ({
        partition: pr.int32(),
        offset: pr.int64(),
        metadata: pr.nullableString(),
      })),
    }));
    const errorCode = this.groups.commitError(groupId, generation, memberId);
    return new Writer().array(topics, (w, { topic, partitions }) => {
      w.string(topic).array(partitions, (pw, { partition, offset, metadata }) => {
        // Negative offsets are stored as given: kafkajs commits them and reads them back.
        if (errorCode === ErrorCode.NONE) this.groups.commit(groupId, topic, partition, offset, metadata);
        pw.int32(partition).int16(errorCode);
      });
    });
  }

  private offsetFetch(reader: Reader): Writer {
    const groupId = reader.string();
    const topics = reader.array((r) => ({ topic: r.string(), partitions: r.array((pr) => pr.int32()) }));
    const offsets = this.state.groups.get(groupId)?.offsets;
    return new Writer().array(topics, (w, { topic, partitions }) => {
      w.string(topic).array(partitions, (pw, partition) => {
        const committed = offsets?.get(offsetKey(topic, partition));
        pw.int32(partition)
          .int64(committed?.offset ?? -1)
          .nullableString(committed?.metadata ?? '')
          .int16(ErrorCode.NONE);
      });
    });
  }

  // --- Idempotent and transactional producers --------------------------------------------------

  private initProducerId(reader: Reader): Writer {
    const transactionalId = reader.nullableString();
    reader.int32(); // transaction timeout: open transactions never expire here
    const body = new Writer().int32(0).int16(ErrorCode.NONE);
    if (transactionalId === null) return body.int64(this.state.allocateProducerId()).int16(0);

    let transaction = this.state.transactions.get(transactionalId);
    if (transaction) {
      // A new session of the same transactional id fences the old one and aborts its work.
      transaction.producerEpoch += 1;
      if (transaction.outcome) this.finishTransaction(transaction, false);
    } else {
      transaction = {
        transactionalId,
        producerId: this.state.allocateProducerId(),
        producerEpoch: 0,
        outcome: null,
        partitions: new Map(),
        offsets: new Map(),
      };
      this.state.transactions.set(transactionalId, transaction);
      this.state.transactionsByProducerId.set(transaction.producerId, transaction);
    }
    return body.int64(transaction.producerId).int16(transaction.producerEpoch);
  }

  /** The transaction a request addresses, or the error code why it does not. */
  private transactionFor(transactionalId: string, producerId: number, epoch: number): Transaction | number {
    const transaction = this.state.transactions.get(transactionalId);
    if (!transaction || transaction.producerId !== producerId) return ErrorCode.INVALID_PRODUCER_ID_MAPPING;
    if (transaction.producerEpoch !== epoch) return ErrorCode.INVALID_PRODUCER_EPOCH;
    transaction.outcome ??= { state: 'open' };
    return transaction;
  }

  private addPartitionsToTxn(reader: Reader): Writer {
    const transaction = this.transactionFor(reader.string(), reader.int64(), reader.int16());
    const topics = reader.array((r) => ({ topic: r.string(), partitions: r.array((pr) => pr.int32()) }));
    return new Writer().int32(0).array(topics, (w, { topic, partitions }) => {
      w.string(topic).array(partitions, (pw, partition) => {
        let errorCode: number = typeof transaction === 'number' ? transaction : ErrorCode.NONE;
        if (typeof transaction !== 'number') {
          if (this.state.partition(topic, partition)) {
            transaction.partitions.set(offsetKey(topic, partition), { topic, partition });
          } else {
            errorCode = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION;
          }
        }
        pw.int32(partition).int16(errorCode);
      });
    });
  }

  private addOffsetsToTxn(reader: Reader): Writer {
    const transaction = this.transactionFor(reader.string(), reader.int64(), reader.int16());
    reader.string(); // group id: its offsets arrive in TxnOffsetCommit
    return new Writer().int32(0).int16(typeof transaction === 'number' ? transaction : ErrorCode.NONE);
  }

  private txnOffsetCommit(reader: Reader): Writer {
    const transactionalId = reader.string();
    const groupId = reader.string();
    const transaction = this.transactionFor(transactionalId, reader.int64(), reader.int16());
    const topics = reader.array((r) => ({
      topic: r.string(),
      partitions: r.array((pr) => ({
        partition: pr.int32(),
        offset: pr.int64(),
        metadata: pr.nullableString(),
      })),
    }));
    // Never COORDINATOR_* errors here: kafkajs's retry list misnames them and it gives up.
    const errorCode = typeof transaction === 'number' ? transaction : ErrorCode.NONE;
    return new Writer().int32(0).array(topics, (w, { topic, partitions }) => {
      w.string(topic).array(partitions, (pw, { partition, offset, metadata }) => {
        if (typeof transaction !== 'number') {
          const pending = transaction.offsets.get(groupId) ?? new Map();
          pending.set(offsetKey(topic, partition), { offset, metadata });
          transaction.offsets.set(groupId, pending);
        }
        pw.int32(partition).int16(errorCode);
      });
    });
  }

  private endTxn(reader: Reader): Writer {
    const transaction = this.transactionFor(reader.string(), reader.int64(), reader.int16());
    const commit = reader.boolean();
    if (typeof transaction === 'number') return new Writer().int32(0).int16(transaction);
    this.finishTransaction(transaction, commit);
    return new Writer().int32(0).int16(ErrorCode.NONE);
  }

  /** Writes the markers, settles the batches' outcome and, on commit, the group offsets. */
  private finishTransaction(transaction: Transaction, commit: boolean): void {
    const outcome = transaction.outcome;
    for (const { topic, partition } of transaction.partitions.values()) {
      this.state
        .partition(topic, partition)
        ?.endTransaction(transaction.producerId, transaction.producerEpoch, commit ? 'commit' : 'abort');
    }
    if (outcome) outcome.state = commit ? 'committed' : 'aborted';
    if (commit) {
      for (const [groupId, offsets] of transaction.offsets) {
        for (const [key, committed] of offsets) this.state.group(groupId).offsets.set(key, committed);
      }
    }
    transaction.outcome = null;
    transaction.partitions.clear();
    transaction.offsets.clear();
    this.wakeFetches();
  }
}
