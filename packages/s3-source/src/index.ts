export {
  type ArchiveFileInput,
  type ArchiveFileOptions,
  archivedCopyMatches,
  archiveFile,
  sameObject,
} from './archive.js';
export { checkColumns } from './columns.js';
export {
  archiveKey,
  type BuiltInKeyPattern,
  baseName,
  changeTablePrefix,
  type DataFormat,
  DataSuffixes,
  dataSuffix,
  formatKeyTime,
  formatOfKey,
  isValidTimeZone,
  type KeyPattern,
  KeyPatterns,
  type KeyTime,
  type LocalTimeResolution,
  localTimeToUtc,
  parentPrefix,
  parseKeyTime,
  qlikLoadNumber,
  siblingPrefix,
  stemOf,
  ZoneAbbreviations,
  zoneOffsetMs,
  zoneToken,
  zoneTokenOffsetMinutes,
} from './keys.js';
export { type ListedObject, type ListKeysOptions, type ListResult, listKeys, normalizeEtag } from './list.js';
export {
  DEFAULT_BATCH_BYTES,
  DEFAULT_BATCH_ROWS,
  DEFAULT_RETRY,
  type ResolvedOptions,
  type RetryOptions,
  resolveOptions,
  type S3FileTargetOptions,
  type S3SourceOptions,
  s3FileTargetOptionsSchema,
  s3SourceOptionsSchema,
  type WatchOptions,
} from './options.js';
export {
  compareOrder,
  maxWatermark,
  type OrderedObject,
  orderOf,
  type Watermark,
} from './order.js';
export {
  type PendingPlan,
  type PlanInput,
  type PlannedFile,
  planPendingFiles,
  planReplay,
  type StreamPlan,
} from './plan.js';
export type { PlanContext } from './planning.js';
export { type S3Position, toS3Position } from './position.js';
export { type FileChunk, type ReadFileOptions, readFileBatches } from './read.js';
export { withRetry } from './retry.js';
export { type S3Source, s3Source } from './source.js';
export {
  type ColumnCheck,
  type CommitGranularity,
  type EtagChangedPolicy,
  type LateFilePolicy,
  type Layout,
  type OnErrorPolicy,
  type ResolvedStream,
  type StreamDefinition,
  streamDefinitionSchema,
} from './stream-options.js';
export {
  type FileUnit,
  type S3FileTarget,
  s3FileTarget,
  type WrittenFile,
} from './write.js';
