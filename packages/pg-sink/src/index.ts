export type { AfterCommitHook, CommittedUnit } from './after-commit.js';
export { type ApplyPlan, planApply } from './apply.js';
export { type MigrateOptions, type Migration, migrate, migrations } from './migrations.js';
export type {
  ColumnSpec,
  DeleteSpec,
  FaultHooks,
  LockOptions,
  PgSinkOptions,
  QlikTarget,
  SchemaDrift,
  TargetResolver,
  TargetTable,
  WriteMode,
} from './options.js';
export {
  columnSpecSchema,
  deleteSpecSchema,
  lockOptionsSchema,
  pgSinkOptionsSchema,
  qlikTargetSchema,
  targetTableSchema,
} from './options.js';
export { type PgSink, pgSink, type RunInfo, type RunOutcome } from './sink.js';
export { qualifiedName, quoteIdent, redactSecrets, redactUrl } from './sql.js';
export {
  type PgCheckpointStore,
  type PgCheckpointStoreOptions,
  pgCheckpointStore,
  pgLoadLog,
  readState,
  type SaveCheckpointOptions,
  type StreamState,
  type Watermark,
} from './state.js';
