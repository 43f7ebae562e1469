import type { InputLocation } from './errors.js';

/** JSON that only the source that produced it interprets (S3 `{ key, etag, row }`, Kafka offsets). */
export type Position = { readonly [key: string]: JsonValue };
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** A row as it travels between stages: column name → value (strings from CSV, anything from JSON). */
export type Row = Record<string, unknown>;

export type ExportKind = 'baseline' | 'delta';

export interface BatchMeta {
  /** Provenance: the S3 key or `topic/partition` this batch came from. */
  source?: string;
  kind?: ExportKind;
  /** The sink must commit after applying this batch (end of a file, or every batch). */
  commit: boolean;
  /** Last batch of its source file or unit. */
  lastOfUnit?: boolean;
  /** Rows the source read for this batch (before any transform). */
  rowsRead: number;
  /** Rows dropped by transforms, by transform name. Never silently lost (invariant 5). */
  filtered: Record<string, number>;
  /** Bytes of input consumed for this batch, when known. */
  bytes?: number;
  /** Where each row came from, parallel to `rows`, when the source knows (file, line, record). */
  locations?: InputLocation[];
  /** Source-specific extras (ETag, size, partition…). */
  [extra: string]: unknown;
}

export interface Batch<R = Row> {
  /** One ordered stream, `<source-name>/<dataset>`, e.g. `tickets/inc`. */
  stream: string;
  rows: R[];
  /** Where to resume once this batch is committed. */
  position: Position;
  meta: BatchMeta;
}

export type CheckpointLookup = (stream: string) => Promise<Position | null>;

export type PipelineEvent =
  | { type: 'run-start' }
  | { type: 'unit-start'; stream: string; source: string; bytesTotal?: number; kind?: ExportKind }
  | { type: 'progress'; stream: string; source: string; bytes: number; rows: number }
  | { type: 'batch-read'; stream: string; rows: number }
  | { type: 'batch-written'; stream: string; rows: number; committed: boolean }
  /** A commit unit (file) committed; `rows` counts all its rows written to the sink. */
  | { type: 'committed'; stream: string; source?: string; position: Position; rows: number }
  | { type: 'warning'; stream?: string; message: string; detail?: Record<string, unknown> }
  /** A transient failure rolled back; the chain restarts from the last committed checkpoint. */
  | { type: 'retry'; attempt: number; error: Error }
  | { type: 'run-end'; batches: number; rows: number; error?: Error };

export type EmitEvent = (event: PipelineEvent) => void;

/** Lifecycle of one applied file or Kafka offset range in the load log (`tributary.loads`). */
export type LoadStatus = 'ingesting' | 'loaded' | 'archived' | 'late_skipped' | 'failed';

export interface LoadRecord {
  stream: string;
  /** S3 key, or `topic/partition/first-last` for Kafka. */
  source: string;
  etag: string | null;
  size: number | null;
  kind: ExportKind | null;
  status: LoadStatus;
  finishedAt: Date | null;
  error: string | null;
}

/**
 * What a source may ask of the load log: which units were applied (planning late files and
 * re-exported ETags) and recording post-commit progress (archived).
 */
export interface LoadLog {
  /** The latest record per source ref of a stream. */
  list(stream: string): Promise<LoadRecord[]>;
  markArchived(stream: string, source: string): Promise<void>;
}

export interface ReadContext {
  /** The last committed position of a stream, from the sink or a CheckpointStore. */
  checkpoint: CheckpointLookup;
  /** Hard stop: abort everything, roll back. */
  signal: AbortSignal;
  /**
   * Graceful stop (SIGINT/SIGTERM): a source that waits (watch-mode sleep, long poll) should
   * return when this fires; the pipeline already stops pulling at the next commit boundary.
   */
  stop?: AbortSignal;
  /** Progress and warnings for whoever renders them. */
  emit: EmitEvent;
  /** The sink's load log when it keeps one (pg-sink does). */
  loads?: LoadLog;
}

/** A source of ordered batches. `read` resumes after the checkpoint of each stream it serves. */
export interface Source<R = Row> {
  readonly name: string;
  read(context: ReadContext): AsyncIterable<Batch<R>>;
  /** Side effects allowed only after the sink committed this batch (archiving, offset commit). */
  committed?(batch: Batch<R>): Promise<void>;
  close?(): Promise<void>;
}

/** batch → batch, or nothing to drop the whole batch (its drop must then be counted by the caller). */
export type Transform<I = Row, O = Row> = (
  batch: Batch<I>,
) => Batch<O> | undefined | Promise<Batch<O> | undefined>;

export interface WriteResult {
  /** True when this batch and every earlier one of its unit are durably committed. */
  committed: boolean;
}

export interface CheckpointStore {
  checkpoint(stream: string): Promise<Position | null>;
}

/** Applies rows and records the position atomically (invariant 2). */
export interface Sink<R = Row> extends CheckpointStore {
  readonly name: string;
  write(batch: Batch<R>): Promise<WriteResult>;
  /** The load log the pipeline hands to the source (see ReadContext.loads). */
  readonly loadLog?: LoadLog;
  /**
   * Roll back whatever is open; called once when the pipeline fails or aborts. A sink with a
   * load log records the failure (the failing unit from its open batch, or from
   * `TributaryError.stream` / `location.file` when the source failed first).
   */
  abort?(error: Error): Promise<void>;
  close?(): Promise<void>;
}
