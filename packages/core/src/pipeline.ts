import { Readable, Writable } from 'node:stream';
import { pipeline as streamPipeline } from 'node:stream/promises';
import { isAbortError, isTransient, TributaryError, toTributaryError } from './errors.js';
import { type RestartPolicy, runStreams, semaphore, streamFailedEvent } from './streams.js';
import { isDeclarative, materialize } from './transforms.js';
import type {
  Batch,
  CheckpointStore,
  EmitEvent,
  PipelineEvent,
  ReadContext,
  Row,
  Sink,
  Source,
  Transform,
} from './types.js';

export interface PipelineOptions {
  /** Hard stop: the open transaction is rolled back and the source closed. */
  signal?: AbortSignal;
  /**
   * Graceful stop (SIGINT/SIGTERM): no new batch is read once the last one read ends a commit
   * unit, so the in-flight file still commits.
   */
  stopSignal?: AbortSignal;
  /** Batches read from the source but not yet written by the sink (backpressure). Default 2. */
  maxInFlight?: number;
  /**
   * Transient failures (see `isTransient`) re-run the chain from the last committed checkpoint
   * this many times. Default 2.
   */
  retries?: number;
  /** Where the source's resume positions come from; defaults to the sink. */
  checkpoints?: CheckpointStore;
  onEvent?: EmitEvent;
  /**
   * A source that serves several streams and can be narrowed (`source.only`) runs one chain per
   * stream, so a failing stream stops only itself (invariant 10). Default true.
   */
  isolate?: boolean;
  /** Streams applying at once when isolated. Default 4. */
  concurrency?: number;
  /**
   * Restart a failed stream after a backoff while the others run. Default: on when the source
   * is watching (`source.watching`), off for a one-shot run.
   */
  restart?: RestartPolicy | false;
  /** A shared bound on streams doing work at once (several pipelines in one process). */
  slot?: () => Promise<() => void>;
}

export interface PipelineResult {
  batches: number;
  rowsRead: number;
  rowsWritten: number;
  rowsFiltered: number;
  commits: number;
  /** Largest number of batches that were read ahead of the sink at any time. */
  maxReadAhead: number;
  /** True when the run ended because of `stopSignal`. */
  stopped: boolean;
}

type Stage = Transform<Row, Row> | Sink<Row> | PipelineOptions;

function isSink(stage: unknown): stage is Sink<Row> {
  return typeof stage === 'object' && stage !== null && typeof (stage as Sink).write === 'function';
}

/**
 * Runs `source → transform* → sink` on Node streams.
 *
 * - At most `maxInFlight` batches are read ahead of the sink; the bound is exact because the
 *   source is pulled through a gate, not left to stream buffers.
 * - The first error wins: the source is aborted and closed, the sink rolls back (`abort`).
 * - The source resumes from `checkpoints.checkpoint(stream)` (the sink by default).
 * - `source.committed(batch)` runs only after the sink reported that batch committed
 *   (invariant 3); its failures are warnings because the data is already safe.
 * - A source over several streams that can be narrowed (`only`) runs one chain per stream,
 *   `concurrency` at a time: a stream that fails stops at its failing unit and is reported
 *   (`stream-failed`), the others keep applying; the run then throws naming every failed
 *   stream. A watching source's failed stream is restarted with backoff instead.
 */
export async function pipeline(source: Source<Row>, ...stages: Stage[]): Promise<PipelineResult> {
  const last = stages.at(-1);
  const options: PipelineOptions =
    last !== undefined && !isSink(last) && typeof last === 'object' ? last : {};
  const rest = last === options ? stages.slice(0, -1) : stages;
  const sink = rest.at(-1);
  if (!isSink(sink)) {
    throw new TributaryError('INVALID_OPTIONS', 'pipeline(): the last stage must be a sink with write()');
  }
  const transforms = rest.slice(0, -1) as Transform<Row, Row>[];
  for (const [index, t] of transforms.entries()) {
    if (typeof t !== 'function') {
      throw new TributaryError(
        'INVALID_OPTIONS',
        `pipeline(): stage ${index + 1} is not a transform function`,
      );
    }
  }
  const maxInFlight = options.maxInFlight ?? 2;
  if (!Number.isInteger(maxInFlight) || maxInFlight < 1) {
    throw new TributaryError(
      'INVALID_OPTIONS',
      `pipeline(): maxInFlight must be an integer ≥ 1, got ${maxInFlight}`,
    );
  }
  const emit: EmitEvent = (event: PipelineEvent) => {
    try {
      options.onEvent?.(event);
    } catch {
      // A broken progress renderer must not break a load.
    }
  };
  const streams = source.streams ?? [];
  if (source.only && streams.length > 1 && options.isolate !== false) {
    return runIsolated(source as Source<Row> & { only: NonNullable<Source<Row>['only']> }, streams, {
      transforms,
      sink,
      options,
      emit,
    });
  }
  emit({ type: 'run-start' });
  try {
    const result = await runChain(source, { transforms, sink, options, emit });
    emit({ type: 'run-end', batches: result.batches, rows: result.rowsWritten });
    return result;
  } catch (error) {
    const failure = error as TributaryError;
    emit({ type: 'run-end', batches: 0, rows: 0, error: failure });
    throw failure;
  }
}

interface Chain {
  transforms: Transform<Row, Row>[];
  sink: Sink<Row>;
  options: PipelineOptions;
  emit: EmitEvent;
}

function emptyResult(): PipelineResult {
  return {
    batches: 0,
    rowsRead: 0,
    rowsWritten: 0,
    rowsFiltered: 0,
    commits: 0,
    maxReadAhead: 0,
    stopped: false,
  };
}

/**
 * One pipeline per stream, concurrently, each in its own failure domain (invariant 10): a
 * failing stream stops at its failing unit (rolled back through `sink.abort(error, stream)`),
 * the others run on. In watch mode a failed stream is restarted after a backoff. Once every
 * stream ended, the run fails if any stream did, naming each.
 */
async function runIsolated(
  source: Source<Row> & { only: NonNullable<Source<Row>['only']> },
  streams: readonly string[],
  chain: Chain,
): Promise<PipelineResult> {
  const { options, emit, sink } = chain;
  const concurrency = options.concurrency ?? 4;
  const restart = options.restart ?? (source.watching ? {} : false);
  const slot = options.slot ?? semaphore(concurrency);
  const total = emptyResult();
  const failing = new Set<string>();
  emit({ type: 'run-start' });
  const outcomes = await runStreams(
    streams,
    async (stream) => {
      const scoped: Sink<Row> = {
        name: sink.name,
        write: (batch) => sink.write(batch),
        checkpoint: (s) => sink.checkpoint(s),
        ...(sink.acceptsRaw ? { acceptsRaw: true } : {}),
        ...(sink.loadLog ? { loadLog: sink.loadLog } : {}),
        ...(sink.abort ? { abort: (error: Error) => sink.abort!(error, stream) } : {}),
      };
      const streamEmit: EmitEvent = (event) => {
        if ((event.type === 'committed' || event.type === 'caught-up') && failing.delete(stream)) {
          emit({ type: 'stream-recovered', stream });
        }
        emit(event);
      };
      const result = await runChain(source.only(stream), {
        transforms: chain.transforms,
        sink: scoped,
        options: { ...options, slot },
        emit: streamEmit,
      });
      for (const key of Object.keys(total) as (keyof PipelineResult)[]) {
        if (key === 'stopped') total.stopped ||= result.stopped;
        else if (key === 'maxReadAhead')
          total.maxReadAhead = Math.max(total.maxReadAhead, result.maxReadAhead);
        else total[key] += result[key];
      }
      return result;
    },
    {
      concurrency,
      restart,
      ...(options.stopSignal ? { stop: options.stopSignal } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      onFailure: (stream, error, retryInMs) => {
        failing.add(stream);
        emit(streamFailedEvent(stream, error, retryInMs));
      },
    },
  );
  const failures = outcomes.flatMap((o) => (o.error ? [o.error] : []));
  const failure = streamsFailure(failures);
  emit({
    type: 'run-end',
    batches: total.batches,
    rows: total.rowsWritten,
    ...(failure ? { error: failure } : {}),
  });
  if (failure) throw failure;
  return total;
}

/** One failure as it is; several as one error naming each stream (each kept in `errors`). */
export function streamsFailure(failures: readonly TributaryError[]): TributaryError | undefined {
  if (failures.length <= 1) return failures[0];
  const error = new TributaryError(
    'STREAMS_FAILED',
    `${failures.length} streams failed: ${failures.map((f) => `${f.stream}: ${f.message}`).join('; ')}`,
    { cause: new AggregateError(failures, 'stream failures') },
  );
  return error;
}

/** source → transforms → sink for one source, with transient failures re-run from the checkpoint. */
async function runChain(source: Source<Row>, chain: Chain): Promise<PipelineResult> {
  const { transforms, options, emit } = chain;
  const sink = chain.sink;
  const target: Sink<Row> = sink;
  const loadLog = sink.loadLog;
  const maxInFlight = options.maxInFlight ?? 2;
  const checkpoints = options.checkpoints ?? sink;
  const result = emptyResult();

  const retries = options.retries ?? 2;
  try {
    for (let attempt = 0; ; attempt++) {
      const failure = await runAttempt();
      if (!failure) break;
      // A transient failure (connection reset, server restart, S3 5xx) re-runs the chain from
      // the last committed checkpoint: nothing committed is lost or repeated (invariants 2, 4),
      // and no unit needs to be held in memory for the replay (invariant 7).
      const canRetry =
        attempt < retries && isTransient(failure) && !options.signal?.aborted && !options.stopSignal?.aborted;
      if (!canRetry) throw failure;
      emit({
        type: 'retry',
        attempt: attempt + 1,
        error: failure,
        ...(failure.stream ? { stream: failure.stream } : {}),
      });
    }
  } finally {
    await source.close?.().catch(() => undefined);
  }
  return result;

  /** One pass of source → transforms → sink; resolves with the failure (already rolled back), if any. */
  async function runAttempt(): Promise<TributaryError | undefined> {
    const controller = new AbortController();
    const onAbort = () => controller.abort(options.signal?.reason);
    if (options.signal?.aborted) onAbort();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    // The gate: `pulled - settled` is the number of batches between source and sink.
    let pulled = 0;
    let settled = 0;
    let wakeGate: (() => void) | undefined;
    const settle = () => {
      settled++;
      wakeGate?.();
    };
    // A failing stage aborts the run at once, so a source parked at the gate (or in I/O) lets go
    // and stream teardown can finish.
    const failFast = (error: unknown): never => {
      controller.abort(error);
      wakeGate?.();
      throw error;
    };

    async function* gatedSource(): AsyncGenerator<Batch<Row>> {
      const context: ReadContext = {
        checkpoint: (s) => checkpoints.checkpoint(s),
        signal: controller.signal,
        emit,
        ...(options.stopSignal ? { stop: options.stopSignal } : {}),
        ...(loadLog ? { loads: loadLog } : {}),
        ...(options.slot ? { slot: options.slot } : {}),
      };
      const iterator = source.read(context)[Symbol.asyncIterator]();
      let atBoundary = true;
      try {
        while (true) {
          if (options.stopSignal?.aborted && atBoundary) {
            result.stopped = true;
            return;
          }
          while (pulled - settled >= maxInFlight && !controller.signal.aborted) {
            await new Promise<void>((resolve) => {
              wakeGate = resolve;
            });
            wakeGate = undefined;
          }
          if (controller.signal.aborted) return;
          const next = await iterator.next();
          if (next.done) return;
          pulled++;
          result.maxReadAhead = Math.max(result.maxReadAhead, pulled - settled);
          const batch = next.value;
          atBoundary = batch.meta.commit;
          result.batches++;
          result.rowsRead += batch.meta.rowsRead;
          emit({ type: 'batch-read', stream: batch.stream, rows: batch.meta.rowsRead });
          yield batch;
        }
      } finally {
        await iterator.return?.();
      }
    }

    const transformStages = transforms.map(
      (transform) =>
        async function* (batches: AsyncIterable<Batch<Row>>): AsyncGenerator<Batch<Row>> {
          // A raw (unparsed) batch is parsed before the first transform that needs rows.
          const needsRows = !isDeclarative(transform);
          for await (const input of batches) {
            let out: Batch<Row> | undefined;
            let batch = input;
            try {
              if (needsRows && batch.raw) batch = materialize(batch);
              out = await (transform as Transform<Row, Row>)(batch);
            } catch (error) {
              failFast(toTributaryError(error, 'TRANSFORM_FAILED'));
            }
            // A dropped batch still carries its position and commit flag to the sink, with
            // its rows counted as filtered (invariant 5).
            yield out ?? {
              ...batch,
              rows: [],
              meta: {
                ...batch.meta,
                locations: [],
                filtered: {
                  ...batch.meta.filtered,
                  dropped: (batch.meta.filtered['dropped'] ?? 0) + batch.rows.length,
                },
              },
            };
          }
        },
    );

    const sinkStream = new Writable({
      objectMode: true,
      highWaterMark: 1,
      write(batch: Batch<Row>, _encoding, callback) {
        writeBatch(batch).then(() => callback(), callback);
      },
    });

    const uncommittedRows = new Map<string, number>();

    async function writeBatch(input: Batch<Row>): Promise<void> {
      let written: Awaited<ReturnType<Sink['write']>>;
      let batch = input;
      try {
        if (batch.raw && !target.acceptsRaw) batch = materialize(batch);
        written = await target.write(batch);
      } catch (error) {
        return failFast(toTributaryError(error, 'SINK_FAILED'));
      }
      settle();
      // A sink that ran filters itself (raw batches) reports what it kept and dropped.
      const filtered = { ...batch.meta.filtered };
      for (const [name, count] of Object.entries(written.filtered ?? {}))
        filtered[name] = (filtered[name] ?? 0) + count;
      const rows = written.rows ?? batch.rows.length;
      result.rowsWritten += rows;
      result.rowsFiltered += Object.values(filtered).reduce((a, b) => a + b, 0);
      emit({
        type: 'batch-written',
        stream: batch.stream,
        meta: batch.meta,
        rows,
        filtered,
        committed: written.committed,
      });
      // Rows of the whole commit unit, reported once it commits.
      const unitRows = (uncommittedRows.get(batch.stream) ?? 0) + rows;
      uncommittedRows.set(batch.stream, written.committed ? 0 : unitRows);
      if (!written.committed) return;
      result.commits++;
      emit({
        type: 'committed',
        stream: batch.stream,
        ...(batch.meta.source === undefined ? {} : { source: batch.meta.source }),
        position: batch.position,
        rows: unitRows,
      });
      if (source.committed) {
        try {
          await source.committed(batch);
        } catch (error) {
          emit({
            type: 'warning',
            stream: batch.stream,
            message: `post-commit step failed (data is committed; it will be retried next run): ${(error as Error).message}`,
          });
        }
      }
    }

    try {
      const readable = Readable.from(gatedSource(), { objectMode: true, highWaterMark: maxInFlight });
      const chain = [readable, ...transformStages, sinkStream];
      await (streamPipeline as unknown as (...args: unknown[]) => Promise<void>)(...chain, {
        signal: controller.signal,
      });
      return undefined;
    } catch (error) {
      const firstError =
        controller.signal.aborted && !options.signal?.aborted ? controller.signal.reason : error;
      controller.abort(error);
      const failure =
        isAbortError(firstError) && options.signal?.aborted
          ? new TributaryError('ABORTED', 'pipeline aborted', { cause: options.signal.reason })
          : toTributaryError(firstError, 'INTERNAL');
      await target.abort?.(failure).catch(() => undefined);
      return failure;
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
    }
  }
}
