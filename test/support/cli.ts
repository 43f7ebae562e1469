import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { inject } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
const CLI = join(ROOT, 'examples', 'tickets', 'bin', 'tickets-pipeline.js');
const TRIBUTARY = join(ROOT, 'packages', 'cli', 'bin', 'tributary.js');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The last stdout line parsed as JSON, when `--json` was given. */
  json: unknown;
}

/** Environment pointing the binary at the test services (one bucket, one database). */
export function cliEnv(options: {
  databaseUrl: string;
  bucket: string;
  prefix?: string;
  extra?: Record<string, string>;
}): NodeJS.ProcessEnv {
  const s3 = inject('s3');
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    DATABASE_URL: options.databaseUrl,
    S3_ENDPOINT: s3.endpoint,
    S3_BUCKET: options.bucket,
    S3_PREFIX: options.prefix ?? 'automations',
    AWS_REGION: s3.region,
    AWS_ACCESS_KEY_ID: s3.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
    LOG_LEVEL: 'warn',
    // The test broker runs on loopback: fast Kafka timings (production defaults are seconds).
    KAFKA_CONNECTION_TIMEOUT_MS: '1000',
    KAFKA_REQUEST_TIMEOUT_MS: '5000',
    KAFKA_RETRY_INITIAL_MS: '50',
    KAFKA_RETRY_MAX_MS: '1000',
    KAFKA_SESSION_TIMEOUT_MS: '3000',
    KAFKA_REBALANCE_TIMEOUT_MS: '3000',
    KAFKA_HEARTBEAT_INTERVAL_MS: '100',
    KAFKA_MAX_WAIT_MS: '100',
    ...options.extra,
  };
  return env;
}

/** Starts the real `tickets-pipeline` binary as users run it: the built JavaScript. */
export function startCli(args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  return spawn(process.execPath, [CLI, ...args], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

export async function runCli(args: string[], env: NodeJS.ProcessEnv): Promise<CliResult> {
  const child = startCli(args, env);
  return collect(child);
}

/** `tickets-pipeline publish --apply` of one dataset to a topic on the test broker. */
export function publishCli(env: NodeJS.ProcessEnv, topic: string, extra: string[] = [], dataset = 'inc') {
  const brokers = inject('kafkaBrokers').join(',');
  return runCli(
    ['publish', '--dataset', dataset, '--brokers', brokers, '--topic', topic, '--apply', ...extra],
    env,
  );
}

/** Starts the built `tributary` binary (packages/cli). */
export function startTributary(args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  return spawn(process.execPath, [TRIBUTARY, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Runs the built `tributary` binary to its end. */
export function runTributary(args: string[], env: NodeJS.ProcessEnv): Promise<CliResult> {
  return collect(startTributary(args, env));
}
/**
 * Runs `body` while a watching process runs, then stops it with SIGTERM and resolves with its
 * result. When `body` fails, the process is killed and the end of its stderr joins the error.
 */
export async function whileWatching(child: ChildProcess, body: () => Promise<void>): Promise<CliResult> {
  const done = collect(child);
  try {
    await body();
  } catch (error) {
    child.kill('SIGKILL');
    throw new Error(`${(error as Error).message}\n${(await done).stderr.slice(-3000)}`);
  }
  child.kill('SIGTERM');
  return done;
}

export function collect(child: ChildProcess): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
  });
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const last = stdout.trim().split('\n').at(-1) ?? '';
      let json: unknown;
      try {
        json = JSON.parse(last);
      } catch {
        json = undefined;
      }
      resolve({ code, signal, stdout, stderr, json });
    });
  });
}

/** A free loopback TCP port (for `--metrics-port`). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** `/healthz` of a watching binary: 200 `ok`, or non-2xx with the failing streams as JSON. */
export async function health(port: number): Promise<{
  status: number;
  body: { ok: boolean; failing: { stream: string; file: string | null; code: string; since: string }[] };
}> {
  const response = await fetch(`http://127.0.0.1:${port}/healthz`);
  const text = await response.text();
  return {
    status: response.status,
    body: response.status === 200 ? { ok: text === 'ok\n', failing: [] } : JSON.parse(text),
  };
}

/** One labelled value of a Prometheus metric from `/metrics` (0 when absent). */
export async function metric(port: number, name: string, stream: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{stream="${stream}"}`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}
