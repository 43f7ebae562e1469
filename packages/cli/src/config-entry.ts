// `@tributary/cli/config`: the config file's schema and loader, apart from the runner so that a
// binary that takes no config file (tickets-pipeline) never loads zod and yaml at start.
export { ConfigError, expandEnv, loadConfig, parseConfig } from './config.js';
export { type StreamSpaces, streamSpaces } from './config-checks.js';
export {
  configSchema,
  type StreamConfig,
  streamSchema,
  type TransformConfig,
  type TributaryConfig,
} from './config-schema.js';
export { configReference, withConfigReference } from './reference.js';
export { selectSpecs, streamSpec } from './specs.js';
