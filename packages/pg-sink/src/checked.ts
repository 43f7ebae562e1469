import {
  type Batch,
  faultPoint,
  type InputLocation,
  type RejectedRecord,
  type Row,
  TributaryError,
} from '@tributary/core';
import type { ApplyPlan } from './apply.js';
import { badValue } from './explain.js';
import { checkRejectLimit, insertRejected, rejectedRecordError } from './reject.js';
import type { StreamSession } from './session.js';
import { copyCsv, encodeCsv } from './staging.js';
import type { OpenUnit } from './unit.js';

/**
 * The per-row-checked path of `onError: skip-row` (issue 17): records that do not parse or cast
 * are set aside in `<schema>.rejected_rows` on the unit's transaction, the others applied.
 */

/** Raw records the checked path kept: their locations and text as in the file. */
export interface CheckedRecords {
  locations: InputLocation[];
  texts: string[];
}

/**
 * Records rows set aside on the unit's transaction (skip-row), or rejects the unit with the
 * first one (skip-file). Over a `maxRejected` count, the unit fails as under abort. `s` is the
 * quoted control schema.
 */
export async function setAside(
  s: string,
  session: StreamSession,
  unit: OpenUnit,
  batch: Batch<Row>,
  records: readonly RejectedRecord[],
): Promise<void> {
  if (!records.length) return;
  if (unit.policy?.onError !== 'skip-row') throw rejectedRecordError(batch.stream, unit.source, records[0]!);
  const client = await session.ensureTransaction();
  await insertRejected(client, s, { stream: batch.stream, source: unit.source, etag: unit.etag }, records);
  faultPoint('pg-sink:after-reject'); // rows set aside, the file's other rows not yet (issue 17)
  unit.stats.rejected += records.length;
  unit.firstRejected ??= records[0];
  checkRejectLimit(unit, batch.stream, false);
}

/**
 * The checked path's staging of raw CSV: records with the wrong field count are set aside,
 * the others staged (re-encoded) through the same plan, so the SQL steps run as on the fast path.
 */
export async function stageChecked(
  s: string,
  session: StreamSession,
  unit: OpenUnit,
  plan: ApplyPlan,
  batch: Batch<Row>,
): Promise<CheckedRecords> {
  const raw = batch.raw!;
  if (!raw.parseChecked) {
    raw.parse(); // a RawCsv without the checked parser: fail as on the fast path
    throw new TributaryError('SINK_FAILED', `${unit.source}: the source cannot re-check its records`);
  }
  const parsed = raw.parseChecked();
  await setAside(s, session, unit, batch, parsed.rejected);
  await copyCsv(session.client!, plan, encodeCsv(parsed.rows, raw.header));
  return parsed;
}

/**
 * The checked path's casts: every staged row with a value that does not cast (or an empty
 * key) is taken out of the staging table and set aside. Returns how many.
 */
export async function rejectCasts(
  s: string,
  session: StreamSession,
  unit: OpenUnit,
  plan: ApplyPlan,
  batch: Batch<Row>,
  kept: CheckedRecords | undefined,
): Promise<number> {
  const bad = await session.client!.query<{ ord0: number; col: number; col_value: string | null }>(
    plan.rejectCasts,
    plan.locateParams,
  );
  if (!bad.rowCount) return 0;
  const records = bad.rows.map((row) => castRejection(session, plan, batch, kept, row));
  await setAside(s, session, unit, batch, records);
  return records.length;
}

function castRejection(
  session: StreamSession,
  plan: ApplyPlan,
  batch: Batch<Row>,
  kept: CheckedRecords | undefined,
  found: { ord0: number; col: number; col_value: string | null },
): RejectedRecord {
  const index = found.ord0;
  const column = plan.locateColumns[found.col]!;
  const at = kept ? kept.locations[index] : batch.meta.locations?.[index];
  const location = {
    file: at?.file ?? batch.meta.source ?? batch.stream,
    ...(at?.line === undefined ? {} : { line: at.line }),
    record: at?.record ?? index + 1,
  };
  const bad = badValue(session, column, found.col_value, location);
  return {
    ...(at?.line === undefined ? {} : { line: at.line }),
    ...(at?.record === undefined ? {} : { record: at.record }),
    column,
    code: bad.code,
    message: bad.message,
    // Rows sent from JavaScript: the row as parsed (the file's text is not kept on that path).
    text: kept ? (kept.texts[index] ?? null) : JSON.stringify(batch.rows[index] ?? null),
  };
}
