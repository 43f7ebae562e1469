import type { Row } from '@tributary/core';
import { applyRules, type Dataset, SENTINEL_PREFIX, TICKET_COLUMNS } from './tickets.js';

/**
 * A deterministic synthetic `tickets` bucket shaped like seed 000: per dataset a baseline
 * (inc: 34,849 × scale rows, with `is_alarm` rows and a leading `EXPORT STOPPED…` sentinel),
 * then deltas of updates and new tickets, plus the legacy empty prefixes. The same seed always
 * gives the same bytes, so tests and the demo can fold the rows into the expected table.
 */

export interface GeneratedFile {
  /** Key relative to the bucket, e.g. `automations/inc/changes/2026-06-22T15-50-39.csv`. */
  key: string;
  dataset: Dataset | null;
  kind: 'baseline' | 'delta' | 'placeholder' | 'legacy';
  /** Data rows in file order (empty for placeholders). Rows are lazily produced for big files. */
  rows: () => Iterable<Row>;
  rowCount: number;
}

export interface GenerateOptions {
  seed?: number;
  scale?: number;
  prefix?: string;
}

interface DatasetShape {
  baselineRows: number;
  baseline: string;
  deltas: { at: string; rows: number }[];
}

export const SHAPES: Record<Dataset, DatasetShape> = {
  inc: {
    baselineRows: 34_849,
    baseline: '2026-06-22T15-50-39',
    deltas: [
      { at: '2026-06-22T15-53-04', rows: 1 },
      { at: '2026-06-22T17-10-41', rows: 22 },
      { at: '2026-06-22T17-15-41', rows: 131 },
    ],
  },
  crq: {
    baselineRows: 6_020,
    baseline: '2026-06-22T15-50-39',
    deltas: [
      { at: '2026-06-22T15-53-04', rows: 4 },
      { at: '2026-06-22T17-10-41', rows: 17 },
      { at: '2026-06-22T17-15-41', rows: 45 },
      { at: '2026-06-22T18-02-10', rows: 9 },
    ],
  },
};

/** mulberry32: a tiny seeded PRNG, so the bucket (and the soak's deltas, the tests' random kills) is reproducible. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pick = <T>(rand: () => number, values: readonly T[]): T =>
  values[Math.floor(rand() * values.length)] as T;

const RAW_STATUS = [
  'Open',
  'in progress',
  'In-Progress',
  'Resolved',
  'closed ',
  'PENDING_CUSTOMER',
  'Assigned',
];
const REGIONS = [
  'Nairobi East',
  'nairobi-east',
  'NAIROBI_EAST',
  'Nairobi West',
  'Mombasa',
  ' coast ',
  'Rift Valley',
  'Kisumu',
];
const TEAMS = ['FTTH Ops', 'Field Team A', 'Field Team B', 'NOC', 'Backhaul'];
const PLACES = ['Kilimani, Block "C"', 'Westlands', 'Nyali', 'Karen Estate', 'Kisumu CBD', 'Eldoret "Town"'];
const TRUTHY = ['true', 'TRUE', 't', '1', 'yes', 'Yes'];
const FALSY = ['false', 'FALSE', 'f', '0', 'no'];

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

/** Offset-less local time text (the export's style), `minutesAfter` minutes after 2026-05-01 00:00. */
function localTime(minutesAfter: number): string {
  const d = new Date(Date.UTC(2026, 4, 1) + minutesAfter * 60_000);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
}

function ticketRow(rand: () => number, dataset: Dataset, n: number, version: number, alarmRate: number): Row {
  const created = Math.floor(rand() * 60 * 24 * 50);
  const updated = created + 60 + version * 90 + Math.floor(rand() * 60);
  const closed = rand() < 0.4;
  const week = new Date(Date.UTC(2026, 4, 1) + Math.floor(created / (60 * 24 * 7)) * 7 * 86_400_000);
  const weekEnd = new Date(week.getTime() + 6 * 86_400_000);
  const iso = (d: Date) => d.toISOString().slice(0, 10);
  const id = `${dataset.toUpperCase()}${pad(n, 8)}`;
  return {
    ticket_id: id,
    source_type: pick(rand, ['scoreboard', 'noc', 'customer']),
    service_type: pick(rand, ['FTTH', 'FTTB', 'Wireless']),
    bucket: closed ? 'closed' : pick(rand, ['open', 'pending']),
    raw_status: pick(rand, RAW_STATUS),
    normalized_status: closed ? 'CLOSED' : 'OPEN',
    created_at_service: localTime(created),
    scheduled_at: rand() < 0.5 ? localTime(created + 120) : '',
    closed_at: closed ? localTime(updated) : '',
    last_seen_at: localTime(updated),
    first_seen_at: localTime(created),
    week_start: iso(week),
    week_end: iso(weekEnd),
    cluster: `CL-${pad(Math.floor(rand() * 40))}`,
    region: pick(rand, REGIONS),
    location_name: pick(rand, PLACES),
    latitude: (-4 + rand() * 5).toFixed(6),
    longitude: (34 + rand() * 6).toFixed(6),
    department: pick(rand, ['Access', 'Transport', 'Customer Care']),
    assigned_team: pick(rand, TEAMS),
    owner: `agent${pad(Math.floor(rand() * 300), 3)}@example.net`,
    sla_status: pick(rand, ['within', 'breached', 'at_risk']),
    mttr: closed ? (rand() * 72).toFixed(2) : '',
    is_auto_created: rand() < 0.3 ? pick(rand, TRUTHY) : pick(rand, FALSY),
    is_auto_closed: rand() < 0.2 ? pick(rand, TRUTHY) : pick(rand, FALSY),
    is_alarm: rand() < alarmRate ? pick(rand, TRUTHY) : pick(rand, FALSY),
    is_actionable: rand() < 0.8 ? 'true' : 'false',
    source_s3_bucket: 'scoreboard-exports',
    source_s3_key: `exports/${dataset}/${iso(week)}.csv`,
    source_snapshot_id: `snap-${pad(version, 4)}-${pad(Math.floor(rand() * 1e6), 6)}`,
    created_at: localTime(created),
    updated_at: localTime(updated),
  };
}

function sentinelRow(): Row {
  const row: Row = Object.fromEntries(TICKET_COLUMNS.map((c) => [c, '']));
  row['ticket_id'] = `${SENTINEL_PREFIX} AT 34849 ROWS (limit reached)`;
  return row;
}

/** Every object of the synthetic bucket, in no particular order. */
export function generateBucket(options: GenerateOptions = {}): GeneratedFile[] {
  const seed = options.seed ?? 42;
  const scale = options.scale ?? 1;
  const prefix = options.prefix ?? 'automations';
  const files: GeneratedFile[] = [];
  for (const [index, dataset] of (['inc', 'crq'] as const).entries()) {
    const shape = SHAPES[dataset];
    const baselineCount = Math.max(2, Math.round(shape.baselineRows * scale));
    const datasetSeed = seed * 1000 + index;
    files.push({
      key: `${prefix}/${dataset}/changes/${shape.baseline}.csv`,
      dataset,
      kind: 'baseline',
      rowCount: baselineCount,
      rows: function* () {
        const rand = seededRandom(datasetSeed);
        yield sentinelRow();
        for (let n = 1; n < baselineCount; n++) yield ticketRow(rand, dataset, n, 0, 0.03);
      },
    });
    let nextNew = baselineCount;
    for (const [d, delta] of shape.deltas.entries()) {
      const firstNew = nextNew;
      const newCount = Math.ceil(delta.rows / 3);
      nextNew += newCount;
      files.push({
        key: `${prefix}/${dataset}/changes/${delta.at}.csv`,
        dataset,
        kind: 'delta',
        rowCount: delta.rows,
        rows: function* () {
          const rand = seededRandom(datasetSeed + 7 * (d + 1));
          for (let i = 0; i < delta.rows; i++) {
            // Two thirds are updates of existing tickets, the rest new ones. In the largest
            // delta one ticket appears twice: the later row must win (file order).
            const isNew = i < newCount;
            const n = isNew ? firstNew + i : 1 + Math.floor(rand() * (baselineCount - 1));
            const row = ticketRow(rand, dataset, n, d + 1, 0.02);
            yield row;
            if (delta.rows >= 100 && i === delta.rows - 2) {
              yield { ...row, raw_status: 'Resolved', updated_at: localTime(60 * 24 * 55 + d) };
              i++;
            }
          }
        },
      });
    }
    for (const legacy of ['full/', 'latest.csv/', 'latest.json/']) {
      files.push({
        key: `${prefix}/${dataset}/${legacy}`,
        dataset,
        kind: 'placeholder',
        rowCount: 0,
        rows: () => [],
      });
    }
  }
  // CRQ's old root snapshot: present, never consumed (it is not under changes/).
  files.push({
    key: `${prefix}/crq/2026-06-18T17-00-05.csv`,
    dataset: null,
    kind: 'legacy',
    rowCount: 2,
    rows: function* () {
      const rand = seededRandom(seed);
      yield ticketRow(rand, 'crq', 1, 0, 0);
      yield ticketRow(rand, 'crq', 2, 0, 0);
    },
  });
  return files;
}

/** RFC 4180 field quoting: quote when the value has a comma, quote, CR or LF. */
export function csvField(value: unknown): string {
  const text = value === null || value === undefined ? '' : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** The file's bytes in chunks of about `chunkBytes` (header first), so big files stream. */
export function* csvChunks(file: GeneratedFile, chunkBytes = 1 << 20): Generator<string> {
  if (file.kind === 'placeholder') return;
  let chunk = `${TICKET_COLUMNS.join(',')}\n`;
  for (const row of file.rows()) {
    chunk += `${TICKET_COLUMNS.map((c) => csvField(row[c])).join(',')}\n`;
    if (chunk.length >= chunkBytes) {
      yield chunk;
      chunk = '';
    }
  }
  if (chunk) yield chunk;
}

/** Keys in apply order (the timestamps in these names sort like their times). */
export function changeFiles(files: GeneratedFile[], dataset: Dataset): GeneratedFile[] {
  return files
    .filter((f) => f.dataset === dataset && (f.kind === 'baseline' || f.kind === 'delta'))
    .sort((a, b) => (a.key < b.key ? -1 : 1));
}

export interface ExpectedTable {
  rows: Map<string, Row>;
  filtered: number;
  read: number;
}

/** The fold of the given change files under the consumer rules: the table `run --apply` must produce. */
export function expectedTable(files: GeneratedFile[]): ExpectedTable {
  const rows = new Map<string, Row>();
  let filtered = 0;
  let read = 0;
  for (const file of files) {
    for (const row of file.rows()) {
      read++;
      const kept = applyRules(row);
      if (!kept) {
        filtered++;
        continue;
      }
      rows.set(String(kept['ticket_id']), kept);
    }
  }
  return { rows, filtered, read };
}
