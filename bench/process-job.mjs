/**
 * What the plain-JavaScript reference processes of the steady-state section share
 * (bench/floor-process.mjs, bench/script-process.mjs): the job as JSON on stdin, an S3 client
 * and one PostgreSQL connection built the way a hand-written loader builds them, and the result
 * as one JSON line on stdout (with when the imports and the work were done). Run with `node` directly: no tsx, no workspace packages.
 */
import { text } from 'node:stream/consumers';
import { S3Client } from '@aws-sdk/client-s3';
import pg from 'pg';

let importedMs;

/** The job; also notes when the imports were done (milliseconds since the process started). */
export async function readJob() {
  importedMs = performance.now();
  return JSON.parse(await text(process.stdin));
}

/** s3: { endpoint, region, accessKeyId?, secretAccessKey? } */
export function s3Client(s3) {
  return new S3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    ...(s3.accessKeyId
      ? { credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } }
      : {}),
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

export async function connect(databaseUrl, name) {
  const db = new pg.Client({ connectionString: databaseUrl, application_name: name });
  await db.connect();
  return db;
}

/** Prints the result with `importedMs` and `doneMs`, milliseconds since the process started. */
export function done(result) {
  process.stdout.write(`${JSON.stringify({ ...result, importedMs, doneMs: performance.now() })}\n`);
}
