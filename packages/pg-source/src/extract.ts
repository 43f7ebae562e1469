import { type Readable, Transform } from 'node:stream';
import { faultPoint, TributaryError } from '@tributary/core';
import { migrate, qualifiedName, quoteIdent } from '@tributary/pg-sink';
import type pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { type ExtractTableOptions, type ResolvedExtract, resolveExtract } from './options.js';
import {
  copyStatement,
  LOWER_SETTING,
  readSourceColumns,
  selectList,
  UPPER_SETTING,
  type WatermarkKind,
  watermarkKind,
} from './query.js';
import {
  countAttempt,
  type ExtractState,
  insertRun,
  markFailed,
  markUploaded,
  readExtractState,
  type UnitRun,
} from './runlog.js';

export interface ExtractResult {
  stream: string;
  table: string;
  /** `uploaded`: a file was written and the watermark moved; `caught-up`: the unit's file exists already. */
  status: 'uploaded' | 'caught-up';
  runId?: string;
  key?: string;
  rows: number;
  bytes: number;
  /** The run's bounds: `(lower, upper]` of the watermark (null: none). */
  lower: string | null;
  upper: string | null;
  /** The source database's now() at the start of the run. */
  runStartedAt: Date;
  /** True when a run left `extracting` by a crash was finished with its own bounds and key. */
  resumed: boolean;
}

/**
 * One extract run of one table (seed 001 Phase E): the source's clock gives the closed upper
 * bound, rows `wm > last AND wm <= upper` stream through `COPY … TO STDOUT` (no buffering) in a
 * REPEATABLE READ READ ONLY transaction into one file, and only after the file is complete is
 * the watermark moved. Never writes to the source. A failure records a failed run naming the
 * table and leaves the watermark.
 */
export async function extractTable(options: ExtractTableOptions): Promise<ExtractResult> {
  const spec = resolveExtract(options);
  await migrate(options.control, { schema: spec.schema });
  const control = await options.control.connect();
  try {
    await lockStream(control, spec);
    try {
      return await extractLocked(control, options, spec);
    } finally {
      await control
        .query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [lockKey(spec)])
        .catch(() => undefined);
    }
  } finally {
    control.release();
  }
}

const lockKey = (spec: ResolvedExtract) => `tributary:extract:${spec.stream}`;

// One extractor per stream (invariant 8): a second one would race for the same unit.
async function lockStream(control: pg.ClientBase, spec: ResolvedExtract): Promise<void> {
  const locked = await control.query<{ ok: boolean }>(
    'SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok',
    [lockKey(spec)],
  );
  if (!locked.rows[0]?.ok) {
    throw new TributaryError('STREAM_LOCKED', `extract ${spec.stream}: another process is extracting it`, {
      stream: spec.stream,
    });
  }
}

async function extractLocked(
  control: pg.ClientBase,
  options: ExtractTableOptions,
  spec: ResolvedExtract,
): Promise<ExtractResult> {
  const state = await readExtractState(control, spec.schema, spec.stream);
  const source = await options.source.connect();
  let runId = state.open?.runId;
  try {
    const snapshot = await openSnapshot(source, spec);
    const run = state.open ?? (await planRun(control, source, options, spec, state, snapshot));
    if (!run) {
      await source.query('COMMIT');
      return caughtUp(spec, state, snapshot.runStartedAt);
    }
    if (state.open) await countAttempt(control, spec.schema, run.runId);
    runId = run.runId;
    const { rows, bytes } = await copyUnit(source, options, spec, snapshot, run);
    await source.query('COMMIT');
    // A crash here leaves the file and an `extracting` run: the restart writes the same key.
    faultPoint('pg-source:after-upload', [spec.stream]);
    await markUploaded(control, spec.schema, {
      stream: spec.stream,
      table: spec.table,
      watermarkColumn: spec.watermark,
      run,
      rows,
      bytes,
    });
    faultPoint('pg-source:after-watermark', [spec.stream]);
    return {
      stream: spec.stream,
      table: spec.table,
      status: 'uploaded',
      runId: run.runId,
      key: run.key,
      rows,
      bytes,
      lower: run.lower,
      upper: run.upper,
      runStartedAt: snapshot.runStartedAt,
      resumed: state.open !== undefined,
    };
  } catch (error) {
    await source.query('ROLLBACK').catch(() => undefined);
    const failure = extractError(spec, error);
    await markFailed(control, spec.schema, {
      runId,
      stream: spec.stream,
      table: spec.table,
      mode: spec.mode,
      error: failure.message,
    }).catch(() => undefined);
    throw failure;
  } finally {
    source.release();
  }
}

/** The source side of a run: its read-only snapshot, clock and columns. */
interface SourceSnapshot {
  /** The source's now() (its transaction start). */
  runStartedAt: Date;
  /** now() - safetyLag: the time the unit ends at. */
  cutoff: Date;
  select: string;
  watermark: { kind: WatermarkKind; cast: string } | undefined;
}

async function openSnapshot(source: pg.ClientBase, spec: ResolvedExtract): Promise<SourceSnapshot> {
  await source.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  // Dates in the file are ISO whatever the source's defaults (the loader parses them).
  await source.query("SET LOCAL DateStyle = 'ISO, YMD'");
  // The source's clock, not ours (manual Phase E step 2: no clock skew between machines).
  const clock = await source.query<{ now: Date; cutoff: Date }>(
    'SELECT now() AS now, now() - make_interval(secs => $1::float8 / 1000) AS cutoff',
    [spec.safetyLagMs],
  );
  const columns = await readSourceColumns(source, spec);
  return {
    runStartedAt: clock.rows[0]!.now,
    cutoff: clock.rows[0]!.cutoff,
    select: selectList(spec, columns),
    watermark: spec.mode === 'incremental' ? watermarkKind(spec, columns) : undefined,
  };
}

/**
 * A new run's unit, recorded before anything is read; undefined when the unit's file is already
 * written (two runs within one file-name resolution: the next run gets the new rows, and a
 * second file under the same key would replace this one).
 */
async function planRun(
  control: pg.ClientBase,
  source: pg.ClientBase,
  options: ExtractTableOptions,
  spec: ResolvedExtract,
  state: ExtractState,
  snapshot: SourceSnapshot,
): Promise<UnitRun | undefined> {
  const unit = options.target.unitFor(snapshot.cutoff);
  if (state.lastAt && unit.time.getTime() <= state.lastAt.getTime()) return undefined;
  const wm = snapshot.watermark;
  const upper =
    wm?.kind === 'id' ? await maxId(source, spec, wm.cast, state.lastValue) : unit.time.toISOString();
  const lower = spec.mode === 'incremental' ? state.lastValue : null;
  const runId = await insertRun(control, spec.schema, {
    stream: spec.stream,
    table: spec.table,
    mode: spec.mode,
    runStartedAt: snapshot.runStartedAt,
    lower,
    upper,
    bucket: options.target.bucket,
    key: unit.key,
    csvPath: csvPath(options, unit.key),
    unitTime: unit.time,
  });
  return { runId, key: unit.key, lower, upper, unitTime: unit.time };
}

/** COPY of the unit's rows streamed into its file: `(lower, upper]`, or the whole table. */
async function copyUnit(
  source: pg.ClientBase,
  options: ExtractTableOptions,
  spec: ResolvedExtract,
  snapshot: SourceSnapshot,
  run: UnitRun,
): Promise<{ rows: number; bytes: number }> {
  await source.query('SELECT set_config($1, $2, true), set_config($3, $4, true)', [
    LOWER_SETTING,
    run.lower ?? '',
    UPPER_SETTING,
    run.upper ?? '',
  ]);
  const sql = copyStatement(spec, snapshot.select, {
    ...(snapshot.watermark ? { watermark: { cast: snapshot.watermark.cast } } : {}),
    lower: run.lower !== null,
    upper: run.upper !== null,
  });
  const copy = source.query(copyTo(sql));
  const written = await options.target.write(run.key, tapFirstChunk(copy, spec.stream), options.signal);
  return { rows: Number(copy.rowCount ?? 0), bytes: written.bytes };
}

/** The COPY stream with the `pg-source:mid-copy` crash point on its first chunk (issue 7's suite). */
function tapFirstChunk(copy: Readable, stream: string): Readable {
  let first = true;
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      if (first) faultPoint('pg-source:mid-copy', [stream]);
      first = false;
      done(null, chunk);
    },
  });
  // A source error mid-COPY fails the file (the upload is aborted), never ends it early.
  copy.on('error', (error) => tap.destroy(error));
  return copy.pipe(tap);
}

/** The newest id in the snapshot: the closed upper bound of an id watermark. */
async function maxId(
  source: pg.ClientBase,
  spec: ResolvedExtract,
  cast: string,
  lower: string | null,
): Promise<string | null> {
  const wm = quoteIdent(spec.watermark!);
  const from = qualifiedName(spec.sourceSchema, spec.sourceTable);
  const found = await source.query<{ upper: string | null }>(
    `SELECT coalesce(max(${wm})::text, $1) AS upper FROM ${from}${lower === null ? '' : ` WHERE ${wm} > $1::${cast}`}`,
    [lower],
  );
  return found.rows[0]?.upper ?? null;
}

function caughtUp(spec: ResolvedExtract, state: ExtractState, runStartedAt: Date): ExtractResult {
  return {
    stream: spec.stream,
    table: spec.table,
    status: 'caught-up',
    rows: 0,
    bytes: 0,
    lower: state.lastValue,
    upper: state.lastValue,
    runStartedAt,
    resumed: false,
  };
}

function csvPath(options: ExtractTableOptions, key: string): string {
  return options.target.bucket ? `s3://${options.target.bucket}/${key}` : key;
}

/** Every failure names the stream and table; the driver error stays as `cause` (its code kept). */
function extractError(spec: ResolvedExtract, error: unknown): TributaryError {
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof TributaryError) {
    if (message.includes(spec.table)) return error;
    return new TributaryError(error.code, `extract ${spec.stream} (${spec.table}): ${message}`, {
      cause: error,
      retriable: error.retriable,
      stream: spec.stream,
    });
  }
  return new TributaryError('SOURCE_FAILED', `extract ${spec.stream} (${spec.table}): ${message}`, {
    cause: error,
    stream: spec.stream,
  });
}
