import { cleanText, dropFields, type Row, skipRows, type TextRule, type Transform } from '@tributary/core';

/**
 * The ticket export's schema and consumer rules (seed 000: "n8n S3 Ticket Exports — CDC").
 * Everything here is the contract of `tickets-pipeline`; examples/tickets/README.md documents it.
 */

export const TICKET_COLUMNS = [
  'ticket_id',
  'source_type',
  'service_type',
  'bucket',
  'raw_status',
  'normalized_status',
  'created_at_service',
  'scheduled_at',
  'closed_at',
  'last_seen_at',
  'first_seen_at',
  'week_start',
  'week_end',
  'cluster',
  'region',
  'location_name',
  'latitude',
  'longitude',
  'department',
  'assigned_team',
  'owner',
  'sla_status',
  'mttr',
  'is_auto_created',
  'is_auto_closed',
  'is_alarm',
  'is_actionable',
  'source_s3_bucket',
  'source_s3_key',
  'source_snapshot_id',
  'created_at',
  'updated_at',
] as const;

export type TicketColumn = (typeof TICKET_COLUMNS)[number];

/** Export provenance that means nothing once the row is in the table. */
export const DEFAULT_DROP_FIELDS: readonly TicketColumn[] = [
  'source_s3_bucket',
  'source_s3_key',
  'source_snapshot_id',
];

export const DATASETS = ['inc', 'crq'] as const;
export type Dataset = (typeof DATASETS)[number];

export const TIME_ZONE = 'Africa/Nairobi';
export const KEY_PATTERN = 'YYYY-MM-DDTHH-mm-ss';

/** SQL type of each column: `*_at` timestamptz, week bounds date, coordinates double, mttr numeric, `is_*` boolean. */
export function columnType(column: string): string {
  if (column === 'week_start' || column === 'week_end') return 'date';
  if (column.endsWith('_at')) return 'timestamptz';
  if (column === 'latitude' || column === 'longitude') return 'double precision';
  if (column === 'mttr') return 'numeric';
  if (column.startsWith('is_')) return 'boolean';
  return 'text';
}

export function tableColumns(
  dropFields: readonly string[] = DEFAULT_DROP_FIELDS,
): { name: string; type: string }[] {
  return TICKET_COLUMNS.filter((c) => !dropFields.includes(c)).map((name) => ({
    name,
    type: columnType(name),
  }));
}

const TRUE_VALUES = new Set(['true', 't', '1', 'yes']);

/** `is_alarm` true in any of its spellings: `true|t|1|yes`, any case. */
export function isTrue(value: unknown): boolean {
  return typeof value === 'string' ? TRUE_VALUES.has(value.trim().toLowerCase()) : value === true;
}

export const SENTINEL_PREFIX = 'EXPORT STOPPED';

/**
 * Region: trimmed, inner whitespace/underscores/hyphens collapsed to one space, upper case,
 * so `nairobi-east`, ` Nairobi  East ` and `NAIROBI_EAST` are one region.
 */
export function normalizeRegion(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  const folded = value
    .trim()
    .replace(/[\s_-]+/g, ' ')
    .toUpperCase();
  return folded === '' ? null : folded;
}

/** raw_status: trimmed, lower case, separators as `_`: `In Progress`, `in-progress` → `in_progress`. */
export function normalizeRawStatus(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  const folded = value
    .trim()
    .toLowerCase()
    .replace(/[\s-]+/g, '_');
  return folded === '' ? null : folded;
}

/** `region` and `raw_status` clean-ups as declarative rules (the same as the functions above). */
export const TEXT_RULES: Readonly<Record<string, TextRule>> = {
  region: { trim: true, case: 'upper', collapse: { chars: ' \t\n\r\f\v_-', into: ' ' }, emptyToNull: true },
  raw_status: {
    trim: true,
    case: 'lower',
    collapse: { chars: ' \t\n\r\f\v-', into: '_' },
    emptyToNull: true,
  },
};

/**
 * What the export writes that is not a row: the `EXPORT STOPPED…` line that marks a truncated
 * export. A published topic carries the export's rows without it (issue 18), so a subscriber in
 * another service needs none of the tickets rules to make sense of the topic.
 */
export function exportArtifacts(): Transform[] {
  return [skipRows('sentinel', { column: 'ticket_id', startsWith: SENTINEL_PREFIX })];
}

/**
 * The consumer rules of seed 000, in order: drop alarms and the sentinel, drop fields, normalize.
 * All declarative, so on the pass-through path PostgreSQL runs them inside the merge.
 */
export function ticketTransforms(drop: readonly string[] = DEFAULT_DROP_FIELDS): Transform[] {
  return [
    skipRows('is_alarm', { column: 'is_alarm', oneOf: [...TRUE_VALUES], trim: true, ignoreCase: true }),
    ...exportArtifacts(),
    dropFields(drop),
    cleanText(TEXT_RULES),
  ];
}

/** Applies the same rules to one row in memory (the oracle of tests and the demo). */
export function applyRules(row: Row, drop: readonly string[] = DEFAULT_DROP_FIELDS): Row | undefined {
  if (isTrue(row['is_alarm'])) return undefined;
  if (String(row['ticket_id'] ?? '').startsWith(SENTINEL_PREFIX)) return undefined;
  const out: Row = { ...row };
  for (const f of drop) delete out[f];
  out['region'] = normalizeRegion(out['region']);
  out['raw_status'] = normalizeRawStatus(out['raw_status']);
  return out;
}
