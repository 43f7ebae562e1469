import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { S3Client } from '@aws-sdk/client-s3';

/** A real S3 API server (s3rver) on a loopback port, backed by a temporary directory. */
export interface EmbeddedS3 {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  stop(): Promise<void>;
}

export interface EmbeddedS3Options {
  port?: number;
  /** Keep the directory after stop (default false). */
  persistent?: boolean;
}

// Runs in the child: CommonJS, no TypeScript, so it needs no loader.
const CHILD = `
const S3rver = require(process.env.S3RVER_PATH);
// s3rver 3.7.1 removes a key's directory when a delete leaves it empty. A PUT into the same
// directory that has just created it then opens its file in a directory that is gone: an
// unhandled ENOENT that kills the server (an archive move beside a new upload does this).
// Deletes here leave directories in place; listings only ever report object files.
const store = require(require('node:path').join(require('node:path').dirname(process.env.S3RVER_PATH), 'stores', 'filesystem.js'));
const fs = require('node:fs/promises');
store.prototype.deleteObject = async function deleteObject(bucket, key) {
  await Promise.all(['object', 'object.md5', 'metadata.json'].map((kind) =>
    fs.unlink(this.getResourcePath(bucket, key, kind)).catch((error) => { if (error.code !== 'ENOENT') throw error; })));
};
// Anything else s3rver leaves unhandled fails that one request, not the server and every test
// after it: report it (the parent prints it) and serve on.
process.on('uncaughtException', (error) => process.stderr.write('uncaught: ' + String(error && error.stack || error) + '\\n'));
const server = new S3rver({ address: '127.0.0.1', port: Number(process.env.S3RVER_PORT), directory: process.env.S3RVER_DIR, silent: true, configureBuckets: [] });
server.run().then((address) => process.stdout.write(JSON.stringify({ port: address.port }) + '\\n'), (error) => { process.stderr.write(String(error && error.stack || error)); process.exit(1); });
// close() waits for idle keep-alive sockets; an orphan must not linger (or spin) for that.
const stop = () => {
  setTimeout(() => process.exit(0), 2000).unref();
  server.close().finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
`;

/**
 * Starts s3rver in a process of its own. It runs with `--openssl-legacy-provider` because
 * s3rver 3.7.1 encrypts ListObjectsV2 continuation tokens with DES, which OpenSSL 3 (Node ≥ 17)
 * refuses otherwise: any listing of more than 1,000 keys would fail. The child also exits when
 * this process does (its stdin closes), so nothing is left behind.
 */
export async function startEmbeddedS3(options: EmbeddedS3Options = {}): Promise<EmbeddedS3> {
  const directory = await mkdtemp(join(tmpdir(), 'tributary-s3-'));
  const s3rverPath = createRequire(import.meta.url).resolve('s3rver');
  const child = spawn(process.execPath, ['--openssl-legacy-provider', '-e', CHILD], {
    env: {
      PATH: process.env.PATH,
      S3RVER_PATH: s3rverPath,
      S3RVER_PORT: String(options.port ?? 0),
      S3RVER_DIR: directory,
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  // Start-up output explains a failed start; once the server runs, its output is forwarded.
  let stderr = '';
  const collect = (d: string) => {
    stderr += d;
  };
  child.stderr.setEncoding('utf8').on('data', collect);
  const port = await new Promise<number>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.once('line', (line) => resolve((JSON.parse(line) as { port: number }).port));
    child.once('exit', (code) => reject(new Error(`s3rver exited with code ${code}: ${stderr.trim()}`)));
  });
  child.stderr.off('data', collect);
  let stopped = false;
  // Whatever the server reports from now on goes where the test runner prints it.
  child.stderr.on('data', (d: string) => {
    if (!stopped) process.stderr.write(`s3rver on port ${port}: ${d}`);
  });
  // A server that dies under the tests otherwise shows up only as ECONNREFUSED in every later
  // test: say why it died, once.
  child.once('exit', (code, signal) => {
    if (stopped) return;
    process.stderr.write(`s3rver on port ${port} exited unexpectedly (code ${code}, signal ${signal})\n`);
  });
  return {
    endpoint: `http://127.0.0.1:${port}`,
    region: 'us-east-1',
    // s3rver's fixed development credentials; not a secret.
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    async stop() {
      if (stopped) return;
      stopped = true;
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
      if (!options.persistent) await rm(directory, { recursive: true, force: true });
    },
  };
}

/** Where a local S3 API server answers: an embedded one's details, or S3_ENDPOINT's. */
export interface S3Endpoint {
  endpoint: string;
  region: string;
  /** Without a key id (undefined) the SDK's default credential chain applies; '' is sent as given. */
  accessKeyId?: string | undefined;
  secretAccessKey?: string | undefined;
}

/**
 * An S3 client for a local S3 API server such as s3rver: path-style addressing, and checksums
 * only when an operation requires them (s3rver does not understand the SDK's default ones).
 */
export function localS3Client(s3: S3Endpoint): S3Client {
  return new S3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    ...(s3.accessKeyId !== undefined
      ? { credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey ?? '' } }
      : {}),
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/** An S3 API server for a test run, a benchmark or a soak: S3_ENDPOINT's, else an embedded s3rver. */
export interface LocalS3 extends S3Endpoint {
  source: 'env' | 'embedded';
  /** Stops an embedded server (nothing for S3_ENDPOINT's). */
  stop(): Promise<void>;
}

/**
 * The one way tests, the benchmarks, the soak and the consumer check get S3: S3_ENDPOINT (with
 * AWS_REGION and, when set, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, else the SDK's default
 * credential chain) when set, otherwise `startEmbeddedS3()`.
 */
export async function localS3(
  options: { env?: NodeJS.ProcessEnv; log?: (line: string) => void } = {},
): Promise<LocalS3> {
  const env = options.env ?? process.env;
  const endpoint = env['S3_ENDPOINT'];
  if (endpoint) {
    return {
      endpoint,
      region: env['AWS_REGION'] ?? 'us-east-1',
      accessKeyId: env['AWS_ACCESS_KEY_ID'],
      secretAccessKey: env['AWS_SECRET_ACCESS_KEY'],
      source: 'env',
      async stop() {},
    };
  }
  options.log?.('S3_ENDPOINT unset: starting an embedded S3 (s3rver)');
  const server = await startEmbeddedS3();
  return { ...server, source: 'embedded' };
}
