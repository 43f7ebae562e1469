import { Readable, Writable } from 'node:stream';
import { pipeline as streamPipeline } from 'node:stream/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { isAbortError, isTransient, TributaryError, toTributaryError } from './errors.js';
import type { PipelineOptions, PipelineResult } from './pipeline.js';
import { DEFAULT_RETRY_POLICY, retryDelay } from './retry.js';
import { isDeclarative, materialize } from './transforms.js';
import type { Batch, EmitEvent, ReadContext, Row, Sink, Source, Transform } from './types.js';

/**
 * One chain of `pipeline()`: source → transforms → sink on Node streams, with the in-flight gate,
 * first-error-wins abort, and transient failures re-run from the checkpoint after a backoff.
 */

export interface Chain {
  transforms: Transform<Row, Row>[];
  sink: Sink<Row>;
  options: PipelineOptions;
  emit: EmitEvent;
}

export function emptyResult(): PipelineResult {
  return {
    batches: 0,
    rowsRead: 0,
    rowsWritten: 0,
    rowsFiltered: 0,
    rowsRejected: 0,
    commits: 0,
    maxReadAhead: 0,
    stopped: false,
  };
}

/** source → transforms → sink for one source, with transient failures re-run from the checkpoint. */
export async function runChain(source: Source<Row>, chain: Chain): Promise<PipelineResult> {
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
      // Back off before the re-run (a database restarting needs seconds); a stop ends the wait.
      const policy = { ...DEFAULT_RETRY_POLICY, ...options.retry, retries };
      const stop = [options.signal, options.stopSignal].filter((s): s is AbortSignal => s !== undefined);
      try {
        await delay(
          retryDelay(policy, attempt + 1),
          undefined,
          stop.length ? { signal: AbortSignal.any(stop) } : {},
        );
      } catch {
        throw failure;
      }
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

    // A sink whose streams write independently gets one lane per stream: a stream's batches
    // follow each other, different streams' overlap (the gate still bounds them all).
    const lanes = target.concurrentStreams ? new Map<string, Promise<void>>() : undefined;
    const sinkStream = new Writable({
      objectMode: true,
      highWaterMark: 1,
      write(batch: Batch<Row>, _encoding, callback) {
        if (!lanes) {
          writeBatch(batch).then(() => callback(), callback);
          return;
        }
        const stream = batch.stream;
        // A failed write fails the rest of its lane unwritten, and the whole chain.
        const lane = (lanes.get(stream) ?? Promise.resolve()).then(() => writeBatch(batch));
        lanes.set(stream, lane);
        lane.then(
          () => {
            if (lanes.get(stream) === lane) lanes.delete(stream);
          },
          (error: unknown) => sinkStream.destroy(error as Error),
        );
        callback();
      },
      final(callback) {
        Promise.all(lanes?.values() ?? []).then(() => callback(), callback);
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
      for (const message of written.warnings ?? []) emit({ type: 'warning', stream: batch.stream, message });
      // A sink that ran filters itself (raw batches) reports what it kept and dropped.
      const filtered = { ...batch.meta.filtered };
      for (const [name, count] of Object.entries(written.filtered ?? {}))
        filtered[name] = (filtered[name] ?? 0) + count;
      const rows = written.rows ?? batch.rows.length;
      result.rowsWritten += rows;
      result.rowsFiltered += Object.values(filtered).reduce((a, b) => a + b, 0);
      result.rowsRejected += written.rejected ?? 0;
      emit({
        type: 'batch-written',
        stream: batch.stream,
        meta: batch.meta,
        rows,
        filtered,
        committed: written.committed,
        ...(written.rejected ? { rejected: written.rejected } : {}),
        ...(written.unitRejected ? { unitRejected: true } : {}),
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
          await source.committed(batch, written);
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
      // Writes still running on other lanes end (commit or fail) before the rollback.
      await Promise.allSettled(lanes?.values() ?? []);
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
