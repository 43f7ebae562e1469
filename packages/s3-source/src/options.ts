import type { S3Client } from '@aws-sdk/client-s3';
import { DEFAULT_RETRY_POLICY, type RetryPolicy } from '@tributary/core';
import { instance, optionsResolver } from '@tributary/core/options';
import { z } from 'zod';
import { isValidTimeZone, KeyPatterns } from './keys.js';
import { flag, got, integerFrom, nonEmptyString, oneOf } from './option-values.js';
import { type ResolvedStream, resolveStream, streamDefinitionSchema } from './stream-options.js';

/**
 * The S3 stages' options (issue 16): one zod schema is the type, the defaults, the validation (a
 * bad option fails before any I/O, naming its path) and the README's table (`pnpm docs:options`).
 * Defaults that depend on other options (a stream's folders, key pattern, column check) are
 * derived after validation, in `resolveOptions`, and documented in the option's description.
 */

/** Core's one `RetryPolicy`, each field optional: 4 retries, 200 ms doubling to 10 s by default. */
export type RetryOptions = Partial<RetryPolicy>;

export const DEFAULT_BATCH_ROWS = 5000;
export const DEFAULT_BATCH_BYTES = 8 * 1024 * 1024;
export const DEFAULT_RETRY: Required<RetryOptions> = { ...DEFAULT_RETRY_POLICY };

const s3ClientInstance = instance<S3Client>(
  'S3Client',
  (v) => typeof v === 'object' && v !== null && typeof (v as S3Client).send === 'function',
);

const watchSchema = z
  .strictObject({
    intervalMs: integerFrom(1).describe('time between polls once the plan is empty'),
    jitter: z
      .number({ error: (issue) => `must be a fraction between 0 and 1, got ${got(issue.input)}` })
      .min(0, { error: (issue) => `must be a fraction between 0 and 1, got ${got(issue.input)}` })
      .max(1, { error: (issue) => `must be a fraction between 0 and 1, got ${got(issue.input)}` })
      .default(0.1)
      .describe('random extra fraction of the interval, 0–1'),
  })
  .describe(
    'after a pass with nothing to read, sleep `intervalMs × (1 + jitter × random)` and poll again, until `ctx.stop` or `ctx.signal` fires; default off',
  );

export type WatchOptions = z.input<typeof watchSchema>;

export const s3SourceOptionsSchema = z
  .strictObject({
    client: s3ClientInstance.describe("the caller's client (region, credentials, endpoint are theirs)"),
    streams: z
      .array(streamDefinitionSchema, { error: 'must be a non-empty array of stream definitions' })
      .min(1, 'must be a non-empty array of stream definitions')
      .superRefine((streams, ctx) => {
        const seen = new Set<string>();
        for (const [index, stream] of streams.entries()) {
          if (seen.has(stream.id)) {
            ctx.addIssue({ code: 'custom', path: [index, 'id'], message: `${got(stream.id)} is used twice` });
          }
          seen.add(stream.id);
        }
      })
      .describe('one or more stream definitions; each has its own checkpoint'),
    name: nonEmptyString('must be a non-empty string')
      .default('s3')
      .describe('source name in pipeline events'),
    batchRows: integerFrom(1)
      .optional()
      .describe(
        `rows per batch; default ${DEFAULT_BATCH_ROWS} when parsed, unlimited for raw (pass-through) batches (bytes bound them)`,
      ),
    batchBytes: integerFrom(1)
      .default(DEFAULT_BATCH_BYTES)
      .describe('decompressed input bytes per batch (checked at stream-chunk granularity); 8 MiB'),
    archive: flag()
      .default(true)
      .describe(
        'move each file to the processed prefix after commit; `false` leaves files in place (the checkpoint still prevents re-reading)',
      ),
    watch: watchSchema.optional(),
    retry: z
      .union([
        z.literal(false),
        z.strictObject({
          retries: integerFrom(0).default(DEFAULT_RETRY.retries).describe('retries after the first attempt'),
          minDelayMs: integerFrom(0).default(DEFAULT_RETRY.minDelayMs).describe('first backoff delay'),
          maxDelayMs: integerFrom(0).default(DEFAULT_RETRY.maxDelayMs).describe('longest backoff delay'),
        }),
      ])
      .prefault({})
      .describe(
        "retries of transient S3 failures (5xx, throttling, connection resets; core's `isTransient`) with exponential backoff and jitter (core's one `RetryPolicy`). Give the client `maxAttempts: 1` so the SDK's retries do not multiply these; a failure retried to the end is not retried again by the pipeline. Covers a body reset mid-download: the file is re-read and the rows already handed out are skipped. `false` disables",
      ),
  })
  .describe('s3Source options');

export type S3SourceOptions = z.input<typeof s3SourceOptionsSchema>;

const parseS3SourceOptions = optionsResolver('s3Source', s3SourceOptionsSchema);

export interface ResolvedOptions {
  client: S3Client;
  name: string;
  streams: ResolvedStream[];
  batchRows: number;
  /** Records per raw (pass-through) batch: `batchRows` when given, else unlimited. */
  rawBatchRows: number;
  batchBytes: number;
  archive: boolean;
  watch: { intervalMs: number; jitter: number } | undefined;
  retry: Required<RetryOptions>;
}

/** Validates options once, before any I/O; a bad option names its path (STYLE.md). */
export function resolveOptions(options: S3SourceOptions): ResolvedOptions {
  const parsed = parseS3SourceOptions(options);
  return {
    client: parsed.client,
    name: parsed.name,
    streams: parsed.streams.map(resolveStream),
    batchRows: parsed.batchRows ?? DEFAULT_BATCH_ROWS,
    rawBatchRows: parsed.batchRows ?? Number.POSITIVE_INFINITY,
    batchBytes: parsed.batchBytes,
    archive: parsed.archive,
    watch: parsed.watch,
    retry: parsed.retry === false ? { ...DEFAULT_RETRY, retries: 0 } : parsed.retry,
  };
}

const MIN_PART_SIZE = 5 * 1024 * 1024;

export const s3FileTargetOptionsSchema = z
  .strictObject({
    client: s3ClientInstance.describe("the caller's client"),
    bucket: nonEmptyString('is required').describe('bucket to write to'),
    prefix: z
      .string({ error: 'is required' })
      .superRefine((value, ctx) => {
        if (!value || value.startsWith('/')) {
          ctx.addIssue({
            code: 'custom',
            message: `${got(value)} must be a non-empty key prefix without a leading /`,
          });
        }
      })
      .describe('folder of the files, e.g. `dwh/exports/trips/` (a trailing `/` is added when missing)'),
    keyPattern: oneOf(KeyPatterns)
      .default('YYYYMMDD_HHMM_<TZ>')
      .describe("how a file name encodes its unit's time (the DWH manual's, e.g. `20260424_1400_EAT.csv`)"),
    timeZone: z
      .string()
      .superRefine((value, ctx) => {
        if (!isValidTimeZone(value)) {
          ctx.addIssue({ code: 'custom', message: `${got(value)} is not an IANA zone` });
        }
      })
      .default('UTC')
      .describe('IANA zone the time in names is written in'),
    gzip: flag().default(false).describe('gzip the file (`.csv.gz`)'),
    partSize: integerFrom(MIN_PART_SIZE)
      .default(8 * 1024 * 1024)
      .describe('multipart part size in bytes (min 5 MiB; 8 MiB)'),
    queueSize: integerFrom(1).default(4).describe('parts uploaded at once'),
  })
  .describe('s3FileTarget options');

export type S3FileTargetOptions = z.input<typeof s3FileTargetOptionsSchema>;
export const resolveS3FileTargetOptions = optionsResolver('s3FileTarget', s3FileTargetOptionsSchema);
