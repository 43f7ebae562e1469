import { cleanText, dropFields, type Row, rename, skipRows, type Transform } from '@tributary/core';
import type { ColumnSpec, TargetTable } from '@tributary/pg-sink';
import type { StreamDefinition } from '@tributary/s3-source';
import { streamSpaces } from './config-checks.js';
import type { ExtractStreamConfig, StreamConfig, TransformConfig, TributaryConfig } from './config-schema.js';
import { UsageError } from './env.js';
import type { StreamSpec } from './spec.js';

function buildTransform(step: TransformConfig): Transform<Row, Row> {
  if ('skipRows' in step) {
    const { name, column, oneOf, trim, ignoreCase } = step.skipRows;
    return skipRows(name ?? `skip_${column}`, {
      column,
      oneOf,
      ...(trim === undefined ? {} : { trim }),
      ...(ignoreCase === undefined ? {} : { ignoreCase }),
    });
  }
  if ('dropFields' in step) return dropFields(step.dropFields);
  if ('rename' in step) return rename(step.rename);
  return cleanText(step.cleanText);
}

/**
 * The columns a created table gets: a header after the transforms, typed or text. Qlik change
 * tables' `header__` columns are left out unless kept (pg-sink adds the version column).
 */
function tableColumns(stream: StreamConfig, header: readonly string[]): ColumnSpec[] {
  const qlik = stream.source.layout === 'qlik';
  if (header.some((name) => /^\s*[[{]/.test(name))) {
    throw new UsageError(
      `stream ${stream.id}: the first file is JSON, whose columns cannot be read from its first line: set source.columns (or create ${stream.target.table} first)`,
    );
  }
  let columns =
    qlik && !stream.target.qlik?.keepHeaders ? header.filter((c) => !c.startsWith('header__')) : [...header];
  for (const step of stream.transforms) {
    if ('dropFields' in step) columns = columns.filter((c) => !step.dropFields.includes(c));
    else if ('rename' in step) columns = columns.map((c) => step.rename[c] ?? c);
  }
  return columns.map((name) => ({ name, type: stream.target.types?.[name] ?? 'text' }));
}

/**
 * Target mode `snapshot`: every file is a complete snapshot of the table (an extract in snapshot
 * mode), so each one is pg-sink's last part of a snapshot: its rows fill a shadow table that
 * replaces the target's rows in the file's own commit. Readers never see an empty table.
 */
const wholeFileSnapshot: Transform<Row, Row> = (batch) => ({
  ...batch,
  meta: { ...batch.meta, snapshot: 'last' },
});

/** One config stream as the runner's spec. */
export function streamSpec(stream: StreamConfig, env: NodeJS.ProcessEnv = process.env): StreamSpec {
  if (stream.discover) {
    throw new UsageError(`stream ${stream.id} is a discover template: expand it first (expandTemplates)`);
  }
  const spaces = streamSpaces(stream, env);
  const { source: s, target: t } = stream;
  const source: StreamDefinition = {
    id: stream.id,
    bucket: spaces.bucket,
    prefix: spaces.listing[0]!,
    layout: s.layout,
    ...(s.keyPattern ? { keyPattern: s.keyPattern } : {}),
    timeZone: s.timeZone,
    ...(s.format ? { format: s.format } : {}),
    // Qlik change files carry the header__ columns before the declared ones.
    // Under evolve / freeze-extra the sink decides what a changed header means.
    ...(s.columns
      ? {
          columns: [...s.columns],
          columnCheck:
            t.schemaDrift !== 'fail'
              ? ('any' as const)
              : s.layout === 'qlik'
                ? ('subset' as const)
                : ('exact' as const),
        }
      : {}),
    emptyAsNull: true,
    lateFiles: s.lateFiles,
    processedPrefix: spaces.processed,
    latePrefix: spaces.late,
    rejectedPrefix: spaces.rejected,
    onError: s.onError,
    ...(s.maxRejected === undefined ? {} : { maxRejected: s.maxRejected }),
  };
  const [schema, table] = t.table.split('.') as [string, string];
  const columns = s.columns ? tableColumns(stream, s.columns) : undefined;
  const target: TargetTable = {
    schema,
    table,
    key: [...t.key],
    mode: t.mode === 'snapshot' ? 'upsert' : t.mode,
    createTable: true,
    ...(columns ? { columns } : {}),
    ...(t.schemaDrift === 'fail' ? {} : { schemaDrift: t.schemaDrift }),
    ...(t.types ? { types: { ...t.types } } : {}),
    ...(t.versionColumn ? { versionColumn: t.versionColumn } : {}),
    ...(t.afterCommit
      ? { afterCommit: { sql: t.afterCommit.sql, minIntervalSeconds: t.afterCommit.minIntervalSeconds } }
      : {}),
    ...(s.layout === 'qlik'
      ? {
          qlik: {
            keepHeaders: t.qlik?.keepHeaders ?? false,
            deletes: t.qlik?.deletes ?? 'hard',
            ...(t.qlik?.versionColumn === undefined ? {} : { versionColumn: t.qlik.versionColumn }),
          },
        }
      : {}),
  };
  return {
    id: stream.id,
    source,
    target,
    transforms: () => [
      ...stream.transforms.map(buildTransform),
      ...(t.mode === 'snapshot' ? [wholeFileSnapshot] : []),
    ],
    columnsFromHeader: (header) => tableColumns(stream, header),
  };
}

/** The specs of the streams selected by `--stream a,b` (all when none given). */
export function selectSpecs(
  config: TributaryConfig,
  selected: readonly string[] | undefined,
  env: NodeJS.ProcessEnv = process.env,
): StreamSpec[] {
  const specs = config.streams.map((stream) => streamSpec(stream, env));
  if (!selected?.length) return specs;
  const extractIds = new Set(config.extracts.map((s) => s.id));
  return selected
    .filter((id) => !extractIds.has(id))
    .map((id) => {
      const spec = specs.find((s) => s.id === id);
      if (!spec) {
        throw new UsageError(
          `--stream: no stream "${id}" in the config (streams: ${[...extractIds, ...specs.map((s) => s.id)].join(', ')})`,
        );
      }
      return spec;
    });
}

/** The extract streams selected by `--stream a,b` (all when none given). */
export function selectExtracts(
  config: TributaryConfig,
  selected: readonly string[] | undefined,
): ExtractStreamConfig[] {
  if (!selected?.length) return config.extracts;
  return config.extracts.filter((stream) => selected.includes(stream.id));
}
