import type { Batch, LoadLog, Position, Row, Sink, Source } from '../types.js';

/**
 * Conformance suites (`@tributary/core/testing`): what every source and sink must guarantee for
 * exactly-once effect, as checks a test file runs against a real stage. Test-framework neutral:
 * each check is a name and a function that throws `ConformanceError` when the stage breaks the
 * contract, so a vitest file writes `for (const c of sinkConformance(h)) it(c.name, c.run)`.
 *
 * Rows are `{ id, v }` with string values: a sink stores them keyed by `id` (last write wins), a
 * source reads them back as strings.
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
}

/** One unit (file) of `{ id, v }` rows as batches: the last one commits. */
export function unitBatches(
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

function expectPosition(
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
        expectRows(name, 'before the commit batch', await rows(A), []);
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
        expectRows(name, 'after abort', await rows(A), [['1', 'a']]);
        expectPosition(
          name,
          'after abort',
          await sink.checkpoint(A),
          unitBatches(A, 0, [[['1', 'a']]])[0]!.position,
        );
        // The unit again, as a re-read after a fix would bring it: the aborted rows must not leak.
        const again = unitBatches(A, 1, [[['2', 'b']]]);
        for (const batch of again) await sink.write(batch);
        expectRows(name, 'the unit written again after abort', await rows(A), [
          ['1', 'a'],
          ['2', 'b'],
        ]);
        expectPosition(
          name,
          'the unit written again after abort',
          await sink.checkpoint(A),
          again[0]!.position,
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
      expectRows(name, 'stream a after its abort', await rows(A), []);
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

/** A source under test over fixture units. */
export interface SourceUnderTest {
  source: Source<Row>;
  dispose?(): Promise<void>;
}

export interface SourceConformanceOptions {
  /**
   * A source over these streams, each with units (files) of `{ id, v }` rows in apply order.
   * Its positions are its own; the suite only hands them back as checkpoints.
   */
  create(
    fixture: ReadonlyArray<{
      stream: string;
      units: ReadonlyArray<ReadonlyArray<readonly [string, string]>>;
    }>,
  ): Promise<SourceUnderTest>;
}

interface Read {
  batches: Batch<Row>[];
}

async function readAll(
  source: Source<Row>,
  checkpoints: ReadonlyMap<string, Position>,
  signal = new AbortController().signal,
): Promise<Read> {
  const batches: Batch<Row>[] = [];
  for await (const batch of source.read({
    checkpoint: async (stream) => checkpoints.get(stream) ?? null,
    signal,
    emit: () => undefined,
  })) {
    batches.push(batch);
    if (batch.meta.commit) await source.committed?.(batch);
  }
  return { batches };
}

/** A batch's rows, parsed when the source hands them over raw (the pass-through path). */
const rowsOfBatch = (batch: Batch<Row>) => (batch.raw ? batch.raw.parse().rows : batch.rows);

const rowsOf = (batches: Batch<Row>[], stream: string) =>
  batches
    .filter((b) => b.stream === stream)
    .flatMap((b) => rowsOfBatch(b).map((row) => `${String(row['id'])}=${String(row['v'])}`));

/**
 * The source contract (invariants 1, 2, 5): every row of every unit, in order, per stream; each
 * unit ends with a commit batch; `rowsRead` counts what was read; reading again from a unit's
 * committed position resumes right after it; `only(stream)` narrows to that stream.
 */
export function sourceConformance(options: SourceConformanceOptions): ConformanceCheck[] {
  const A = 'conformance/a';
  const B = 'conformance/b';
  const fixture = [
    {
      stream: A,
      units: [
        [
          ['1', 'a0'],
          ['2', 'a0'],
        ],
        [['1', 'a1']],
        [
          ['3', 'a2'],
          ['4', 'a2'],
          ['5', 'a2'],
        ],
      ] as Array<Array<[string, string]>>,
    },
    { stream: B, units: [[['1', 'b0']], [['2', 'b1']]] as Array<Array<[string, string]>> },
  ];
  const expected = (stream: string, fromUnit = 0) =>
    fixture
      .find((f) => f.stream === stream)!
      .units.slice(fromUnit)
      .flat()
      .map(([id, v]) => `${id}=${v}`);
  const withSource = async (body: (t: SourceUnderTest) => Promise<void>) => {
    const t = await options.create(fixture);
    try {
      await body(t);
    } finally {
      await t.source.close?.();
      await t.dispose?.();
    }
  };
  const check = (
    name: string,
    body: (t: SourceUnderTest, name: string) => Promise<void>,
  ): ConformanceCheck => ({
    name,
    run: () => withSource((t) => body(t, name)),
  });

  return [
    check(
      'reads every row of every unit in order, each unit ending with a commit batch',
      async ({ source }, name) => {
        const { batches } = await readAll(source, new Map());
        for (const stream of [A, B]) {
          const got = rowsOf(batches, stream);
          if (JSON.stringify(got) !== JSON.stringify(expected(stream))) {
            throw new ConformanceError(
              name,
              `${stream}: expected ${JSON.stringify(expected(stream))}, got ${JSON.stringify(got)}`,
            );
          }
          const commits = batches.filter((b) => b.stream === stream && b.meta.commit);
          const units = fixture.find((f) => f.stream === stream)!.units.length;
          if (commits.length < units) {
            throw new ConformanceError(
              name,
              `${stream}: ${units} units but ${commits.length} commit batches`,
            );
          }
          const mine = batches.filter((b) => b.stream === stream);
          if (!mine.at(-1)?.meta.commit)
            throw new ConformanceError(name, `${stream}: the last batch does not commit`);
        }
        for (const batch of batches) {
          const count = rowsOfBatch(batch).length;
          if (batch.meta.rowsRead !== count) {
            throw new ConformanceError(
              name,
              `rowsRead ${batch.meta.rowsRead} for a batch of ${count} rows (invariant 5)`,
            );
          }
        }
      },
    ),

    check('resumes right after a committed position', async ({ source }, name) => {
      // A crash right after the first unit of A committed: its post-commit step ran, no more.
      let first: Position | undefined;
      for await (const batch of source.read({
        checkpoint: async () => null,
        signal: new AbortController().signal,
        emit: () => undefined,
      })) {
        if (batch.stream === A && batch.meta.lastOfUnit) {
          await source.committed?.(batch);
          first = batch.position;
          break;
        }
      }
      if (!first) throw new ConformanceError(name, `${A}: no unit was read`);
      const again = await readAll(source, new Map([[A, first]]));
      const got = rowsOf(again.batches, A);
      if (JSON.stringify(got) !== JSON.stringify(expected(A, 1))) {
        throw new ConformanceError(
          name,
          `${A} from the first unit's position: expected ${JSON.stringify(expected(A, 1))}, got ${JSON.stringify(got)}`,
        );
      }
      const last = new Map<string, Position>();
      for (const batch of again.batches) if (batch.meta.lastOfUnit) last.set(batch.stream, batch.position);
      const none = await readAll(source, last);
      if (rowsOf(none.batches, A).length) {
        throw new ConformanceError(
          name,
          `${A} from its last position: read ${JSON.stringify(rowsOf(none.batches, A))}`,
        );
      }
    }),

    check('only(stream) reads that stream alone', async ({ source }, name) => {
      if (!source.only) return;
      if (source.streams && !source.streams.includes(A)) {
        throw new ConformanceError(name, `streams ${JSON.stringify(source.streams)} does not list ${A}`);
      }
      const { batches } = await readAll(source.only(A), new Map());
      const others = batches.filter((b) => b.stream !== A);
      if (others.length) throw new ConformanceError(name, `only(${A}) read ${others[0]!.stream}`);
      if (JSON.stringify(rowsOf(batches, A)) !== JSON.stringify(expected(A))) {
        throw new ConformanceError(name, `only(${A}) read ${JSON.stringify(rowsOf(batches, A))}`);
      }
    }),

    check('stops at once when its signal is aborted', async ({ source }, name) => {
      const controller = new AbortController();
      controller.abort(new Error('conformance: stop'));
      let read = 0;
      try {
        for await (const batch of source.read({
          checkpoint: async () => null,
          signal: controller.signal,
          emit: () => undefined,
        })) {
          read += rowsOfBatch(batch).length;
          if (read > 0) break;
        }
      } catch {
        return; // an abort error is the expected outcome
      }
      if (read > 0) throw new ConformanceError(name, 'read rows after its signal was aborted');
    }),
  ];
}
