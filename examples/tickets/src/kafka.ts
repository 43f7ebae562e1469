import {
  describeError,
  EXIT,
  exitCodeFor,
  type Logger,
  openPool,
  progressRenderer,
  runJson,
  stopOnSignals,
} from '@tributary/cli';
import { type PipelineEvent, pipeline } from '@tributary/core';
import {
  createDecoder,
  fastKafkaConfig,
  kafkaArchiveSink,
  kafkaPublishSink,
  kafkaSubscribeSource,
  schemaTopicLookup,
} from '@tributary/kafka-bridge';
import { pgSink } from '@tributary/pg-sink';
import { s3Source } from '@tributary/s3-source';
import { Kafka } from 'kafkajs';
import {
  createS3Client,
  type Environment,
  parseLatePolicy,
  parsePositiveNumber,
  singleDataset,
  UsageError,
} from './config.js';
import {
  CONTROL_SCHEMA,
  type FileReport,
  type StreamReport,
  streamId,
  ticketStream,
  ticketTarget,
} from './run.js';
import { TICKET_COLUMNS, ticketTransforms } from './tickets.js';

interface KafkaContext {
  env: Environment;
  logger: Logger;
  json: boolean;
  tty: boolean;
}

function brokersFrom(text: unknown): string[] {
  const brokers = String(text ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (!brokers.length || brokers.some((b) => !/^[^:\s]+:\d+$/.test(b))) {
    throw new UsageError(`--brokers must be host:port[,host:port…], got ${JSON.stringify(text)}`);
  }
  return brokers;
}

/** `publish`, `subscribe` and `archive`: the Kafka side of the example (issue 6). */
export async function runKafkaCommand(
  command: 'publish' | 'subscribe' | 'archive',
  opts: Record<string, unknown>,
  ctx: KafkaContext,
): Promise<number> {
  process.env.KAFKAJS_NO_PARTITIONER_WARNING ??= '1';
  const brokers = brokersFrom(opts['brokers']);
  const kafka = new Kafka(fastKafkaConfig(brokers, `tickets-pipeline-${command}`));
  const stop = stopOnSignals(ctx.logger);
  const renderer = progressRenderer(ctx.logger, ctx.tty);
  const onEvent = (event: PipelineEvent) => renderer.onEvent(event);
  try {
    if (command === 'publish') return await publish(kafka, opts, ctx, onEvent, stop.signal);
    if (command === 'subscribe') return await subscribe(kafka, opts, ctx, onEvent, stop.signal);
    return await archive(kafka, opts, ctx, onEvent, stop.signal);
  } finally {
    renderer.stop();
  }
}

async function publish(
  kafka: Kafka,
  opts: Record<string, unknown>,
  ctx: KafkaContext,
  onEvent: (e: PipelineEvent) => void,
  stop: AbortSignal,
): Promise<number> {
  const dataset = singleDataset('publish', opts['dataset']);
  const topic = String(opts['topic'] ?? `tickets.${dataset}`);
  const partitions = parsePositiveNumber('--partitions', String(opts['partitions'] ?? '3'));
  const lateFiles = parseLatePolicy(opts['lateFiles']);
  const pool = openPool(ctx.env, 'tickets-pipeline', ctx.logger);
  const client = createS3Client(ctx.env);
  const stream = streamId(dataset);
  const report: StreamReport = { stream, watermark: null, files: [], error: null };
  try {
    if (!opts['apply']) {
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
      createTopics: { partitions, replicationFactor: 1 },
      checkpoints,
    });
    try {
      await pipeline(source, sink, {
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

async function subscribe(
  kafka: Kafka,
  opts: Record<string, unknown>,
  ctx: KafkaContext,
  onEvent: (e: PipelineEvent) => void,
  stop: AbortSignal,
): Promise<number> {
  const dataset = singleDataset('subscribe', opts['dataset']);
  const topic = String(opts['topic']);
  const groupId = String(opts['group']);
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
      exitWhenIdle: Boolean(opts['exitWhenIdle']),
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

async function archive(
  kafka: Kafka,
  opts: Record<string, unknown>,
  ctx: KafkaContext,
  onEvent: (e: PipelineEvent) => void,
  stop: AbortSignal,
): Promise<number> {
  const topic = String(opts['topic']);
  const maxRecords = parsePositiveNumber('--max-records', String(opts['maxRecords'] ?? '10000'));
  const maxAgeMs = parsePositiveNumber('--max-age', String(opts['maxAge'] ?? '3600')) * 1000;
  const groupId = String(opts['group'] ?? `tributary-archive-${topic}`);
  const client = createS3Client(ctx.env);
  const sink = kafkaArchiveSink({
    client,
    bucket: ctx.env.bucket,
    prefix: String(opts['to']),
    maxRecords,
    maxAgeMs,
  });
  const source = kafkaSubscribeSource({
    kafka,
    topic,
    groupId,
    decode: createDecoder({ schemas: schemaTopicLookup(kafka, topic) }),
    exitWhenIdle: Boolean(opts['exitWhenIdle']),
    awaitCommit: false,
    maxRows: maxRecords,
    tickMs: Math.min(1000, maxAgeMs),
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
    process.stdout.write(
      `${sink.objects.length} objects written under s3://${ctx.env.bucket}/${String(opts['to'])}\n`,
    );
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
