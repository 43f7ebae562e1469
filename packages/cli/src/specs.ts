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

/** The columns a created table gets: a header after the transforms, typed or text. */
function tableColumns(stream: StreamConfig, header: readonly string[]): ColumnSpec[] {
  let columns = [...header];
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
    layout: s.layout === 'qlik' ? 'qlik' : 'changes',
    ...(s.keyPattern ? { keyPattern: s.keyPattern } : {}),
    timeZone: s.timeZone,
    ...(s.format && s.format !== 'json' ? { format: s.format } : {}),
    ...(s.columns ? { columns: [...s.columns], columnCheck: 'exact' as const } : {}),
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
