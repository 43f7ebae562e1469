export { type ExtractResult, extractTable } from './extract.js';
export type { ExtractColumn, ExtractMode, ExtractTableOptions, ExtractTarget } from './options.js';
export {
  type ExtractStatus,
  type ReconciledRun,
  readExtractStatus,
  reconcileExtractRuns,
} from './runlog.js';
