import type { InputLocation } from './errors.js';

/** JSON that only the source that produced it interprets (S3 `{ key, etag, row }`, Kafka offsets). */
export type Position = { readonly [key: string]: JsonValue };
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** A row as it travels between stages: column name → value (strings from CSV, anything from JSON). */
export type Row = Record<string, unknown>;

export type ExportKind = 'baseline' | 'delta';

/**
 * What a stream does with rows that do not parse or cast. Absent on a batch: `abort` (fail the
 * file, fail loud: invariant 6). `skip-row` sets them aside in the sink's dead-letter table, in
 * the file's own transaction; `skip-file` records the whole file `rejected` and moves on.
 */
export interface RejectPolicy {
  onError: 'skip-row' | 'skip-file';
  /** skip-row only: more rejected rows than this in one file fail it as under `abort`. */
  maxRejected?: { count: number } | { percent: number };
}

/** A record set aside under a `RejectPolicy`, with where it was and why. */
export interface RejectedRecord {
  /** Input line (1-based) the record starts on, when known. */
  line?: number;
  /** The file's data record number (1-based), when known. */
  record?: number;
  /** The column at fault (name, or 1-based position for a malformed row), when known. */
  column?: string;
  /** `MALFORMED_ROW`, `CAST_FAILED`, `BAD_KEY`… */
  code: string;
  message: string;
  /** The record as it was in the file (or as JSON when only the parsed row is known). */
  text: string | null;
}

/** The newest unit applied so far, by the order its source defines (a file key and its time). */
export interface BatchWatermark {
  key: string;
  /** ISO 8601 UTC. */
  time: string;
}

/**
 * What one stage tells the next about a batch. The fields the sink acts on for exactly-once
 * effect are typed here (no stage reads another's data by string); what only the producing
 * source reads back in `committed()` (Kafka topic, partition, offsets) lives in `own`, typed by
 * that source's `P`.
 */
export interface BatchMeta<P = unknown> {
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
  /** The unit's version: the S3 object's ETag (re-exported files are told apart by it). */
  etag?: string;
  /** The unit's size in bytes (the whole object, not this batch). */
  size?: number;
  /** The S3 object's LastModified, ISO 8601 UTC (seed 002's `s3_modified`). */
  modified?: string;
  /** The newest unit applied including this one; the stored checkpoint keeps it (never backwards). */
  watermark?: BatchWatermark | null;
  /**
   * `'skipped'`: an empty commit batch for a late file skipped by policy. The load log records it
   * `late_skipped`; the position moves, the watermark does not.
   */
  late?: 'skipped';
  /**
   * A unit of a new snapshot (a Qlik reload): its rows replace the target's, swapped in with the
   * commit of the `'last'` one (pg-sink's snapshots).
   */
  snapshot?: 'part' | 'last';
  /**
   * Fencing: the stored position this batch continues from. The sink moves the checkpoint only if
   * it still is `after` (null: none stored yet), else fails the unit `FENCED` (a Kafka member
   * that lost its partition in a rebalance must not apply a range twice).
   */
  fence?: { after: Position | null };
  /**
   * An empty batch that carries no rows: `'tick'` moves a stream's position (a partition that
   * only saw filtered records); `'flush'` asks rolling sinks to write what they hold now.
   */
  marker?: 'tick' | 'flush';
  /** Rows that do not parse or cast are set aside instead of failing the file (absent: abort). */
  onError?: RejectPolicy;
  /**
   * Records of this batch the source could not parse and set aside under `onError` (they are
   * counted in `rowsRead`, not in `rows`); the sink records them with the batch.
   */
  rejected?: RejectedRecord[];
  /** Data only the producing source reads back (in `committed()`). */
  own?: P;
}

/**
 * A batch's records as CSV bytes, not parsed in JavaScript (the pass-through path). A sink that
 * says `acceptsRaw` streams them straight into COPY and runs `steps` in SQL; for every other
 * stage `pipeline()` parses them first (`materialize`), so a custom transform always sees rows.
 */
export interface RawCsv {
  /** Whole records, UTF-8, no header, no BOM; one line-ending style and no empty lines. */
  readonly bytes: Buffer;
  /** Column names from the file's header, in file order. */
  readonly header: readonly string[];
  /** Number of records in `bytes`. */
  readonly records: number;
  /** The file's record number (1-based) of the first record. */
  readonly firstRecord: number;
  /** Empty fields become null (the stream's `emptyAsNull`). */
  readonly emptyAsNull: boolean;
  /** Declarative transforms applied so far, in order, not yet executed. */
  readonly steps: readonly RowStep[];
  /** The input line (1-based) record `index` (0-based) starts on. */
  line(index: number): number;
  /** Parses the records into rows with their locations (fails like the row path on bad input). */
  parse(): { rows: Row[]; locations: InputLocation[] };
  /**
   * Parses the records, setting aside those with the wrong number of fields instead of failing
   * (a `RejectPolicy`'s slow path). `texts` holds each kept row's record as in the file. Input
   * whose record boundaries are in doubt (a stray quote) still fails, like `parse()`.
   */
  parseChecked?(): { rows: Row[]; locations: InputLocation[]; texts: string[]; rejected: RejectedRecord[] };
}

/**
 * A row predicate that both JavaScript and SQL can evaluate identically. A missing or null value
 * never matches. Values are compared as text.
 */
export type Condition =
  | {
      column: string;
      /** Matches when the value is one of these. */
      oneOf: readonly string[];
      /** Trim ASCII whitespace (space, tab, CR, LF, FF, VT) before comparing. */
      trim?: boolean;
      /** Compare with ASCII letters lower-cased (other characters as they are). */
      ignoreCase?: boolean;
    }
  | { column: string; startsWith: string };

/** A text clean-up both JavaScript and SQL run identically, in this order. Non-strings pass. */
export interface TextRule {
  /** Remove ASCII whitespace (space, tab, CR, LF, FF, VT) at both ends. */
  trim?: boolean;
  /** Upper- or lower-case ASCII letters (other characters stay as they are, in SQL too). */
  case?: 'upper' | 'lower';
  /** Replace every run of these characters with `into`. */
  collapse?: { chars: string; into: string };
  /** An empty result becomes null. */
  emptyToNull?: boolean;
}

/** A declarative transform step: what a raw batch carries to the sink to run in SQL. */
export type RowStep =
  | { op: 'skip-rows'; name: string; when: Condition }
  | { op: 'drop-fields'; fields: readonly string[] }
  | { op: 'rename'; mapping: Readonly<Record<string, string>> }
  | { op: 'text'; rules: Readonly<Record<string, TextRule>> };

export interface Batch<R = Row, P = unknown> {
  /** One ordered stream, `<source-name>/<dataset>`, e.g. `tickets/inc`. */
  stream: string;
  /** The records; empty while `raw` holds them unparsed. */
  rows: R[];
  /** Unparsed CSV records (pass-through); `rows` is empty then. */
  raw?: RawCsv;
  /** Where to resume once this batch is committed. */
  position: Position;
  meta: BatchMeta<P>;
}

export type CheckpointLookup = (stream: string) => Promise<Position | null>;

export type PipelineEvent =
  | { type: 'run-start' }
  | { type: 'unit-start'; stream: string; source: string; bytesTotal?: number; kind?: ExportKind }
  | { type: 'progress'; stream: string; source: string; bytes: number; rows: number }
  | { type: 'batch-read'; stream: string; rows: number }
  | {
      type: 'batch-written';
      stream: string;
      /** The batch's meta as the sink got it (source, kind, rowsRead…). */
      meta: BatchMeta;
      /** Rows written to the sink (after every filter, in JavaScript or in SQL). */
      rows: number;
      /** Rows dropped by filters, by filter name. */
      filtered: Record<string, number>;
      committed: boolean;
      /** Rows the sink set aside under the batch's `onError` policy (dead-letter table). */
      rejected?: number;
      /** The unit was recorded `rejected` (not applied) under `onError: 'skip-file'`. */
      unitRejected?: boolean;
    }
  /** A commit unit (file) committed; `rows` counts all its rows written to the sink. */
  | { type: 'committed'; stream: string; source?: string; position: Position; rows: number }
  | { type: 'warning'; stream?: string; message: string; detail?: Record<string, unknown> }
  /** A transient failure rolled back; the chain restarts from the last committed checkpoint. */
  | { type: 'retry'; attempt: number; error: Error; stream?: string }
  /** A source finished a poll with nothing more to apply for this stream (watch mode). */
  | { type: 'caught-up'; stream: string }
  /**
   * A stream stopped at a failure while the others go on (invariant 10). `retryInMs` is set
   * when it will be run again (watch mode); `source` names the failing file when known.
   */
  | { type: 'stream-failed'; stream: string; error: Error; source?: string; retryInMs?: number }
  /** A stream that had failed applied a unit or caught up again. */
  | { type: 'stream-recovered'; stream: string }
  | { type: 'run-end'; batches: number; rows: number; error?: Error };

export type EmitEvent = (event: PipelineEvent) => void;

/** Lifecycle of one applied file or Kafka offset range in the load log (`tributary.loads`). */
export type LoadStatus = 'ingesting' | 'loaded' | 'archived' | 'late_skipped' | 'rejected' | 'failed';

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
  /**
   * The latest record per source ref of a stream; with `sources`, of those refs only (a source
   * planning its listed files need not read months of history on every poll).
   */
  list(stream: string, sources?: readonly string[]): Promise<LoadRecord[]>;
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
  /**
   * Bounds how many streams work at once when many run in one process: a watching source takes
   * a slot before a poll's listing and files and releases it before it sleeps.
   */
  slot?: () => Promise<() => void>;
}

/** A source of ordered batches. `read` resumes after the checkpoint of each stream it serves. */
export interface Source<R = Row> {
  readonly name: string;
  read(context: ReadContext): AsyncIterable<Batch<R>>;
  /**
   * Side effects allowed only after the sink committed this batch (archiving, offset commit);
   * `result` is what the sink said of it (a file rejected under `onError: 'skip-file'`).
   */
  committed?(batch: Batch<R>, result?: WriteResult): Promise<void>;
  close?(): Promise<void>;
  /** The streams this source reads, when known up front (see `only`). */
  readonly streams?: readonly string[];
  /**
   * This source narrowed to one of its streams: its own listing, plan and state. With it,
   * `pipeline()` runs every stream in its own failure domain (invariant 10).
   */
  only?(stream: string): Source<R>;
  /** True when `read()` polls until stopped (watch mode): a failed stream is then restarted. */
  readonly watching?: boolean;
}

/** batch → batch, or nothing to drop the whole batch (its drop must then be counted by the caller). */
export type Transform<I = Row, O = Row> = (
  batch: Batch<I>,
) => Batch<O> | undefined | Promise<Batch<O> | undefined>;

export interface WriteResult {
  /** True when this batch and every earlier one of its unit are durably committed. */
  committed: boolean;
  /** Rows written, when the sink ran filters itself (raw batches); else `rows.length`. */
  rows?: number;
  /** Rows the sink's own filters dropped (raw batches), by filter name. */
  filtered?: Record<string, number>;
  /** Rows set aside under the batch's `onError` policy (in this batch, or the whole file when rejected). */
  rejected?: number;
  /** The unit was not applied: it was recorded `rejected` under `onError: 'skip-file'`. */
  unitRejected?: boolean;
  /** Things the operator should know that did not stop the write (emitted as `warning` events). */
  warnings?: string[];
}

export interface CheckpointStore {
  checkpoint(stream: string): Promise<Position | null>;
}

/** Applies rows and records the position atomically (invariant 2). */
export interface Sink<R = Row> extends CheckpointStore {
  readonly name: string;
  write(batch: Batch<R>): Promise<WriteResult>;
  /** Takes raw CSV batches (`Batch.raw`) as they are; otherwise `pipeline()` parses them first. */
  readonly acceptsRaw?: boolean;
  /**
   * Writes of different streams may overlap (each stream has its own connection and
   * transaction). `pipeline()` then writes a source's interleaved streams (a Kafka topic's
   * partitions) side by side, each stream's batches still one after another in order, at most
   * `maxInFlight` at once. Without it, every write waits for the one before.
   */
  readonly concurrentStreams?: boolean;
  /** The load log the pipeline hands to the source (see ReadContext.loads). */
  readonly loadLog?: LoadLog;
  /**
   * Roll back whatever is open; called once when the pipeline fails or aborts. A sink with a
   * load log records the failure (the failing unit from its open batch, or from
   * `TributaryError.stream` / `location.file` when the source failed first). With `stream`,
   * only that stream's open unit is touched: the other streams keep writing.
   */
  abort?(error: Error, stream?: string): Promise<void>;
  close?(): Promise<void>;
}
