import { type ChildProcess, spawn } from 'node:child_process';
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

/** Starts the built `tributary` binary (packages/cli). */
export function startTributary(args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  return spawn(process.execPath, [TRIBUTARY, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Runs the built `tributary` binary to its end. */
export function runTributary(args: string[], env: NodeJS.ProcessEnv): Promise<CliResult> {
  return collect(startTributary(args, env));
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
