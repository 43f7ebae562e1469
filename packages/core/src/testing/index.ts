import type { Batch, Position, Row, Sink, Source, WriteResult } from '../types.js';

export {
  type ConformanceCheck,
  ConformanceError,
  type SinkConformanceOptions,
  type SinkUnderTest,
  sinkConformance,
  unitBatches,
} from './conformance.js';
export {
  type SourceConformanceOptions,
  type SourceUnderTest,
  sourceConformance,
} from './source-conformance.js';

/**
 * In-memory stages for unit tests of pure pipeline logic (`@tributary/core/testing`).
 * Real services are used everywhere else.
 */

export interface MemorySourceOptions {
  stream?: string;
  /** Rows per batch, grouped into units (files): `units[u][b]` is batch b of unit u. */
  units: Row[][][];
}

export interface MemorySource extends Source<Row> {
  /** Batches handed out so far. */
  readonly produced: Batch<Row>[];
  /** Batches the pipeline reported committed. */
  readonly committedBatches: Batch<Row>[];
  /** True once the source's iterator was finished or returned. */
  readonly closed: boolean;
  /** The position read() resumed from. */
  readonly resumedFrom: Position | null;
}

/** A source whose position is `{ unit, batch }`; it resumes after the checkpointed batch. */
export function memorySource(options: MemorySourceOptions): MemorySource {
  const stream = options.stream ?? 'memory/test';
  const state = {
    produced: [] as Batch<Row>[],
    committedBatches: [] as Batch<Row>[],
    closed: false,
    resumedFrom: null as Position | null,
  };
  return {
    name: 'memory',
    get produced() {
      return state.produced;
    },
    get committedBatches() {
      return state.committedBatches;
    },
    get closed() {
      return state.closed;
    },
    get resumedFrom() {
      return state.resumedFrom;
    },
    async *read({ checkpoint, signal }) {
      const from = await checkpoint(stream);
      state.resumedFrom = from;
      try {
        for (const [u, unit] of options.units.entries()) {
          for (const [b, rows] of unit.entries()) {
            if (
              from &&
              (u < Number(from['unit']) || (u === Number(from['unit']) && b <= Number(from['batch'])))
            )
              continue;
            signal.throwIfAborted();
            const batch: Batch<Row> = {
              stream,
              rows,
              position: { unit: u, batch: b },
              meta: {
                source: `unit-${u}`,
                commit: b === unit.length - 1,
                lastOfUnit: b === unit.length - 1,
                rowsRead: rows.length,
                filtered: {},
              },
            };
            state.produced.push(batch);
            yield batch;
          }
        }
      } finally {
        state.closed = true;
      }
    },
    async committed(batch) {
      state.committedBatches.push(batch);
    },
  };
}

export interface MemorySinkOptions {
  /** Called before each write; await a promise here to make the sink slow without timers. */
  beforeWrite?: (batch: Batch<Row>, index: number) => void | Promise<void>;
  /** Start with this committed checkpoint per stream. */
  checkpoints?: Record<string, Position>;
  /** `rowsOf(stream)` keeps one row per value of this column (last write wins), as a keyed table does. */
  key?: string;
}

export interface MemorySink extends Sink<Row> {
  /** Committed rows, in commit order. */
  readonly rows: Row[];
  /** Rows written in the open (uncommitted) unit. */
  readonly pending: Row[];
  readonly aborted: Error | undefined;
  readonly writes: number;
  /** Committed rows of one stream. */
  rowsOf(stream: string): Row[];
}

/**
 * A sink with unit transactions per stream: rows become visible only when a batch with `commit`
 * arrives for their stream. Streams written concurrently (an isolated multi-stream run) keep
 * separate open units, as pg-sink's sessions do.
 */
export function memorySink(options: MemorySinkOptions = {}): MemorySink {
  const committedRows: Row[] = [];
  const byStream = new Map<string, Row[]>();
  const pending = new Map<string, Row[]>();
  const { key } = options;
  const commitRows = (into: Row[], rows: Row[]) => {
    for (const row of rows) {
      const at = key === undefined ? -1 : into.findIndex((r) => r[key] === row[key]);
      if (at >= 0) into[at] = row;
      else into.push(row);
    }
  };
  const positions = new Map<string, Position>(Object.entries(options.checkpoints ?? {}));
  let aborted: Error | undefined;
  let writes = 0;
  return {
    name: 'memory',
    get rows() {
      return committedRows;
    },
    get pending() {
      return [...pending.values()].flat();
    },
    get aborted() {
      return aborted;
    },
    get writes() {
      return writes;
    },
    rowsOf(stream) {
      return byStream.get(stream) ?? [];
    },
    async checkpoint(stream) {
      return positions.get(stream) ?? null;
    },
    async write(batch): Promise<WriteResult> {
      await options.beforeWrite?.(batch, writes);
      writes++;
      const open = pending.get(batch.stream) ?? [];
      open.push(...batch.rows);
      pending.set(batch.stream, open);
      if (!batch.meta.commit) return { committed: false };
      committedRows.push(...open);
      const mine = byStream.get(batch.stream) ?? [];
      commitRows(mine, open);
      byStream.set(batch.stream, mine);
      pending.delete(batch.stream);
      positions.set(batch.stream, batch.position);
      return { committed: true };
    },
    async abort(error, stream) {
      aborted = error;
      if (stream === undefined) pending.clear();
      else pending.delete(stream);
    },
  };
}

/** A promise with its resolver exposed, for sequencing tests without sleeps. */
export function deferred<T = void>(): {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (e: unknown) => void;
} {
  let resolve!: (value: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
