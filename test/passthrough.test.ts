/**
 * The pass-through path (raw CSV bytes → COPY, declarative transforms compiled into the merge)
 * must give exactly what the row path (csv-parse, transforms in JavaScript) gives: the same
 * table, the same per-file counts in the load log, the same errors.
 */
import { gzipSync } from 'node:zlib';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import {
  type Batch,
  cleanText,
  dropFields,
  map,
  type PipelineEvent,
  type PipelineResult,
  pipeline,
  type Row,
  rename,
  type Sink,
  skipRows,
  type Transform,
} from '@tributary/core';
import { pgSink } from '@tributary/pg-sink';
import { s3Source } from '@tributary/s3-source';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  createTestBucket,
  createTestDatabase,
  type TestBucket,
  type TestDatabase,
} from './support/services.js';

let db: TestDatabase;
let s3: TestBucket;
beforeAll(async () => {
  [db, s3] = await Promise.all([createTestDatabase(), createTestBucket()]);
});

const HEADER = 'id,note,town,region,status,is_alarm,amount,closed,junk';

// Everything exports do that a pass-through reader could get wrong.
const BASELINE = [
  HEADER,
  '1,"a, b",Nai.robi,nairobi-east, In Progress ,no,12.5,true,x',
  '2,"she said ""hi""",Mombasa,  NAIROBI__east ,in-progress,,3,false,x',
  '3,"line one\nline two",Kisumu,\tRift\tValley\v,Closed,NO,,,x',
  '4,,"ünïcödé ✓",,,false,7,t,x',
  '5,"",x,Coast,open, TRUE ,1,f,x',
  '6,alarm,x,Coast,open,Yes,1,f,x',
  '7,alarm,x,Coast,open,t,1,f,x',
  '8,"crlf\r\ninside",Nyeri,mount---kenya,OPEN,0,2.25,yes,x',
  'EXPORT STOPPED at 12:00,,,,,,,,',
  '2,"duplicate key: the last one wins",Mombasa,coast,done,n,4,true,x',
  '9,"  spaces kept  ",Mürang’a," eastern ",in   progress,no ,5,no,x',
].join('\n');

// CRLF line endings throughout, gzip, and an empty line: the last one is irregular for
// pass-through and goes through csv-parse from its first record.
const DELTA_CRLF = [
  HEADER,
  '3,updated,Kisumu,Rift Valley,closed,no,9,true,x',
  '10,new,Thika,central,open,,1,true,x',
]
  .join('\r\n')
  .concat('\r\n');
const DELTA_GZIP = `${HEADER}\n4,"gz ""quoted""",Eldoret,north-rift,open,false,8,false,x\n`;
const DELTA_EMPTY_LINE = `${HEADER}\n11,before,Embu,eastern,open,no,1,true,x\n\n12,after,Meru,eastern,open,no,1,true,x\n`;

const FILES: Array<[name: string, body: Buffer]> = [
  ['20260101.csv', Buffer.from(BASELINE, 'utf8')],
  ['20260102.csv', Buffer.from(DELTA_CRLF, 'utf8')],
  ['20260103.csv.gz', gzipSync(Buffer.from(DELTA_GZIP, 'utf8'))],
  ['20260104.csv', Buffer.from(DELTA_EMPTY_LINE, 'utf8')],
];

function transforms(): Transform[] {
  return [
    skipRows('is_alarm', {
      column: 'is_alarm',
      oneOf: ['true', 't', '1', 'yes'],
      trim: true,
      ignoreCase: true,
    }),
    skipRows('sentinel', { column: 'id', startsWith: 'EXPORT STOPPED' }),
    // A clean-up of a column dropped right after: its SQL parameters end up unused.
    cleanText({ junk: { trim: true, case: 'lower' } }),
    dropFields(['junk']),
    rename({ town: 'city' }),
    cleanText({
      region: {
        trim: true,
        case: 'upper',
        collapse: { chars: ' \t\n\r\f\v_-', into: ' ' },
        emptyToNull: true,
      },
      status: { trim: true, case: 'lower', collapse: { chars: ' \t-', into: '_' }, emptyToNull: true },
      // Replacement text is literal in both languages (no `$&` in JavaScript, no `\1` in SQL).
      city: { case: 'upper', collapse: { chars: '.', into: '\\1$&' } },
    }),
  ];
}

interface Variant {
  name: string;
  passThrough: boolean;
  emptyAsNull: boolean;
  /** A custom (non-declarative) transform at the end: raw batches are parsed before it. */
  custom?: boolean;
}

/** Loads the files through one variant into its own schema; returns what it saw. */
async function load(variant: Variant) {
  const prefix = `${variant.name}/`;
  for (const [name, body] of FILES) {
    await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `${prefix}${name}`, Body: body }));
  }
  const stream = `pt/${variant.name}`;
  const sink = pgSink({
    pool: db.pool,
    schema: 'tributary',
    targets: {
      [stream]: {
        schema: variant.name,
        table: 'items',
        key: ['id'],
        createTable: true,
        columns: [
          { name: 'id', type: 'text' },
          { name: 'note', type: 'text' },
          { name: 'city', type: 'text' },
          { name: 'region', type: 'text' },
          { name: 'status', type: 'text' },
          { name: 'is_alarm', type: 'text' },
          { name: 'amount', type: 'numeric' },
          { name: 'closed', type: 'boolean' },
        ],
      },
    },
  });
  // Records which batches reached the sink unparsed.
  let rawBatches = 0;
  const probe: Sink<Row> = {
    name: 'probe',
    acceptsRaw: true,
    checkpoint: (s) => sink.checkpoint(s),
    loadLog: sink.loadLog,
    write: (batch: Batch<Row>) => {
      if (batch.raw) rawBatches++;
      return sink.write(batch);
    },
    abort: (error) => sink.abort(error),
  };
  const source = s3Source({
    client: s3.client,
    archive: false,
    batchRows: 4,
    streams: [
      {
        id: stream,
        bucket: s3.bucket,
        prefix,
        keyPattern: 'YYYYMMDD',
        passThrough: variant.passThrough,
        emptyAsNull: variant.emptyAsNull,
      },
    ],
  });
  const warnings: string[] = [];
  const onEvent = (event: PipelineEvent) => {
    if (event.type === 'warning') warnings.push(event.message);
  };
  let result: PipelineResult;
  try {
    const stages = [...transforms(), ...(variant.custom ? [map((row) => row, 'identity')] : [])];
    result = await pipeline(source, ...stages, probe, { onEvent });
  } finally {
    await sink.close();
  }
  const table = await db.pool.query(`SELECT * FROM "${variant.name}".items ORDER BY id`);
  const loads = await db.pool.query(
    `SELECT source, rows_read, rows_filtered, filtered, rows_inserted, rows_updated, rows_unchanged
       FROM tributary.loads WHERE stream = $1 ORDER BY source`,
    [stream],
  );
  return {
    rows: table.rows,
    loads: loads.rows.map((l) => ({ ...l, source: String(l.source).slice(prefix.length) })),
    result: { rowsRead: result.rowsRead, rowsWritten: result.rowsWritten, rowsFiltered: result.rowsFiltered },
    rawBatches,
    warnings,
  };
}

describe('pass-through', () => {
  for (const emptyAsNull of [true, false]) {
    it(`gives the row path's table, counts and load log (emptyAsNull ${emptyAsNull})`, async () => {
      const suffix = emptyAsNull ? 'n' : 'e';
      const raw = await load({ name: `raw_${suffix}`, passThrough: true, emptyAsNull });
      const rows = await load({ name: `rows_${suffix}`, passThrough: false, emptyAsNull });
      const custom = await load({ name: `custom_${suffix}`, passThrough: true, emptyAsNull, custom: true });

      // The paths really differ: raw batches reached the sink only on the pass-through path, and
      // the file with an empty line fell back to csv-parse, saying so.
      expect(raw.rawBatches).toBeGreaterThan(0);
      expect(rows.rawBatches).toBe(0);
      expect(custom.rawBatches).toBe(0);
      expect(raw.warnings.join('\n')).toMatch(
        /20260104\.csv: not passed through: an empty line; parsing it in JavaScript from record 1/,
      );

      expect(raw.rows).toEqual(rows.rows);
      expect(custom.rows).toEqual(rows.rows);
      expect(raw.loads).toEqual(rows.loads);
      expect(custom.loads).toEqual(rows.loads);
      expect(raw.result).toEqual(rows.result);
      expect(custom.result).toEqual(rows.result);

      // And the result is the right one, not merely the same.
      const byId = new Map(raw.rows.map((r) => [r.id, r]));
      expect([...byId.keys()]).toEqual(['1', '10', '11', '12', '2', '3', '4', '8', '9']);
      expect(byId.get('1')).toMatchObject({
        note: 'a, b',
        city: 'NAI\\1$&ROBI',
        region: 'NAIROBI EAST',
        status: 'in_progress',
      });
      expect(byId.get('2')).toMatchObject({ note: 'duplicate key: the last one wins', region: 'COAST' });
      expect(byId.get('3')).toMatchObject({ note: 'updated', region: 'RIFT VALLEY', amount: '9' });
      expect(byId.get('4')).toMatchObject({ note: 'gz "quoted"', region: 'NORTH RIFT', closed: false });
      expect(byId.get('8')).toMatchObject({ note: 'crlf\r\ninside', region: 'MOUNT KENYA', closed: true });
      // Case folding touches ASCII letters only, on both paths, whatever the database's ctype.
      expect(byId.get('9')).toMatchObject({
        note: '  spaces kept  ',
        city: 'MüRANG’A',
        region: 'EASTERN',
        status: 'in_progress',
      });
      expect(raw.loads[0]).toMatchObject({ rows_read: '11', filtered: { is_alarm: 3, sentinel: 1 } });
      // An empty field: null everywhere with emptyAsNull, else '' in text columns.
      expect(byId.get('10')).toMatchObject({ is_alarm: emptyAsNull ? null : '' });
      expect(byId.get('2')).toMatchObject({ is_alarm: 'n' });
    });
  }

  it("a line holding only \\. (COPY's end-of-data marker) loses no row: the file goes through csv-parse", async () => {
    const key = 'eod/20260101.csv';
    await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: 'v\n1\n\\.\n3\n' }));
    const sink = pgSink({
      pool: db.pool,
      schema: 'tributary',
      targets: {
        'pt/eod': {
          schema: 'eod',
          table: 'items',
          key: ['v'],
          createTable: true,
          columns: [{ name: 'v', type: 'text' }],
        },
      },
    });
    const source = s3Source({
      client: s3.client,
      archive: false,
      streams: [{ id: 'pt/eod', bucket: s3.bucket, prefix: 'eod/', keyPattern: 'YYYYMMDD' }],
    });
    try {
      await pipeline(source, sink);
    } finally {
      await sink.close();
    }
    const table = await db.pool.query('SELECT v FROM eod.items ORDER BY v');
    expect(table.rows.map((r) => r.v)).toEqual(['1', '3', '\\.']);
  });

  it.each([
    ['LF', '\n'],
    ['CRLF', '\r\n'],
  ])(
    'a record with a missing field fails with the row path error: file, line and column (%s)',
    async (label, eol) => {
      const errors: string[] = [];
      for (const passThrough of [true, false]) {
        const name = `bad_${label.toLowerCase()}_${passThrough ? 'raw' : 'rows'}`;
        const key = `${name}/20260101.csv`;
        // Line breaks inside quotes before and in the bad record: its line must still be right.
        const body = [HEADER, '1,"a', ' b",b,c,d,no,1,true,x', '2,"multi', 'line",b,c,d,no,1,true', ''].join(
          eol,
        );
        await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body }));
        const sink = pgSink({
          pool: db.pool,
          schema: 'tributary',
          targets: {
            [`pt/${name}`]: {
              schema: name,
              table: 'items',
              key: ['id'],
              createTable: true,
              columns: HEADER.split(',').map((c) => ({ name: c, type: 'text' })),
            },
          },
        });
        const source = s3Source({
          client: s3.client,
          archive: false,
          streams: [
            { id: `pt/${name}`, bucket: s3.bucket, prefix: `${name}/`, keyPattern: 'YYYYMMDD', passThrough },
          ],
        });
        try {
          await expect(pipeline(source, sink)).rejects.toThrow();
          await pipeline(source, sink).catch((error: Error) =>
            errors.push(error.message.replace(name, '<prefix>')),
          );
        } finally {
          await sink.close();
        }
        const table = await db.pool
          .query(`SELECT count(*)::int AS n FROM "${name}".items`)
          .catch(() => ({ rows: [{ n: 0 }] }));
        expect(table.rows[0]!.n).toBe(0); // the file's transaction never committed
      }
      expect(errors[0]).toMatch(/<prefix>\/20260101\.csv:5:\d+: malformed CSV row \(record 2\)/);
      expect(errors[0]).toBe(errors[1]);
    },
  );
});
