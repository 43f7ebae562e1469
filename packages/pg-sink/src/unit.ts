import type { Batch, ExportKind, RejectedRecord, RejectPolicy, Row, TributaryError } from '@tributary/core';
import { type ReplayBounds, ReplayBuffer } from './replay-buffer.js';
import type { SnapshotPhase } from './snapshot.js';

/**
 * The open unit of a stream (a file, or a Kafka batch range): what the sink knows about it
 * between its first batch and its COMMIT. Its counters become the load row (`loads.ts`).
 */

export interface UnitStats {
  rowsRead: number;
  filtered: Record<string, number>;
  inserted: number;
  updated: number;
  deleted: number;
  unchanged: number;
  batches: number;
  bytes: number;
  /** Rows set aside under the unit's `onError` policy (all of them when the file is rejected). */
  rejected: number;
}

/** Rows and filter counts of a unit: applied so far, or reported to the pipeline so far. */
export interface Tally {
  rows: number;
  filtered: Record<string, number>;
}

/** What a batch contributed, when the sink ran its filters (raw batches). */
export interface Applied {
  rows: number;
  filtered: Record<string, number>;
  /** Rows set aside under the unit's `onError` policy. */
  rejected?: number;
}

export interface OpenUnit {
  source: string;
  kind: ExportKind | null;
  etag: string | null;
  size: number | null;
  /** The source object's LastModified (S3), when the source says. */
  modified: Date | null;
  late: boolean;
  startedAt: Date;
  /** Batches kept to replay the unit after a transient failure (see `ReplayBuffer`). */
  buffer: ReplayBuffer;
  stats: UnitStats;
  /** COMMIT was sent: after a connection loss the outcome is unknown until checked. */
  commitSent: boolean;
  /** The checkpoint and load row are written (with the last batch's merge); COMMIT is next. */
  recorded: boolean;
  /** A file of a new snapshot (Qlik reload): rows go to the shadow table (see snapshot.ts). */
  snapshot: SnapshotPhase | undefined;
  /** The snapshot is open in this unit's transaction. */
  snapshotOpen: boolean;
  /** The stream's `onError` policy (from the unit's first batch); undefined: abort. */
  policy: RejectPolicy | undefined;
  /** skip-row: the unit runs through the per-row-checked path (after a COPY or cast failure). */
  checked: boolean;
  /** skip-file: why the unit is rejected; its rows are not applied, its load row says `rejected`. */
  rejectedBy: TributaryError | undefined;
  /** The first row set aside (named when the file goes over `maxRejected`). */
  firstRejected: RejectedRecord | undefined;
  /** Rows read by the source for this unit (each batch counted once, replays not again). */
  rowsSeen: number;
  /** With a policy: what the unit applied, and what `write()` reported to the pipeline. */
  tally: Tally;
  reported: Tally & { rejected: number };
  /** Missing / ignored columns were warned about (once per file). */
  driftWarned: boolean;
}

export function emptyStats(): UnitStats {
  return {
    rowsRead: 0,
    filtered: {},
    inserted: 0,
    updated: 0,
    deleted: 0,
    unchanged: 0,
    batches: 0,
    bytes: 0,
    rejected: 0,
  };
}

function metaNumber(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function metaDate(value: unknown): Date | null {
  const date = value instanceof Date ? value : typeof value === 'string' ? new Date(value) : undefined;
  return date && Number.isFinite(date.getTime()) ? date : null;
}

/** The unit a batch opens: its identity from the batch's provenance, nothing applied yet. */
export function openUnit(batch: Batch<Row>, replayBounds: ReplayBounds): OpenUnit {
  return {
    source: batch.meta.source ?? batch.stream,
    kind: batch.meta.kind ?? null,
    etag: batch.meta.etag ?? null,
    size: metaNumber(batch.meta.size),
    modified: metaDate(batch.meta.modified),
    late: false,
    startedAt: new Date(),
    buffer: new ReplayBuffer(replayBounds),
    stats: emptyStats(),
    commitSent: false,
    recorded: false,
    snapshot: batch.meta.snapshot,
    snapshotOpen: false,
    policy: batch.meta.onError,
    checked: false,
    rejectedBy: undefined,
    firstRejected: undefined,
    rowsSeen: 0,
    tally: { rows: 0, filtered: {} },
    reported: { rows: 0, filtered: {}, rejected: 0 },
    driftWarned: false,
  };
}
