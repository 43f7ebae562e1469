import { spawn } from 'node:child_process';
import { ROOT, type Services } from './services.js';

/**
 * `tickets-pipeline run --apply --dataset inc --json` against the bench services, as a user runs
 * it (process start and tsx load included). Resolves with the wall milliseconds.
 */
export async function runTicketsCli(services: Services, prefix: string): Promise<number> {
  const started = performance.now();
  const child = spawn(
    process.execPath,
    [
      '--conditions=@tributary/source',
      '--import',
      'tsx',
      'examples/tickets/src/cli.ts',
      'run',
      '--apply',
      '--dataset',
      'inc',
      '--json',
    ],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
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
      },
    },
  );
  let output = '';
  child.stdout.on('data', (d) => {
    output += d;
  });
  child.stderr.on('data', (d) => {
    output += d;
  });
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  const ms = performance.now() - started;
  if (code !== 0) throw new Error(`tickets-pipeline run exited ${code}: ${output.slice(0, 2000)}`);
  return ms;
}
