import { TributaryError } from '@tributary/core';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, randomName, type TestDatabase } from '../../../test/support/services.js';
import { migrate, migrations, type PgSink, pgSink, readState, type TargetTable } from '../src/index.js';
import { fileBatch } from './helpers.js';

let db: TestDatabase;
const sinks: PgSink[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
});
afterEach(async () => {
  for (const sink of sinks.splice(0)) await sink.close().catch(() => undefined);
});

function makeSink(target: TargetTable, extra: Partial<Parameters<typeof pgSink>[0]> = {}): PgSink {
  const sink = pgSink({ pool: db.pool, targets: { [target.table]: target }, ...extra });
  sinks.push(sink);
  return sink;
}

async function tableRows(schema: string, table: string, order = 'id'): Promise<Record<string, unknown>[]> {
  const result = await db.pool.query(`SELECT * FROM "${schema}"."${table}" ORDER BY ${order}`);
  return result.rows;
}

async function loads(stream: string): Promise<Record<string, unknown>[]> {
  const result = await db.pool.query(
    'SELECT source, status, rows_read, rows_inserted, rows_updated, rows_deleted, rows_unchanged, error FROM tributary.loads WHERE stream = $1 ORDER BY load_id',
    [stream],
  );
  return result.rows;
}

const ticketColumns = [
  { name: 'id', type: 'integer' },
  { name: 'title', type: 'text' },
  { name: 'amount', type: 'numeric' },
  { name: 'updated_at', type: 'timestamptz' },
];

function ticketsTarget(extra: Partial<TargetTable> = {}): TargetTable {
  return {
    schema: 'public',
    table: randomName('tickets'),
    key: ['id'],
    columns: ticketColumns,
    createTable: true,
    ...extra,
  };
}

describe('migrations', () => {
  it('are versioned and idempotent, and readState is read-only', async () => {
    const schema = randomName('ctl');
    expect(await readState(db.pool, schema, 'x/y')).toBeNull();
    const exists = await db.pool.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
    expect(exists.rowCount).toBe(0);
    await Promise.all([migrate(db.pool, { schema }), migrate(db.pool, { schema })]);
    await migrate(db.pool, { schema });
    const versions = await db.pool.query(
      `SELECT version FROM "${schema}".schema_migrations ORDER BY version`,
    );
    expect(versions.rows.map((r) => r.version)).toEqual(migrations.map((m) => m.version));
    expect(await readState(db.pool, schema, 'x/y')).toMatchObject({
      checkpoint: null,
      watermarkKey: null,
      records: [],
    });
  });
  it('applies a missing middle version even when the newest is already there', async () => {
    // Migrations written on parallel branches land out of order: a database may have 4 but not 3.
    const schema = randomName('ctl');
    await migrate(db.pool, { schema });
    await db.pool.query(`DELETE FROM "${schema}".schema_migrations WHERE version = 3`);
    await db.pool.query(`ALTER TABLE "${schema}".loads DROP COLUMN s3_modified`);
    await migrate(db.pool, { schema });
    const column = await db.pool.query(
      `SELECT 1 FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'loads' AND column_name = 's3_modified'`,
      [schema],
    );
    expect(column.rowCount).toBe(1);
  });
});

describe('apply', () => {
  it('upserts, counts inserted/updated/unchanged, records checkpoint + load in one commit', async () => {
    const target = ticketsTarget();
    const stream = target.table;
    const sink = makeSink(target);
    expect(await sink.checkpoint(stream)).toBeNull();
    const first = fileBatch(stream, 'changes/2024-01-01.csv', [
      { id: '1', title: 'a', amount: '1.5', updated_at: '2024-01-01T10:00:00Z' },
      { id: '2', title: 'b', amount: '', updated_at: '2024-01-01T10:00:00Z' },
    ]);
    first.meta.kind = 'baseline';
    first.meta.watermark = { key: 'changes/2024-01-01.csv', time: '2024-01-01T10:00:00Z' };
    expect(await sink.write(first)).toEqual({ committed: true });
    const second = fileBatch(stream, 'changes/2024-01-02.csv', [
      { id: '2', title: 'b', amount: '', updated_at: '2024-01-01T10:00:00Z' }, // unchanged
      { id: '1', title: 'a2', amount: '1.5', updated_at: '2024-01-02T10:00:00Z' }, // updated
      { id: '3', title: 'tab\there\nnewline \\ "q"', amount: '3', updated_at: '2024-01-02T10:00:00Z' },
    ]);
    await sink.write(second);
    const rows = await tableRows('public', target.table);
    expect(rows.map((r) => [r.id, r.title, r.amount])).toEqual([
      [1, 'a2', '1.5'],
      [2, 'b', null],
      [3, 'tab\there\nnewline \\ "q"', '3'],
    ]);
    expect(await loads(stream)).toEqual([
      expect.objectContaining({
        status: 'loaded',
        rows_inserted: '2',
        rows_updated: '0',
        rows_unchanged: '0',
      }),
      expect.objectContaining({
        status: 'loaded',
        rows_inserted: '1',
        rows_updated: '1',
        rows_unchanged: '1',
      }),
    ]);
    expect(await sink.checkpoint(stream)).toEqual(second.position);
    const state = await readState(db.pool, 'tributary', stream);
    expect(state).toMatchObject({
      watermarkKey: 'changes/2024-01-01.csv',
      source: 'changes/2024-01-02.csv',
    });
    expect(await sink.loadLog.list(stream)).toEqual([
      expect.objectContaining({
        source: 'changes/2024-01-01.csv',
        status: 'loaded',
        kind: 'baseline',
        size: 200,
      }),
      expect.objectContaining({
        source: 'changes/2024-01-02.csv',
        status: 'loaded',
        etag: '"etag-changes/2024-01-02.csv"',
      }),
    ]);
    // Marks made at once (archives in flight together) may share one UPDATE: each resolves
    // only when its own row is marked; an unknown source marks nothing.
    await Promise.all([
      sink.loadLog.markArchived(stream, 'changes/2024-01-01.csv'),
      sink.loadLog.markArchived(stream, 'changes/unknown.csv'),
      sink.loadLog.markArchived('other/stream', 'changes/2024-01-02.csv'),
    ]);
    expect((await sink.loadLog.list(stream)).map((r) => r.status)).toEqual(['archived', 'loaded']);
    // Planning reads only the files it listed.
    expect(await sink.loadLog.list(stream, ['changes/2024-01-02.csv', 'changes/unknown.csv'])).toEqual([
      expect.objectContaining({ source: 'changes/2024-01-02.csv', status: 'loaded' }),
    ]);
    expect(await sink.loadLog.list(stream, [])).toEqual([]);
  });

  it('keeps the last occurrence of a duplicate key, and a replay changes nothing', async () => {
    const target = ticketsTarget();
    const stream = target.table;
    const sink = makeSink(target);
    const batch = fileBatch(stream, 'f1.csv', [
      { id: '7', title: 'first', amount: '1', updated_at: '2024-01-01T00:00:00Z' },
      { id: '8', title: 'other', amount: '1', updated_at: '2024-01-01T00:00:00Z' },
      { id: '7', title: 'last', amount: '2', updated_at: '2024-01-01T00:00:00Z' },
    ]);
    await sink.write(batch);
    const before = await tableRows('public', target.table);
    expect(before.map((r) => [r.id, r.title])).toEqual([
      [7, 'last'],
      [8, 'other'],
    ]);
    const xmin = await db.pool.query(`SELECT xmin::text FROM public."${target.table}" ORDER BY id`);
    await sink.write({ ...batch, position: { replay: true } });
    const after = await db.pool.query(`SELECT xmin::text FROM public."${target.table}" ORDER BY id`);
    expect(after.rows).toEqual(xmin.rows); // no row was rewritten
    expect((await loads(stream)).at(-1)).toMatchObject({
      rows_inserted: '0',
      rows_updated: '0',
      rows_unchanged: '3',
    });
  });

  it('applies all batches of a file in one transaction, or one per batch', async () => {
    const target = ticketsTarget();
    const stream = target.table;
    const sink = makeSink(target);
    const b1 = fileBatch(stream, 'big.csv', [{ id: '1', title: 'x', amount: '1', updated_at: null }], {
      commit: false,
      lastOfUnit: false,
    });
    const b2 = fileBatch(stream, 'big.csv', [{ id: '2', title: 'y', amount: '1', updated_at: null }]);
    expect(await sink.write(b1)).toEqual({ committed: false });
    const mid = await db.pool.query(`SELECT count(*)::int AS n FROM public."${target.table}"`);
    expect(mid.rows[0].n).toBe(0); // invisible until the unit commits
    expect(await sink.write(b2)).toEqual({ committed: true });
    expect(await tableRows('public', target.table)).toHaveLength(2);
    expect(await loads(stream)).toEqual([expect.objectContaining({ rows_read: '2', rows_inserted: '2' })]);
  });

  it('is atomic: a failure after the upsert and before COMMIT leaves no rows, checkpoint or load row', async () => {
    const target = ticketsTarget();
    const stream = target.table;
    let fail = true;
    const sink = makeSink(target, {
      faults: {
        beforeCommit: () => {
          if (fail) throw new Error('injected crash before commit');
        },
      },
    });
    const batch = fileBatch(stream, 'crash.csv', [{ id: '1', title: 'x', amount: '1', updated_at: null }]);
    await expect(sink.write(batch)).rejects.toThrow(/injected crash before commit/);
    expect(await tableRows('public', target.table)).toEqual([]);
    expect(await sink.checkpoint(stream)).toBeNull();
    expect(await loads(stream)).toEqual([]);
    // The pipeline then calls abort(): the failure is recorded in its own transaction.
    await sink.abort(new Error('injected crash before commit'));
    expect(await loads(stream)).toEqual([
      expect.objectContaining({
        source: 'crash.csv',
        status: 'failed',
        error: expect.stringMatching(/injected/),
      }),
    ]);
    fail = false;
    await sink.write(batch);
    expect(await tableRows('public', target.table)).toHaveLength(1);
  });

  it('insert-ignore keeps the first stored version', async () => {
    const target = ticketsTarget({ mode: 'insert-ignore' });
    const stream = target.table;
    const sink = makeSink(target);
    await sink.write(fileBatch(stream, 'a.csv', [{ id: '1', title: 'old', amount: '1', updated_at: null }]));
    await sink.write(
      fileBatch(stream, 'b.csv', [
        { id: '1', title: 'new', amount: '1', updated_at: null },
        { id: '2', title: 'two', amount: '1', updated_at: null },
      ]),
    );
    expect((await tableRows('public', target.table)).map((r) => r.title)).toEqual(['old', 'two']);
    expect((await loads(stream)).at(-1)).toMatchObject({ rows_inserted: '1', rows_unchanged: '1' });
  });

  it('the version guard never regresses a row to an older version', async () => {
    const target = ticketsTarget({ versionColumn: 'updated_at' });
    const stream = target.table;
    const sink = makeSink(target);
    await sink.write(
      fileBatch(stream, 'new.csv', [
        { id: '1', title: 'newer', amount: '1', updated_at: '2024-02-01T00:00:00Z' },
      ]),
    );
    await sink.write(
      fileBatch(stream, 'late.csv', [
        { id: '1', title: 'older', amount: '1', updated_at: '2024-01-01T00:00:00Z' },
        { id: '2', title: 'fresh', amount: '1', updated_at: '2024-01-01T00:00:00Z' },
      ]),
    );
    expect((await tableRows('public', target.table)).map((r) => r.title)).toEqual(['newer', 'fresh']);
    await sink.write(
      fileBatch(stream, 'next.csv', [
        { id: '1', title: 'newest', amount: '1', updated_at: '2024-03-01T00:00:00Z' },
      ]),
    );
    expect((await tableRows('public', target.table))[0]?.title).toBe('newest');
  });

  it('history mode moves the replaced version to <table>_history with valid_from / valid_to', async () => {
    const target = ticketsTarget({ mode: 'history', deletes: { column: 'op', values: ['D'], mode: 'hard' } });
    const stream = target.table;
    const sink = makeSink(target);
    await sink.write(
      fileBatch(stream, 'h1.csv', [
        { id: '1', title: 'v1', amount: '1', updated_at: null, op: 'I' },
        { id: '2', title: 'keep', amount: '1', updated_at: null, op: 'I' },
      ]),
    );
    await sink.write(
      fileBatch(stream, 'h2.csv', [
        { id: '1', title: 'v2', amount: '1', updated_at: null, op: 'U' },
        { id: '2', title: 'keep', amount: '1', updated_at: null, op: 'U' }, // unchanged: no history
      ]),
    );
    await sink.write(
      fileBatch(stream, 'h3.csv', [{ id: '1', title: 'v2', amount: '1', updated_at: null, op: 'D' }]),
    );
    expect((await tableRows('public', target.table)).map((r) => [r.id, r.title])).toEqual([[2, 'keep']]);
    const history = await tableRows('public', `${target.table}_history`, 'valid_to');
    expect(history.map((r) => [r.id, r.title])).toEqual([
      [1, 'v1'],
      [1, 'v2'],
    ]);
    for (const row of history) {
      expect(row.valid_from).toBeInstanceOf(Date);
      expect((row.valid_to as Date).getTime()).toBeGreaterThanOrEqual((row.valid_from as Date).getTime());
    }
    expect((history[1]!.valid_from as Date).getTime()).toBe((history[0]!.valid_to as Date).getTime());
    expect((await loads(stream)).map((l) => [l.rows_inserted, l.rows_updated, l.rows_deleted])).toEqual([
      ['2', '0', '0'],
      ['0', '1', '0'],
      ['0', '0', '1'],
    ]);
  });

  it('hard and soft deletes driven by a source op column', async () => {
    const hard = ticketsTarget({ deletes: { column: 'header__change_oper', values: ['D'], mode: 'hard' } });
    const soft = ticketsTarget({ deletes: { column: 'header__change_oper', values: ['D'], mode: 'soft' } });
    for (const target of [hard, soft]) {
      const stream = target.table;
      const sink = makeSink(target);
      await sink.write(
        fileBatch(stream, 'd1.csv', [
          { id: '1', title: 'a', amount: '1', updated_at: null, header__change_oper: 'I' },
          { id: '2', title: 'b', amount: '1', updated_at: null, header__change_oper: 'I' },
        ]),
      );
      const deletion = fileBatch(stream, 'd2.csv', [
        { id: '1', title: 'a', amount: '1', updated_at: null, header__change_oper: 'D' },
      ]);
      await sink.write(deletion);
      await sink.write({ ...deletion, position: { again: true } }); // replayed delete: no change
      await sink.write(
        fileBatch(stream, 'd3.csv', [
          { id: '2', title: 'b', amount: '1', updated_at: null, header__change_oper: 'D' },
        ]),
      );
      await sink.write(
        fileBatch(stream, 'd4.csv', [
          { id: '2', title: 'back', amount: '1', updated_at: null, header__change_oper: 'I' },
        ]),
      );
    }
    expect((await tableRows('public', hard.table)).map((r) => [r.id, r.title])).toEqual([[2, 'back']]);
    const softRows = await tableRows('public', soft.table);
    expect(softRows.map((r) => [r.id, r.title, r.deleted_at instanceof Date])).toEqual([
      [1, 'a', true],
      [2, 'back', false],
    ]);
    expect((await loads(soft.table)).map((l) => l.rows_deleted)).toEqual(['0', '1', '0', '1', '0']);
    expect((await loads(hard.table)).map((l) => l.rows_deleted)).toEqual(['0', '1', '0', '1', '0']);
  });

  it('reads offset-less timestamps in the configured time zone', async () => {
    const target = ticketsTarget({ timeZone: 'Africa/Nairobi' });
    const sink = makeSink(target);
    await sink.write(
      fileBatch(target.table, 'tz.csv', [
        { id: '1', title: 't', amount: '1', updated_at: '2024-05-01 12:00:00' },
      ]),
    );
    const rows = await tableRows('public', target.table);
    expect((rows[0]!.updated_at as Date).toISOString()).toBe('2024-05-01T09:00:00.000Z');
  });

  it('records late_skipped without regressing the watermark', async () => {
    const target = ticketsTarget();
    const stream = target.table;
    const sink = makeSink(target);
    const applied = fileBatch(stream, 'k/2024-02.csv', [
      { id: '1', title: 'x', amount: '1', updated_at: null },
    ]);
    applied.meta.watermark = { key: 'k/2024-02.csv', time: '2024-02-01T00:00:00Z' };
    await sink.write(applied);
    const late = fileBatch(stream, 'k/2024-01.csv', [], { late: 'skipped', rowsRead: 0 }, { late: 1 });
    late.meta.watermark = { key: 'k/2024-01.csv', time: '2024-01-01T00:00:00Z' };
    expect(await sink.write(late)).toEqual({ committed: true });
    const state = await readState(db.pool, 'tributary', stream);
    expect(state).toMatchObject({ checkpoint: { late: 1 }, watermarkKey: 'k/2024-02.csv' });
    expect(state?.watermarkTime?.toISOString()).toBe('2024-02-01T00:00:00.000Z');
    expect((await loads(stream)).map((l) => l.status)).toEqual(['loaded', 'late_skipped']);
  });
});

describe('fail loud', () => {
  it('the constraint audit names table and key columns', async () => {
    const table = randomName('nokey');
    await db.pool.query(`CREATE TABLE public."${table}" (id integer, code text, title text)`);
    const sink = makeSink({ schema: 'public', table, key: ['id', 'code'] });
    const error = await sink.checkpoint(table).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TributaryError);
    expect(error).toMatchObject({ code: 'MISSING_CONSTRAINT' });
    expect((error as Error).message).toContain(
      `target table "public"."${table}" has no PRIMARY KEY or UNIQUE`,
    );
    expect((error as Error).message).toContain('("id", "code")');
    await db.pool.query(`ALTER TABLE public."${table}" ADD UNIQUE (code, id)`);
    await expect(sink.checkpoint(table)).resolves.toBeNull();
  });

  it('a cast error names file, line, row and column', async () => {
    const target = ticketsTarget();
    const stream = target.table;
    const sink = makeSink(target);
    const batch = fileBatch(stream, 'exports/bad.csv', [
      { id: '1', title: 'ok', amount: '1', updated_at: '2024-01-01T00:00:00Z' },
      { id: '2', title: 'ok', amount: '2', updated_at: '2024-01-01T00:00:00Z' },
      { id: '3', title: 'bad', amount: '12,5', updated_at: '2024-01-01T00:00:00Z' },
    ]);
    const error = (await sink.write(batch).catch((e: unknown) => e)) as TributaryError;
    expect(error).toBeInstanceOf(TributaryError);
    expect(error.code).toBe('CAST_FAILED');
    expect(error.message).toContain(
      'value "12,5" is not a valid numeric at exports/bad.csv:4 (row 3, column "amount")',
    );
    expect(error.location).toEqual({ file: 'exports/bad.csv', line: 4, column: 'amount', record: 3 });
    expect(await tableRows('public', target.table)).toEqual([]);
    await sink.abort(error);
    expect(await loads(stream)).toEqual([
      expect.objectContaining({ status: 'failed', error: expect.stringContaining('exports/bad.csv:4') }),
    ]);
  });

  it('an empty key names its row', async () => {
    const target = ticketsTarget();
    const sink = makeSink(target);
    const error = (await sink
      .write(fileBatch(target.table, 'k.csv', [{ id: '', title: 'x', amount: '1', updated_at: null }]))
      .catch((e: unknown) => e)) as TributaryError;
    expect(error.code).toBe('BAD_KEY');
    expect(error.message).toContain('k.csv:2 (row 1, column "id")');
  });

  it('abort records a source failure from error.stream and location.file', async () => {
    const target = ticketsTarget();
    const sink = makeSink(target);
    await sink.abort(
      new TributaryError('MALFORMED_ROW', 'unterminated quote', {
        stream: target.table,
        location: { file: 'exports/broken.csv', line: 9 },
      }),
    );
    expect(await loads(target.table)).toEqual([
      expect.objectContaining({
        source: 'exports/broken.csv',
        status: 'failed',
        error: expect.stringContaining('broken.csv:9'),
      }),
    ]);
  });
});

describe('identifiers', () => {
  it('quotes schema, table and column names with quotes, spaces, upper case and injection attempts', async () => {
    const schema = `My "Schema" ${randomName('x')}`;
    const table = `Tickets; DROP TABLE public.victim; --`;
    await db.pool.query('CREATE TABLE public.victim (id int)');
    await db.pool.query(`CREATE SCHEMA "${schema.replaceAll('"', '""')}"`);
    const target: TargetTable = {
      schema,
      table,
      key: ['Ticket "ID"'],
      columns: [
        { name: 'Ticket "ID"', type: 'integer' },
        { name: 'Title With Spaces', type: 'text' },
        { name: "x'); DELETE FROM public.victim; --", type: 'text' },
      ],
      createTable: true,
      mode: 'history',
    };
    const sink = pgSink({ pool: db.pool, schema: `Control "${randomName('c')}"`, targets: () => target });
    sinks.push(sink);
    const stream = 'weird/"stream"';
    const row = (t: string) => ({
      'Ticket "ID"': '1',
      'Title With Spaces': t,
      "x'); DELETE FROM public.victim; --": "'; DROP TABLE public.victim; --",
    });
    await sink.write(fileBatch(stream, 'w.csv', [row('a')]));
    await sink.write(fileBatch(stream, 'w2.csv', [row('b')]));
    const rows = await db.pool.query(`SELECT * FROM "${schema.replaceAll('"', '""')}"."${table}"`);
    expect(rows.rows).toEqual([expect.objectContaining({ 'Ticket "ID"': 1, 'Title With Spaces': 'b' })]);
    const history = await db.pool.query(
      `SELECT count(*)::int AS n FROM "${schema.replaceAll('"', '""')}"."${table}_history"`,
    );
    expect(history.rows[0].n).toBe(1);
    await db.pool.query('SELECT * FROM public.victim'); // still there
    expect(await sink.checkpoint(stream)).toMatchObject({ key: 'w2.csv' });
  });
});
