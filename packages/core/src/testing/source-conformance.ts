import type { Batch, Position, Row, Source } from '../types.js';
import { type ConformanceCheck, ConformanceError } from './conformance.js';

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
  const expected = (stream: string) =>
    fixture
      .find((f) => f.stream === stream)!
      .units.flat()
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
      // (A unit is what one commit batch closes: a file, or a slice of a Kafka partition.)
      let first: Position | undefined;
      let done = 0;
      for await (const batch of source.read({
        checkpoint: async () => null,
        signal: new AbortController().signal,
        emit: () => undefined,
      })) {
        if (batch.stream !== A) {
          // The other stream goes on committing, as under pipeline(): a source may hold its
          // next fetch until what it handed over commits (Kafka settles a fetch before the next).
          if (batch.meta.commit) await source.committed?.(batch);
          continue;
        }
        done += rowsOfBatch(batch).length;
        if (batch.meta.commit && batch.meta.lastOfUnit) {
          await source.committed?.(batch);
          first = batch.position;
          break;
        }
      }
      if (!first) throw new ConformanceError(name, `${A}: no unit was read`);
      const again = await readAll(source, new Map([[A, first]]));
      const got = rowsOf(again.batches, A);
      const rest = expected(A).slice(done);
      if (JSON.stringify(got) !== JSON.stringify(rest)) {
        throw new ConformanceError(
          name,
          `${A} from the first unit's position: expected ${JSON.stringify(rest)}, got ${JSON.stringify(got)}`,
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
