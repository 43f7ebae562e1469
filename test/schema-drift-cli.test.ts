import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { cliEnv, runTributary } from './support/cli.js';
import { pollUntil } from './support/reliability.js';
import { createTestBucket, createTestDatabase, randomName } from './support/services.js';

/** Issue 17 part 2 through the built `tributary` binary: target.schemaDrift. */

function config(bucketVar: string, root: string): string {
  return `streams:
  - id: shop/evolving
    source:
      bucket: \${${bucketVar}}
      prefix: ${root}/evolving/
      keyPattern: YYYYMMDD
      columns: [id, name]
    target:
      table: shop.evolving
      key: [id]
      types: { id: integer, amount: numeric }
      schemaDrift: evolve
  - id: shop/strict
    source:
      bucket: \${${bucketVar}}
      prefix: ${root}/strict/
      keyPattern: YYYYMMDD
    target:
      table: shop.strict
      key: [id]
      types: { id: integer }
`;
}

describe('tributary target.schemaDrift', () => {
  it('evolve adds and fills a new column (earlier rows null); fail stops naming the column', async () => {
    const [db, s3] = await Promise.all([createTestDatabase(), createTestBucket()]);
    const root = randomName('drift');
    const put = (key: string, body: string) =>
      s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body }));
    for (const stream of ['evolving', 'strict']) {
      await put(`${root}/${stream}/20240101.csv`, 'id,name\n1,a\n2,b\n');
      await put(`${root}/${stream}/20240102.csv`, 'id,name,amount\n2,B,2.50\n3,c,3\n');
    }
    const file = join(tmpdir(), `${randomName('drift')}.yaml`);
    await writeFile(file, config('DRIFT_BUCKET', root));
    const env = cliEnv({ databaseUrl: db.url, bucket: 'unused', extra: { DRIFT_BUCKET: s3.bucket } });

    const run = await runTributary(['run', '--config', file, '--apply', '--json'], env);
    // The strict stream fails (exit 1); the evolving one applies both files (invariant 10).
    expect(run.code, run.stderr).toBe(1);
    const report = run.json as {
      streams: { stream: string; error: string | null; files: { status: string }[] }[];
    };
    const [evolving, strict] = report.streams;
    expect(evolving).toMatchObject({ stream: 'shop/evolving', error: null });
    expect(evolving!.files.map((f) => f.status)).toEqual(['loaded', 'loaded']);
    expect(strict!.error).toMatch(/20240102\.csv.*"amount"/);
    expect(strict!.files.map((f) => f.status)).toEqual(['loaded', 'failed']);
    expect(run.stderr).toMatch(/added column\(s\) \\?"amount\\?" numeric/);

    const rows = await db.pool.query(
      'SELECT id, name, amount::text AS amount FROM shop.evolving ORDER BY id',
    );
    expect(rows.rows).toEqual([
      { id: 1, name: 'a', amount: null },
      { id: 2, name: 'B', amount: '2.50' },
      { id: 3, name: 'c', amount: '3' },
    ]);
    const changes = await db.pool.query(
      'SELECT stream, file, table_name, column_name, change, type FROM tributary.schema_changes',
    );
    expect(changes.rows).toEqual([
      {
        stream: 'shop/evolving',
        file: `${root}/evolving/20240102.csv`,
        table_name: '"shop"."evolving"',
        column_name: 'amount',
        change: 'added',
        type: 'numeric',
      },
    ]);
    const strictColumns = await db.pool.query(
      `SELECT attname FROM pg_attribute WHERE attrelid = 'shop.strict'::regclass AND attnum > 0 ORDER BY attnum`,
    );
    expect(strictColumns.rows.map((r) => r.attname)).toEqual(['id', 'name']);

    const status = await runTributary(['status', '--config', file, '--json'], env);
    const streams = (
      status.json as { streams: { stream: string; lastError: string | null; failingFile: string | null }[] }
    ).streams;
    expect(streams[1]).toMatchObject({ stream: 'shop/strict', failingFile: `${root}/strict/20240102.csv` });
    expect(streams[1]!.lastError).toMatch(/SCHEMA_DRIFT.*"amount"/);
  });

  it('evolve: killed after the ALTER, before COMMIT (kill -9), the column is gone; the re-run adds it once', async () => {
    const [db, s3] = await Promise.all([createTestDatabase(), createTestBucket()]);
    const root = randomName('drift');
    const put = (key: string, body: string) =>
      s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body }));
    await put(`${root}/evolving/20240101.csv`, 'id,name\n1,a\n');
    await put(`${root}/evolving/20240102.csv`, 'id,name,amount\n1,A,1.5\n2,b,2\n');
    const file = join(tmpdir(), `${randomName('drift')}.yaml`);
    // The evolving stream alone: the fault point counts every upsert of the process.
    await writeFile(file, config('DRIFT_BUCKET', root).split('  - id: shop/strict')[0]!);
    const env = cliEnv({ databaseUrl: db.url, bucket: 'unused', extra: { DRIFT_BUCKET: s3.bucket } });
    const columns = async () =>
      (
        await db.pool.query<{ attname: string }>(
          `SELECT attname FROM pg_attribute WHERE attrelid = 'shop.evolving'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
        )
      ).rows.map((r) => r.attname);

    const killed = await runTributary(['run', '--config', file, '--apply'], {
      ...env,
      TRIBUTARY_FAULT: 'pg-sink:after-upsert@2',
    });
    expect(killed.signal).toBe('SIGKILL');
    // The dead client's transaction ends when its backend sees the connection gone.
    await pollUntil('the killed transaction rolled back', async () => {
      const { rows } = await db.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'`,
      );
      return rows[0]!.n === 0;
    });
    expect(await columns()).toEqual(['id', 'name']);
    expect((await db.pool.query('SELECT count(*)::int AS n FROM tributary.schema_changes')).rows[0]).toEqual({
      n: 0,
    });
    expect((await db.pool.query('SELECT id, name FROM shop.evolving ORDER BY id')).rows).toEqual([
      { id: 1, name: 'a' },
    ]);

    const run = await runTributary(['run', '--config', file, '--apply', '--json'], env);
    expect(run.code, run.stderr).toBe(0);
    expect(await columns()).toEqual(['id', 'name', 'amount']);
    expect(
      (await db.pool.query('SELECT id, name, amount::text AS amount FROM shop.evolving ORDER BY id')).rows,
    ).toEqual([
      { id: 1, name: 'A', amount: '1.5' },
      { id: 2, name: 'b', amount: '2' },
    ]);
    expect((await db.pool.query('SELECT column_name FROM tributary.schema_changes')).rows).toEqual([
      { column_name: 'amount' },
    ]);
  });
});
