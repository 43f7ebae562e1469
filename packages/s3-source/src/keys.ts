/**
 * Key names → the instant they represent, and where a key goes when it is archived.
 *
 * Files are applied in the order of the time their names encode, never by lexical order or
 * LastModified (invariant 1). Local times are converted to UTC instants with the IANA zone
 * database built into `Intl`, so no time-zone library is needed.
 */

import { isTimeZone } from '@tributary/core';

/** The built-in key patterns, matched against the key's file name without its suffix. */
export const KeyPatterns = [
  'YYYY-MM-DDTHH-mm-ss',
  'YYYYMMDD_HHMM_<TZ>',
  'YYYYMMDD-HHmmssSSS',
  'YYYYMMDD',
] as const;
export type BuiltInKeyPattern = (typeof KeyPatterns)[number];
/** A built-in pattern, or a function returning the instant a key represents (undefined = bad key). */
export type KeyPattern = BuiltInKeyPattern | ((key: string) => Date | undefined);

/** Suffixes of data files, longest first so `.csv.gz` wins over `.gz`. */
export const DataSuffixes = ['.csv.gz', '.jsonl.gz', '.csv', '.jsonl'] as const;
/**
 * `.json[.gz]`: data files only for streams that read JSON (`format: 'json'`, or the
 * `unordered` layout); elsewhere such keys (e.g. a legacy `latest.json`) are ignored.
 */
export const JsonSuffixes = ['.json.gz', '.json'] as const;
export type DataFormat = 'csv' | 'jsonl' | 'json';

/**
 * How a local wall-clock time was mapped to an instant:
 * - `exact`: it occurs once in the zone;
 * - `repeated`: it occurs twice (DST fall-back); the earlier instant is used;
 * - `skipped`: it never occurs (DST spring-forward gap); it is moved forward by the gap's length.
 * This is Temporal's `disambiguation: 'compatible'`, the same rule as `java.time` and most databases.
 */
export type LocalTimeResolution = 'exact' | 'repeated' | 'skipped';

export interface KeyTime {
  /** The UTC instant the key represents. */
  time: Date;
  resolution: LocalTimeResolution;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let formatter = formatters.get(timeZone);
  if (!formatter) {
    formatter = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(timeZone, formatter);
  }
  return formatter;
}

/** True when `timeZone` is an IANA zone name (or `UTC`) this runtime knows. */
export function isValidTimeZone(timeZone: string): boolean {
  return isTimeZone(timeZone);
}

/** The zone's offset from UTC at `epochMs`, in milliseconds (east positive). */
export function zoneOffsetMs(epochMs: number, timeZone: string): number {
  const parts = formatterFor(timeZone).formatToParts(new Date(epochMs));
  const value = (type: Intl.DateTimeFormatPartTypes) =>
    Number(parts.find((part) => part.type === type)?.value);
  const asUtc = Date.UTC(
    value('year'),
    value('month') - 1,
    value('day'),
    value('hour'),
    value('minute'),
    value('second'),
  );
  // formatToParts has second precision: compare against the instant truncated to seconds.
  return asUtc - (epochMs - (((epochMs % 1000) + 1000) % 1000));
}

const HOUR = 3_600_000;

/**
 * The instant at which the wall clock in `timeZone` reads the given local time
 * (`localMs` = that wall-clock time written as if it were UTC).
 */
export function localTimeToUtc(localMs: number, timeZone: string): KeyTime {
  // Offsets on either side of any transition near this time; zones move at most once a day.
  const before = zoneOffsetMs(localMs - 24 * HOUR, timeZone);
  const after = zoneOffsetMs(localMs + 24 * HOUR, timeZone);
  const candidates = [...new Set([before, after])]
    .map((offset) => localMs - offset)
    .filter((instant) => zoneOffsetMs(instant, timeZone) === localMs - instant)
    .sort((a, b) => a - b);
  if (candidates.length === 0) {
    // Spring-forward gap: read the wall time with the offset in force before the gap, which
    // lands after the jump (02:30 EST that never was → 03:30 EDT).
    return { time: new Date(localMs - before), resolution: 'skipped' };
  }
  // Fall-back: the wall time happens twice; the earlier instant wins, deterministically.
  if (candidates.length > 1) return { time: new Date(candidates[0]!), resolution: 'repeated' };
  return { time: new Date(candidates[0]!), resolution: 'exact' };
}

/**
 * Zone abbreviations accepted in `YYYYMMDD_HHMM_<TZ>` names, as fixed offsets in minutes.
 * Only unambiguous ones are listed (IST, for one, means India, Ireland or Israel); numeric
 * offsets like `+0300` or `UTC+3` are accepted too.
 */
export const ZoneAbbreviations: Readonly<Record<string, number>> = {
  UTC: 0,
  GMT: 0,
  Z: 0,
  WET: 0,
  WEST: 60,
  BST: 60,
  CET: 60,
  CEST: 120,
  EET: 120,
  EEST: 180,
  MSK: 180,
  WAT: 60,
  CAT: 120,
  SAST: 120,
  EAT: 180,
  GST: 240,
  PKT: 300,
  ICT: 420,
  HKT: 480,
  SGT: 480,
  JST: 540,
  KST: 540,
  AEST: 600,
  AEDT: 660,
  NZST: 720,
  NZDT: 780,
  AST: -240,
  ADT: -180,
  EST: -300,
  EDT: -240,
  CST: -360,
  CDT: -300,
  MST: -420,
  MDT: -360,
  PST: -480,
  PDT: -420,
  AKST: -540,
  AKDT: -480,
  HST: -600,
};

/** Minutes east of UTC for a zone token in a key name, or undefined when it is not known. */
export function zoneTokenOffsetMinutes(token: string): number | undefined {
  const upper = token.toUpperCase();
  if (upper in ZoneAbbreviations) return ZoneAbbreviations[upper];
  const numeric = /^(?:UTC|GMT)?([+-])(\d{1,2})(?::?(\d{2}))?$/.exec(upper);
  if (!numeric) return undefined;
  const hours = Number(numeric[2]);
  const minutes = Number(numeric[3] ?? 0);
  if (hours > 14 || minutes > 59) return undefined;
  return (numeric[1] === '-' ? -1 : 1) * (hours * 60 + minutes);
}

/** The part of a key after its last `/`. */
export function baseName(key: string): string {
  return key.slice(key.lastIndexOf('/') + 1);
}

/**
 * The data suffix of a key (`.csv.gz`…), or undefined when it is not a data file. With `json`,
 * `.json[.gz]` counts too.
 */
export function dataSuffix(
  key: string,
  json = false,
): (typeof DataSuffixes)[number] | (typeof JsonSuffixes)[number] | undefined {
  const lower = key.toLowerCase();
  return (
    DataSuffixes.find((suffix) => lower.endsWith(suffix)) ??
    (json ? JsonSuffixes.find((suffix) => lower.endsWith(suffix)) : undefined)
  );
}

/** The format a key's suffix implies. */
export function formatOfKey(key: string): DataFormat | undefined {
  const suffix = dataSuffix(key, true);
  if (!suffix) return undefined;
  return suffix.startsWith('.jsonl') ? 'jsonl' : suffix.startsWith('.json') ? 'json' : 'csv';
}

/** A key's file name without its data suffix: `a/b/2026-06-22T15-50-39.csv.gz` → `2026-06-22T15-50-39`. */
export function stemOf(key: string): string {
  const name = baseName(key);
  const suffix = dataSuffix(name, true);
  return suffix ? name.slice(0, name.length - suffix.length) : name;
}

function validDate(year: number, month: number, day: number): boolean {
  if (month < 1 || month > 12 || day < 1) return false;
  return day <= new Date(Date.UTC(year, month, 0)).getUTCDate();
}

function wallClock(
  year: number,
  month: number,
  day: number,
  hour = 0,
  minute = 0,
  second = 0,
  ms = 0,
): number | undefined {
  if (!validDate(year, month, day) || hour > 23 || minute > 59 || second > 59) return undefined;
  return Date.UTC(year, month - 1, day, hour, minute, second, ms);
}

const PATTERN_REGEX: Record<BuiltInKeyPattern, RegExp> = {
  'YYYY-MM-DDTHH-mm-ss': /^(\d{4})-(\d{2})-(\d{2})T(\d{2})-(\d{2})-(\d{2})$/,
  'YYYYMMDD_HHMM_<TZ>': /^(\d{4})(\d{2})(\d{2})_(\d{2})(\d{2})_([A-Za-z0-9:+-]+)$/,
  'YYYYMMDD-HHmmssSSS': /^(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})(\d{2})(\d{3})$/,
  YYYYMMDD: /^(\d{4})(\d{2})(\d{2})$/,
};

/**
 * The instant a key represents, or undefined when its name does not match the pattern (a bad
 * key). Built-in patterns match the file name without its data suffix; local times are read in
 * `timeZone` (IANA, default UTC), except `YYYYMMDD_HHMM_<TZ>`, whose name carries its zone.
 */
export function parseKeyTime(key: string, pattern: KeyPattern, timeZone = 'UTC'): KeyTime | undefined {
  if (typeof pattern === 'function') {
    const time = pattern(key);
    if (!(time instanceof Date) || Number.isNaN(time.getTime())) return undefined;
    return { time, resolution: 'exact' };
  }
  const match = PATTERN_REGEX[pattern].exec(stemOf(key));
  if (!match) return undefined;
  const n = (index: number) => Number(match[index]);
  if (pattern === 'YYYYMMDD_HHMM_<TZ>') {
    const offset = zoneTokenOffsetMinutes(match[6]!);
    const local = wallClock(n(1), n(2), n(3), n(4), n(5));
    if (offset === undefined || local === undefined) return undefined;
    return { time: new Date(local - offset * 60_000), resolution: 'exact' };
  }
  const local =
    pattern === 'YYYYMMDD'
      ? wallClock(n(1), n(2), n(3))
      : pattern === 'YYYYMMDD-HHmmssSSS'
        ? wallClock(n(1), n(2), n(3), n(4), n(5), n(6), n(7))
        : wallClock(n(1), n(2), n(3), n(4), n(5), n(6));
  if (local === undefined) return undefined;
  return localTimeToUtc(local, timeZone);
}

/**
 * The sequence number of a Qlik baseline file (`LOAD001.csv.gz` → 1), or undefined.
 * Baselines are applied in number order, before any change-table file.
 */
export function qlikLoadNumber(key: string): number | undefined {
  const match = /^LOAD(\d+)$/i.exec(stemOf(key));
  return match ? Number(match[1]) : undefined;
}

/** The parent "folder" of a prefix: `a/b/changes/` → `a/b/`, `changes/` → ``. */
export function parentPrefix(prefix: string): string {
  const trimmed = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  const slash = trimmed.lastIndexOf('/');
  return slash < 0 ? '' : trimmed.slice(0, slash + 1);
}

/** A sibling folder of a prefix: (`automations/inc/changes/`, `processed`) → `automations/inc/processed/`. */
export function siblingPrefix(prefix: string, name: string): string {
  return `${parentPrefix(prefix)}${name}/`;
}

/** The Qlik change-table prefix of a table prefix: `ods/EDW.SAMPLE/` → `ods/EDW.SAMPLE__ct/`. */
export function changeTablePrefix(prefix: string): string {
  const trimmed = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  return `${trimmed}__ct/`;
}

/**
 * Where a key is archived: its path relative to `base` kept under `targetPrefix`, so files with
 * equal names in different folders never collide.
 * `archiveKey('automations/inc/changes/X.csv', 'automations/inc/changes/', 'automations/inc/processed/')`
 * → `automations/inc/processed/X.csv`.
 */
export function archiveKey(key: string, base: string, targetPrefix: string): string {
  if (!key.startsWith(base)) {
    throw new RangeError(`archiveKey: ${key} is not under ${base}`);
  }
  return targetPrefix + key.slice(base.length);
}

/** The wall-clock parts of an instant in `timeZone`. */
function wallParts(time: Date, timeZone: string) {
  const local = new Date(time.getTime() + zoneOffsetMs(time.getTime(), timeZone));
  const pad = (n: number, width = 2) => String(n).padStart(width, '0');
  return {
    date: `${pad(local.getUTCFullYear(), 4)}${pad(local.getUTCMonth() + 1)}${pad(local.getUTCDate())}`,
    dashedDate: `${pad(local.getUTCFullYear(), 4)}-${pad(local.getUTCMonth() + 1)}-${pad(local.getUTCDate())}`,
    hh: pad(local.getUTCHours()),
    mm: pad(local.getUTCMinutes()),
    ss: pad(local.getUTCSeconds()),
    ms: pad(time.getUTCMilliseconds(), 3),
  };
}

/**
 * The zone token of a `YYYYMMDD_HHMM_<TZ>` name: `UTC`, an unambiguous abbreviation whose
 * offset matches (`EAT` for Africa/Nairobi), else a numeric offset (`+0300`), so the reader
 * gets the same instant back.
 */
export function zoneToken(time: Date, timeZone: string): string {
  const offsetMinutes = Math.round(zoneOffsetMs(time.getTime(), timeZone) / 60_000);
  if (offsetMinutes === 0) return 'UTC';
  const named = ZONE_NAMES[timeZone];
  if (named && ZoneAbbreviations[named] === offsetMinutes) return named;
  const short = new Intl.DateTimeFormat('en-US', { timeZone, timeZoneName: 'short' })
    .formatToParts(time)
    .find((part) => part.type === 'timeZoneName')?.value;
  if (short && ZoneAbbreviations[short] === offsetMinutes) return short;
  const sign = offsetMinutes < 0 ? '-' : '+';
  const abs = Math.abs(offsetMinutes);
  return `${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}${String(abs % 60).padStart(2, '0')}`;
}

// Zones whose usual English abbreviation Intl does not give in en-US (it says `GMT+3`).
const ZONE_NAMES: Readonly<Record<string, string>> = {
  'Africa/Nairobi': 'EAT',
  'Africa/Addis_Ababa': 'EAT',
  'Africa/Dar_es_Salaam': 'EAT',
  'Africa/Kampala': 'EAT',
  'Africa/Lagos': 'WAT',
  'Africa/Johannesburg': 'SAST',
  'Europe/Moscow': 'MSK',
};

/**
 * The inverse of `parseKeyTime` for the built-in patterns: the file name stem of `time` in
 * `timeZone` (`YYYYMMDD_HHMM_<TZ>` carries its own zone token). The name has the pattern's
 * resolution, so `parseKeyTime(formatKeyTime(t))` is `t` truncated to it.
 */
export function formatKeyTime(time: Date, pattern: BuiltInKeyPattern, timeZone = 'UTC'): string {
  const p = wallParts(time, timeZone);
  switch (pattern) {
    case 'YYYY-MM-DDTHH-mm-ss':
      return `${p.dashedDate}T${p.hh}-${p.mm}-${p.ss}`;
    case 'YYYYMMDD_HHMM_<TZ>':
      return `${p.date}_${p.hh}${p.mm}_${zoneToken(time, timeZone)}`;
    case 'YYYYMMDD-HHmmssSSS':
      return `${p.date}-${p.hh}${p.mm}${p.ss}${p.ms}`;
    case 'YYYYMMDD':
      return p.date;
  }
}
