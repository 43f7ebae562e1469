#!/usr/bin/env node
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { Command, CommanderError, Option } from 'commander';
import { EXIT, reportCommandError, runCommand, statusCommand } from './commands.js';
import { loadConfig } from './config.js';
import { streamSpaces } from './config-checks.js';
import type { TributaryConfig } from './config-schema.js';
import {
  createS3Client,
  parseLatePolicy,
  parsePositiveInteger,
  parsePositiveNumber,
  readServiceEnvironment,
  UsageError,
} from './env.js';
import { createLogger, exitWhenDone } from './output.js';
import type { StreamSpec } from './spec.js';
import { selectExtracts, selectSpecs } from './specs.js';
import { discoverTables, expandTemplates } from './templates.js';

/**
 * `tributary`: every stream declared in a config file, each in its own failure domain. The
 * commands, config keys, JSON output and exit codes are a contract (packages/cli/README.md):
 * 0 success, 1 a stream failed, 2 usage or config error (before any I/O), 3 locked.
 */
const APP = 'tributary';

const program = new Command(APP)
  .description(
    'Ordered, exactly-once change files from S3 into PostgreSQL, for every stream in a config file.',
  )
  .showHelpAfterError()
  .exitOverride()
  .configureOutput({ writeErr: (text) => process.stderr.write(text) });

const configOption = () =>
  new Option('--config <file>', 'config file (YAML, or JSON by extension)').makeOptionMandatory();
const streamOption = () =>
  new Option('--stream <ids>', 'only these stream ids (comma-separated); default all');
const jsonOption = () => new Option('--json', 'print one JSON document as the last line of stdout');

type Options = Record<string, unknown>;

function streamIds(opts: Options): string[] | undefined {
  if (opts['stream'] === undefined) return undefined;
  const ids = String(opts['stream'])
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (!ids.length) throw new UsageError('--stream needs at least one stream id');
  return [...new Set(ids)];
}

async function withContext(
  opts: Options,
  action: (config: TributaryConfig) => Promise<number | undefined>,
): Promise<void> {
  try {
    const config = await loadConfig(String(opts['config']));
    const code = await action(config);
    if (typeof code === 'number') process.exitCode = code;
  } catch (error) {
    process.exitCode = reportCommandError(APP, error);
  }
}

/** The config's streams, discover templates expanded from a one-level listing of their folder. */
async function discoverSpecs(
  config: TributaryConfig,
  file: string,
  client: S3Client,
  selected: readonly string[] | undefined,
): Promise<StreamSpec[]> {
  const tables = new Map<number, string[]>();
  for (const [i, stream] of config.streams.entries()) {
    if (!stream.discover) continue;
    const { bucket } = streamSpaces(stream);
    const under = stream.discover.under;
    tables.set(
      i,
      await discoverTables(async (token) => {
        const page = await client.send(
          new ListObjectsV2Command({
            Bucket: bucket,
            Prefix: under,
            Delimiter: '/',
            ContinuationToken: token,
          }),
        );
        return {
          prefixes: (page.CommonPrefixes ?? []).flatMap((p) => (p.Prefix ? [p.Prefix] : [])),
          next: page.IsTruncated ? page.NextContinuationToken : undefined,
        };
      }, under),
    );
  }
  return selectSpecs(tables.size ? expandTemplates(config, tables, file) : config, selected);
}

const hasTemplates = (config: TributaryConfig) => config.streams.some((s) => s.discover);

/** Specs for a command, listing template folders with a short-lived client when there are any. */
async function commandSpecs(config: TributaryConfig, opts: Options): Promise<StreamSpec[]> {
  const selected = streamIds(opts);
  if (!hasTemplates(config)) return selectSpecs(config, selected);
  const client = createS3Client(readServiceEnvironment());
  try {
    return await discoverSpecs(config, String(opts['config']), client, selected);
  } finally {
    client.destroy();
  }
}

function context(opts: Options) {
  const json = Boolean(opts['json']);
  return { app: APP, logger: createLogger(APP), json, tty: Boolean(process.stderr.isTTY) && !json };
}

function runOrReplay(command: 'run' | 'replay') {
  return (opts: Options) =>
    withContext(opts, async (config) => {
      const specs = await commandSpecs(config, opts);
      if (command === 'replay' && specs.length !== 1) throw new UsageError('replay takes one --stream');
      const watch = command === 'run' && Boolean(opts['watch']);
      // New table folders under a template are picked up while watching (not with --stream).
      const rediscover =
        watch && hasTemplates(config) && opts['stream'] === undefined
          ? (client: S3Client) => discoverSpecs(config, String(opts['config']), client, undefined)
          : undefined;
      const metricsPort =
        opts['metricsPort'] === undefined
          ? undefined
          : parsePositiveNumber('--metrics-port', String(opts['metricsPort']));
      const concurrency =
        opts['concurrency'] === undefined
          ? undefined
          : parsePositiveInteger('--concurrency', String(opts['concurrency']));
      return runCommand(context(opts), readServiceEnvironment(), specs, {
        apply: Boolean(opts['apply']),
        ...(command === 'run' ? { extracts: selectExtracts(config, streamIds(opts)) } : {}),
        watch,
        rediscover,
        intervalMs: parsePositiveNumber('--interval', String(opts['interval'] ?? '60')) * 1000,
        metricsPort,
        concurrency,
        ...(opts['lateFiles'] === undefined ? {} : { lateFiles: parseLatePolicy(opts['lateFiles']) }),
        ...(command === 'replay' ? { replayFrom: String(opts['from']) } : {}),
      });
    });
}

program
  .command('run')
  .description('plan (default) or apply pending files of every stream, each in time order')
  .addOption(configOption())
  .addOption(streamOption())
  .option('--apply', 'apply: without it this is a dry run that changes nothing')
  .option('--watch', 'keep polling until SIGINT/SIGTERM (finishes in-flight files first)')
  .option('--interval <seconds>', 'poll interval in watch mode', '60')
  .option('--concurrency <n>', 'streams applying files at once', '4')
  .addOption(
    new Option('--late-files <policy>', "override every stream's lateFiles").choices([
      'error',
      'apply',
      'skip',
    ]),
  )
  .option('--metrics-port <port>', 'serve Prometheus metrics and /healthz on this port')
  .addOption(jsonOption())
  .action(runOrReplay('run'));

program
  .command('status')
  .description('watermark, lag, loaded / pending / late files and the last error per stream')
  .addOption(configOption())
  .addOption(streamOption())
  .addOption(jsonOption())
  .action((opts: Options) =>
    withContext(opts, async (config) => {
      await statusCommand(
        context(opts),
        readServiceEnvironment(),
        await commandSpecs(config, opts),
        selectExtracts(config, streamIds(opts)).map((s) => s.id),
      );
      return EXIT.ok;
    }),
  );

program
  .command('replay')
  .description("re-apply a stream's archived files at or after a key, in order (back-fill)")
  .addOption(configOption())
  .addOption(streamOption().makeOptionMandatory())
  .requiredOption('--from <key>', 'first key, or the time part of its name, to replay')
  .option('--apply', 'apply: without it this is a dry run')
  .addOption(jsonOption())
  .action(runOrReplay('replay'));

program
  .command('validate')
  .description('check the config file (schema, environment, overlapping prefixes) without any I/O')
  .addOption(configOption())
  .addOption(jsonOption())
  .action((opts: Options) =>
    withContext(opts, async (config) => {
      // Templates are expanded at run time (a listing); their fixed parts were checked above.
      const specs = selectSpecs({ ...config, streams: config.streams.filter((s) => !s.discover) }, undefined);
      const ids = [...config.extracts.map((s) => s.id), ...config.streams.map((s) => s.id)];
      // The S3 source's own option checks too (still no I/O: nothing is listed or sent).
      const { s3Source } = await import('@tributary/s3-source');
      const client = new S3Client({ region: 'us-east-1' });
      try {
        for (const spec of specs) s3Source({ client, streams: [spec.source], archive: false });
      } catch (error) {
        throw new UsageError(`${String(opts['config'])}: invalid config: ${(error as Error).message}`);
      } finally {
        client.destroy();
      }
      if (opts['json']) process.stdout.write(`${JSON.stringify({ ok: true, streams: ids })}\n`);
      else
        process.stdout.write(`${String(opts['config'])}: ok, ${ids.length} stream(s): ${ids.join(', ')}\n`);
      return EXIT.ok;
    }).then(() => {
      if (opts['json'] && process.exitCode === EXIT.usage) {
        // The error went to stderr; scripts reading --json still get one document.
        process.stdout.write(`${JSON.stringify({ ok: false })}\n`);
      }
    }),
  );

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) process.exitCode = error.exitCode === 0 ? 0 : EXIT.usage;
  else process.exitCode = reportCommandError(APP, error);
}
// Finished: nothing a client library left open keeps the process alive.
exitWhenDone();
