import {
  type CommandContext,
  createLogger,
  reportCommandError,
  runCommand,
  statusCommand,
  table,
} from '@tributary/cli';
import {
  createS3Client,
  parseDatasets,
  parseLatePolicy,
  parsePositiveInteger,
  parsePositiveNumber,
  readEnvironment,
  UsageError,
} from './config.js';
import { ticketSpec } from './run.js';

export { EXIT, exitCodeFor, runJson } from '@tributary/cli';

const APP = 'tickets-pipeline';

export type CommandName =
  | 'run'
  | 'status'
  | 'replay'
  | 'generate'
  | 'demo'
  | 'publish'
  | 'subscribe'
  | 'archive';

/** stderr names a dataset, not a stream id: `dataset inc: …` (the contract's wording). */
const datasetLabel = (stream: string) => `dataset ${stream.split('/')[1]}`;

export async function main(command: CommandName, opts: Record<string, unknown>): Promise<void> {
  const logger = createLogger(APP);
  const json = Boolean(opts['json']);
  const tty = Boolean(process.stderr.isTTY) && !json;
  const context: CommandContext = { app: APP, logger, json, tty, label: datasetLabel };
  try {
    const env = readEnvironment();
    switch (command) {
      case 'run':
      case 'replay': {
        const datasets = parseDatasets(String(opts['dataset']));
        const lateFiles = parseLatePolicy(opts['lateFiles']);
        const intervalMs = parsePositiveNumber('--interval', String(opts['interval'] ?? '60')) * 1000;
        const metricsPort =
          opts['metricsPort'] === undefined
            ? undefined
            : parsePositiveNumber('--metrics-port', String(opts['metricsPort']));
        process.exitCode = await runCommand(
          context,
          env,
          datasets.map((dataset) => ticketSpec(env, dataset, { lateFiles })),
          {
            apply: Boolean(opts['apply']),
            watch: command === 'run' && Boolean(opts['watch']),
            intervalMs,
            metricsPort,
            concurrency: parsePositiveInteger('--concurrency', String(opts['concurrency'] ?? '4')),
            lateFiles,
            ...(command === 'replay' ? { replayFrom: String(opts['from']) } : {}),
          },
        );
        return;
      }
      case 'status': {
        const datasets = parseDatasets(String(opts['dataset']));
        await statusCommand(
          context,
          env,
          datasets.map((dataset) => ticketSpec(env, dataset)),
        );
        return;
      }
      case 'generate': {
        const seed = parsePositiveNumber('--seed', String(opts['seed']));
        const scale = parsePositiveNumber('--scale', String(opts['scale']));
        if (!opts['out'] && !opts['s3']) throw new UsageError('generate needs --out <dir> or --s3');
        // Loaded only for the commands that need them: a `run` starts without the generator,
        // lib-storage, embedded PostgreSQL or s3rver.
        const { generateBucket } = await import('./generate.js');
        const { uploadBucket, writeBucketToDir } = await import('./upload.js');
        const files = generateBucket({ seed, scale, prefix: env.prefix });
        if (opts['out']) await writeBucketToDir(files, String(opts['out']));
        if (opts['s3']) {
          const client = createS3Client(env);
          try {
            await uploadBucket(files, client, env.bucket, (key) => logger.info({ key }, 'uploaded'));
          } finally {
            client.destroy();
          }
        }
        const summary = { files: files.map((f) => ({ key: f.key, kind: f.kind, rows: f.rowCount })) };
        if (json) process.stdout.write(`${JSON.stringify(summary)}\n`);
        else
          process.stdout.write(
            `${table(
              ['key', 'kind', 'rows'],
              files.map((f) => [f.key, f.kind, f.rowCount]),
            )}\n`,
          );
        return;
      }
      case 'demo': {
        const scale = parsePositiveNumber('--scale', String(opts['scale'] ?? '1'));
        const { runDemo } = await import('./demo.js');
        process.exitCode = await runDemo({ keep: Boolean(opts['keep']), scale, json, tty, logger });
        return;
      }
      case 'publish':
      case 'subscribe':
      case 'archive': {
        const { runKafkaCommand } = await import('./kafka.js');
        process.exitCode = await runKafkaCommand(command, opts, { env, logger, json, tty });
        return;
      }
    }
  } catch (error) {
    process.exitCode = reportCommandError(APP, error);
  }
}
