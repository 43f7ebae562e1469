import { readServiceEnvironment, type ServiceEnvironment } from '@tributary/cli';

export {
  createS3Client,
  type LatePolicy,
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
