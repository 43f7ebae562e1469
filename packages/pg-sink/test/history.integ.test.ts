import { describe, expect, it } from 'vitest';
import { randomName } from '../../../test/support/services.js';
import type { TargetTable } from '../src/index.js';
import { fileBatch, rawBatch, sinkFixture } from './helpers.js';

/**
 * Issue 17 part 4 (seed 003): history mode's versions start at the source time when the stream
 * has a date/time version column, and `<table>_at(T)` gives the version valid at T.
 */

const fixture = sinkFixture();
const { makeSink } = fixture;

function historyTarget(extra: Partial<TargetTable> = {}): TargetTable {
  return {
    schema: 'public',
    table: randomName('hist'),
    key: ['id'],
    columns: [
      { name: 'id', type: 'integer' },
      { name: 'v', type: 'text' },
      { name: 'updated_at', type: 'timestamptz' },
    ],
    createTable: true,
    mode: 'history',
    ...extra,
  };
}

async function validAt(t: TargetTable, at: string): Promise<Record<string, unknown>[]> {
  const result = await fixture
    .db()
    .pool.query(`SELECT id, v FROM public."${t.table}_at"($1) ORDER BY id`, [at]);
  return result.rows;
}

describe('history mode: valid_from from the source, the version valid at T', () => {
  it('uses the version column as valid_from / valid_to and answers "valid at T"', async () => {
    const t = historyTarget({ versionColumn: 'updated_at' });
    const sink = makeSink(t);
    await sink.write(
      fileBatch(t.table, 'f1.csv', [
        { id: '1', v: 'a', updated_at: '2024-01-01T00:00:00Z' },
        { id: '2', v: 'b', updated_at: '2024-01-02T00:00:00Z' },
      ]),
    );
    await sink.write(rawBatch(t.table, 'f2.csv', ['id', 'v', 'updated_at'], ['1,A,2024-01-05T00:00:00Z']));
    await sink.write(
      fileBatch(t.table, 'f3.csv', [{ id: '1', v: 'AA', updated_at: '2024-01-10T00:00:00Z' }]),
    );

    const iso = (d: unknown) => (d as Date).toISOString();
    const current = await fixture
      .db()
      .pool.query(`SELECT id, v, valid_from FROM public."${t.table}" ORDER BY id`);
    expect(current.rows.map((r) => [r.id, r.v, iso(r.valid_from)])).toEqual([
      [1, 'AA', '2024-01-10T00:00:00.000Z'],
      [2, 'b', '2024-01-02T00:00:00.000Z'],
    ]);
    const history = await fixture
      .db()
      .pool.query(`SELECT id, v, valid_from, valid_to FROM public."${t.table}_history" ORDER BY valid_from`);
    expect(history.rows.map((r) => [r.id, r.v, iso(r.valid_from), iso(r.valid_to)])).toEqual([
      [1, 'a', '2024-01-01T00:00:00.000Z', '2024-01-05T00:00:00.000Z'],
      [1, 'A', '2024-01-05T00:00:00.000Z', '2024-01-10T00:00:00.000Z'],
    ]);

    expect(await validAt(t, '2023-12-31T00:00:00Z')).toEqual([]);
    expect(await validAt(t, '2024-01-01T12:00:00Z')).toEqual([{ id: 1, v: 'a' }]);
    expect(await validAt(t, '2024-01-03T00:00:00Z')).toEqual([
      { id: 1, v: 'a' },
      { id: 2, v: 'b' },
    ]);
    expect(await validAt(t, '2024-01-05T00:00:00Z')).toEqual([
      { id: 1, v: 'A' },
      { id: 2, v: 'b' },
    ]);
    expect(await validAt(t, '2030-01-01T00:00:00Z')).toEqual([
      { id: 1, v: 'AA' },
      { id: 2, v: 'b' },
    ]);
    const versions = await fixture
      .db()
      .pool.query(`SELECT count(*)::int AS n FROM public."${t.table}_versions"`);
    expect(versions.rows[0]).toEqual({ n: 4 });
  });

  it('without a version column valid_from stays the load time; the view still answers', async () => {
    const t = historyTarget();
    const sink = makeSink(t);
    const before = (await fixture.db().pool.query<{ now: Date }>('SELECT clock_timestamp() AS now')).rows[0]!
      .now;
    await sink.write(fileBatch(t.table, 'f1.csv', [{ id: '1', v: 'a', updated_at: '2001-01-01T00:00:00Z' }]));
    await sink.write(fileBatch(t.table, 'f2.csv', [{ id: '1', v: 'b', updated_at: '2001-02-01T00:00:00Z' }]));
    const row = (await fixture.db().pool.query(`SELECT valid_from FROM public."${t.table}"`)).rows[0];
    expect((row.valid_from as Date).getTime()).toBeGreaterThanOrEqual(before.getTime() - 1000);
    expect(await validAt(t, '2001-01-15T00:00:00Z')).toEqual([]);
    expect(await validAt(t, new Date(Date.now() + 3600_000).toISOString())).toEqual([{ id: 1, v: 'b' }]);
  });

  it('schemaDrift evolve keeps the view in step with the new column', async () => {
    const t = historyTarget({ versionColumn: 'updated_at', schemaDrift: 'evolve' });
    const sink = makeSink(t);
    await sink.write(fileBatch(t.table, 'f1.csv', [{ id: '1', v: 'a', updated_at: '2024-01-01T00:00:00Z' }]));
    await sink.write(
      fileBatch(t.table, 'f2.csv', [{ id: '1', v: 'b', updated_at: '2024-01-02T00:00:00Z', extra: 'x' }]),
    );
    const result = await fixture.db().pool.query(
      `SELECT id, v, extra FROM public."${t.table}_at"('2024-01-01T12:00:00Z') UNION ALL
       SELECT id, v, extra FROM public."${t.table}_at"('2024-01-03T00:00:00Z')`,
    );
    expect(result.rows).toEqual([
      { id: 1, v: 'a', extra: null },
      { id: 1, v: 'b', extra: 'x' },
    ]);
  });
});
