import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import pg from 'pg';
import type { LatePolicy } from './runner.js';

/** Usage errors exit with code 2 and a message naming the flag, option path or variable. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** What both binaries read from the environment (credentials stay in the AWS default chain). */
export interface ServiceEnvironment {
  databaseUrl: string | undefined;
  s3Endpoint: string | undefined;
  /** `S3_BUCKET`, when set. */
  bucket: string | undefined;
  forcePathStyle: boolean;
  region: string;
}

export function readServiceEnvironment(env: NodeJS.ProcessEnv = process.env): ServiceEnvironment {
  const s3Endpoint = env.S3_ENDPOINT || undefined;
  const forcePathStyleText = env.S3_FORCE_PATH_STYLE;
  let forcePathStyle = s3Endpoint !== undefined;
  if (forcePathStyleText !== undefined && forcePathStyleText !== '') {
    if (!/^(true|false|1|0)$/i.test(forcePathStyleText)) {
      throw new UsageError(
        `S3_FORCE_PATH_STYLE must be true or false, got ${JSON.stringify(forcePathStyleText)}`,
      );
    }
    forcePathStyle = /^(true|1)$/i.test(forcePathStyleText);
  }
  return {
    databaseUrl: env.DATABASE_URL || undefined,
    s3Endpoint,
    bucket: env.S3_BUCKET || undefined,
    forcePathStyle,
    region: env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1',
  };
}

/**
 * The SDK's default logger (NoOpLogger) discards everything, yet having an `info` method makes
 * every request and response go through the SDK's sensitive-data log filter first: about 3% of
 * the CPU a small file costs (issue 12). Without `info` the SDK skips it (`logger?.info?.(…)`).
 */
const QUIET_SDK_LOGGER = {
  trace() {},
  debug() {},
  warn() {},
  error() {},
} as unknown as NonNullable<S3ClientConfig['logger']>;

/** The user's S3 client: credentials from the AWS default chain (env, profile, role); never logged. */
export function createS3Client(
  env: Pick<ServiceEnvironment, 's3Endpoint' | 'forcePathStyle' | 'region'>,
): S3Client {
  return new S3Client({
    region: env.region,
    ...(env.s3Endpoint ? { endpoint: env.s3Endpoint } : {}),
    forcePathStyle: env.forcePathStyle,
    // Checksums only where the API requires them: S3-compatible servers (MinIO, s3rver) differ.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    // One retry budget: the stages retry per core's RetryPolicy; SDK tries would multiply it.
    maxAttempts: 1,
    logger: QUIET_SDK_LOGGER,
  });
}

export function requireDatabaseUrl(env: Pick<ServiceEnvironment, 'databaseUrl'>): string {
  if (!env.databaseUrl) throw new UsageError('DATABASE_URL is not set (e.g. postgres://user@host:5432/db)');
  return env.databaseUrl;
}

/**
 * The binary's pool for DATABASE_URL. Idle-connection errors (a restarted server) are reported,
 * never thrown: an unhandled pool 'error' would crash the process (pg-pool's most reported bug).
 */
export function openPool(
  env: Pick<ServiceEnvironment, 'databaseUrl'>,
  app: string,
  logger: { warn(obj: object, msg: string): void },
  max = 4,
): pg.Pool {
  const pool = new pg.Pool({ connectionString: requireDatabaseUrl(env), application_name: app, max });
  // The message only, through the logger's redaction: no connection details.
  pool.on('error', (error) => logger.warn({ err: error.message }, 'idle PostgreSQL connection failed'));
  return pool;
}

export function parsePositiveNumber(flag: string, text: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0)
    throw new UsageError(`${flag} must be a positive number, got ${JSON.stringify(text)}`);
  return n;
}

export function parsePositiveInteger(flag: string, text: string): number {
  const n = parsePositiveNumber(flag, text);
  if (!Number.isInteger(n))
    throw new UsageError(`${flag} must be a whole number, got ${JSON.stringify(text)}`);
  return n;
}

export function parseChoice<T extends string>(flag: string, text: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(text)) {
    throw new UsageError(`${flag} must be one of ${choices.join(', ')}, got ${JSON.stringify(text)}`);
  }
  return text as T;
}

/** `--late-files error|apply|skip` (default error). */
export function parseLatePolicy(text: unknown): LatePolicy {
  return parseChoice('--late-files', String(text ?? 'error'), ['error', 'apply', 'skip'] as const);
}
