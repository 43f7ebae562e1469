import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { cliEnv, runTributary } from './support/cli.js';
import { createReadOnlyRole, createTestBucket, createTestDatabase } from './support/services.js';

/** examples/dwh as a user runs it: its config file unchanged, its demo source schema, the built binary. */

const EXAMPLE = join(import.meta.dirname, '..', 'examples', 'dwh');
describe('examples/dwh', () => {
  it('extracts trips (incremental, drift fixed) and devices (snapshot) and loads both, exact', async () => {
    const [source, dwh, s3] = await Promise.all([
      createTestDatabase(),
      createTestDatabase(),
      createTestBucket(),
    ]);
    await source.pool.query(await readFile(join(EXAMPLE, 'source.sql'), 'utf8'));
    const readOnlyUrl = await createReadOnlyRole(source, ['public.trips', 'public.devices']);
    const env = cliEnv({
      databaseUrl: dwh.url,
      bucket: s3.bucket,
      extra: { SOURCE_DATABASE_URL: readOnlyUrl },
    });
    const config = join(EXAMPLE, 'dwh.yaml');

    const validated = await runTributary(['validate', '--config', config, '--json'], env);
    expect(validated.json, validated.stderr).toEqual({
      ok: true,
      streams: ['dwh/trips', 'dwh/devices', 'bronze/trips', 'bronze/devices'],
    });
    const run = await runTributary(['run', '--config', config, '--apply', '--json'], env);
    expect(run.code, run.stderr).toBe(0);
    expect(run.json).toMatchObject({
      extracts: [
        {
          stream: 'dwh/trips',
          status: 'uploaded',
          rowsExtracted: 1000,
          key: expect.stringMatching(/_EAT\.csv$/),
        },
        { stream: 'dwh/devices', status: 'uploaded', rowsExtracted: 3 },
      ],
    });
    const trips = await dwh.pool.query(
      'SELECT count(*)::int AS n, sum(distance_km)::text AS km FROM bronze.trips',
    );
    const expected = await source.pool.query(
      'SELECT count(*)::int AS n, (sum(distance_m) / 1000.0)::numeric::text AS km FROM public.trips',
    );
    expect(Number(trips.rows[0].km)).toBe(Number(expected.rows[0].km));
    expect(trips.rows[0].n).toBe(1000);
    expect((await dwh.pool.query('SELECT id, label FROM bronze.devices ORDER BY id')).rows).toEqual(
      (await source.pool.query('SELECT id, label FROM public.devices ORDER BY id')).rows,
    );
    const runs = await dwh.pool.query('SELECT stream, status FROM tributary.extract_runs ORDER BY stream');
    expect(runs.rows).toEqual([
      { stream: 'dwh/devices', status: 'loaded' },
      { stream: 'dwh/trips', status: 'loaded' },
    ]);
  });

  it('pnpm demo:dwh runs the same pattern on its own databases and ends verified', async () => {
    const s3 = inject('s3');
    const child = spawn(process.execPath, [join(EXAMPLE, 'demo.mjs')], {
      env: {
        PATH: process.env['PATH'],
        HOME: process.env['HOME'],
        DATABASE_URL: inject('pgAdminUrl'),
        S3_ENDPOINT: s3.endpoint,
        AWS_REGION: s3.region,
        ...(s3.accessKeyId ? { AWS_ACCESS_KEY_ID: s3.accessKeyId } : {}),
        ...(s3.secretAccessKey ? { AWS_SECRET_ACCESS_KEY: s3.secretAccessKey } : {}),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
    });
    child.stderr.on('data', (chunk) => {
      out += chunk;
    });
    const code = await new Promise((resolve) => child.once('exit', resolve));
    expect(code, out).toBe(0);
    expect(out).toContain('extract dwh/trips: 1000 rows');
    expect(out).not.toContain('FAIL');
    expect(out).toContain('Demo verified');
  });
});
