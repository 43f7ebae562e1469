import { setTimeout as sleep } from 'node:timers/promises';
import type { Batch, ReadContext, Row, Source, WriteResult } from '@tributary/core';
import { faultPoint, isAbortError, TributaryError, toTributaryError, withStream } from '@tributary/core';
import { ArchiveScheduler } from './archiving.js';
import { CommitTracker } from './commits.js';
import { readStreamFile, skipBatch } from './file-batches.js';
import { resolveOptions, type S3SourceOptions } from './options.js';
import { maxWatermark } from './order.js';
import type { PendingPlan, StreamPlan } from './plan.js';
import { type PlanContext, planStream, publicPlan, ResolutionWarnings } from './planning.js';
import { sourceRuntime } from './runtime.js';
import type { ResolvedStream } from './stream-options.js';

export interface S3Source extends Source<Row> {
  /** What `read()` would do now, per stream, without reading or moving any file. */
  plan(context?: PlanContext): Promise<StreamPlan[]>;
  readonly streams: readonly string[];
  /** This source over one of its streams (pipeline() runs each stream in its own failure domain). */
  only(stream: string): S3Source;
}

/**
 * The S3 change-file source: lists each stream's prefix, orders files by the time their names
 * encode, plans against the checkpoint and load log, streams and parses each file into batches,
 * and archives a file once the sink committed it.
 *
 * This module is the read loop (poll rounds, slots, per-stream failure domains, watch sleep);
 * planning is in `planning.ts`, file → batches in `file-batches.ts`, the commits awaited before
 * failing in `commits.ts`, and post-commit archives in `archiving.ts`.
 */
export function s3Source(options: S3SourceOptions): S3Source {
  const config = resolveOptions(options);
  const runtime = sourceRuntime(config);
  const { emit } = runtime;
  const streamsById = new Map(config.streams.map((stream) => [stream.id, stream]));
  const commits = new CommitTracker();
  const archives = new ArchiveScheduler(runtime, streamsById);
  const resolutionWarnings = new ResolutionWarnings();
  const track = (batch: Batch<Row>) => commits.track(batch);

  return {
    name: config.name,
    streams: config.streams.map((stream) => stream.id),
    watching: config.watch !== undefined,

    only(id: string): S3Source {
      if (!streamsById.has(id)) {
        throw new TributaryError('INVALID_OPTIONS', `s3Source.only(): no stream "${id}" in this source`);
      }
      return s3Source({ ...options, streams: options.streams.filter((stream) => stream.id === id) });
    },

    async *read(ctx: ReadContext): AsyncGenerator<Batch<Row>> {
      runtime.attach(ctx);
      const signal = ctx.signal;
      const stopping = () => signal.aborted || ctx.stop?.aborted === true;
      const failures: TributaryError[] = [];
      const failed = new Set<string>();
      const recordFailure = (stream: ResolvedStream, error: TributaryError) => {
        failures.push(error);
        failed.add(stream.id);
        emit({
          type: 'warning',
          stream: stream.id,
          message: `stream ${stream.id} stopped: ${error.message}`,
        });
      };
      // One slot per poll round, when the runner bounds the streams working at once; released
      // before the watch sleep so a sleeping stream never holds another one up.
      let release: (() => void) | undefined;
      try {
        while (true) {
          release?.(); // a round that read files goes round again: give others a turn
          release = undefined;
          if (ctx.slot) {
            // Waiting for a turn must not outlive a stop (SIGTERM while other streams work).
            const turn = ctx.slot();
            const wake = ctx.stop ? AbortSignal.any([signal, ctx.stop]) : signal;
            const stopped = new Promise<undefined>((resolve) => {
              if (wake.aborted) resolve(undefined);
              wake.addEventListener('abort', () => resolve(undefined), { once: true });
            });
            release = await Promise.race([turn, stopped]);
            if (!release) {
              void turn.then((late) => late());
              return;
            }
          }
          // Archives from an earlier pass (a retried run, the previous poll) finish before any
          // plan: a plan made meanwhile would archive the same file again, concurrently.
          await archives.done();
          let readSomething = false;
          for (const stream of config.streams) {
            if (failed.has(stream.id) || stopping()) continue;
            let plan: PendingPlan;
            try {
              plan = await planStream(runtime, stream, ctx, signal);
            } catch (error) {
              if (isAbortError(error) || signal.aborted) throw error;
              recordFailure(stream, withStream(toTributaryError(error, 'SOURCE_FAILED'), stream.id));
              continue;
            }
            resolutionWarnings.report(runtime, stream, plan);
            // Files applied earlier but still here: archive only, never re-emit (invariant 3).
            if (config.archive && !stream.replayFrom) {
              for (const task of plan.archiveTasks) await archives.archiveQuietly(stream, task, task.to);
            }
            if (plan.failure) {
              recordFailure(stream, plan.failure);
              continue;
            }
            let watermark = plan.watermark;
            if (plan.reload) {
              emit({
                type: 'warning',
                stream: stream.id,
                message: `Qlik reload: ${plan.reload.files.join(', ')} start a new snapshot${
                  plan.reload.superseded.length
                    ? `; ${plan.reload.superseded.length} older change file(s) are superseded (moved to late/, not applied)`
                    : ''
                }`,
                detail: { ...plan.reload },
              });
            }
            const skipped = [
              ...(stream.lateFiles === 'skip' && !stream.replayFrom ? plan.late : []),
              ...plan.superseded,
            ];
            for (const file of skipped) {
              if (stopping()) break;
              emit({
                type: 'unit-start',
                stream: stream.id,
                source: file.key,
                bytesTotal: file.size,
                kind: file.kind,
              });
              const batch = skipBatch(stream, file, watermark);
              commits.track(batch);
              yield batch;
              readSomething = true;
            }
            for (const file of plan.pending) {
              if (stopping()) break;
              const startRow = plan.resume?.key === file.key ? plan.resume.row : 0;
              let emitted = false;
              try {
                for await (const batch of readStreamFile(
                  runtime,
                  stream,
                  file,
                  startRow,
                  watermark,
                  signal,
                  track,
                )) {
                  emitted = true;
                  yield batch;
                }
              } catch (error) {
                if (isAbortError(error) || signal.aborted) throw error;
                const failure = withStream(toTributaryError(error, 'SOURCE_FAILED'), stream.id);
                if (emitted) {
                  // Rows of this file are in the sink's open transaction: fail now so it rolls back.
                  await commits.settled(signal);
                  throw failure;
                }
                recordFailure(stream, failure);
                break;
              }
              if (!stream.replayFrom) watermark = maxWatermark(watermark, { key: file.key, time: file.time });
              readSomething = true;
            }
          }
          if (failures.length) {
            // Other streams went on (one failing stream must not stop the rest); the run fails now.
            await commits.settled(signal);
            throw failures[0];
          }
          if (!readSomething) {
            for (const stream of config.streams) emit({ type: 'caught-up', stream: stream.id });
          }
          if (!config.watch || stopping()) return;
          // Plan again only after every file handed out has committed and been archived: a plan
          // made earlier still sees an in-flight file as pending (read twice, or found gone) and
          // would archive it concurrently with committed() (invariants 3 and 4).
          await commits.settled(signal);
          if (readSomething) continue; // more may have arrived while reading
          release?.();
          release = undefined;
          const wait = config.watch.intervalMs * (1 + config.watch.jitter * Math.random());
          const wake = ctx.stop ? AbortSignal.any([signal, ctx.stop]) : signal;
          try {
            faultPoint(
              's3-source:watch-sleep',
              config.streams.map((stream) => stream.id),
            );
            await sleep(wait, undefined, { signal: wake });
          } catch {
            return;
          }
        }
      } finally {
        release?.();
      }
    },

    async committed(batch: Batch<Row>, result?: WriteResult): Promise<void> {
      await archives.afterCommit(batch, result, commits.settler(batch));
    },

    async close(): Promise<void> {
      await archives.done();
    },

    async plan(planContext: PlanContext = {}): Promise<StreamPlan[]> {
      const plans: StreamPlan[] = [];
      for (const stream of config.streams) {
        try {
          plans.push(publicPlan(await planStream(runtime, stream, planContext, undefined)));
        } catch (error) {
          plans.push({
            stream: stream.id,
            watermark: null,
            pending: [],
            late: [],
            etagChanged: [],
            archiveOnly: [],
            ignored: 0,
            error: (error as Error).message,
          });
        }
      }
      return plans;
    },
  };
}
