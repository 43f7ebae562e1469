import { TributaryError } from '@tributary/core';
import { describe, expect, it } from 'vitest';
import { randomName } from '../../../test/support/services.js';
import type { TargetTable } from '../src/index.js';
import { fileBatch, rawBatch, sinkFixture } from './helpers.js';

/** Issue 17 part 2: target.schemaDrift — fail (default), evolve, freeze-extra. */

const fixture = sinkFixture();
const { makeSink } = fixture;

function target(extra: Partial<TargetTable> = {}): TargetTable {
  return {
    schema: 'public',
    table: randomName('drift'),
    key: ['id'],
    columns: [
      { name: 'id', type: 'integer' },
      { name: 'v', type: 'text' },
    ],
    createTable: true,
    ...extra,
  };
}

async function rows(t: TargetTable, table = t.table): Promise<Record<string, unknown>[]> {
  return (await fixture.db().pool.query(`SELECT * FROM public."${table}" ORDER BY id`)).rows;
}

async function columnsOf(table: string): Promise<string[]> {
  const result = await fixture
    .db()
    .pool.query<{ name: string }>(
      `SELECT attname AS name FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
      [`public."${table}"`],
    );
  return result.rows.map((r) => r.name);
}

async function changes(stream: string): Promise<Record<string, unknown>[]> {
  return (
    await fixture
      .db()
      .pool.query(
        'SELECT file, table_name, column_name, change, type FROM tributary.schema_changes WHERE stream = $1 ORDER BY id',
        [stream],
      )
  ).rows;
}

describe('schemaDrift', () => {
  it('fail (default): a new column stops the stream naming the file and the column; nothing changes', async () => {
    const t = target();
    const sink = makeSink(t);
    await sink.write(fileBatch(t.table, 'f1.csv', [{ id: '1', v: 'a' }]));
    const error = await sink
      .write(fileBatch(t.table, 'f2.csv', [{ id: '2', v: 'b', extra: 'x' }]))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TributaryError);
    expect((error as TributaryError).code).toBe('SCHEMA_DRIFT');
    expect((error as TributaryError).message).toMatch(/f2\.csv.*"extra"/);
    expect((error as TributaryError).location).toMatchObject({ file: 'f2.csv', column: 'extra' });
    expect(await columnsOf(t.table)).toEqual(['id', 'v']);
    expect(await rows(t)).toEqual([{ id: 1, v: 'a' }]);
  });

  it('evolve: a new column is added (typed from types) and filled for its rows; earlier rows keep null', async () => {
    const t = target({ schemaDrift: 'evolve', types: { amount: 'numeric' } });
    const sink = makeSink(t);
    await sink.write(fileBatch(t.table, 'f1.csv', [{ id: '1', v: 'a' }]));
    const written = await sink.write(
      fileBatch(t.table, 'f2.csv', [
        { id: '2', v: 'b', amount: '2.5', note: 'hello' },
        { id: '3', v: 'c', amount: '', note: 'x' },
      ]),
    );
    expect(written.committed).toBe(true);
    expect(written.warnings?.join('\n')).toMatch(/f2\.csv: added column\(s\) "amount" numeric, "note" text/);
    expect(await columnsOf(t.table)).toEqual(['id', 'v', 'amount', 'note']);
    expect(await rows(t)).toEqual([
      { id: 1, v: 'a', amount: null, note: null },
      { id: 2, v: 'b', amount: '2.5', note: 'hello' },
      { id: 3, v: 'c', amount: null, note: 'x' },
    ]);
    expect(await changes(t.table)).toEqual([
      {
        file: 'f2.csv',
        table_name: `"public"."${t.table}"`,
        column_name: 'amount',
        change: 'added',
        type: 'numeric',
      },
      {
        file: 'f2.csv',
        table_name: `"public"."${t.table}"`,
        column_name: 'note',
        change: 'added',
        type: 'text',
      },
    ]);

    // A file without some columns: updates keep the stored values, inserts get null; warned.
    const partial = await sink.write(
      fileBatch(t.table, 'f3.csv', [
        { id: '2', v: 'B' },
        { id: '4', v: 'd' },
      ]),
    );
    expect(partial.warnings?.join('\n')).toMatch(/f3\.csv: no column\(s\) "amount", "note"/);
    expect(await rows(t)).toEqual([
      { id: 1, v: 'a', amount: null, note: null },
      { id: 2, v: 'B', amount: '2.5', note: 'hello' },
      { id: 3, v: 'c', amount: null, note: 'x' },
      { id: 4, v: 'd', amount: null, note: null },
    ]);
  });

  it('evolve on the pass-through (COPY) path, in history mode: the history table gets the column too', async () => {
    const t = target({ schemaDrift: 'evolve', mode: 'history' });
    const sink = makeSink(t);
    await sink.write(rawBatch(t.table, 'f1.csv', ['id', 'v'], ['1,a', '2,b']));
    await sink.write(rawBatch(t.table, 'f2.csv', ['id', 'v', 'extra'], ['1,A,x1']));
    expect(await columnsOf(`${t.table}_history`)).toContain('extra');
    const current = await fixture.db().pool.query(`SELECT id, v, extra FROM public."${t.table}" ORDER BY id`);
    expect(current.rows).toEqual([
      { id: 1, v: 'A', extra: 'x1' },
      { id: 2, v: 'b', extra: null },
    ]);
    const history = await fixture.db().pool.query(`SELECT id, v, extra FROM public."${t.table}_history"`);
    expect(history.rows).toEqual([{ id: 1, v: 'a', extra: null }]);
  });

  it('evolve: a file that fails after its ALTER leaves no column behind, and its fixed version adds it', async () => {
    const t = target({ schemaDrift: 'evolve', types: { n: 'integer' } });
    const sink = makeSink(t);
    await sink.write(fileBatch(t.table, 'f1.csv', [{ id: '1', v: 'a' }]));
    // A value that does not cast to the new column's type: the file rolls back with the ALTER.
    const bad = await sink
      .write(
        fileBatch(t.table, 'f2.csv', [
          { id: '2', v: 'b', n: '1' },
          { id: '3', v: 'c', n: 'zz' },
        ]),
      )
      .catch((e: unknown) => e);
    expect((bad as TributaryError).code).toBe('CAST_FAILED');
    expect(await columnsOf(t.table)).toEqual(['id', 'v']);
    expect(await changes(t.table)).toEqual([]);
    await sink.abort(bad as Error, t.table);

    const fixed = await sink.write(
      fileBatch(t.table, 'f2.csv', [
        { id: '2', v: 'b', n: '1' },
        { id: '3', v: 'c', n: '3' },
      ]),
    );
    expect(fixed.committed).toBe(true);
    expect(await rows(t)).toEqual([
      { id: 1, v: 'a', n: null },
      { id: 2, v: 'b', n: 1 },
      { id: 3, v: 'c', n: 3 },
    ]);
    expect((await changes(t.table)).map((c) => c.column_name)).toEqual(['n']);
  });

  it('evolve: a crash before COMMIT (after the ALTER) leaves no column behind', async () => {
    const t = target({ schemaDrift: 'evolve' });
    let crash = true;
    const sink = makeSink(t, {
      retries: 0,
      faults: {
        beforeCommit: () => {
          if (crash) throw new Error('simulated crash before COMMIT');
        },
      },
    });
    crash = false;
    await sink.write(fileBatch(t.table, 'f1.csv', [{ id: '1', v: 'a' }]));
    crash = true;
    await expect(sink.write(fileBatch(t.table, 'f2.csv', [{ id: '2', v: 'b', late: 'x' }]))).rejects.toThrow(
      /simulated crash/,
    );
    expect(await columnsOf(t.table)).toEqual(['id', 'v']);
    expect(await changes(t.table)).toEqual([]);
    expect(await rows(t)).toEqual([{ id: 1, v: 'a' }]);
  });

  it('freeze-extra: new columns are ignored with a warning naming the file; the table is unchanged', async () => {
    const t = target({ schemaDrift: 'freeze-extra' });
    const sink = makeSink(t);
    await sink.write(rawBatch(t.table, 'f1.csv', ['id', 'v', 'junk'], ['1,a,x']));
    const written = await sink.write(fileBatch(t.table, 'f2.csv', [{ id: '2', v: 'b', junk: 'y' }]));
    expect(written.warnings?.join('\n')).toMatch(/f2\.csv: column\(s\) "junk" not in .*: ignored/);
    expect(await columnsOf(t.table)).toEqual(['id', 'v']);
    expect(await rows(t)).toEqual([
      { id: 1, v: 'a' },
      { id: 2, v: 'b' },
    ]);
    expect(await changes(t.table)).toEqual([]);
  });

  it('a type change is never made: it fails naming the column and both types', async () => {
    const t = target({ schemaDrift: 'evolve' });
    const first = makeSink(t);
    await first.write(fileBatch(t.table, 'f1.csv', [{ id: '1', v: 'a' }]));
    await first.close();
    const changed = makeSink({ ...t, types: { v: 'integer' } });
    const error = await changed
      .write(fileBatch(t.table, 'f2.csv', [{ id: '2', v: '5' }]))
      .catch((e: unknown) => e);
    expect((error as TributaryError).code).toBe('SCHEMA_DRIFT');
    expect((error as TributaryError).message).toMatch(/column "v" is text but declared integer/);
  });
});
