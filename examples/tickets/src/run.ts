import type { S3Client } from '@aws-sdk/client-s3';
import {
  CONTROL_SCHEMA,
  type LatePolicy,
  runStreamSpecs,
  type RunOptions as SpecRunOptions,
  type StreamReport,
  type StreamSpec,
} from '@tributary/cli';
import type { PgSink, TargetTable } from '@tributary/pg-sink';
import { pgSink } from '@tributary/pg-sink';
import type { StreamDefinition } from '@tributary/s3-source';
import type pg from 'pg';
import type { Environment } from './config.js';
import {
  type Dataset,
  DEFAULT_DROP_FIELDS,
  KEY_PATTERN,
  TICKET_COLUMNS,
  TIME_ZONE,
  tableColumns,
  ticketTransforms,
} from './tickets.js';

export {
  CONTROL_SCHEMA,
  type FileReport,
  type FileStatus,
  type LatePolicy,
  type StreamReport,
} from '@tributary/cli';

export interface RunOptions extends Omit<SpecRunOptions, 'streams' | 'lateFiles'> {
  datasets: Dataset[];
  lateFiles: LatePolicy;
}

export const TARGET_SCHEMA = 'tickets';

export function streamId(dataset: Dataset): string {
  return `tickets/${dataset}`;
}

/** The S3 stream of one dataset: `<prefix>/<dataset>/changes/`, Nairobi-time keys, 32 columns. */
export function ticketStream(
  env: Environment,
  dataset: Dataset,
  options: Pick<RunOptions, 'lateFiles' | 'replayFrom'>,
): StreamDefinition {
  return {
    id: streamId(dataset),
    bucket: env.bucket,
    prefix: `${env.prefix}/${dataset}/changes/`,
    processedPrefix: `${env.prefix}/${dataset}/processed/`,
    latePrefix: `${env.prefix}/${dataset}/late/`,
    keyPattern: KEY_PATTERN,
    timeZone: TIME_ZONE,
    format: 'csv',
    columns: [...TICKET_COLUMNS],
    columnCheck: 'exact',
    emptyAsNull: true,
    lateFiles: options.lateFiles,
    granularity: 'file',
    ...(options.replayFrom ? { replayFrom: options.replayFrom } : {}),
  };
}

/** `tickets.<dataset>`: typed columns, upsert on ticket_id, offset-less times in Nairobi. */
export function ticketTarget(dataset: Dataset, mode: TargetTable['mode'] = 'upsert'): TargetTable {
  return {
    schema: TARGET_SCHEMA,
    table: dataset,
    key: ['ticket_id'],
    columns: tableColumns(DEFAULT_DROP_FIELDS),
    createTable: true,
    mode,
    timeZone: TIME_ZONE,
  };
}

export function ticketSink(pool: pg.Pool, datasets: Dataset[]): PgSink {
  return pgSink({
    pool,
    schema: CONTROL_SCHEMA,
    targets: Object.fromEntries(datasets.map((dataset) => [streamId(dataset), ticketTarget(dataset)])),
  });
}

/** One dataset as the runner's stream spec: the preset `tickets-pipeline` is made of. */
export function ticketSpec(
  env: Environment,
  dataset: Dataset,
  options: Pick<RunOptions, 'lateFiles'> = { lateFiles: 'error' },
): StreamSpec {
  return {
    id: streamId(dataset),
    source: ticketStream(env, dataset, options),
    target: ticketTarget(dataset),
    transforms: ticketTransforms,
  };
}

/** Runs (or plans) the datasets through the shared runner (`@tributary/cli`). */
export function runDatasets(
  env: Environment,
  client: S3Client,
  pool: pg.Pool,
  options: RunOptions,
): Promise<StreamReport[]> {
  const { datasets, ...rest } = options;
  return runStreamSpecs(client, pool, {
    ...rest,
    streams: datasets.map((dataset) => ticketSpec(env, dataset, options)),
  });
}
