import { type Chain, emptyResult, runChain } from './chain.js';
import { TributaryError } from './errors.js';
import type { RetryPolicy } from './retry.js';
import { type RestartPolicy, runStreams, semaphore, streamFailedEvent } from './streams.js';
import type { CheckpointStore, EmitEvent, PipelineEvent, Row, Sink, Source, Transform } from './types.js';

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
   * Transient failures (see `isTransient`) that no stage already retried to the end re-run the
   * chain from the last committed checkpoint this many times, waiting per `retry` in between.
   * Default 2.
   */
  retries?: number;
  /** Backoff between re-runs (core's one `RetryPolicy`); default 200 ms doubling to 10 s. */
  retry?: Partial<Pick<RetryPolicy, 'minDelayMs' | 'maxDelayMs'>>;
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
  /** Rows set aside under a stream's `onError` policy (skip-row, or whole files under skip-file). */
  rowsRejected: number;
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
        ...(sink.concurrentStreams ? { concurrentStreams: true } : {}),
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
