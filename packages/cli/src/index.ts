export type { AfterCommitStatus } from './after-commit.js';
export {
  type CommandContext,
  EXIT,
  exitCodeFor,
  type RunCommandOptions,
  reportCommandError,
  runCommand,
  runJson,
  statusCommand,
} from './commands.js';
export {
  createS3Client,
  openPool,
  parseChoice,
  parseLatePolicy,
  parsePositiveInteger,
  parsePositiveNumber,
  readServiceEnvironment,
  requireDatabaseUrl,
  type ServiceEnvironment,
  UsageError,
} from './env.js';
export { type FailingStream, type StreamHealth, streamHealth } from './health.js';
export {
  createLogger,
  describeError,
  exitWhenDone,
  type Logger,
  type ProgressRenderer,
  progressRenderer,
  redact,
  stopOnSignals,
  table,
} from './output.js';
export {
  CONTROL_SCHEMA,
  type FileReport,
  type FileStatus,
  type LatePolicy,
  MAX_RESTART_DELAY_MS,
  type RunOptions,
  runDefinition,
  runStreamSpecs,
  type StreamReport,
  specSink,
} from './runner.js';
export type { StreamSpec } from './spec.js';
export { readStatus, type StreamStatus } from './status.js';
