import {
  describeError,
  EXIT,
  exitCodeFor,
  type Logger,
  openPool,
  progressRenderer,
  runJson,
  stopOnSignals,
  UsageError,
} from '@tributary/cli';
import { type PipelineEvent, pipeline } from '@tributary/core';
import {
  createDecoder,
  type KafkaInput,
  kafkaArchiveSink,
  kafkaClientConfig,
  kafkaPublishSink,
  kafkaSubscribeSource,
  platformaticClient,
  schemaTopicLookup,
} from '@tributary/kafka-bridge';
import { pgSink } from '@tributary/pg-sink';
import { s3Source } from '@tributary/s3-source';
import { Kafka, type KafkaConfig } from 'kafkajs';
import { createS3Client, type Environment, parsePositiveNumber } from './config.js';
import type { ArchiveFlags, PublishFlags, SubscribeFlags } from './flags.js';
import {
  CONTROL_SCHEMA,
  type FileReport,
  type StreamReport,
  streamId,
  ticketStream,
  ticketTarget,
} from './run.js';
import { exportArtifacts, TICKET_COLUMNS, ticketTransforms } from './tickets.js';

interface KafkaContext {
  env: Environment;
  logger: Logger;
  json: boolean;
  tty: boolean;
}

/** A KAFKA_* millisecond setting, when set (examples/tickets/README.md § Environment). */
function ms(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const text = env[name];
  return text === undefined || text === '' ? undefined : parsePositiveNumber(name, text);
}

function defined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * Client settings: the library's production defaults (10 s connect, 30 s requests, retries up to
 * 30 s apart), each tunable through KAFKA_* variables (tests shorten them for the test broker).
 */
export function kafkaConfigFrom(env: NodeJS.ProcessEnv, brokers: string[], clientId: string): KafkaConfig {
  const base = kafkaClientConfig(brokers, clientId);
  return {
    ...base,
    ...defined({
      connectionTimeout: ms(env, 'KAFKA_CONNECTION_TIMEOUT_MS'),
      requestTimeout: ms(env, 'KAFKA_REQUEST_TIMEOUT_MS'),
    }),
    retry: {
      ...base.retry,
      ...defined({
        initialRetryTime: ms(env, 'KAFKA_RETRY_INITIAL_MS'),
        maxRetryTime: ms(env, 'KAFKA_RETRY_MAX_MS'),
      }),
    },
  };
}

export const KAFKA_CLIENTS = ['platformatic', 'kafkajs'] as const;
export type KafkaClientName = (typeof KAFKA_CLIENTS)[number];

/**
 * KAFKA_CLIENT picks the Kafka client (issue 18). The default is @platformatic/kafka: maintained,
 * no Node 24 warnings (kafkajs 2.2.4 prints TimeoutNegativeWarning on every connection), and in
 * `pnpm bench --sections kafka` (35k-row baseline, test broker, 2026-12-02) its publish leg took
 * 1.7-2.4 s against kafkajs' 2.3-2.7 s, its subscribe leg 1.7-2.1 s against 1.2-1.8 s, and the
 * whole path 3.3-4.4 s against 3.5-4.5 s: no slower overall. `KAFKA_CLIENT=kafkajs` keeps the old path.
 */
export function kafkaClientName(env: NodeJS.ProcessEnv): KafkaClientName {
  const text = env['KAFKA_CLIENT'];
  if (text === undefined || text === '') return 'platformatic';
  if ((KAFKA_CLIENTS as readonly string[]).includes(text)) return text as KafkaClientName;
  throw new UsageError(
    `KAFKA_CLIENT must be one of ${KAFKA_CLIENTS.join(', ')} (got ${JSON.stringify(text)})`,
  );
}

/** The client KAFKA_CLIENT names, with the same KAFKA_* timeouts and retry backoff on either. */
export function kafkaClientFrom(env: NodeJS.ProcessEnv, brokers: string[], clientId: string): KafkaInput {
  const config = kafkaConfigFrom(env, brokers, clientId);
  if (kafkaClientName(env) === 'kafkajs') {
    env.KAFKAJS_NO_PARTITIONER_WARNING ??= '1';
    return new Kafka(config);
  }
  const initial = config.retry?.initialRetryTime ?? 300;
  const max = config.retry?.maxRetryTime ?? 30_000;
  return platformaticClient({
    brokers,
    clientId,
    ...(config.connectionTimeout ? { connectTimeout: config.connectionTimeout } : {}),
    ...(config.requestTimeout ? { timeout: config.requestTimeout } : {}),
    retries: config.retry?.retries ?? 8,
    // kafkajs' backoff shape: doubling from the initial delay, capped.
    retryDelay: (_client, _operation, attempt) => Math.min(max, initial * 2 ** Math.max(0, attempt - 1)),
  });
}

/** Consumer timings: the library's defaults (30 s session, 3 s heartbeat), tunable by KAFKA_*. */
export function consumerTimingsFrom(env: NodeJS.ProcessEnv) {
  return defined({
    sessionTimeout: ms(env, 'KAFKA_SESSION_TIMEOUT_MS'),
    rebalanceTimeout: ms(env, 'KAFKA_REBALANCE_TIMEOUT_MS'),
    heartbeatInterval: ms(env, 'KAFKA_HEARTBEAT_INTERVAL_MS'),
    maxWaitTimeInMs: ms(env, 'KAFKA_MAX_WAIT_MS'),
  });
}

interface KafkaSession {
  kafka: KafkaInput;
  onEvent: (e: PipelineEvent) => void;
  stop: AbortSignal;
}

/** `publish`, `subscribe` and `archive`, the Kafka side of the example (issue 6), share this. */
async function withKafka(
  name: 'publish' | 'subscribe' | 'archive',
  ctx: KafkaContext,
  brokers: string[],
  body: (session: KafkaSession) => Promise<number>,
): Promise<number> {
  const kafka = kafkaClientFrom(process.env, brokers, `tickets-pipeline-${name}`);
  const stop = stopOnSignals(ctx.logger);
  const renderer = progressRenderer(ctx.logger, ctx.tty);
  try {
    return await body({ kafka, onEvent: (event) => renderer.onEvent(event), stop: stop.signal });
  } finally {
    renderer.stop();
  }
}

export const publish = (ctx: KafkaContext, flags: PublishFlags) =>
  withKafka('publish', ctx, flags.brokers, (session) => publishWith(session, ctx, flags));
export const subscribe = (ctx: KafkaContext, flags: SubscribeFlags) =>
  withKafka('subscribe', ctx, flags.brokers, (session) => subscribeWith(session, ctx, flags));
export const archive = (ctx: KafkaContext, flags: ArchiveFlags) =>
  withKafka('archive', ctx, flags.brokers, (session) => archiveWith(session, ctx, flags));

async function publishWith(
  { kafka, onEvent, stop }: KafkaSession,
  ctx: KafkaContext,
  flags: PublishFlags,
): Promise<number> {
  const { dataset, partitions, replicationFactor, lateFiles } = flags;
  const topic = flags.topic ?? `tickets.${dataset}`;
  const pool = openPool(ctx.env, 'tickets-pipeline', ctx.logger);
  const client = createS3Client(ctx.env);
  const stream = streamId(dataset);
  const report: StreamReport = { stream, watermark: null, files: [], error: null };
  try {
    if (!flags.apply) {
      // Dry run: exactly what `run` would plan for this dataset.
      const { runDatasets } = await import('./run.js');
      const [planned] = await runDatasets(ctx.env, client, pool, {
        datasets: [dataset],
        apply: false,
        lateFiles,
      });
      return finish(ctx, [planned ?? report], true);
    }
    const files = new Map<string, FileReport>();
    const source = s3Source({ client, streams: [ticketStream(ctx.env, dataset, { lateFiles })] });
    // Checkpoint + load log only (no target rows): the position moves after every message of
    // the file is acknowledged, and the file is archived after that.
    const checkpoints = pgSink({ pool, schema: CONTROL_SCHEMA, targets: () => null });
    const sink = kafkaPublishSink({
      kafka,
      topic,
      key: ['ticket_id'],
      columns: TICKET_COLUMNS,
      createTopics: { partitions, ...(replicationFactor ? { replicationFactor } : {}) },
      checkpoints,
    });
    try {
      // The topic carries the export's rows, alarms included (consumer rules are the
      // subscriber's), but not the export's artifacts.
      await pipeline(source, ...exportArtifacts(), sink, {
        stopSignal: stop,
        onEvent: (event) => {
          onEvent(event);
          if (event.type === 'committed' && event.source) {
            files.set(event.source, {
              key: event.source,
              kind: 'delta',
              status: 'loaded',
              rowsRead: event.rows,
              rowsFiltered: 0,
              rowsUpserted: 0,
              rowsRejected: 0,
            });
          }
        },
      });
    } catch (error) {
      report.error = (error as Error).message;
      report.errorDetail = error;
      report.errorCode = (error as { code?: string }).code;
    } finally {
      await sink.close();
    }
    report.files = [...files.values()];
    return finish(ctx, [report], false);
  } finally {
    await pool.end();
    client.destroy();
  }
}

async function subscribeWith(
  { kafka, onEvent, stop }: KafkaSession,
  ctx: KafkaContext,
  flags: SubscribeFlags,
): Promise<number> {
  const { dataset, topic, group: groupId } = flags;
  const pool = openPool(ctx.env, 'tickets-pipeline', ctx.logger);
  const report: StreamReport = {
    stream: `kafka/${groupId}/${topic}`,
    watermark: null,
    files: [],
    error: null,
  };
  let rows = 0;
  try {
    const source = kafkaSubscribeSource({
      kafka,
      topic,
      groupId,
      decode: createDecoder({ schemas: schemaTopicLookup(kafka, topic) }),
      exitWhenIdle: Boolean(flags.exitWhenIdle),
      consumer: consumerTimingsFrom(process.env),
    });
    const sink = pgSink({
      pool,
      schema: CONTROL_SCHEMA,
      // Partitions move between group members: Kafka's group membership is the single writer
      // per partition, so no advisory lock is held for the whole run.
      lock: { enabled: false },
      targets: () => ticketTarget(dataset),
    });
    try {
      await pipeline(source, ...ticketTransforms(), sink, {
        stopSignal: stop,
        onEvent: (event) => {
          onEvent(event);
          if (event.type === 'committed') rows += event.rows;
        },
      });
    } catch (error) {
      report.error = (error as Error).message;
      report.errorDetail = error;
      report.errorCode = (error as { code?: string }).code;
    } finally {
      await sink.close();
    }
    if (ctx.json)
      process.stdout.write(
        `${JSON.stringify({ stream: report.stream, rowsApplied: rows, error: report.error ? describeError(report.errorDetail) : null })}\n`,
      );
    else
      process.stdout.write(
        `${report.stream}: ${rows} rows applied${report.error ? `; error: ${describeError(report.errorDetail)}` : ''}\n`,
      );
    if (report.error)
      process.stderr.write(`tickets-pipeline: ${describeError(report.errorDetail, `dataset ${dataset}`)}\n`);
    return exitCodeFor([report]);
  } finally {
    await pool.end();
  }
}

async function archiveWith(
  { kafka, onEvent, stop }: KafkaSession,
  ctx: KafkaContext,
  flags: ArchiveFlags,
): Promise<number> {
  const { topic, maxRecords } = flags;
  const maxAgeMs = flags.maxAge * 1000;
  const groupId = flags.group ?? `tributary-archive-${topic}`;
  const client = createS3Client(ctx.env);
  const sink = kafkaArchiveSink({
    client,
    bucket: ctx.env.bucket,
    prefix: flags.to,
    maxRecords,
    maxAgeMs,
  });
  const source = kafkaSubscribeSource({
    kafka,
    topic,
    groupId,
    decode: createDecoder({ schemas: schemaTopicLookup(kafka, topic) }),
    exitWhenIdle: Boolean(flags.exitWhenIdle),
    awaitCommit: false,
    maxRows: maxRecords,
    tickMs: Math.min(1000, maxAgeMs),
    consumer: consumerTimingsFrom(process.env),
  });
  let error: unknown;
  try {
    await pipeline(source, sink, { stopSignal: stop, onEvent });
  } catch (e) {
    error = e;
  } finally {
    client.destroy();
  }
  if (ctx.json)
    process.stdout.write(
      `${JSON.stringify({ topic, objects: sink.objects, error: error ? describeError(error) : null })}\n`,
    );
  else
    process.stdout.write(`${sink.objects.length} objects written under s3://${ctx.env.bucket}/${flags.to}\n`);
  if (error) {
    process.stderr.write(`tickets-pipeline: ${describeError(error)}\n`);
    return EXIT.failed;
  }
  return EXIT.ok;
}

function finish(ctx: KafkaContext, reports: StreamReport[], dryRun: boolean): number {
  if (ctx.json) process.stdout.write(`${JSON.stringify(runJson(dryRun, reports))}\n`);
  else
    for (const r of reports)
      process.stdout.write(
        `${r.stream}: ${r.files.length} files ${dryRun ? 'planned' : 'published'}${r.error ? `; error: ${describeError(r.errorDetail ?? r.error)}` : ''}\n`,
      );
  for (const r of reports)
    if (r.error)
      process.stderr.write(
        `tickets-pipeline: ${describeError(r.errorDetail ?? r.error, `dataset ${r.stream.split('/')[1]}`)}\n`,
      );
  return exitCodeFor(reports);
}
