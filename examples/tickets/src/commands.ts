import {
  type CommandContext,
  createLogger,
  reportCommandError,
  runCommand,
  statusCommand,
  table,
} from '@tributary/cli';
import { createS3Client, type Environment, readEnvironment, UsageError } from './config.js';
import type {
  ArchiveFlags,
  DemoFlags,
  GenerateFlags,
  PublishFlags,
  ReplayFlags,
  RunFlags,
  StatusFlags,
  SubscribeFlags,
} from './flags.js';
import { ticketSpec } from './run.js';

export { EXIT, exitCodeFor, exitWhenDone, runJson } from '@tributary/cli';

const APP = 'tickets-pipeline';

/** stderr names a dataset, not a stream id: `dataset inc: …` (the contract's wording). */
const datasetLabel = (stream: string) => `dataset ${stream.split('/')[1]}`;

/** What every handler gets: the output context and the documented environment. */
export interface Command extends CommandContext {
  env: Environment;
}

/**
 * One handler per command: each takes the flags commander parsed (typed, validated) and sets
 * the exit code; errors become their exit code and one line on stderr, the same for all.
 */
function handler<F extends { json?: boolean }>(
  body: (command: Command, flags: F) => Promise<number | undefined>,
): (flags: F) => Promise<void> {
  return async (flags) => {
    const logger = createLogger(APP);
    const json = Boolean(flags.json);
    const tty = Boolean(process.stderr.isTTY) && !json;
    try {
      const command: Command = { app: APP, logger, json, tty, label: datasetLabel, env: readEnvironment() };
      const code = await body(command, flags);
      if (code !== undefined) process.exitCode = code;
    } catch (error) {
      process.exitCode = reportCommandError(APP, error);
    }
  };
}

export const run = handler<RunFlags>((command, flags) =>
  runCommand(
    command,
    command.env,
    flags.dataset.map((dataset) => ticketSpec(command.env, dataset, { lateFiles: flags.lateFiles })),
    {
      apply: Boolean(flags.apply),
      watch: Boolean(flags.watch),
      intervalMs: flags.interval * 1000,
      metricsPort: flags.metricsPort,
      concurrency: flags.concurrency,
      lateFiles: flags.lateFiles,
    },
  ),
);

export const replay = handler<ReplayFlags>((command, flags) =>
  runCommand(
    command,
    command.env,
    flags.dataset.map((dataset) => ticketSpec(command.env, dataset, { lateFiles: 'error' })),
    {
      apply: Boolean(flags.apply),
      watch: false,
      intervalMs: 60_000,
      metricsPort: undefined,
      concurrency: 4,
      lateFiles: 'error',
      replayFrom: flags.from,
    },
  ),
);

export const status = handler<StatusFlags>(async (command, flags) => {
  await statusCommand(
    command,
    command.env,
    flags.dataset.map((dataset) => ticketSpec(command.env, dataset)),
  );
  return undefined;
});

export const generate = handler<GenerateFlags>(async ({ env, logger, json }, flags) => {
  if (!flags.out && !flags.s3) throw new UsageError('generate needs --out <dir> or --s3');
  // Loaded only for the commands that need them: a `run` starts without the generator,
  // lib-storage, embedded PostgreSQL or s3rver.
  const { generateBucket } = await import('./generate.js');
  const { uploadBucket, writeBucketToDir } = await import('./upload.js');
  const files = generateBucket({ seed: flags.seed, scale: flags.scale, prefix: env.prefix });
  if (flags.out) await writeBucketToDir(files, flags.out);
  if (flags.s3) {
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
  return undefined;
});

export const demo = handler<DemoFlags>(async ({ logger, json, tty }, flags) => {
  const { runDemo } = await import('./demo.js');
  return runDemo({ keep: Boolean(flags.keep), scale: flags.scale, json, tty, logger });
});

export const publish = handler<PublishFlags>(async (command, flags) =>
  (await import('./kafka.js')).publish(command, flags),
);

export const subscribe = handler<SubscribeFlags>(async (command, flags) =>
  (await import('./kafka.js')).subscribe(command, flags),
);

export const archive = handler<ArchiveFlags>(async (command, flags) =>
  (await import('./kafka.js')).archive(command, flags),
);
