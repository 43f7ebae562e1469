import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, randomName, type TestDatabase } from '../../../test/support/services.js';
import { type PgSink, pgSink, type QlikTarget, type TargetTable } from '../src/index.js';
import { fileBatch, rawBatch } from './helpers.js';

let db: TestDatabase;
const sinks: PgSink[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
});
afterEach(async () => {
  for (const sink of sinks.splice(0)) await sink.close().catch(() => undefined);
});

function qlikTarget(qlik: QlikTarget | true = true, extra: Partial<TargetTable> = {}): TargetTable {
  return {
    schema: 'public',
    table: randomName('qlik'),
    key: ['id'],
    columns: [
      { name: 'id', type: 'integer' },
      { name: 'name', type: 'text' },
    ],
    createTable: true,
    qlik,
    ...extra,
  };
}

function makeSink(target: TargetTable): PgSink {
  const sink = pgSink({ pool: db.pool, targets: { [target.table]: target } });
  sinks.push(sink);
  return sink;
}

async function rows(table: string): Promise<Record<string, unknown>[]> {
  return (await db.pool.query(`SELECT * FROM public."${table}" ORDER BY id`)).rows;
}

const HEADER = ['header__change_seq', 'header__change_oper', 'header__timestamp', 'id', 'name'];

/** A change-table record: seq, oper, timestamp, id, name. */
const ct = (seq: number, oper: string, ts: string, id: number, name: string) =>
  `${String(seq).padStart(35, '0')},${oper},${ts},${id},${name}`;

describe('Qlik change tables (target.qlik)', () => {
  for (const path of ['raw', 'rows'] as const) {
    it(`applies I/U/D in header__change_seq order, skips B (counted), drops header__ columns (${path})`, async () => {
      const target = qlikTarget();
      const stream = target.table;
      const sink = makeSink(target);
      await sink.write(
        rawBatch(stream, 'EDW.SAMPLE/LOAD001.csv', ['id', 'name'], ['1,one', '2,two', '3,three'], {
          meta: { kind: 'baseline' },
        }),
      );
      // Out of file order on purpose: change_seq decides. Key 1: U then D then I (re-insert);
      // key 2: U twice (the later seq wins) with a before-image; key 3: deleted.
      const records = [
        ct(5, 'I', '2022-03-04 13:45:57.000', 1, 'one-again'),
        ct(2, 'B', '2022-03-04 13:45:56.000', 2, 'two'),
        ct(3, 'U', '2022-03-04 13:45:56.100', 2, 'two-v1'),
        ct(6, 'U', '2022-03-04 13:45:57.100', 2, 'two-v2'),
        ct(1, 'U', '2022-03-04 13:45:55.000', 1, 'one-v1'),
        ct(4, 'D', '2022-03-04 13:45:56.500', 1, 'one-v1'),
        ct(7, 'D', '2022-03-04 13:45:58.000', 3, 'three'),
        ct(8, 'I', '2022-03-04 13:45:58.000', 4, 'four'),
      ];
      const batch =
        path === 'raw'
          ? rawBatch(stream, 'EDW.SAMPLE__ct/20220304-134556444.csv', HEADER, records)
          : fileBatch(
              stream,
              'EDW.SAMPLE__ct/20220304-134556444.csv',
              records.map((r) => Object.fromEntries(r.split(',').map((v, i) => [HEADER[i]!, v]))),
            );
      const result = await sink.write(batch);
      expect(result.filtered).toEqual({ qlik_before_image: 1 });
      expect(await rows(stream)).toEqual([
        { id: 1, name: 'one-again', qlik_timestamp: new Date('2022-03-04T13:45:57.000') },
        { id: 2, name: 'two-v2', qlik_timestamp: new Date('2022-03-04T13:45:57.100') },
        { id: 4, name: 'four', qlik_timestamp: new Date('2022-03-04T13:45:58.000') },
      ]);
      const load = await db.pool.query(
        `SELECT rows_read, rows_filtered, filtered, rows_deleted FROM tributary.loads WHERE stream = $1 AND source LIKE '%__ct/%'`,
        [stream],
      );
      expect(load.rows[0]).toMatchObject({
        rows_read: '8',
        rows_filtered: '1',
        filtered: { qlik_before_image: 1 },
        rows_deleted: '1',
      });
    });
  }

  it('never applies a change older than the stored header__timestamp (update or delete)', async () => {
    const target = qlikTarget();
    const stream = target.table;
    const sink = makeSink(target);
    await sink.write(
      rawBatch(stream, 'ct/20220304-000001000.csv', HEADER, [
        ct(10, 'I', '2022-03-04 10:00:00', 1, 'new'),
        ct(11, 'I', '2022-03-04 10:00:00', 2, 'kept'),
      ]),
    );
    await sink.write(
      rawBatch(stream, 'ct/20220304-000000500.csv', HEADER, [
        ct(1, 'U', '2022-03-04 09:00:00', 1, 'old'),
        ct(2, 'D', '2022-03-04 09:00:00', 2, 'kept'),
      ]),
    );
    expect((await rows(stream)).map((r) => [r.id, r.name])).toEqual([
      [1, 'new'],
      [2, 'kept'],
    ]);
    // A LOAD file (no header__ columns) is the snapshot itself: not guarded.
    await sink.write(
      rawBatch(stream, 'LOAD002.csv', ['id', 'name'], ['1,from-load'], { meta: { kind: 'baseline' } }),
    );
    expect((await rows(stream)).map((r) => [r.id, r.name])).toEqual([
      [1, 'from-load'],
      [2, 'kept'],
    ]);
  });

  it('keeps the header__ columns when asked, and soft-deletes', async () => {
    const target = qlikTarget(
      { keepHeaders: true, deletes: 'soft' },
      {
        columns: [
          { name: 'header__change_seq', type: 'text' },
          { name: 'header__change_oper', type: 'text' },
          { name: 'header__timestamp', type: 'timestamp' },
          { name: 'id', type: 'integer' },
          { name: 'name', type: 'text' },
        ],
      },
    );
    const stream = target.table;
    const sink = makeSink(target);
    await sink.write(
      rawBatch(stream, 'ct/20220304-000001000.csv', HEADER, [
        ct(1, 'I', '2022-03-04 10:00:00', 1, 'a'),
        ct(2, 'D', '2022-03-04 10:00:01', 1, 'a'),
      ]),
    );
    const [row] = await rows(stream);
    expect(row).toMatchObject({ id: 1, name: 'a', header__change_oper: 'D' });
    expect(row!.deleted_at).toBeInstanceOf(Date);
    expect(row).not.toHaveProperty('qlik_timestamp');
  });

  it('records the S3 LastModified of each file in loads.s3_modified', async () => {
    const target = qlikTarget();
    const sink = makeSink(target);
    await sink.write(
      rawBatch(target.table, 'LOAD001.csv', ['id', 'name'], ['1,a'], {
        meta: { kind: 'baseline', modified: '2022-03-05T01:02:03.000Z' },
      }),
    );
    const load = await db.pool.query('SELECT s3_modified FROM tributary.loads WHERE stream = $1', [
      target.table,
    ]);
    expect(load.rows).toEqual([{ s3_modified: new Date('2022-03-05T01:02:03.000Z') }]);
  });

  it('refuses qlik combined with deletes or versionColumn', () => {
    expect(() =>
      pgSink({
        pool: db.pool,
        targets: { x: qlikTarget(true, { deletes: { column: 'op', values: ['D'], mode: 'hard' } }) },
      }),
    ).toThrow(/targets\.x\.deletes: cannot be combined with qlik/);
  });
});
