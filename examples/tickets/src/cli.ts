#!/usr/bin/env node
import { Command, CommanderError, Option } from 'commander';
import {
  type ArchiveFlags,
  brokerList,
  type DemoFlags,
  type GenerateFlags,
  oneDataset,
  type PublishFlags,
  parseDatasets,
  positiveInteger,
  positiveNumber,
  type ReplayFlags,
  type RunFlags,
  type StatusFlags,
  type SubscribeFlags,
} from './flags.js';

// The commands' code (AWS SDK, pg, the runner) loads only once a command runs: --help and usage
// errors answer at once. Commander parses and validates every value once; each handler gets
// typed flags.
let ranCommand = false;
const commands = () => {
  ranCommand = true;
  return import('./commands.js');
};

/**
 * `tickets-pipeline`: the command line is a contract (examples/tickets/README.md).
 * Exit codes: 0 success (also nothing to do), 1 a dataset failed, 2 usage error, 3 locked.
 */
const program = new Command('tickets-pipeline')
  .description('FTTH ticket change files from S3 into PostgreSQL (seed 000), built on Tributary.')
  .showHelpAfterError()
  .exitOverride()
  .configureOutput({ writeErr: (text) => process.stderr.write(text) });

const datasetOption = (fallback = 'inc') =>
  new Option('--dataset <names>', 'inc, crq or inc,crq')
    .argParser(parseDatasets)
    .default(parseDatasets(fallback), fallback);
const oneDatasetOption = () =>
  new Option('--dataset <name>', 'inc or crq').argParser(oneDataset).default(oneDataset('inc'), 'inc');
const brokersOption = () =>
  new Option('--brokers <list>', 'host:port,…').argParser(brokerList).makeOptionMandatory();
const lateFilesOption = () =>
  new Option('--late-files <policy>', 'what to do with late files')
    .choices(['error', 'apply', 'skip'])
    .default('error');
const jsonOption = () => new Option('--json', 'print one JSON document as the last line of stdout');

program
  .command('run')
  .description('plan (default) or apply pending change files, in time order')
  .addOption(datasetOption())
  .option('--apply', 'apply: without it this is a dry run that changes nothing')
  .option('--watch', 'keep polling until SIGINT/SIGTERM (finishes the in-flight file first)')
  .option('--interval <seconds>', 'poll interval in watch mode', positiveNumber, 60)
  .addOption(lateFilesOption())
  .option(
    '--metrics-port <port>',
    'serve Prometheus metrics and /healthz on this port (watch mode)',
    positiveInteger,
  )
  .option('--concurrency <n>', 'datasets applying files at once', positiveInteger, 4)
  .addOption(jsonOption())
  .action(async (flags: RunFlags) => (await commands()).run(flags));

program
  .command('status')
  .description('watermark, lag, loaded and pending files, late files and the last error per dataset')
  .addOption(datasetOption('inc,crq'))
  .addOption(jsonOption())
  .action(async (flags: StatusFlags) => (await commands()).status(flags));

program
  .command('replay')
  .description('re-apply archived files from processed/ at or after a key, in order (back-fill)')
  .addOption(datasetOption())
  .requiredOption('--from <key>', 'first key (or timestamp) to replay, e.g. 2026-06-22T17-10-41')
  .option('--apply', 'apply: without it this is a dry run')
  .addOption(jsonOption())
  .action(async (flags: ReplayFlags) => (await commands()).replay(flags));

program
  .command('generate')
  .description('write a deterministic synthetic tickets bucket shaped like the real export')
  .option('--out <dir>', 'write files under this directory')
  .option('--s3', 'upload to S3_BUCKET (created if missing) at S3_ENDPOINT')
  .option('--seed <n>', 'random seed', positiveNumber, 42)
  .option('--scale <k>', 'multiply the baseline sizes by k', positiveNumber, 1)
  .addOption(jsonOption())
  .action(async (flags: GenerateFlags) => (await commands()).generate(flags));

program
  .command('demo')
  .description('embedded PostgreSQL + S3, a generated bucket, apply inc and crq, print a summary')
  .option('--keep', 'keep the embedded services running and print their URLs')
  .option('--scale <k>', 'multiply the baseline sizes by k', positiveNumber, 1)
  .addOption(jsonOption())
  .action(async (flags: DemoFlags) => (await commands()).demo(flags));

program
  .command('publish')
  .description('S3 → Kafka: publish pending files of a dataset to a topic (checkpoint in PostgreSQL)')
  .addOption(oneDatasetOption())
  .addOption(brokersOption())
  .option('--topic <name>', 'topic (default tickets.<dataset>)')
  .option('--partitions <n>', 'partitions when creating the topic', positiveInteger, 3)
  .option(
    '--replication-factor <n>',
    "replication factor when creating the topic (default: the broker's)",
    positiveInteger,
  )
  .option('--apply', 'publish: without it this is a dry run')
  .addOption(lateFilesOption())
  .addOption(jsonOption())
  .action(async (flags: PublishFlags) => (await commands()).publish(flags));

program
  .command('subscribe')
  .description('Kafka → PostgreSQL: apply a topic into tickets.<dataset> exactly once')
  .addOption(brokersOption())
  .requiredOption('--topic <name>', 'topic to read')
  .requiredOption('--group <id>', 'consumer group id')
  .addOption(oneDatasetOption())
  .option('--exit-when-idle', 'stop once the end offsets seen at start are consumed')
  .addOption(jsonOption())
  .action(async (flags: SubscribeFlags) => (await commands()).subscribe(flags));

program
  .command('archive')
  .description('Kafka → S3: roll a topic into JSON-lines files by count or age')
  .addOption(brokersOption())
  .requiredOption('--topic <name>', 'topic to archive')
  .requiredOption('--to <prefix>', 'S3 key prefix for the files')
  .option('--max-records <n>', 'records per file', positiveInteger, 10_000)
  .option('--max-age <seconds>', 'seconds before a partial file is written', positiveNumber, 3600)
  .option('--group <id>', 'consumer group id (default tributary-archive-<topic>)')
  .option('--exit-when-idle', 'stop once the end offsets seen at start are consumed')
  .addOption(jsonOption())
  .action(async (flags: ArchiveFlags) => (await commands()).archive(flags));

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    // Help and version are not errors; everything else commander rejects is a usage error.
    process.exitCode = error.exitCode === 0 ? 0 : 2;
  } else {
    process.stderr.write(`tickets-pipeline: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  }
}
// A command finished: nothing a client library left open (a kafkajs socket) keeps it alive.
if (ranCommand) (await commands()).exitWhenDone();
