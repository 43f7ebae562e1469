import type { Batch, LoadLog, Position, Row, Sink } from '../types.js';

/**
 * Conformance suites (`@tributary/core/testing`): what every source and sink must guarantee for
 * exactly-once effect, as checks a test file runs against a real stage. Test-framework neutral:
 * each check is a name and a function that throws `ConformanceError` when the stage breaks the
 * contract, so a vitest file writes `for (const c of sinkConformance(h)) it(c.name, c.run)`.
 *
 * Rows are `{ id, v }` with string values: a sink stores them keyed by `id` (last write wins), a
 * source reads them back as strings. The sink suite is here; the source suite is in
 * source-conformance.ts.
 */

export class ConformanceError extends Error {
  constructor(check: string, message: string) {
    super(`${check}: ${message}`);
    this.name = 'ConformanceError';
  }
}

export interface ConformanceCheck {
  readonly name: string;
  run(): Promise<void>;
}

/** A sink under test and a way to read what it committed. */
export interface SinkUnderTest {
  sink: Sink<Row>;
  /** The rows committed for `stream`, as `{ id, v }` strings, in any order. */
  rows(stream: string): Promise<Row[]>;
  /** Releases what `create` opened (the sink is closed by the suite first). */
  dispose?(): Promise<void>;
}

export interface SinkConformanceOptions {
  /** A fresh sink over fresh state, serving `streams` (each keyed by `id`). */
  create(streams: readonly string[]): Promise<SinkUnderTest>;
  /**
   * `'exactly-once'` (default): an aborted unit leaves no row behind. `'at-least-once'` (a
   * publisher: what was sent stays sent): an aborted unit may leave rows, but its position does
   * not move, and writing the unit again converges on the exact rows (an upsert absorbs them).
   */
  delivery?: 'exactly-once' | 'at-least-once';
  /**
   * `'sink'` (default): `checkpoint()` returns what was committed. `'source'`: positions are kept
   * by the source (e.g. Kafka committed offsets written after `committed` reports true), so the
   * sink's `checkpoint()` is not checked.
   */
  positions?: 'sink' | 'source';
  /** Adds what this sink reads from its own source to each batch (e.g. Kafka's offset range). */
  prepare?(batch: Batch<Row>): Batch<Row>;
}

/** One unit (file) of `{ id, v }` rows as batches: the last one commits. */
export function unitBatches(
  stream: string,
  unit: number,
  batches: ReadonlyArray<ReadonlyArray<readonly [string, string]>>,
): Batch<Row>[] {
  return fixtureUnit(stream, unit, batches);
}

/** `unitBatches` under a name the sink suite's prepared variant does not shadow. */
function fixtureUnit(
  stream: string,
  unit: number,
  batches: ReadonlyArray<ReadonlyArray<readonly [string, string]>>,
): Batch<Row>[] {
  return batches.map((rows, b) => {
    const last = b === batches.length - 1;
    return {
      stream,
      rows: rows.map(([id, v]) => ({ id, v })),
      position: { unit, batch: b, done: last },
      meta: {
        source: `unit-${unit}`,
        commit: last,
        lastOfUnit: last,
        rowsRead: rows.length,
        filtered: {},
      },
    };
  });
}

const sorted = (rows: Row[]) =>
  rows
    .map((row) => ({ id: String(row['id']), v: row['v'] === null ? null : String(row['v']) }))
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

function expectRows(check: string, what: string, actual: Row[], expected: Array<[string, string]>): void {
  const got = JSON.stringify(sorted(actual));
  const want = JSON.stringify(sorted(expected.map(([id, v]) => ({ id, v }))));
  if (got !== want) throw new ConformanceError(check, `${what}: expected rows ${want}, got ${got}`);
}

/** JSON with object keys sorted: a stored position (jsonb) need not keep key order. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

function expectPositionOf(
  check: string,
  what: string,
  actual: Position | null,
  expected: Position | null,
): void {
  const got = canonical(actual);
  const want = canonical(expected);
  if (got !== want) throw new ConformanceError(check, `${what}: expected checkpoint ${want}, got ${got}`);
}

async function loadStatus(log: LoadLog, stream: string, source: string): Promise<string | undefined> {
  const records = await log.list(stream, [source]);
  return records.find((record) => record.source === source)?.status;
}

/**
 * The sink contract (ARCHITECTURE invariants 2, 6, 10): rows and position commit together; nothing
 * is visible or checkpointed before the commit batch; `abort` rolls back the open unit (of one
 * stream only, when named); replaying a committed unit changes nothing; a load log records
 * committed units `loaded` and aborted ones `failed`.
 */
export function sinkConformance(options: SinkConformanceOptions): ConformanceCheck[] {
  const A = 'conformance/a';
  const B = 'conformance/b';
  const exactlyOnce = (options.delivery ?? 'exactly-once') === 'exactly-once';
  const prepare = options.prepare ?? ((batch: Batch<Row>) => batch);
  const unitBatches = (...args: Parameters<typeof fixtureUnit>) => fixtureUnit(...args).map(prepare);
  const expectPosition = (...args: Parameters<typeof expectPositionOf>) => {
    if (options.positions !== 'source') expectPositionOf(...args);
  };
  const withSink = async (name: string, streams: string[], body: (t: SinkUnderTest) => Promise<void>) => {
    const t = await options.create(streams);
    try {
      await body(t);
    } finally {
      await t.sink.close?.();
      await t.dispose?.();
    }
    void name;
  };
  const check = (
    name: string,
    streams: string[],
    body: (t: SinkUnderTest, name: string) => Promise<void>,
  ) => ({
    name,
    run: () => withSink(name, streams, (t) => body(t, name)),
  });

  return [
    check(
      'commits rows and position together, only at the commit batch',
      [A],
      async ({ sink, rows }, name) => {
        const [first, last] = unitBatches(A, 0, [[['1', 'a']], [['2', 'b']]]);
        const opened = await sink.write(first!);
        if (opened.committed)
          throw new ConformanceError(name, 'a batch without meta.commit reported committed');
        expectPosition(name, 'before the commit batch', await sink.checkpoint(A), null);
        if (exactlyOnce) expectRows(name, 'before the commit batch', await rows(A), []);
        const done = await sink.write(last!);
        if (!done.committed) throw new ConformanceError(name, 'the commit batch did not report committed');
        expectPosition(name, 'after commit', await sink.checkpoint(A), last!.position);
        expectRows(name, 'after commit', await rows(A), [
          ['1', 'a'],
          ['2', 'b'],
        ]);
      },
    ),

    check(
      'abort rolls back the open unit; the sink goes on afterwards',
      [A],
      async ({ sink, rows }, name) => {
        for (const batch of unitBatches(A, 0, [[['1', 'a']]])) await sink.write(batch);
        const [open] = unitBatches(A, 1, [[['1', 'changed']], [['2', 'b']]]);
        await sink.write(open!);
        if (!sink.abort) throw new ConformanceError(name, 'the sink has no abort()');
        await sink.abort(new Error('conformance: deliberate failure'));
        if (exactlyOnce) expectRows(name, 'after abort', await rows(A), [['1', 'a']]);
        expectPosition(
          name,
          'after abort',
          await sink.checkpoint(A),
          unitBatches(A, 0, [[['1', 'a']]])[0]!.position,
        );
        // The unit again, as a re-read after a fix would bring it: the aborted rows must not leak
        // (exactly-once); an at-least-once sink gets the same unit again and converges on it.
        const again = exactlyOnce
          ? unitBatches(A, 1, [[['2', 'b']]])
          : unitBatches(A, 1, [[['1', 'changed']], [['2', 'b']]]);
        for (const batch of again) await sink.write(batch);
        expectRows(
          name,
          'the unit written again after abort',
          await rows(A),
          exactlyOnce
            ? [
                ['1', 'a'],
                ['2', 'b'],
              ]
            : [
                ['1', 'changed'],
                ['2', 'b'],
              ],
        );
        expectPosition(
          name,
          'the unit written again after abort',
          await sink.checkpoint(A),
          again.at(-1)!.position,
        );
      },
    ),

    check('replaying a committed unit changes nothing (idempotent)', [A], async ({ sink, rows }, name) => {
      const unit0 = unitBatches(A, 0, [
        [
          ['1', 'a'],
          ['2', 'b'],
        ],
      ]);
      const unit1 = unitBatches(A, 1, [[['2', 'c']]]);
      for (const batch of [...unit0, ...unit1]) await sink.write(batch);
      for (const batch of unit1) await sink.write(batch);
      expectRows(name, 'after replaying the last unit', await rows(A), [
        ['1', 'a'],
        ['2', 'c'],
      ]);
      expectPosition(name, 'after replaying the last unit', await sink.checkpoint(A), unit1[0]!.position);
    }),

    check("aborting one stream keeps the other stream's open unit", [A, B], async ({ sink, rows }, name) => {
      const a = unitBatches(A, 0, [[['1', 'a']], [['2', 'a']]]);
      const b = unitBatches(B, 0, [[['1', 'b']], [['2', 'b']]]);
      await sink.write(a[0]!);
      await sink.write(b[0]!);
      if (!sink.abort) throw new ConformanceError(name, 'the sink has no abort()');
      await sink.abort(new Error('conformance: stream a failed'), A);
      await sink.write(b[1]!);
      expectRows(name, 'stream b after stream a aborted', await rows(B), [
        ['1', 'b'],
        ['2', 'b'],
      ]);
      if (exactlyOnce) expectRows(name, 'stream a after its abort', await rows(A), []);
      expectPosition(name, 'stream a after its abort', await sink.checkpoint(A), null);
    }),

    check(
      'a load log records committed units loaded and aborted ones failed',
      [A],
      async ({ sink }, name) => {
        const log = sink.loadLog;
        if (!log) return; // a sink without a load log has nothing to check here
        for (const batch of unitBatches(A, 0, [[['1', 'a']]])) await sink.write(batch);
        const status = await loadStatus(log, A, 'unit-0');
        if (status !== 'loaded' && status !== 'archived') {
          throw new ConformanceError(name, `a committed unit is recorded ${String(status)}, not loaded`);
        }
        await sink.write(unitBatches(A, 1, [[['2', 'b']], [['3', 'c']]])[0]!);
        await sink.abort?.(new Error('conformance: deliberate failure'), A);
        const failed = await loadStatus(log, A, 'unit-1');
        if (failed !== 'failed') {
          throw new ConformanceError(name, `an aborted unit is recorded ${String(failed)}, not failed`);
        }
        await log.markArchived(A, 'unit-0');
        const archived = await loadStatus(log, A, 'unit-0');
        if (archived !== 'archived') {
          throw new ConformanceError(name, `markArchived left the unit ${String(archived)}`);
        }
      },
    ),
  ];
}
