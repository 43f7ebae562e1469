import { cleanText, dropFields, type Row, rename, skipRows, type Transform } from '@tributary/core';
import type { ColumnSpec, TargetTable } from '@tributary/pg-sink';
import type { StreamDefinition } from '@tributary/s3-source';
import { type StreamConfig, streamSpaces, type TransformConfig, type TributaryConfig } from './config.js';
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
    ...(s.columns
      ? {
          columns: [...s.columns],
          columnCheck: s.layout === 'qlik' ? ('subset' as const) : ('exact' as const),
        }
      : {}),
    emptyAsNull: true,
    lateFiles: s.lateFiles,
    processedPrefix: spaces.processed,
    latePrefix: spaces.late,
  };
  const [schema, table] = t.table.split('.') as [string, string];
  const columns = s.columns ? tableColumns(stream, s.columns) : undefined;
  const target: TargetTable = {
    schema,
    table,
    key: [...t.key],
    mode: t.mode,
    createTable: true,
    ...(columns ? { columns } : {}),
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
    transforms: () => stream.transforms.map(buildTransform),
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
  return selected.map((id) => {
    const spec = specs.find((s) => s.id === id);
    if (!spec) {
      throw new UsageError(
        `--stream: no stream "${id}" in the config (streams: ${specs.map((s) => s.id).join(', ')})`,
      );
    }
    return spec;
  });
}
