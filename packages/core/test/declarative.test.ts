import { describe, expect, it } from 'vitest';
import {
  type Batch,
  cleanText,
  dropFields,
  filter,
  isDeclarative,
  materialize,
  pipeline,
  type RawCsv,
  type Row,
  rename,
  type Sink,
  type Source,
  skipRows,
} from '../src/index.js';

/** A raw batch whose `parse()` returns the given rows (as a CSV source would). */
function rawBatch(rows: Row[], header: string[]): Batch<Row> {
  const raw: RawCsv = {
    bytes: Buffer.from('unused'),
    header,
    records: rows.length,
    firstRecord: 1,
    emptyAsNull: false,
    steps: [],
    line: (i) => i + 2,
    parse: () => ({
      rows: rows.map((r) => ({ ...r })),
      locations: rows.map((_, i) => ({ file: 'x.csv', line: i + 2, record: i + 1 })),
    }),
  };
  return {
    stream: 't/x',
    rows: [],
    raw,
    position: { n: 1 },
    meta: { commit: true, rowsRead: rows.length, filtered: {} },
  };
}

const ROWS: Row[] = [
  { id: '1', alarm: ' TRUE ', region: ' nairobi--east ', junk: 'x' },
  { id: '2', alarm: 'no', region: 'NAIROBI_east', junk: 'x' },
  { id: 'STOP here', alarm: null, region: '', junk: 'x' },
  { id: '3', alarm: 'Yes', region: null, junk: 'x' },
];

const steps = () => [
  skipRows('alarm', { column: 'alarm', oneOf: ['true', 'yes'], trim: true, ignoreCase: true }),
  skipRows('stop', { column: 'id', startsWith: 'STOP' }),
  dropFields(['junk']),
  rename({ region: 'area' }),
  cleanText({
    area: { trim: true, case: 'upper', collapse: { chars: ' _-', into: ' ' }, emptyToNull: true },
  }),
];

describe('declarative transforms', () => {
  it('run in JavaScript on rows, counting drops by name', async () => {
    let batch: Batch<Row> | undefined = materialize(rawBatch(ROWS, ['id', 'alarm', 'region', 'junk']));
    for (const t of steps()) batch = await t(batch!);
    expect(batch!.rows).toEqual([{ id: '2', alarm: 'no', area: 'NAIROBI EAST' }]);
    expect(batch!.meta.filtered).toEqual({ alarm: 2, stop: 1 });
    expect(batch!.meta.locations).toEqual([{ file: 'x.csv', line: 3, record: 2 }]);
  });

  it('on a raw batch only record their steps; materialize runs them like the row path', async () => {
    let batch: Batch<Row> | undefined = rawBatch(ROWS, ['id', 'alarm', 'region', 'junk']);
    for (const t of steps()) batch = await t(batch!);
    expect(batch!.rows).toEqual([]);
    expect(batch!.raw!.steps.map((s) => s.op)).toEqual([
      'skip-rows',
      'skip-rows',
      'drop-fields',
      'rename',
      'text',
    ]);
    const rows = materialize(batch!);
    expect(rows.raw).toBeUndefined();
    expect(rows.rows).toEqual([{ id: '2', alarm: 'no', area: 'NAIROBI EAST' }]);
    expect(rows.meta.filtered).toEqual({ alarm: 2, stop: 1 });
  });

  it('text rules leave non-strings alone and trim only ASCII whitespace', async () => {
    const t = cleanText({ v: { trim: true, case: 'lower' } });
    const out = await t({
      ...rawBatch([], []),
      raw: undefined,
      rows: [{ v: 42 }, { v: '\u00a0X\t' }, { v: null }],
    });
    expect(out!.rows).toEqual([{ v: 42 }, { v: '\u00a0x' }, { v: null }]);
    expect(isDeclarative(t)).toBe(true);
    expect(isDeclarative(filter('f', () => true))).toBe(false);
  });

  it('case folding touches ASCII letters only, like the SQL side (COLLATE "C")', async () => {
    const upper = cleanText({ v: { case: 'upper' } });
    const lower = cleanText({ v: { case: 'lower' } });
    const rows = [{ v: 'nairobi east_2' }, { v: 'straße ǆ éa' }, { v: 'İSTANBUL Kelvin\u212a' }];
    const up = await upper({ ...rawBatch([], []), raw: undefined, rows: rows.map((r) => ({ ...r })) });
    const down = await lower({ ...rawBatch([], []), raw: undefined, rows: rows.map((r) => ({ ...r })) });
    expect(up!.rows.map((r) => r['v'])).toEqual(['NAIROBI EAST_2', 'STRAßE ǆ éA', 'İSTANBUL KELVIN\u212a']);
    expect(down!.rows.map((r) => r['v'])).toEqual(['nairobi east_2', 'straße ǆ éa', 'İstanbul kelvin\u212a']);
  });
});

describe('pipeline() and raw batches', () => {
  function sourceOf(batch: Batch<Row>): Source<Row> {
    return {
      name: 'raw',
      async *read() {
        yield batch;
      },
    };
  }
  function sinkOf(acceptsRaw: boolean, seen: Batch<Row>[], result = {}): Sink<Row> {
    return {
      name: 'probe',
      acceptsRaw,
      checkpoint: async () => null,
      write: async (b) => {
        seen.push(b);
        return { committed: true, ...result };
      },
    };
  }

  it('parses a raw batch before the first transform that needs rows, and for a sink without acceptsRaw', async () => {
    const seen: Batch<Row>[] = [];
    const custom = (b: Batch<Row>) => ({ ...b, rows: b.rows.map((r) => ({ ...r, seen: true })) });
    await pipeline(
      sourceOf(rawBatch(ROWS, ['id', 'alarm', 'region', 'junk'])),
      ...steps(),
      custom,
      sinkOf(true, seen),
    );
    expect(seen[0]!.raw).toBeUndefined();
    expect(seen[0]!.rows).toEqual([{ id: '2', alarm: 'no', area: 'NAIROBI EAST', seen: true }]);

    const plain: Batch<Row>[] = [];
    const result = await pipeline(
      sourceOf(rawBatch(ROWS, ['id', 'alarm', 'region', 'junk'])),
      ...steps(),
      sinkOf(false, plain),
    );
    expect(plain[0]!.rows).toHaveLength(1);
    expect(result.rowsWritten).toBe(1);
    expect(result.rowsFiltered).toBe(3);
  });

  it('hands raw batches to a sink that accepts them, counting what the sink reports', async () => {
    const seen: Batch<Row>[] = [];
    const events: unknown[] = [];
    const result = await pipeline(
      sourceOf(rawBatch(ROWS, ['id', 'alarm', 'region', 'junk'])),
      ...steps(),
      sinkOf(true, seen, { rows: 1, filtered: { alarm: 2, stop: 1 } }),
      { onEvent: (e) => e.type === 'batch-written' && events.push(e) },
    );
    expect(seen[0]!.raw!.steps).toHaveLength(5);
    expect(result).toMatchObject({ rowsRead: 4, rowsWritten: 1, rowsFiltered: 3 });
    expect(events).toMatchObject([{ rows: 1, filtered: { alarm: 2, stop: 1 }, committed: true }]);
  });
});
