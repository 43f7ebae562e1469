import { setTimeout as sleep } from 'node:timers/promises';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import type {
  Batch,
  CheckpointLookup,
  LoadLog,
  PipelineEvent,
  Position,
  ReadContext,
  Row,
  Source,
  WriteResult,
} from '@tributary/core';
import { faultPoint, isAbortError, TributaryError, toTributaryError, withStream } from '@tributary/core';
import { archivedCopyMatches, archiveFile } from './archive.js';
import { archiveKey, formatOfKey } from './keys.js';
import { listKeys } from './list.js';
import { resolveOptions, type S3SourceOptions } from './options.js';
import {
  type ArchiveTask,
  maxWatermark,
  type OrderedObject,
  type PendingPlan,
  type PlannedFile,
  planPendingFiles,
  planReplay,
  type StreamPlan,
  toS3Position,
  type Watermark,
} from './plan.js';
import { readFileBatches } from './read.js';
import { withRetry } from './retry.js';
import type { ResolvedStream } from './stream-options.js';

/** What planning needs to know about committed state; both optional (a dry run may have neither). */
export interface PlanContext {
  checkpoint?: CheckpointLookup;
  loads?: LoadLog;
}

export interface S3Source extends Source<Row> {
  /** What `read()` would do now, per stream, without reading or moving any file. */
  plan(context?: PlanContext): Promise<StreamPlan[]>;
  readonly streams: readonly string[];
  /** This source over one of its streams (pipeline() runs each stream in its own failure domain). */
  only(stream: string): S3Source;
}

type Send = <T>(request: () => Promise<T>) => Promise<T>;

/**
 * Archives (copy, confirm, record, delete) running behind the apply of the next files. Each
 * starts only once its file committed; more than this many at once and committed() waits.
 */
const MAX_ARCHIVES_IN_FLIGHT = 4;

function commitId(stream: string, position: Position): string {
  return `${stream}\0${String(position['key'])}\0${String(position['row'])}\0${String(position['done'])}`;
}

function publicPlan(plan: PendingPlan): StreamPlan {
  const { failure: _f, archiveTasks: _a, badKeys: _b, resolutions: _r, superseded: _s, ...rest } = plan;
  return rest;
}

function positionOf(
  file: PlannedFile,
  row: number,
  done: boolean,
  watermark: Watermark | null,
  late?: 'skipped',
): Position {
  return {
    key: file.key,
    etag: file.etag,
    row,
    done,
    kind: file.kind,
    watermark: watermark ? { key: watermark.key, time: watermark.time } : null,
    ...(late ? { late } : {}),
  };
}

/**
 * The S3 change-file source: lists each stream's prefix, orders files by the time their names
 * encode, plans against the checkpoint and load log, streams and parses each file into batches,
 * and archives a file once the sink committed it.
 */
export function s3Source(options: S3SourceOptions): S3Source {
  const config = resolveOptions(options);
  const client = config.client;
  const streamsById = new Map(config.streams.map((stream) => [stream.id, stream]));
  let context: ReadContext | undefined;
  // Commit batches handed out and not yet confirmed by committed(): before failing, the source
  // lets them land so earlier files are never lost with the failing one.
  const outstanding = new Map<string, () => void>();
  const outstandingDone = new Map<string, Promise<void>>();
  // Archives started by committed() and not finished: the sink goes on with the next file
  // meanwhile. Planning and close() wait for them (a plan must never race a file's archive).
  const archiving = new Set<Promise<void>>();
  const warned = new Set<string>();

  const emit = (event: PipelineEvent) => {
    try {
      context?.emit(event);
    } catch {
      // A broken renderer must not break a load.
    }
  };
  const sender =
    (signal: AbortSignal | undefined, stream?: string): Send =>
    (request) =>
      withRetry(request, config.retry, {
        signal,
        onRetry: (error, attempt, delayMs) =>
          emit({
            type: 'warning',
            ...(stream ? { stream } : {}),
            message: `S3 request failed (attempt ${attempt}), retrying in ${Math.round(delayMs)} ms: ${(error as Error).message}`,
          }),
      });

  async function listStream(
    stream: ResolvedStream,
    signal: AbortSignal | undefined,
  ): Promise<{ objects: OrderedObject[]; ignored: number }> {
    const objects: OrderedObject[] = [];
    let ignored = 0;
    // A replay reads the archive: processed files, and rejected ones (fixed in place) too.
    const folders = stream.areas.flatMap((area) =>
      stream.replayFrom
        ? [stream.processedPrefix, stream.rejectedPrefix].map((to) => ({
            ...area,
            prefix: archiveKey(area.prefix, stream.archiveBase, to),
          }))
        : [area],
    );
    for (const area of folders) {
      const prefix = area.prefix;
      const listed = await listKeys(client, stream.bucket, prefix, {
        recursive: stream.recursive,
        json: stream.format === 'json' || stream.layout === 'unordered',
        exclude: stream.replayFrom ? [] : [stream.processedPrefix, stream.latePrefix, stream.rejectedPrefix],
        ...(signal ? { signal } : {}),
        send: sender(signal, stream.id),
      }).catch((error: unknown) => {
        if (isAbortError(error) || error instanceof TributaryError) throw error;
        // The S3 message alone ("Service Unavailable") does not say what was being done.
        throw toTributaryError(
          error,
          'SOURCE_FAILED',
          `listing s3://${stream.bucket}/${prefix} failed: ${(error as Error).message}`,
        );
      });
      ignored += listed.ignored;
      faultPoint('s3-source:after-listing');
      for (const object of listed.objects) objects.push({ ...object, role: area.role });
    }
    return { objects, ignored };
  }

  async function planStream(
    stream: ResolvedStream,
    lookups: PlanContext,
    signal: AbortSignal | undefined,
  ): Promise<PendingPlan> {
    const checkpoint = lookups.checkpoint ? await lookups.checkpoint(stream.id) : null;
    const { objects, ignored } = await listStream(stream, signal);
    // Only the listed files' records: what planning needs, and a bounded read per poll however
    // long the stream's history grows.
    const loads = lookups.loads
      ? await lookups.loads.list(
          stream.id,
          objects.map((o) => o.key),
        )
      : undefined;
    const common = {
      stream: stream.id,
      objects,
      checkpoint,
      ignored,
      keyPattern: stream.keyPattern,
      timeZone: stream.timeZone,
      layout: stream.layout,
    };
    if (stream.replayFrom) return planReplay({ ...common, from: stream.replayFrom });
    const input = { ...common, loads, lateFiles: stream.lateFiles, etagChanged: stream.etagChanged };
    const plan = planPendingFiles(input);
    if (loads || !config.archive || plan.late.length === 0) return plan;
    // Without a load log, a file older than the watermark may be one whose archive copy landed
    // but whose delete failed: its copy says it was applied.
    const knownApplied = new Map<string, 'processed' | 'late'>();
    const send = sender(signal, stream.id);
    for (const file of plan.late) {
      for (const [to, prefix] of [
        ['processed', stream.processedPrefix],
        ['late', stream.latePrefix],
      ] as const) {
        const target = archiveKey(file.key, stream.archiveBase, prefix);
        if (await archivedCopyMatches(client, { ...file, bucket: stream.bucket, target }, { signal, send })) {
          knownApplied.set(file.key, to);
          break;
        }
      }
    }
    return knownApplied.size ? planPendingFiles({ ...input, knownApplied }) : plan;
  }

  function archivePrefix(stream: ResolvedStream, to: ArchiveTask['to']): string {
    if (to === 'late') return stream.latePrefix;
    return to === 'rejected' ? stream.rejectedPrefix : stream.processedPrefix;
  }

  /** Archive after commit; a failure is a warning, the next run finishes it (invariant 3). */
  async function archiveQuietly(
    stream: ResolvedStream,
    file: { key: string; etag: string; size: number },
    to: ArchiveTask['to'],
  ): Promise<boolean> {
    const target = archiveKey(file.key, stream.archiveBase, archivePrefix(stream, to));
    const send = sender(undefined, stream.id);
    try {
      // Recorded before the original is deleted: a crash in between leaves the file listed,
      // and the next run finishes the move. Recorded after the delete, a crash there left a
      // file in processed/ whose load row said `loaded` for good (it is never listed again).
      const loads = context?.loads;
      await archiveFile(
        client,
        { bucket: stream.bucket, ...file, target },
        {
          send,
          ...(to === 'processed' && loads ? { onCopied: () => loads.markArchived(stream.id, file.key) } : {}),
        },
      );
      return true;
    } catch (error) {
      emit({
        type: 'warning',
        stream: stream.id,
        message: `archiving ${file.key} to ${target} failed; it stays in place and the next run finishes it: ${(error as Error).message}`,
        detail: { key: file.key, target },
      });
      return false;
    }
  }

  /** Waits for every archive in flight (they are never aborted: each is a few S3 calls). */
  async function archivesDone(): Promise<void> {
    while (archiving.size) await Promise.all(archiving);
  }

  async function settleOutstanding(signal: AbortSignal): Promise<void> {
    if (outstandingDone.size === 0 || signal.aborted) return;
    const aborted = new Promise<void>((resolve) =>
      signal.addEventListener('abort', () => resolve(), { once: true }),
    );
    await Promise.race([Promise.all(outstandingDone.values()), aborted]);
  }

  function track(batch: Batch<Row>): void {
    if (!batch.meta.commit) return;
    const id = commitId(batch.stream, batch.position);
    outstandingDone.set(
      id,
      new Promise<void>((resolve) => {
        outstanding.set(id, resolve);
      }),
    );
  }

  async function* readStreamFile(
    stream: ResolvedStream,
    file: PlannedFile,
    startRow: number,
    watermarkBefore: Watermark | null,
    signal: AbortSignal,
  ): AsyncGenerator<Batch<Row>> {
    emit({ type: 'unit-start', stream: stream.id, source: file.key, bytesTotal: file.size, kind: file.kind });
    // A late file applied under 'apply' never moves the watermark back; a replay (of archived,
    // already applied files) never moves it at all.
    const watermark = stream.replayFrom
      ? watermarkBefore
      : maxWatermark(watermarkBefore, { key: file.key, time: file.time });
    const chunks = readFileBatches({
      client,
      bucket: stream.bucket,
      key: file.key,
      etag: file.etag,
      stream: stream.id,
      format: stream.format ?? formatOfKey(file.key) ?? 'csv',
      columns: stream.columns,
      columnCheck: stream.columnCheck,
      emptyAsNull: stream.emptyAsNull,
      passThrough: stream.passThrough,
      setAside: stream.onError !== undefined,
      rawBatchRows: config.rawBatchRows,
      batchRows: config.batchRows,
      batchBytes: config.batchBytes,
      startRow,
      signal,
      retry: config.retry,
      onRetry: (error, attempt, delayMs) =>
        emit({
          type: 'warning',
          stream: stream.id,
          message: `reading ${file.key} failed (attempt ${attempt}); re-reading from record ${startRow + 1} in ${Math.round(delayMs)} ms: ${(error as Error).message}`,
        }),
      onFallback: (reason, record) =>
        emit({
          type: 'warning',
          stream: stream.id,
          message: `${file.key}: ${reason}; parsing it in JavaScript from record ${record + 1}`,
        }),
    });
    for await (const chunk of chunks) {
      // A body that ends early but looks complete (a Content-Length that matches what was sent)
      // parses as a shorter file: fail before the commit batch so it is never applied as one.
      if (chunk.done && chunk.totalBytes !== file.size) {
        throw new TributaryError(
          'SOURCE_FAILED',
          `${file.key}: read ${chunk.totalBytes} bytes but the listing says ${file.size} (ETag ${file.etag}): incomplete body, not applied`,
          { stream: stream.id, retriable: true, location: { file: file.key } },
        );
      }
      const commit = chunk.done || stream.granularity === 'batch';
      const batch: Batch<Row> = {
        stream: stream.id,
        rows: chunk.rows,
        ...(chunk.raw ? { raw: chunk.raw } : {}),
        position: positionOf(file, chunk.row, chunk.done, watermark),
        meta: {
          source: file.key,
          kind: file.kind,
          commit,
          lastOfUnit: chunk.done,
          // Records set aside while parsing were read too (invariant 5: counted, never lost).
          rowsRead: (chunk.raw ? chunk.raw.records : chunk.rows.length) + (chunk.rejected?.length ?? 0),
          filtered: {},
          bytes: chunk.bytes,
          locations: chunk.locations,
          ...(stream.onError ? { onError: stream.onError } : {}),
          ...(chunk.rejected?.length ? { rejected: chunk.rejected } : {}),
          etag: file.etag,
          size: file.size,
          ...(file.modified ? { modified: file.modified } : {}),
          ...(file.snapshot ? { snapshot: file.snapshot } : {}),
          watermark,
        },
      };
      emit({
        type: 'progress',
        stream: stream.id,
        source: file.key,
        bytes: chunk.totalBytes,
        rows: chunk.row,
      });
      track(batch);
      yield batch;
    }
  }

  function skipBatch(stream: ResolvedStream, file: PlannedFile, watermark: Watermark | null): Batch<Row> {
    return {
      stream: stream.id,
      rows: [],
      position: positionOf(file, 0, true, watermark, 'skipped'),
      meta: {
        source: file.key,
        kind: file.kind,
        commit: true,
        lastOfUnit: true,
        rowsRead: 0,
        filtered: {},
        bytes: 0,
        locations: [],
        etag: file.etag,
        size: file.size,
        ...(file.modified ? { modified: file.modified } : {}),
        watermark,
        late: 'skipped',
      },
    };
  }

  async function archiveCommitted(batch: Batch<Row>, result: WriteResult | undefined): Promise<void> {
    if (!batch.meta.lastOfUnit || !config.archive) return;
    const stream = streamsById.get(batch.stream);
    const position = toS3Position(batch.position);
    if (!stream || stream.replayFrom || !position) return;
    let size = batch.meta.size;
    if (size === undefined) {
      const head = await client.send(new HeadObjectCommand({ Bucket: stream.bucket, Key: position.key }));
      size = head.ContentLength ?? 0;
    }
    await archiveQuietly(
      stream,
      { key: position.key, etag: position.etag, size },
      result?.unitRejected ? 'rejected' : batch.meta.late === 'skipped' ? 'late' : 'processed',
    );
  }

  function warnResolutions(stream: ResolvedStream, plan: PendingPlan): void {
    for (const { key, resolution } of plan.resolutions) {
      if (warned.has(key)) continue;
      warned.add(key);
      emit({
        type: 'warning',
        stream: stream.id,
        message:
          resolution === 'repeated'
            ? `${key}: its local time occurs twice in ${stream.timeZone} (DST fall-back); using the earlier instant`
            : `${key}: its local time does not exist in ${stream.timeZone} (DST gap); moved forward by the gap`,
        detail: { key, resolution },
      });
    }
  }

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
      context = ctx;
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
          await archivesDone();
          let readSomething = false;
          for (const stream of config.streams) {
            if (failed.has(stream.id) || stopping()) continue;
            let plan: PendingPlan;
            try {
              plan = await planStream(stream, ctx, signal);
            } catch (error) {
              if (isAbortError(error) || signal.aborted) throw error;
              recordFailure(stream, withStream(toTributaryError(error, 'SOURCE_FAILED'), stream.id));
              continue;
            }
            warnResolutions(stream, plan);
            // Files applied earlier but still here: archive only, never re-emit (invariant 3).
            if (config.archive && !stream.replayFrom) {
              for (const task of plan.archiveTasks) await archiveQuietly(stream, task, task.to);
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
              track(batch);
              yield batch;
              readSomething = true;
            }
            for (const file of plan.pending) {
              if (stopping()) break;
              const startRow = plan.resume?.key === file.key ? plan.resume.row : 0;
              let emitted = false;
              try {
                for await (const batch of readStreamFile(stream, file, startRow, watermark, signal)) {
                  emitted = true;
                  yield batch;
                }
              } catch (error) {
                if (isAbortError(error) || signal.aborted) throw error;
                const failure = withStream(toTributaryError(error, 'SOURCE_FAILED'), stream.id);
                if (emitted) {
                  // Rows of this file are in the sink's open transaction: fail now so it rolls back.
                  await settleOutstanding(signal);
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
            await settleOutstanding(signal);
            throw failures[0];
          }
          if (!readSomething) {
            for (const stream of config.streams) emit({ type: 'caught-up', stream: stream.id });
          }
          if (!config.watch || stopping()) return;
          // Plan again only after every file handed out has committed and been archived: a plan
          // made earlier still sees an in-flight file as pending (read twice, or found gone) and
          // would archive it concurrently with committed() (invariants 3 and 4).
          await settleOutstanding(signal);
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
      const id = commitId(batch.stream, batch.position);
      // The archive runs while the sink applies the next file: it only ever starts here, after
      // this file's commit (invariant 3), and a crash while it runs leaves a committed file
      // that the next run only archives. Settled once archived, so a failing run, a watch
      // poll and close() let earlier files finish it.
      const task: Promise<void> = archiveCommitted(batch, result)
        .catch((error: unknown) => {
          emit({
            type: 'warning',
            stream: batch.stream,
            message: `post-commit step failed (data is committed; it will be retried next run): ${(error as Error).message}`,
          });
        })
        .finally(() => {
          archiving.delete(task);
          outstanding.get(id)?.();
          outstanding.delete(id);
          outstandingDone.delete(id);
        });
      archiving.add(task);
      // Bounded: more archives than this in flight and the sink waits for one (invariant 7).
      while (archiving.size >= MAX_ARCHIVES_IN_FLIGHT) await Promise.race(archiving);
    },

    async close(): Promise<void> {
      await archivesDone();
    },

    async plan(planContext: PlanContext = {}): Promise<StreamPlan[]> {
      const plans: StreamPlan[] = [];
      for (const stream of config.streams) {
        try {
          plans.push(publicPlan(await planStream(stream, planContext, undefined)));
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
