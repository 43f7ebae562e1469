import type { Readable } from 'node:stream';
import { TributaryError } from '@tributary/core';
import type pg from 'pg';

/** `incremental`: rows past the watermark (manual §5.2); `snapshot`: the whole table each run (§6). */
export type ExtractMode = 'incremental' | 'snapshot';

/**
 * A column of the extract: a source column name, or a named SQL expression over the row, so unit
 * and name drift is fixed in the extract, not the load (manual §8), e.g.
 * `{ name: 'distance_km', expression: 'distance_m / 1000.0' }`.
 */
export type ExtractColumn = string | { name: string; expression: string };

/** Where an extract's file goes: the S3 file target (`s3FileTarget`) fits this. */
export interface ExtractTarget {
  /** For logs and the run log's `csv_path` prefix, e.g. `s3://bucket/dwh/exports/trips/`. */
  readonly location: string;
  /** The bucket recorded in the run log, when the target has one. */
  readonly bucket?: string;
  /** The file of a unit ending at `time`: same time → same key; `time` comes back truncated. */
  unitFor(time: Date): { key: string; time: Date };
  /** Stores the CSV at `key` atomically (complete or absent). */
  write(key: string, body: Readable, signal?: AbortSignal): Promise<{ bytes: number }>;
}

export interface ExtractTableOptions {
  /** Stream id (`<source>/<dataset>`): the watermark and run-log key. */
  stream: string;
  /** The source (OLTP) database; a read-only role is enough: the extract never writes there. */
  source: pg.Pool;
  /** The DWH database holding the control schema (`extract_watermarks`, `extract_runs`). */
  control: pg.Pool;
  /** Control schema; default `tributary`. */
  schema?: string;
  /** `schema.table` on the source. */
  table: string;
  /** The DB-insertion timestamp or increasing id column (manual §5.1); required for incremental. */
  watermark?: string;
  /** The natural key: a tie-break of the order, and the load's conflict key. */
  key: readonly string[];
  /** The columns of the file, in order; default every column of the table. */
  columns?: readonly ExtractColumn[];
  /** Default `incremental`. */
  mode?: ExtractMode;
  /**
   * Milliseconds subtracted from the source's now() for the upper bound: a row committed late
   * with an earlier timestamp (a long transaction's DEFAULT now()) is still caught if it commits
   * within this lag. Default 0. Timestamp watermarks only.
   */
  safetyLagMs?: number;
  target: ExtractTarget;
  signal?: AbortSignal;
}

export interface ResolvedExtract {
  stream: string;
  schema: string;
  sourceSchema: string;
  sourceTable: string;
  table: string;
  watermark: string | undefined;
  key: readonly string[];
  columns: readonly ExtractColumn[] | undefined;
  mode: ExtractMode;
  safetyLagMs: number;
}

function invalid(stream: string, message: string): TributaryError {
  return new TributaryError('INVALID_OPTIONS', `extract ${stream}: ${message}`, { stream });
}

/** Checks the options once, before any I/O (the option's name in the message). */
export function resolveExtract(options: ExtractTableOptions): ResolvedExtract {
  const { stream } = options;
  const mode = options.mode ?? 'incremental';
  const parts = /^([^.\s]+)\.([^.\s]+)$/.exec(options.table ?? '');
  if (!parts) throw invalid(stream, `table ${JSON.stringify(options.table)} must be schema.table`);
  if (mode !== 'incremental' && mode !== 'snapshot')
    throw invalid(stream, `mode must be incremental or snapshot`);
  if (mode === 'incremental' && !options.watermark)
    throw invalid(stream, 'watermark is required in incremental mode');
  if (!options.key?.length) throw invalid(stream, 'key needs at least one column');
  const safetyLagMs = options.safetyLagMs ?? 0;
  if (!Number.isFinite(safetyLagMs) || safetyLagMs < 0) throw invalid(stream, 'safetyLagMs must be >= 0');
  for (const column of options.columns ?? []) {
    if (typeof column !== 'string' && (!column.name || !column.expression)) {
      throw invalid(stream, 'columns: an expression column needs name and expression');
    }
  }
  return {
    stream,
    schema: options.schema ?? 'tributary',
    sourceSchema: parts[1]!,
    sourceTable: parts[2]!,
    table: options.table,
    watermark: options.watermark,
    key: options.key,
    columns: options.columns,
    mode,
    safetyLagMs,
  };
}
