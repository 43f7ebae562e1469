import { readServiceEnvironment, type ServiceEnvironment, UsageError } from '@tributary/cli';
import { DATASETS, type Dataset } from './tickets.js';

export {
  createS3Client,
  type LatePolicy,
  parseChoice,
  parseLatePolicy,
  parsePositiveInteger,
  parsePositiveNumber,
  requireDatabaseUrl,
  UsageError,
} from '@tributary/cli';

export interface Environment extends ServiceEnvironment {
  bucket: string;
  prefix: string;
}

/** Reads the documented environment (examples/tickets/README.md § Environment). */
export function readEnvironment(env: NodeJS.ProcessEnv = process.env): Environment {
  return {
    ...readServiceEnvironment(env),
    bucket: env.S3_BUCKET || 'tickets',
    prefix: (env.S3_PREFIX || 'automations').replace(/\/+$/, ''),
  };
}

export function parseDatasets(text: string): Dataset[] {
  const names = text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (names.length === 0) throw new UsageError('--dataset needs at least one of: inc, crq');
  for (const name of names) {
    if (!(DATASETS as readonly string[]).includes(name)) {
      throw new UsageError(
        `--dataset: unknown dataset ${JSON.stringify(name)} (expected inc, crq or inc,crq)`,
      );
    }
  }
  return [...new Set(names)] as Dataset[];
}

/** Commands that work on exactly one dataset. */
export function singleDataset(command: string, text: unknown): Dataset {
  const [dataset, ...more] = parseDatasets(String(text));
  if (!dataset || more.length) throw new UsageError(`${command} takes one --dataset`);
  return dataset;
}
