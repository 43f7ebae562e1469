import { type ChildProcess, spawn } from 'node:child_process';
import { ROOT, type Services } from './services.js';

/** The tickets binary from its TypeScript sources (tsx transpiles at start), as `pnpm tickets` runs it. */
export const TICKETS_FROM_SOURCE = [
  '--conditions=@tributary/source',
  '--import',
  'tsx',
  'examples/tickets/src/cli.ts',
] as const;
/** The built binary as installed users run it: the launcher, which imports examples/tickets/dist/cli.js. */
export const TICKETS_BUILT = ['examples/tickets/bin/tickets-pipeline.js'] as const;

const APPLY_INC = ['run', '--apply', '--dataset', 'inc', '--json'];

/** The documented environment of `tickets-pipeline` for the bench services and `prefix`. */
export function ticketsEnv(services: Services, prefix: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATABASE_URL: services.databaseUrl,
    S3_ENDPOINT: services.s3.endpoint,
    S3_BUCKET: 'bench',
    S3_PREFIX: prefix,
    AWS_REGION: services.s3.region,
    ...(services.s3.accessKeyId
      ? {
          AWS_ACCESS_KEY_ID: services.s3.accessKeyId,
          AWS_SECRET_ACCESS_KEY: services.s3.secretAccessKey,
        }
      : {}),
  };
  // The launcher would fall back to the sources with this set.
  delete env['TRIBUTARY_FROM_SOURCE'];
  return env;
}

export interface ProcessResult {
  /** Wall milliseconds from spawn to exit. */
  ms: number;
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * `node <args>` in the repository root, `input` on stdin; resolves at exit with the wall time.
 * Throws when it exits with anything but 0, with the start of its output.
 */
export async function runNode(
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; input?: string; what?: string } = {},
): Promise<ProcessResult> {
  const started = performance.now();
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    env: options.env ?? process.env,
  });
  child.stdin?.end(options.input);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => {
    stdout += d;
  });
  child.stderr!.on('data', (d) => {
    stderr += d;
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', resolve);
  });
  const ms = performance.now() - started;
  if (code !== 0)
    throw new Error(`${options.what ?? args.join(' ')} exited ${code}: ${(stderr || stdout).slice(0, 2000)}`);
  return { ms, code, stdout, stderr };
}

/**
 * `tickets-pipeline run --apply --dataset inc --json` (or `args`) against the bench services, as
 * a user runs it: process start included; from source through tsx unless `built`.
 */
export async function runTickets(
  services: Services,
  prefix: string,
  options: { built?: boolean; args?: readonly string[] } = {},
): Promise<ProcessResult> {
  const args = options.args ?? APPLY_INC;
  return runNode([...(options.built ? TICKETS_BUILT : TICKETS_FROM_SOURCE), ...args], {
    env: ticketsEnv(services, prefix),
    what: `tickets-pipeline ${args.join(' ')}`,
  });
}

/** `tickets-pipeline run --apply --dataset inc --json` from source; resolves with the wall milliseconds. */
export async function runTicketsCli(services: Services, prefix: string): Promise<number> {
  return (await runTickets(services, prefix)).ms;
}

/** A long-running tickets binary (watch mode); the caller stops it. */
export function spawnTickets(
  services: Services,
  prefix: string,
  args: readonly string[],
  options: { built?: boolean } = {},
): ChildProcess {
  return spawn(process.execPath, [...(options.built ? TICKETS_BUILT : TICKETS_FROM_SOURCE), ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: ticketsEnv(services, prefix),
  });
}
