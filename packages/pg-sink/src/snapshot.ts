import { createHash } from 'node:crypto';
import { type BatchMeta, TributaryError } from '@tributary/core';
import type pg from 'pg';
import { quoteIdent } from './sql.js';
import type { TargetShape } from './target.js';

/**
 * Snapshots (a Qlik reload, seed 002's `cubic_table_ods_snapshots`): the files of a new baseline
 * replace the target's rows. Each file commits on its own (with its checkpoint and load row, as
 * any file), so the rows gather in a shadow table in the control schema; the snapshot's last
 * file swaps them in within its own transaction. Readers see the old rows until that commit and
 * the new ones after it: never a half-empty table.
 *
 * A source marks each batch of such a file with `meta.snapshot`: `'part'`, or `'last'` for the
 * file that completes the snapshot. The first part opens the snapshot (a `loading` row in
 * `<schema>.snapshots`); a crash between parts leaves it open and the remaining parts continue it.
 */
export type SnapshotPhase = NonNullable<BatchMeta['snapshot']>;

/** The shadow table of a stream: `<schema>."snapshot_<hash>"` (a stream id may be any length). */
export function shadowTable(controlSchema: string, stream: string): string {
  const hash = createHash('sha256').update(stream).digest('hex').slice(0, 16);
  return `${quoteIdent(controlSchema)}.${quoteIdent(`snapshot_${hash}`)}`;
}

/**
 * The target as the snapshot's parts see it: the shadow table, plain upsert (a baseline has no
 * deletes).
 */
export function shadowShape(shape: TargetShape, controlSchema: string, stream: string): TargetShape {
  return {
    ...shape,
    name: shadowTable(controlSchema, stream),
    historyName: undefined,
    historyColumns: undefined,
    target: { ...shape.target, mode: 'upsert' },
  };
}

/**
 * Inside the unit's transaction: continues the stream's open snapshot, or opens one (a fresh
 * shadow table shaped like the target). Either way the file is added to the snapshot's files.
 */
export async function openSnapshot(
  client: pg.ClientBase,
  controlSchema: string,
  shape: TargetShape,
  stream: string,
  file: string,
): Promise<void> {
  if (shape.historyName) {
    throw new TributaryError(
      'INVALID_OPTIONS',
      `stream "${stream}": ${file} starts a new snapshot (a reload), which a history-mode target (${shape.name}) does not support yet; use mode 'upsert' for a Qlik table`,
      { stream, location: { file } },
    );
  }
  const s = quoteIdent(controlSchema);
  const added = await client.query(
    `UPDATE ${s}.snapshots
        SET files = CASE WHEN $2::text = ANY (files) THEN files ELSE files || $2::text END
      WHERE stream = $1 AND status = 'loading'`,
    [stream, file],
  );
  if (added.rowCount) return;
  const shadow = shadowTable(controlSchema, stream);
  await client.query(
    `DROP TABLE IF EXISTS ${shadow};
     CREATE TABLE ${shadow} (LIKE ${shape.name} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)`,
  );
  await client.query(`INSERT INTO ${s}.snapshots (stream, files) VALUES ($1, ARRAY[$2::text])`, [
    stream,
    file,
  ]);
}

/**
 * Inside the last file's transaction: the target's rows become the shadow's, the shadow is
 * dropped and the snapshot recorded complete. Returns the snapshot's row count.
 */
export async function swapSnapshot(
  client: pg.ClientBase,
  controlSchema: string,
  shape: TargetShape,
  stream: string,
): Promise<number> {
  const s = quoteIdent(controlSchema);
  const shadow = shadowTable(controlSchema, stream);
  const columns = [...shape.columns.keys()].map(quoteIdent).join(', ');
  await client.query(`DELETE FROM ${shape.name}`);
  const inserted = await client.query(
    `INSERT INTO ${shape.name} (${columns}) OVERRIDING SYSTEM VALUE SELECT ${columns} FROM ${shadow}`,
  );
  await client.query(`DROP TABLE ${shadow}`);
  const rows = inserted.rowCount ?? 0;
  await client.query(
    `UPDATE ${s}.snapshots SET status = 'complete', rows = $2, completed_at = clock_timestamp()
      WHERE stream = $1 AND status = 'loading'`,
    [stream, rows],
  );
  return rows;
}
