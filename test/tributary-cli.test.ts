import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { cliEnv, runTributary, startTributary, whileWatching } from './support/cli.js';
import { pollUntil } from './support/reliability.js';
import { createTestBucket, createTestDatabase, randomName } from './support/services.js';
import { listAll } from './support/tickets.js';

/**
 * The config-driven `tributary` binary (issue 14), built, against s3rver and PostgreSQL: seed
 * 002's DMAP layout, one folder per table with same-day file names in each.
 */

const HEADER = 'id,amount,is_alarm,junk\n';

function config(bucketVar: string, root: string, tables: string[]): string {
  return `streams:\n${tables
    .map(
      (table) => `  - id: dmap/${table}
    source:
      bucket: \${${bucketVar}}
      prefix: ${root}/${table}/
      keyPattern: YYYYMMDD
    transforms:
      - skipRows: { column: is_alarm, oneOf: ['true', 't'], ignoreCase: true, trim: true }
      - dropFields: [junk]
    target:
      table: dmap.${table}
      key: [id]
      types: { id: integer, amount: numeric }
`,
    )
    .join('')}`;
}

async function writeConfig(text: string): Promise<string> {
  const file = join(tmpdir(), `${randomName('tributary')}.yaml`);
  await writeFile(file, text);
  return file;
}

describe('tributary (config-driven binary)', () => {
  it('two DMAP tables with same-day files: both exact, archives separate, replay touches only its own', async () => {
    const [db, s3] = await Promise.all([createTestDatabase(), createTestBucket()]);
    const root = `cubic/dmap/${randomName('t')}`;
    const put = (key: string, body: string) =>
      s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body }));
    for (const [table, base] of [
      ['agg_sample', 0],
      ['agg_other', 100],
    ] as const) {
      await put(`${root}/${table}/20220304.csv`, `${HEADER}${base + 1},1.5,no,x\n${base + 2},2,TRUE,x\n`);
      await put(`${root}/${table}/20220305.csv`, `${HEADER}${base + 1},10,no,x\n${base + 3},3, t ,x\n`);
    }
    const file = await writeConfig(config('DMAP_BUCKET', root, ['agg_sample', 'agg_other']));
    const env = cliEnv({ databaseUrl: db.url, bucket: 'unused', extra: { DMAP_BUCKET: s3.bucket } });

    const validated = await runTributary(['validate', '--config', file, '--json'], env);
    expect(validated.code, validated.stderr).toBe(0);
    expect(validated.json).toEqual({ ok: true, streams: ['dmap/agg_sample', 'dmap/agg_other'] });

    const dry = await runTributary(['run', '--config', file, '--json'], env);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.json).toMatchObject({ dryRun: true });

    const run = await runTributary(['run', '--config', file, '--apply', '--json'], env);
    expect(run.code, run.stderr).toBe(0);
    const report = run.json as {
      streams: { stream: string; files: { status: string; rowsFiltered: number }[] }[];
    };
    expect(report.streams.map((s) => [s.stream, s.files.map((f) => f.status)])).toEqual([
      ['dmap/agg_sample', ['loaded', 'loaded']],
      ['dmap/agg_other', ['loaded', 'loaded']],
    ]);

    const table = async (name: string) =>
      (await db.pool.query(`SELECT id, amount::text AS amount FROM dmap.${name} ORDER BY id`)).rows;
    expect(await table('agg_sample')).toEqual([{ id: 1, amount: '10' }]);
    expect(await table('agg_other')).toEqual([{ id: 101, amount: '10' }]);
    // Each table's archive lives in its own folder: same-day names never overwrite each other.
    for (const name of ['agg_sample', 'agg_other']) {
      expect(await listAll(s3.client, s3.bucket, `${root}/${name}/`)).toEqual([
        `${root}/${name}/processed/20220304.csv`,
        `${root}/${name}/processed/20220305.csv`,
      ]);
    }

    const status = await runTributary(['status', '--config', file, '--json'], env);
    expect(status.code, status.stderr).toBe(0);
    expect((status.json as { streams: unknown[] }).streams).toEqual([
      expect.objectContaining({
        stream: 'dmap/agg_sample',
        filesLoaded: 2,
        pendingFiles: 0,
        lastError: null,
      }),
      expect.objectContaining({ stream: 'dmap/agg_other', filesLoaded: 2, pendingFiles: 0, lastError: null }),
    ]);

    // Replay of one table reads only its own archive.
    await db.pool.query('UPDATE dmap.agg_sample SET amount = 0; UPDATE dmap.agg_other SET amount = 0');
    const replay = await runTributary(
      ['replay', '--config', file, '--stream', 'dmap/agg_sample', '--from', '20220305', '--apply', '--json'],
      env,
    );
    expect(replay.code, replay.stderr).toBe(0);
    expect(
      (replay.json as { streams: { files: { key: string }[] }[] }).streams[0]?.files.map((f) => f.key),
    ).toEqual([`${root}/agg_sample/processed/20220305.csv`]);
    expect(await table('agg_sample')).toEqual([{ id: 1, amount: '10' }]);
    expect(await table('agg_other')).toEqual([{ id: 101, amount: '0' }]);
  });

  it('validate refuses overlapping streams (exit 2, naming both) and bad options by path, before any I/O', async () => {
    const env = cliEnv({ databaseUrl: 'postgres://nobody@127.0.0.1:1/none', bucket: 'b' });
    const overlapping = await writeConfig(
      config('S3_BUCKET', 'cubic/dmap', ['agg_sample']) +
        config('S3_BUCKET', 'cubic', ['dmap']).replace('streams:\n', ''),
    );
    const refused = await runTributary(['validate', '--config', overlapping], env);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/streams\[1\]\.source: streams "dmap\/agg_sample" and "dmap\/dmap" share/);

    const bad = await writeConfig(
      config('S3_BUCKET', 'x', ['a']).replace('key: [id]', 'key: []').replace('YYYYMMDD', 'DDMMYYYY'),
    );
    const invalid = await runTributary(['validate', '--config', bad], env);
    expect(invalid.code).toBe(2);
    expect(invalid.stderr).toMatch(/streams\[0\]\.source\.keyPattern: /);
    expect(invalid.stderr).toMatch(/streams\[0\]\.target\.key: /);

    // run refuses the same config before touching anything (the database URL is unreachable).
    const run = await runTributary(['run', '--config', overlapping, '--apply'], env);
    expect(run.code).toBe(2);
  });

  it('ends once its command has finished, even with a handle a client library left open', async () => {
    // A ref'd timer loaded into the binary stands in for a socket kafkajs can leave behind.
    const env = {
      ...cliEnv({ databaseUrl: 'postgres://nobody@127.0.0.1:1/none', bucket: 'b' }),
      NODE_OPTIONS: '--import=data:text/javascript,setInterval(()=>{},1e9)',
    };
    const good = await writeConfig(config('S3_BUCKET', 'cubic/dmap', ['agg_sample']));
    expect((await runTributary(['validate', '--config', good], env)).code).toBe(0);
    const bad = await writeConfig(config('S3_BUCKET', 'x', ['a']).replace('key: [id]', 'key: []'));
    expect((await runTributary(['validate', '--config', bad], env)).code).toBe(2);
  });

  it('discover: one isolated stream per table folder, and a folder created while watching is picked up', async () => {
    const [db, s3] = await Promise.all([createTestDatabase(), createTestBucket()]);
    const root = `cubic/dmap/${randomName('d')}/`;
    const put = (key: string, body: string) =>
      s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body }));
    await put(`${root}agg_a/20220304.csv`, `${HEADER}1,1,no,x\n`);
    await put(`${root}agg_b/20220304.csv`, `${HEADER}2,2,no,x\n`);
    const file = await writeConfig(`streams:
  - id: dmap/{table}
    discover: { under: ${root} }
    source: { keyPattern: YYYYMMDD }
    transforms: [ { dropFields: [junk] } ]
    target: { table: 'disc.{table}', key: [id], types: { id: integer } }
`);
    const env = cliEnv({ databaseUrl: db.url, bucket: s3.bucket });
    const validated = await runTributary(['validate', '--config', file, '--json'], env);
    expect(validated.json, validated.stderr).toEqual({ ok: true, streams: ['dmap/{table}'] });

    const child = startTributary(['run', '--config', file, '--apply', '--watch', '--interval', '1'], env);
    const archived = async (stream: string) =>
      (
        await db.pool
          .query(`SELECT count(*)::int AS n FROM tributary.loads WHERE stream = $1 AND status = 'archived'`, [
            stream,
          ])
          .catch(() => ({ rows: [{ n: 0 }] }))
      ).rows[0].n as number;
    const result = await whileWatching(child, async () => {
      await pollUntil(
        'both table folders applied',
        async () => (await archived('dmap/agg_a')) === 1 && (await archived('dmap/agg_b')) === 1,
      );
      await put(`${root}agg_c/20220304.csv`, `${HEADER}3,3,no,x\n`);
      await pollUntil(
        'the new folder discovered and applied',
        async () => (await archived('dmap/agg_c')) === 1,
      );
    });
    expect(result.code, result.stderr).toBe(0);
    expect((await db.pool.query('SELECT id FROM disc.agg_c')).rows).toEqual([{ id: 3 }]);
    expect(await listAll(s3.client, s3.bucket, `${root}agg_c/`)).toEqual([
      `${root}agg_c/processed/20220304.csv`,
    ]);
  });
});
