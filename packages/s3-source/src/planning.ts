import type { CheckpointLookup, LoadLog } from '@tributary/core';
import { faultPoint, isAbortError, TributaryError, toTributaryError } from '@tributary/core';
import { archivedCopyMatches } from './archive.js';
import { archiveKey } from './keys.js';
import { listKeys } from './list.js';
import type { OrderedObject } from './order.js';
import { type PendingPlan, planPendingFiles, planReplay, type StreamPlan } from './plan.js';
import type { SourceRuntime } from './runtime.js';
import type { ResolvedStream } from './stream-options.js';

/**
 * The source's use of the planner: list a stream's folders, read what the checkpoint and load
 * log know about the listed files, and plan (or plan a replay). The planning rules themselves
 * are pure, in `plan.ts`.
 */

/** What planning needs to know about committed state; both optional (a dry run may have neither). */
export interface PlanContext {
  checkpoint?: CheckpointLookup;
  loads?: LoadLog;
}

/** A plan as `S3Source.plan()` reports it, without the fields only the reader acts on. */
export function publicPlan(plan: PendingPlan): StreamPlan {
  const { failure: _f, archiveTasks: _a, badKeys: _b, resolutions: _r, superseded: _s, ...rest } = plan;
  return rest;
}

async function listStream(
  runtime: SourceRuntime,
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
    const listed = await listKeys(runtime.config.client, stream.bucket, prefix, {
      recursive: stream.recursive,
      json: stream.format === 'json' || stream.layout === 'unordered',
      exclude: stream.replayFrom ? [] : [stream.processedPrefix, stream.latePrefix, stream.rejectedPrefix],
      ...(signal ? { signal } : {}),
      send: runtime.sender(signal, stream.id),
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

/** One stream's plan now: what to read, what is late, what only needs archiving. */
export async function planStream(
  runtime: SourceRuntime,
  stream: ResolvedStream,
  lookups: PlanContext,
  signal: AbortSignal | undefined,
): Promise<PendingPlan> {
  const { client, archive } = runtime.config;
  const checkpoint = lookups.checkpoint ? await lookups.checkpoint(stream.id) : null;
  const { objects, ignored } = await listStream(runtime, stream, signal);
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
  if (loads || !archive || plan.late.length === 0) return plan;
  // Without a load log, a file older than the watermark may be one whose archive copy landed
  // but whose delete failed: its copy says it was applied.
  const knownApplied = new Map<string, 'processed' | 'late'>();
  const send = runtime.sender(signal, stream.id);
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

/** DST resolutions of key times, each reported once per source (not once per poll). */
export class ResolutionWarnings {
  readonly #warned = new Set<string>();

  report(runtime: SourceRuntime, stream: ResolvedStream, plan: PendingPlan): void {
    for (const { key, resolution } of plan.resolutions) {
      if (this.#warned.has(key)) continue;
      this.#warned.add(key);
      runtime.emit({
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
}
