// `@tributary/cli/config`: the config file's schema and loader, apart from the runner so that a
// binary that takes no config file (tickets-pipeline) never loads zod and yaml at start.
export {
  ConfigError,
  configSchema,
  expandEnv,
  loadConfig,
  parseConfig,
  type StreamConfig,
  type StreamSpaces,
  streamSchema,
  streamSpaces,
  type TransformConfig,
  type TributaryConfig,
} from './config.js';
export { configReference, withConfigReference } from './reference.js';
export { selectSpecs, streamSpec } from './specs.js';
