import { startEmbeddedS3 } from '../../src/testing/index.js';

/**
 * s3rver in a process of its own, started with `--openssl-legacy-provider`: s3rver 3.7.1
 * encrypts ListObjectsV2 continuation tokens with DES, which Node ≥ 17's OpenSSL 3 refuses
 * without that flag, so the shared test server answers any listing of more than 1,000 keys
 * with InternalError. Prints `{ endpoint }` and stops (removing its data) when stdin closes.
 */
const s3 = await startEmbeddedS3();
process.stdout.write(`${JSON.stringify({ endpoint: s3.endpoint })}\n`);
const stop = async () => {
  await s3.stop();
  process.exit(0);
};
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.resume();
