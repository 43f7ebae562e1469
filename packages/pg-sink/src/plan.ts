import type { Batch, Row } from '@tributary/core';
import { type ApplyPlan, batchColumns, planApply, rowStage } from './apply.js';
import { addColumns, driftError, driftPolicy, driftWarnings, unknownColumns } from './drift.js';
import { compileRaw } from './raw.js';
import type { StreamSession } from './session.js';
import { shadowShape } from './snapshot.js';
import { quoteIdent } from './sql.js';
import { prepareTarget, type TargetShape } from './target.js';
import type { OpenUnit } from './unit.js';
import type { StreamWarnings } from './warnings.js';

/**
 * The batch's apply plan, cached per stream by its columns (pass-through: header and steps).
 * A new plan first settles schema drift: columns the target lacks fail the file, are added in
 * its transaction (evolve) or are left out (freeze-extra).
 */
export async function planFor(
  schema: string,
  warnings: StreamWarnings,
  session: StreamSession,
  unit: OpenUnit,
  batch: Batch<Row>,
): Promise<ApplyPlan> {
  const { raw } = batch;
  const columns = raw ? undefined : batchColumns(batch.rows);
  const into = unit.snapshot ? 'snapshot\u0000' : '';
  const signature = raw
    ? `${into}csv\u0000${raw.emptyAsNull}\u0000${raw.header.join('\u0000')}\u0000${JSON.stringify(raw.steps)}`
    : into + columns!.join('\u0000');
  let target = await session.targetShape();
  const cached = session.plans.get(signature);
  if (cached) {
    warnDrift(warnings, session, unit, target, cached.columns);
    return cached;
  }
  const input = raw ? compileRaw(raw) : { ...rowStage(columns!), columns: columns! };
  let extra: 'fail' | 'ignore' = 'fail';
  // A Qlik snapshot's shadow table follows the target: drift is settled on the target only.
  const unknown = unit.snapshot ? [] : unknownColumns(target, input.columns);
  if (unknown.length) {
    const policy = driftPolicy(target);
    if (policy === 'fail') throw driftError(session.stream, unit.source, target, unknown);
    if (policy === 'evolve') target = await evolve(schema, warnings, session, unit, target, unknown);
    else extra = 'ignore';
  }
  const shape = unit.snapshot ? shadowShape(target, schema, session.stream) : target;
  const plan = planApply(shape, input.columns, schema, input, extra);
  session.plans.set(signature, plan);
  warnDrift(warnings, session, unit, target, plan.columns);
  return plan;
}

/** Adds the new columns in the unit's transaction; the shape is re-read inside it. */
async function evolve(
  schema: string,
  warnings: StreamWarnings,
  session: StreamSession,
  unit: OpenUnit,
  target: TargetShape,
  unknown: string[],
): Promise<TargetShape> {
  const client = await session.ensureTransaction();
  const added = await addColumns(client, schema, target, unknown, {
    stream: session.stream,
    file: unit.source,
  });
  // Until COMMIT the new shape exists only in this transaction: a rollback forgets it.
  session.shapeAltered = true;
  session.plans.clear();
  session.shape = (await prepareTarget(client, session.target!, false))!;
  warnings.add(
    session.stream,
    `stream "${session.stream}", ${unit.source}: added column(s) ${added
      .map((a) => `${quoteIdent(a.column)} ${a.type}`)
      .join(', ')} to ${target.name} (schemaDrift: evolve)`,
  );
  return session.shape;
}

/** Once per file under evolve / freeze-extra: the columns it lacks, and the ones ignored. */
function warnDrift(
  warnings: StreamWarnings,
  session: StreamSession,
  unit: OpenUnit,
  target: TargetShape,
  columns: readonly string[],
): void {
  if (driftPolicy(target) === 'fail' || unit.driftWarned || unit.snapshot) return;
  unit.driftWarned = true;
  for (const warning of driftWarnings(`stream "${session.stream}", ${unit.source}`, target, columns))
    warnings.add(session.stream, warning);
}
