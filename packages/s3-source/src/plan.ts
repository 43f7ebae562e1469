import type { ExportKind, LoadRecord, LoadStatus, Position } from '@tributary/core';
import { TributaryError } from '@tributary/core';
import { baseName, type KeyPattern, qlikLoadNumber } from './keys.js';
import {
  compareOrder,
  type KeyOrderOptions,
  type OrderedObject,
  type OrderKey,
  orderOf,
  type Watermark,
  watermarkOrder,
} from './order.js';
import { toS3Position } from './position.js';
import type { EtagChangedPolicy, LateFilePolicy } from './stream-options.js';

/** A file the plan will read (or has found late, changed, or left to archive). */
export interface PlannedFile {
  key: string;
  etag: string;
  size: number;
  /** The instant the key represents, ISO 8601 UTC. Qlik LOAD files sort at the epoch. */
  time: string;
  kind: ExportKind;
  /** At or before the watermark: a late file, or a re-exported one being re-applied. */
  late: boolean;
  /** The object's LastModified as listed, ISO 8601 UTC (recorded in the load log). */
  modified?: string;
  /**
   * A LOAD file of a Qlik reload: its rows replace the table's, swapped in atomically with the
   * commit of the reload's `last` file (pg-sink's snapshots).
   */
  snapshot?: 'part' | 'last';
}

/** A Qlik reload found by the planner: new LOAD files after the table's first baseline. */
export interface Reload {
  /** The reload's LOAD files, in number order. */
  files: string[];
  /** The earliest LastModified of those files: change files named before it are superseded. */
  since: string | null;
  /** Change files older than the reload: never applied, recorded `late_skipped` and moved to late/. */
  superseded: string[];
}

export interface StreamPlan {
  stream: string;
  /** The newest file applied so far, or null on a fresh stream. */
  watermark: Watermark | null;
  /** Files to read, in apply order (late and re-exported files included when their policy is `apply`). */
  pending: PlannedFile[];
  /** Never-applied files at or before the watermark (whatever the policy). */
  late: PlannedFile[];
  /** Applied files whose ETag changed since (whatever the policy). */
  etagChanged: PlannedFile[];
  /** Files already applied but still present: only archived (a crash or failure after commit). */
  archiveOnly: PlannedFile[];
  /** Where reading resumes inside the first pending file (`batch` granularity). */
  resume?: { key: string; row: number };
  /** Keys under the prefix that are not data files: folder placeholders, legacy folders, other suffixes. */
  ignored: number;
  /** Why this stream cannot proceed (bad key, late file or ETag change under `error`). */
  error?: string;
  /** A Qlik reload in this plan (`layout: 'qlik'`). */
  reload?: Reload;
}

/**
 * Load-log statuses that mean "this file is done with": its rows are committed, or it was
 * skipped (late) or rejected by policy in a committed transaction.
 */
const APPLIED: ReadonlySet<LoadStatus> = new Set(['loaded', 'archived', 'late_skipped', 'rejected']);

export interface PlanInput extends KeyOrderOptions {
  stream: string;
  objects: readonly OrderedObject[];
  /** The stream's last committed position. */
  checkpoint: Position | null;
  /** The load log's records of the stream; without it, the checkpoint alone says what was applied. */
  loads?: readonly LoadRecord[] | undefined;
  /**
   * Keys known to be applied although neither the checkpoint nor a load log says so, with the
   * folder their archive copy is in: without a load log, files whose archive copy already exists
   * (a delete failed after the copy).
   */
  knownApplied?: ReadonlyMap<string, 'processed' | 'late'>;
  lateFiles: LateFilePolicy;
  etagChanged: EtagChangedPolicy;
  ignored?: number;
}

/** A file left to archive and where it goes. */
export interface ArchiveTask extends PlannedFile {
  to: 'processed' | 'late' | 'rejected';
}

export interface PendingPlan extends StreamPlan {
  /** Change files a reload superseded: skipped like late files under `lateFiles: 'skip'`. */
  superseded: PlannedFile[];
  /** The error `read()` throws for this stream, when it cannot proceed. */
  failure?: TributaryError;
  archiveTasks: ArchiveTask[];
  /** Bad keys, for the dry run. */
  badKeys: string[];
  /** Local times that were ambiguous or skipped (DST), resolved per `LocalTimeResolution`. */
  resolutions: Array<{ key: string; resolution: string }>;
}

/**
 * Pure planning of one stream against its checkpoint and load history: what to read, in what
 * order, what is late, what was re-exported, what only needs archiving. No I/O.
 */
export function planPendingFiles(input: PlanInput): PendingPlan {
  const checkpoint = toS3Position(input.checkpoint);
  const ordered: Array<OrderedObject & OrderKey> = [];
  const badKeys: string[] = [];
  const resolutions: PendingPlan['resolutions'] = [];
  for (const object of input.objects) {
    const order = orderOf(object.key, object.role, input, object.lastModified);
    if (!order) {
      badKeys.push(object.key);
      continue;
    }
    if (order.resolution !== 'exact') resolutions.push({ key: object.key, resolution: order.resolution });
    ordered.push({ ...object, timeMs: order.timeMs, seq: order.seq });
  }
  ordered.sort(compareOrder);

  let watermark: Watermark | null = checkpoint?.watermark ?? null;
  if (checkpoint && checkpoint.watermark === undefined) {
    // A position without a carried watermark: its own key is the newest file applied.
    const role = qlikLoadNumber(checkpoint.key) !== undefined ? 'baseline' : 'changes';
    const order = orderOf(checkpoint.key, role, input);
    if (order) watermark = { key: checkpoint.key, time: new Date(order.timeMs).toISOString() };
  }
  const wOrder = watermark ? watermarkOrder(watermark) : undefined;

  const appliedEtags = new Map<string, string | null>();
  for (const record of input.loads ?? []) {
    if (APPLIED.has(record.status)) appliedEtags.set(record.source, record.etag);
  }
  const lateSkipped = new Set(
    (input.loads ?? []).filter((r) => r.status === 'late_skipped').map((r) => r.source),
  );
  const rejected = new Set((input.loads ?? []).filter((r) => r.status === 'rejected').map((r) => r.source));
  if (checkpoint?.done) appliedEtags.set(checkpoint.key, checkpoint.etag);
  const freshStream = checkpoint === null && appliedEtags.size === 0;

  const pending: PlannedFile[] = [];
  const late: PlannedFile[] = [];
  const etagChanged: PlannedFile[] = [];
  const archiveOnly: ArchiveTask[] = [];
  let resume: StreamPlan['resume'];
  let failure: TributaryError | undefined;
  const fileOf = (o: OrderedObject & OrderKey, isLate: boolean): PlannedFile => ({
    key: o.key,
    etag: o.etag,
    size: o.size,
    time: new Date(o.timeMs).toISOString(),
    kind: o.role === 'baseline' ? 'baseline' : 'delta',
    late: isLate,
    ...(o.lastModified ? { modified: o.lastModified.toISOString() } : {}),
  });

  for (const object of ordered) {
    const atOrBeforeWatermark = wOrder !== undefined && compareOrder(object, wOrder) <= 0;
    if (checkpoint && !checkpoint.done && object.key === checkpoint.key) {
      // Batch granularity: the file was committed up to `row`; resume after it.
      const file = { ...fileOf(object, false), kind: checkpoint.kind ?? fileOf(object, false).kind };
      if (object.etag !== checkpoint.etag) {
        etagChanged.push(file);
        if (input.etagChanged === 'apply') pending.push(file); // re-read whole: upserts are idempotent
      } else {
        resume = { key: object.key, row: checkpoint.row };
        pending.push(file);
      }
      continue;
    }
    const appliedEtag = appliedEtags.get(object.key);
    if (appliedEtags.has(object.key) || input.knownApplied?.has(object.key)) {
      if (appliedEtag !== undefined && appliedEtag !== null && appliedEtag !== object.etag) {
        const file = fileOf(object, atOrBeforeWatermark);
        etagChanged.push(file);
        if (input.etagChanged === 'apply') pending.push(file);
        continue;
      }
      // Applied before, still here: the archive step did not finish (invariant 3).
      const skipped =
        lateSkipped.has(object.key) ||
        input.knownApplied?.get(object.key) === 'late' ||
        (input.loads === undefined &&
          checkpoint?.key === object.key &&
          input.lateFiles === 'skip' &&
          atOrBeforeWatermark &&
          watermark?.key !== object.key);
      archiveOnly.push({
        ...fileOf(object, false),
        to: rejected.has(object.key) ? 'rejected' : skipped ? 'late' : 'processed',
      });
      continue;
    }
    if (atOrBeforeWatermark) {
      const file = fileOf(object, true);
      late.push(file);
      if (input.lateFiles === 'apply') pending.push(file);
      continue;
    }
    pending.push(fileOf(object, false));
  }

  if (freshStream && input.layout !== 'qlik' && pending[0]) {
    pending[0] = { ...pending[0], kind: 'baseline' };
  }
  const reload = input.layout === 'qlik' && !freshStream ? planReload(pending, late, etagChanged) : undefined;
  if (checkpoint && !checkpoint.done && !ordered.some((o) => o.key === checkpoint.key)) {
    failure = new TributaryError(
      'SOURCE_FAILED',
      `${input.stream}: the checkpoint is inside ${checkpoint.key} (row ${checkpoint.row}) but that file is gone; restore it or reset the checkpoint`,
      { stream: input.stream, location: { file: checkpoint.key, record: checkpoint.row } },
    );
  } else if (badKeys.length) {
    failure = new TributaryError(
      'BAD_KEY',
      `${input.stream}: ${badKeys[0]} ${input.layout === 'unordered' ? 'has no LastModified to order it by' : `does not match the key pattern ${describePattern(input.keyPattern)}`}${
        badKeys.length > 1 ? ` (and ${badKeys.length - 1} more)` : ''
      }; nothing is read until it is renamed or removed`,
      { stream: input.stream, location: { file: badKeys[0]! } },
    );
  } else if (etagChanged.length && input.etagChanged === 'error') {
    const file = etagChanged[0]!;
    failure = new TributaryError(
      'ETAG_CHANGED',
      `${input.stream}: ${file.key} was already applied but its ETag changed to ${file.etag} (re-exported in place)${
        etagChanged.length > 1 ? `, and ${etagChanged.length - 1} more` : ''
      }; set etagChanged: 'apply' to re-apply it`,
      { stream: input.stream, location: { file: file.key } },
    );
  } else if (late.length && input.lateFiles === 'error') {
    const file = late[0]!;
    failure = new TributaryError(
      'LATE_FILE',
      `${input.stream}: late file ${file.key} (${file.time}) is at or before the watermark ${watermark?.key} and was never applied${
        late.length > 1 ? `, and ${late.length - 1} more` : ''
      }; set lateFiles: 'apply' or 'skip'`,
      { stream: input.stream, location: { file: file.key } },
    );
  }
  return {
    stream: input.stream,
    watermark,
    pending,
    late,
    etagChanged,
    archiveOnly: archiveOnly.map(({ to: _to, ...file }) => file),
    archiveTasks: archiveOnly,
    ...(resume ? { resume } : {}),
    ignored: input.ignored ?? 0,
    ...(failure ? { error: failure.message, failure } : {}),
    ...(reload ? { reload: reload.summary } : {}),
    superseded: reload?.superseded ?? [],
    badKeys,
    resolutions,
  };
}

/**
 * Qlik reload (seed 002: a snapshot "when data collection was started/restarted"): LOAD files
 * never applied after the table's baseline (they sort before the watermark, so they are late),
 * or applied ones re-exported with a new ETag. They start a new snapshot whatever the late-file
 * and ETag policies say, ahead of every change file; change files named before the earliest of
 * them (by LastModified) belong to the old snapshot and are superseded. Edits the lists in place.
 */
function planReload(
  pending: PlannedFile[],
  late: PlannedFile[],
  etagChanged: PlannedFile[],
): { summary: Reload; superseded: PlannedFile[] } | undefined {
  const isLoad = (file: PlannedFile) => file.kind === 'baseline';
  const reloadKeys = new Set([...late, ...etagChanged].filter(isLoad).map((file) => file.key));
  if (reloadKeys.size === 0) return undefined;
  const parts = new Map<string, PlannedFile>();
  for (const file of [...pending, ...late, ...etagChanged]) {
    // Every LOAD file not yet applied belongs to the new snapshot (a LOAD002 uploaded beside a
    // re-exported LOAD001 included).
    if (isLoad(file) && !parts.has(file.key)) parts.set(file.key, file);
  }
  const files = [...parts.values()].sort(
    (a, b) => (qlikLoadNumber(a.key) ?? 0) - (qlikLoadNumber(b.key) ?? 0) || (a.key < b.key ? -1 : 1),
  );
  // ISO 8601 UTC strings: the earliest sorts first.
  const modified = files.map((file) => file.modified).filter((m): m is string => m !== undefined);
  const since = modified.sort()[0] ?? null;
  const changes = pending.filter((file) => !isLoad(file));
  const superseded = since === null ? [] : changes.filter((file) => file.time < since);
  const stale = new Set(superseded.map((file) => file.key));
  const remove = (list: PlannedFile[], drop: (file: PlannedFile) => boolean) => {
    const kept = list.filter((file) => !drop(file));
    list.splice(0, list.length, ...kept);
  };
  remove(late, isLoad);
  remove(etagChanged, isLoad);
  pending.splice(
    0,
    pending.length,
    ...files.map(
      (file, i): PlannedFile => ({
        ...file,
        late: false,
        snapshot: i === files.length - 1 ? 'last' : 'part',
      }),
    ),
    ...changes.filter((file) => !stale.has(file.key)),
  );
  return {
    summary: { files: files.map((file) => file.key), since, superseded: superseded.map((file) => file.key) },
    superseded: superseded.map((file) => ({ ...file, late: true })),
  };
}

function describePattern(pattern: KeyPattern): string {
  return typeof pattern === 'function' ? '(custom function)' : `'${pattern}'`;
}

/** Files of a replay (back-fill) from the archive at or after `from`, in order. */
export function planReplay(
  input: KeyOrderOptions & {
    stream: string;
    objects: readonly OrderedObject[];
    from: string;
    checkpoint: Position | null;
    ignored?: number;
  },
): PendingPlan {
  const base = planPendingFiles({
    ...input,
    checkpoint: null,
    loads: [],
    lateFiles: 'apply',
    etagChanged: 'apply',
  });
  const fromRole = qlikLoadNumber(input.from) !== undefined ? 'baseline' : 'changes';
  const fromOrder = orderOf(input.from, fromRole, input);
  const fromKey = { ...(fromOrder ?? { timeMs: 0, seq: 0 }), key: baseName(input.from) };
  // Unordered files have no time in their names: the replay starts at the named file in the
  // archive's LastModified order (everything when it is not there).
  const fromIndex =
    input.layout === 'unordered'
      ? Math.max(
          0,
          base.pending.findIndex((file) => baseName(file.key) === baseName(input.from)),
        )
      : 0;
  const pending = base.pending
    .filter((file, index) => {
      if (input.layout === 'unordered') return index >= fromIndex;
      const role = qlikLoadNumber(file.key) !== undefined && input.layout === 'qlik' ? 'baseline' : 'changes';
      const order = orderOf(file.key, role, input, file.modified ? new Date(file.modified) : undefined);
      return order !== undefined && compareOrder({ ...order, key: baseName(file.key) }, fromKey) >= 0;
    })
    .map((file) => ({
      ...file,
      kind: file.kind === 'baseline' && input.layout === 'qlik' ? file.kind : 'delta',
    }))
    .map((file) => file as PlannedFile);
  // Only a partial file of this replay resumes; a done checkpoint belongs to the normal run.
  const checkpoint = toS3Position(input.checkpoint);
  const partial =
    checkpoint && !checkpoint.done
      ? pending.find((f) => f.key === checkpoint.key && f.etag === checkpoint.etag)
      : undefined;
  const skipBefore = partial ? pending.indexOf(partial) : 0;
  return {
    ...base,
    watermark: toS3Position(input.checkpoint)?.watermark ?? null,
    pending: pending.slice(skipBefore),
    late: [],
    etagChanged: [],
    archiveOnly: [],
    archiveTasks: [],
    ...(partial && checkpoint ? { resume: { key: partial.key, row: checkpoint.row } } : {}),
  };
}
