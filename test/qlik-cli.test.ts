import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { cliEnv, runTributary } from './support/cli.js';
import { createTestBucket, createTestDatabase, randomName } from './support/services.js';
import { listAll } from './support/tickets.js';

/**
 * Seed 002's Qlik Replicate layout through the built `tributary` binary (issue 14): gzip LOAD
 * files, then `__ct` change tables with I/U/D/B rows, compared with a fold computed here.
 */

const COLUMNS = ['id', 'name', 'amount'] as const;
const HEADERS = [
  'header__change_seq',
  'header__change_oper',
  'header__change_mask',
  'header__stream_position',
  'header__operation',
  'header__transaction_id',
  'header__timestamp',
] as const;

type Row = { id: number; name: string; amount: string };
type Change = { seq: number; oper: 'I' | 'U' | 'D' | 'B'; row: Row };

const loadCsv = (rows: Row[]) =>
  `${COLUMNS.join(',')}\n${rows.map((r) => `${r.id},${r.name},${r.amount}`).join('\n')}\n`;

/** A change-table file as Qlik writes it; `ts` is the file's base time (one ms per change). */
function ctCsv(changes: Change[], ts: Date): string {
  const lines = changes.map((c) => {
    const seq = `20220304134556440${String(c.seq).padStart(18, '0')}`;
    const time = new Date(ts.getTime() + c.seq).toISOString().replace('T', ' ').replace('Z', '');
    const operation = { I: 'INSERT', U: 'UPDATE', D: 'DELETE', B: 'BEFOREIMAGE' }[c.oper];
    return [
      seq,
      c.oper,
      '0F',
      `pos-${c.seq}`,
      operation,
      `tx${Math.floor(c.seq / 3)}`,
      time,
      c.row.id,
      c.row.name,
      c.row.amount,
    ].join(',');
  });
  return `${[...HEADERS, ...COLUMNS].join(',')}\n${lines.join('\n')}\n`;
}

/** The independent fold: LOAD rows, then each change file in time order, rows by change_seq. */
function fold(load: Row[], files: Change[][]): Row[] {
  const table = new Map<number, Row>(load.map((r) => [r.id, r]));
  for (const changes of files) {
    for (const c of [...changes].sort((a, b) => a.seq - b.seq)) {
      if (c.oper === 'B') continue;
      if (c.oper === 'D') table.delete(c.row.id);
      else table.set(c.row.id, c.row);
    }
  }
  return [...table.values()].sort((a, b) => a.id - b.id);
}

const r = (id: number, name: string, amount: string): Row => ({ id, name, amount });

describe('tributary: layout qlik (seed 002, issue 14)', () => {
  it('LOAD001+LOAD002 (gzip), then three __ct files with I/U/D/B equal an independent fold', async () => {
    const [db, s3] = await Promise.all([createTestDatabase(), createTestBucket()]);
    const root = `cubic/ods_qlik/${randomName('q')}`;
    const table = `${root}/EDW.SAMPLE/`;
    const ct = `${root}/EDW.SAMPLE__ct/`;
    const put = (key: string, body: string | Buffer) =>
      s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body }));

    const load1 = [r(1, 'one', '1.00'), r(2, 'two', '2.00'), r(3, 'three', '3.00')];
    const load2 = [r(4, 'four', '4.00'), r(5, 'five', '5.00')];
    // File 1: several changes to key 2 (B before each U), written out of change_seq order.
    const f1: Change[] = [
      { seq: 4, oper: 'U', row: r(2, 'two-v2', '22.00') },
      { seq: 1, oper: 'B', row: r(2, 'two', '2.00') },
      { seq: 2, oper: 'U', row: r(2, 'two-v1', '21.00') },
      { seq: 3, oper: 'B', row: r(2, 'two-v1', '21.00') },
      { seq: 5, oper: 'I', row: r(6, 'six', '6.00') },
      { seq: 6, oper: 'D', row: r(3, 'three', '3.00') },
    ];
    // File 2: key 4 deleted, then re-inserted with new values; key 5 inserted then deleted.
    const f2: Change[] = [
      { seq: 12, oper: 'I', row: r(4, 'four-again', '44.00') },
      { seq: 10, oper: 'D', row: r(4, 'four', '4.00') },
      { seq: 11, oper: 'B', row: r(5, 'five', '5.00') },
      { seq: 13, oper: 'U', row: r(5, 'five-v1', '55.00') },
      { seq: 14, oper: 'D', row: r(5, 'five-v1', '55.00') },
    ];
    // File 3: plain updates and an insert.
    const f3: Change[] = [
      { seq: 20, oper: 'B', row: r(1, 'one', '1.00') },
      { seq: 21, oper: 'U', row: r(1, 'one-v1', '11.00') },
      { seq: 22, oper: 'I', row: r(7, 'seven', '7.00') },
    ];
    await put(`${table}LOAD001.csv.gz`, gzipSync(loadCsv(load1)));
    await put(`${table}LOAD002.csv.gz`, gzipSync(loadCsv(load2)));
    // Names in time order; uploaded out of order on purpose (LastModified must not matter).
    await put(`${ct}20220304-134558000.csv.gz`, gzipSync(ctCsv(f3, new Date('2022-03-04T13:45:58Z'))));
    await put(`${ct}20220304-134556444.csv.gz`, gzipSync(ctCsv(f1, new Date('2022-03-04T13:45:56Z'))));
    await put(`${ct}20220304-134557000.csv`, ctCsv(f2, new Date('2022-03-04T13:45:57Z')));

    const file = join(tmpdir(), `${randomName('qlik')}.yaml`);
    await writeFile(
      file,
      `streams:
  - id: cubic/edw_sample
    source:
      bucket: \${QLIK_BUCKET}
      prefix: ${table}
      layout: qlik
    target:
      table: ods.edw_sample
      key: [id]
      types: { id: integer, amount: numeric }
`,
    );
    const env = cliEnv({ databaseUrl: db.url, bucket: 'unused', extra: { QLIK_BUCKET: s3.bucket } });
    expect((await runTributary(['validate', '--config', file], env)).code).toBe(0);

    const run = await runTributary(['run', '--config', file, '--apply', '--json'], env);
    expect(run.code, run.stderr).toBe(0);
    const report = run.json as {
      streams: { files: { key: string; status: string; rowsFiltered: number }[] }[];
    };
    const files = report.streams[0]!.files;
    expect(files.map((f) => [f.key.slice(root.length + 1), f.status])).toEqual([
      ['EDW.SAMPLE/LOAD001.csv.gz', 'loaded'],
      ['EDW.SAMPLE/LOAD002.csv.gz', 'loaded'],
      ['EDW.SAMPLE__ct/20220304-134556444.csv.gz', 'loaded'],
      ['EDW.SAMPLE__ct/20220304-134557000.csv', 'loaded'],
      ['EDW.SAMPLE__ct/20220304-134558000.csv.gz', 'loaded'],
    ]);
    // Before-images are counted as filtered, never silently lost.
    expect(files.map((f) => f.rowsFiltered)).toEqual([0, 0, 2, 1, 1]);

    const stored = await db.pool.query<Row>(
      'SELECT id, name, amount::numeric(12,2)::text AS amount FROM ods.edw_sample ORDER BY id',
    );
    expect(stored.rows).toEqual(fold([...load1, ...load2], [f1, f2, f3]));
    // The header__ columns are not stored; the version column is.
    const columns = await db.pool.query<{ column_name: string }>(
      `SELECT column_name FROM information_schema.columns WHERE table_schema = 'ods' AND table_name = 'edw_sample' ORDER BY ordinal_position`,
    );
    expect(columns.rows.map((c) => c.column_name)).toEqual(['id', 'name', 'amount', 'qlik_timestamp']);
    const versions = await db.pool.query(
      `SELECT id, qlik_timestamp FROM ods.edw_sample WHERE id IN (1, 3) ORDER BY id`,
    );
    expect(versions.rows).toEqual([{ id: 1, qlik_timestamp: new Date('2022-03-04T13:45:58.021') }]);

    // The load log has LastModified beside ETag and size (seed 002's s3_modified).
    const loads = await db.pool.query(
      `SELECT count(*)::int AS n, count(s3_modified)::int AS modified, sum(rows_deleted)::int AS deleted
         FROM tributary.loads WHERE stream = 'cubic/edw_sample'`,
    );
    expect(loads.rows[0]).toEqual({ n: 5, modified: 5, deleted: 2 }); // key 3; key 5 (key 4 came back);

    // Every file archived inside the table's own space; nothing left to apply.
    expect(await listAll(s3.client, s3.bucket, ct)).toEqual([]);
    expect((await listAll(s3.client, s3.bucket, `${table}processed/`)).length).toBe(5);
    const again = await runTributary(['run', '--config', file, '--apply', '--json'], env);
    expect(again.code, again.stderr).toBe(0);
    expect((again.json as { streams: { files: unknown[] }[] }).streams[0]!.files).toEqual([]);
  });

  it('a reload (new LOAD files) replaces the table atomically: older change files superseded, later ones applied, a crash mid-reload shows the old rows', async () => {
    const [db, s3] = await Promise.all([createTestDatabase(), createTestBucket()]);
    const root = `cubic/ods_qlik/${randomName('q')}`;
    const table = `${root}/EDW.SAMPLE/`;
    const ct = `${root}/EDW.SAMPLE__ct/`;
    const put = (key: string, body: string | Buffer) =>
      s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body }));
    const file = join(tmpdir(), `${randomName('qlik')}.yaml`);
    await writeFile(
      file,
      `streams:
  - id: cubic/edw_reload
    source:
      bucket: \${S3_BUCKET}
      prefix: ${table}
      layout: qlik
    target:
      table: ods.edw_reload
      key: [id]
      types: { id: integer, amount: numeric }
`,
    );
    const env = cliEnv({ databaseUrl: db.url, bucket: s3.bucket });
    const stored = async () =>
      (
        await db.pool.query<Row>(
          'SELECT id, name, amount::numeric(12,2)::text AS amount FROM ods.edw_reload ORDER BY id',
        )
      ).rows;

    // The first snapshot and one change file.
    const load = [r(1, 'one', '1.00'), r(2, 'two', '2.00'), r(3, 'three', '3.00')];
    const f1: Change[] = [{ seq: 1, oper: 'U', row: r(1, 'one-v1', '11.00') }];
    await put(`${table}LOAD001.csv.gz`, gzipSync(loadCsv(load.slice(0, 2))));
    await put(`${table}LOAD002.csv.gz`, gzipSync(loadCsv(load.slice(2))));
    await put(`${ct}20220304-134556444.csv.gz`, gzipSync(ctCsv(f1, new Date('2022-03-04T13:45:56Z'))));
    const first = await runTributary(['run', '--config', file, '--apply'], env);
    expect(first.code, first.stderr).toBe(0);
    const before = fold(load, [f1]);
    expect(await stored()).toEqual(before);

    // Qlik restarts the task: a change file of the old collection not yet applied, new LOAD
    // files (keys 2 and 3 gone, 8 and 9 new), then a change file of the new collection.
    const older: Change[] = [{ seq: 30, oper: 'U', row: r(2, 'two-stale', '99.00') }];
    await put(`${ct}20220304-134600000.csv.gz`, gzipSync(ctCsv(older, new Date('2022-03-04T13:46:00Z'))));
    const reload = [r(1, 'one-reloaded', '100.00'), r(8, 'eight', '8.00'), r(9, 'nine', '9.00')];
    await put(`${table}LOAD001.csv.gz`, gzipSync(loadCsv(reload.slice(0, 2))));
    await put(`${table}LOAD002.csv.gz`, gzipSync(loadCsv(reload.slice(2))));
    const later = new Date(Date.now() + 60_000);
    const stamp = later.toISOString().replace(/[-:]/g, '').replace('T', '-').replace('.', '').slice(0, 18);
    const f2: Change[] = [
      { seq: 40, oper: 'U', row: r(8, 'eight-v1', '88.00') },
      { seq: 41, oper: 'D', row: r(9, 'nine', '9.00') },
    ];
    await put(`${ct}${stamp}.csv.gz`, gzipSync(ctCsv(f2, later)));

    // Killed right after the reload's first LOAD file committed: readers still see the old rows.
    const killed = await runTributary(['run', '--config', file, '--apply'], {
      ...env,
      TRIBUTARY_FAULT: 'pg-sink:after-commit@2',
    });
    expect(killed.signal).toBe('SIGKILL');
    expect(await stored()).toEqual(before);
    const loading = await runTributary(['status', '--config', file, '--json'], env);
    expect((loading.json as { streams: { snapshot: unknown }[] }).streams[0]!.snapshot).toMatchObject({
      status: 'loading',
      files: [`${table}LOAD001.csv.gz`],
    });

    const run = await runTributary(['run', '--config', file, '--apply', '--json'], env);
    expect(run.code, run.stderr).toBe(0);
    expect(await stored()).toEqual(fold(reload, [f2]));
    const loads = await db.pool.query<{ source: string; status: string }>(
      `SELECT DISTINCT ON (source) source, status FROM tributary.loads WHERE stream = 'cubic/edw_reload'
        ORDER BY source, load_id DESC`,
    );
    // The older change file was never applied: recorded skipped and moved to late/.
    expect(loads.rows.find((l) => l.source.endsWith('20220304-134600000.csv.gz'))?.status).toBe(
      'late_skipped',
    );
    expect(await listAll(s3.client, s3.bucket, `${table}late/`)).toEqual([
      `${table}late/EDW.SAMPLE__ct/20220304-134600000.csv.gz`,
    ]);
    const status = await runTributary(['status', '--config', file, '--json'], env);
    expect((status.json as { streams: { snapshot: unknown }[] }).streams[0]!.snapshot).toMatchObject({
      status: 'complete',
      files: [`${table}LOAD001.csv.gz`, `${table}LOAD002.csv.gz`],
      rows: 3,
    });
    const shadows = await db.pool.query(
      `SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'tributary' AND tablename LIKE 'snapshot\\_%'`,
    );
    expect(shadows.rows[0]).toEqual({ n: 0 });
  });

  it('layout unordered + format json (cubic/kafka/sample/<uuid>.json): LastModified order; a qlik option elsewhere is refused', async () => {
    const [db, s3] = await Promise.all([createTestDatabase(), createTestBucket()]);
    const prefix = `cubic/kafka/${randomName('k')}/`;
    const put = (key: string, body: string) =>
      s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body }));
    await put(`${prefix}zzVytxeTZskVKR7C7WgdSP3d.json`, '[{"id":"1","v":"first"},{"id":"2","v":"first"}]');
    await new Promise((resolve) => setTimeout(resolve, 1100)); // LastModified has second precision
    await put(`${prefix}aa9s8d7f6g.json`, '[\n {"id":"1","v":"second"}\n]');
    const text = (extra: string) => `streams:
  - id: cubic/kafka_sample
    source:
      bucket: \${S3_BUCKET}
      prefix: ${prefix}
      layout: unordered
      format: json
      columns: [id, v]
    target:
      table: kafka.sample
      key: [id]
      types: { id: integer }
${extra}`;
    const file = join(tmpdir(), `${randomName('unordered')}.yaml`);
    await writeFile(file, text(''));
    const env = cliEnv({ databaseUrl: db.url, bucket: s3.bucket });
    const run = await runTributary(['run', '--config', file, '--apply', '--json'], env);
    expect(run.code, run.stderr).toBe(0);
    const stored = await db.pool.query('SELECT id, v FROM kafka.sample ORDER BY id');
    expect(stored.rows).toEqual([
      { id: 1, v: 'second' },
      { id: 2, v: 'first' },
    ]);

    await writeFile(file, text('      qlik: { deletes: soft }\n'));
    const refused = await runTributary(['validate', '--config', file], env);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/streams\[0\]\.target\.qlik/);
  });
});
