export { type Environment, readEnvironment, UsageError } from './config.js';
export {
  changeFiles,
  csvChunks,
  type ExpectedTable,
  expectedTable,
  type GeneratedFile,
  generateBucket,
  SHAPES,
  seededRandom,
} from './generate.js';
export {
  type FileReport,
  type RunOptions,
  runDatasets,
  type StreamReport,
  streamId,
  ticketSink,
  ticketStream,
  ticketTarget,
} from './run.js';
export * from './tickets.js';
export { uploadBucket, writeBucketToDir } from './upload.js';
