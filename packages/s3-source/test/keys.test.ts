import { describe, expect, it } from 'vitest';
import {
  archiveKey,
  changeTablePrefix,
  dataSuffix,
  formatKeyTime,
  formatOfKey,
  parseKeyTime,
  qlikLoadNumber,
  siblingPrefix,
} from '../src/index.js';

const iso = (key: string, pattern: Parameters<typeof parseKeyTime>[1], tz?: string) =>
  parseKeyTime(key, pattern, tz)?.time.toISOString();

describe('parseKeyTime', () => {
  it('reads the ticket export names in Africa/Nairobi (UTC+3)', () => {
    expect(
      iso('automations/inc/changes/2026-06-22T15-50-39.csv', 'YYYY-MM-DDTHH-mm-ss', 'Africa/Nairobi'),
    ).toBe('2026-06-22T12:50:39.000Z');
  });

  it('reads the zone from YYYYMMDD_HHMM_<TZ> names (abbreviation or offset)', () => {
    expect(iso('dwh/20260424_1400_EAT.csv', 'YYYYMMDD_HHMM_<TZ>')).toBe('2026-04-24T11:00:00.000Z');
    expect(iso('dwh/20260424_1400_UTC.csv', 'YYYYMMDD_HHMM_<TZ>')).toBe('2026-04-24T14:00:00.000Z');
    expect(iso('dwh/20260424_1400_+0530.csv', 'YYYYMMDD_HHMM_<TZ>')).toBe('2026-04-24T08:30:00.000Z');
    expect(iso('dwh/20260424_1400_XYZ.csv', 'YYYYMMDD_HHMM_<TZ>')).toBeUndefined();
  });

  it('reads Qlik change-table names with milliseconds and daily names', () => {
    expect(iso('ods/EDW.SAMPLE__ct/20220304-134556444.csv.gz', 'YYYYMMDD-HHmmssSSS')).toBe(
      '2022-03-04T13:45:56.444Z',
    );
    expect(iso('cubic/dmap/agg_sample/20220304.csv', 'YYYYMMDD', 'Africa/Nairobi')).toBe(
      '2022-03-03T21:00:00.000Z',
    );
  });

  it('rejects names that do not match or are not real times', () => {
    for (const key of [
      'x/2026-02-30T10-00-00.csv',
      'x/2026-06-22T24-00-00.csv',
      'x/2026-06-22T15-50-39 (1).csv',
      'x/latest.csv',
      'x/2026-06-22 15-50-39.csv',
    ]) {
      expect(parseKeyTime(key, 'YYYY-MM-DDTHH-mm-ss', 'UTC'), key).toBeUndefined();
    }
  });

  it('resolves a repeated local hour (DST fall-back) to the earlier instant, and says so', () => {
    const first = parseKeyTime('x/2026-11-01T01-30-00.csv', 'YYYY-MM-DDTHH-mm-ss', 'America/New_York');
    expect(first).toEqual({ time: new Date('2026-11-01T05:30:00.000Z'), resolution: 'repeated' });
    // Monotone through the fall-back hour.
    expect(iso('x/2026-11-01T00-59-59.csv', 'YYYY-MM-DDTHH-mm-ss', 'America/New_York')).toBe(
      '2026-11-01T04:59:59.000Z',
    );
    expect(iso('x/2026-11-01T02-00-00.csv', 'YYYY-MM-DDTHH-mm-ss', 'America/New_York')).toBe(
      '2026-11-01T07:00:00.000Z',
    );
  });

  it('moves a non-existent local time (DST gap) forward by the gap', () => {
    expect(parseKeyTime('x/2026-03-08T02-30-00.csv', 'YYYY-MM-DDTHH-mm-ss', 'America/New_York')).toEqual({
      time: new Date('2026-03-08T07:30:00.000Z'),
      resolution: 'skipped',
    });
  });

  it('accepts a custom function', () => {
    const pattern = (key: string) =>
      key.endsWith('.csv') ? new Date(Number(key.split('/')[1]!.slice(0, -4))) : undefined;
    expect(iso('x/1000.csv', pattern)).toBe('1970-01-01T00:00:01.000Z');
    expect(parseKeyTime('x/1000.txt', pattern)).toBeUndefined();
    expect(parseKeyTime('x/abc.csv', pattern)).toBeUndefined();
  });
});

describe('key helpers', () => {
  it('knows data suffixes and formats', () => {
    expect(dataSuffix('a/B.CSV.GZ')).toBe('.csv.gz');
    expect(formatOfKey('a/b.jsonl.gz')).toBe('jsonl');
    expect(formatOfKey('a/b.csv')).toBe('csv');
    expect(dataSuffix('a/latest.json')).toBeUndefined();
    expect(dataSuffix('a/latest.csv/')).toBeUndefined();
  });

  it('maps keys to archive keys keeping the relative path', () => {
    expect(siblingPrefix('automations/inc/changes/', 'processed')).toBe('automations/inc/processed/');
    expect(
      archiveKey('automations/inc/changes/X.csv', 'automations/inc/changes/', 'automations/inc/processed/'),
    ).toBe('automations/inc/processed/X.csv');
    expect(archiveKey('a/changes/2026/06/X.csv', 'a/changes/', 'a/processed/')).toBe(
      'a/processed/2026/06/X.csv',
    );
    expect(() => archiveKey('b/X.csv', 'a/', 'p/')).toThrow(RangeError);
    expect(changeTablePrefix('cubic/ods_qlik/EDW.SAMPLE/')).toBe('cubic/ods_qlik/EDW.SAMPLE__ct/');
    expect(qlikLoadNumber('cubic/ods_qlik/EDW.SAMPLE/LOAD010.csv.gz')).toBe(10);
    expect(qlikLoadNumber('cubic/ods_qlik/EDW.SAMPLE/20220304.csv')).toBeUndefined();
  });
});

describe('formatKeyTime (the S3 file writer names)', () => {
  const time = new Date('2026-04-24T11:00:42.123Z');
  it('writes the manual’s YYYYMMDD_HHMM_<TZ> with an abbreviation the reader knows, else an offset', () => {
    expect(formatKeyTime(time, 'YYYYMMDD_HHMM_<TZ>', 'Africa/Nairobi')).toBe('20260424_1400_EAT');
    expect(formatKeyTime(time, 'YYYYMMDD_HHMM_<TZ>', 'UTC')).toBe('20260424_1100_UTC');
    expect(formatKeyTime(time, 'YYYYMMDD_HHMM_<TZ>', 'Asia/Kolkata')).toBe('20260424_1630_+0530');
  });
  it.each([
    ['YYYY-MM-DDTHH-mm-ss', 'Africa/Nairobi', '2026-04-24T11:00:42.000Z'],
    ['YYYYMMDD_HHMM_<TZ>', 'Africa/Nairobi', '2026-04-24T11:00:00.000Z'],
    ['YYYYMMDD_HHMM_<TZ>', 'America/New_York', '2026-04-24T11:00:00.000Z'],
    ['YYYYMMDD-HHmmssSSS', 'UTC', '2026-04-24T11:00:42.123Z'],
    ['YYYYMMDD', 'Africa/Nairobi', '2026-04-23T21:00:00.000Z'],
  ] as const)('%s in %s reads back as the time truncated to the name', (pattern, zone, expected) => {
    expect(iso(`x/${formatKeyTime(time, pattern, zone)}.csv`, pattern, zone)).toBe(expected);
  });
});
