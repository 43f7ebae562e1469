import { describe, expect, it } from 'vitest';
import { dataSuffix, formatOfKey, type OrderedObject, planPendingFiles, planReplay } from '../src/index.js';

const P = 'cubic/kafka/sample/';
const obj = (name: string, modified: string, etag = `e-${name}`): OrderedObject => ({
  key: `${P}${name}`,
  etag,
  size: 10,
  lastModified: new Date(modified),
  role: 'changes',
});
const common = {
  stream: 'cubic/kafka_sample',
  keyPattern: () => undefined,
  timeZone: 'UTC',
  layout: 'unordered' as const,
  lateFiles: 'error' as const,
  etagChanged: 'error' as const,
};

describe("layout 'unordered' (names without time)", () => {
  it('orders by LastModified, then key, and carries LastModified as the file time and modified', () => {
    const plan = planPendingFiles({
      ...common,
      checkpoint: null,
      objects: [
        obj('zz.json', '2022-03-04T10:00:00.000Z'),
        obj('bb.json', '2022-03-04T10:00:02.000Z'),
        obj('aa.json', '2022-03-04T10:00:02.000Z'),
        obj('mm.json', '2022-03-04T09:00:00.000Z'),
      ],
    });
    expect(plan.error).toBeUndefined();
    expect(plan.pending.map((f) => f.key.slice(P.length))).toEqual([
      'mm.json',
      'zz.json',
      'aa.json',
      'bb.json',
    ]);
    expect(plan.pending[0]).toMatchObject({
      kind: 'baseline',
      time: '2022-03-04T09:00:00.000Z',
      modified: '2022-03-04T09:00:00.000Z',
    });
    expect(plan.pending.slice(1).every((f) => f.kind === 'delta')).toBe(true);
  });

  it('a file modified at or before the watermark that was never applied is late', () => {
    const plan = planPendingFiles({
      ...common,
      checkpoint: {
        key: `${P}zz.json`,
        etag: 'e-zz.json',
        row: 1,
        done: true,
        watermark: { key: `${P}zz.json`, time: '2022-03-04T10:00:00.000Z' },
      },
      objects: [obj('old.json', '2022-03-04T09:59:00.000Z'), obj('new.json', '2022-03-04T10:01:00.000Z')],
    });
    expect(plan.late.map((f) => f.key)).toEqual([`${P}old.json`]);
    expect(plan.error).toMatch(/late file/);
  });

  it('replays from a named file in LastModified order', () => {
    const plan = planReplay({
      ...common,
      checkpoint: null,
      from: 'b.json',
      objects: [
        obj('c.json', '2022-03-04T10:00:03Z'),
        obj('a.json', '2022-03-04T10:00:01Z'),
        obj('b.json', '2022-03-04T10:00:02Z'),
      ],
    });
    expect(plan.pending.map((f) => f.key.slice(P.length))).toEqual(['b.json', 'c.json']);
  });
});

describe('JSON suffixes', () => {
  it('.json counts only for JSON streams; its format is json', () => {
    expect(dataSuffix('a/latest.json')).toBeUndefined();
    expect(dataSuffix('a/x.json', true)).toBe('.json');
    expect(dataSuffix('a/x.json.gz', true)).toBe('.json.gz');
    expect(formatOfKey('a/x.json.gz')).toBe('json');
    expect(formatOfKey('a/x.jsonl')).toBe('jsonl');
  });
});

describe('load log facts', () => {
  it('planned files carry the listed LastModified (s3_modified)', () => {
    const plan = planPendingFiles({
      ...common,
      layout: 'changes',
      keyPattern: 'YYYYMMDD',
      checkpoint: null,
      objects: [{ ...obj('20220304.csv', '2022-03-05T01:02:03.000Z'), key: 'd/20220304.csv' }],
    });
    expect(plan.pending[0]?.modified).toBe('2022-03-05T01:02:03.000Z');
  });
});

describe("layout 'qlik': reloads", () => {
  const T = 'ods/EDW.SAMPLE/';
  const CT = 'ods/EDW.SAMPLE__ct/';
  const qlik = {
    stream: 'ods/edw_sample',
    keyPattern: 'YYYYMMDD-HHmmssSSS' as const,
    timeZone: 'UTC',
    layout: 'qlik' as const,
    lateFiles: 'error' as const,
    etagChanged: 'error' as const,
  };
  const load = (n: number, etag: string, modified: string): OrderedObject => ({
    key: `${T}LOAD00${n}.csv.gz`,
    etag,
    size: 10,
    lastModified: new Date(modified),
    role: 'baseline',
  });
  const change = (stamp: string): OrderedObject => ({
    key: `${CT}${stamp}.csv.gz`,
    etag: `e-${stamp}`,
    size: 10,
    lastModified: new Date('2026-01-01T00:00:00Z'),
    role: 'changes',
  });
  const applied = (source: string, etag: string) => ({
    stream: 'ods/edw_sample',
    source,
    etag,
    size: 10,
    kind: null,
    status: 'archived' as const,
    finishedAt: new Date(),
    error: null,
  });
  // The first baseline and one change file were applied; the watermark is that change file.
  const after = {
    ...qlik,
    checkpoint: {
      key: `${CT}20220304-134556444.csv.gz`,
      etag: 'e-20220304-134556444',
      row: 1,
      done: true,
      watermark: { key: `${CT}20220304-134556444.csv.gz`, time: '2022-03-04T13:45:56.444Z' },
    },
    loads: [
      applied(`${T}LOAD001.csv.gz`, 'old-1'),
      applied(`${CT}20220304-134556444.csv.gz`, 'e-20220304-134556444'),
    ],
  };

  it('a re-exported LOAD001 and a new LOAD002 start a snapshot ahead of change files; older change files are superseded', () => {
    const plan = planPendingFiles({
      ...after,
      objects: [
        load(2, 'new-2', '2022-03-05T08:00:01Z'),
        load(1, 'new-1', '2022-03-05T08:00:00Z'),
        change('20220305-070000000'), // before the reload: old collection
        change('20220305-090000000'), // after it
      ],
    });
    expect(plan.error).toBeUndefined();
    expect(plan.pending.map((f) => [f.key, f.snapshot])).toEqual([
      [`${T}LOAD001.csv.gz`, 'part'],
      [`${T}LOAD002.csv.gz`, 'last'],
      [`${CT}20220305-090000000.csv.gz`, undefined],
    ]);
    expect(plan.reload).toEqual({
      files: [`${T}LOAD001.csv.gz`, `${T}LOAD002.csv.gz`],
      since: '2022-03-05T08:00:00.000Z',
      superseded: [`${CT}20220305-070000000.csv.gz`],
    });
    expect(plan.superseded.map((f) => f.key)).toEqual([`${CT}20220305-070000000.csv.gz`]);
    expect(plan.late).toEqual([]);
    expect(plan.etagChanged).toEqual([]);
  });

  it('LOAD files of the first baseline, and applied ones with their ETag, are no reload', () => {
    const fresh = planPendingFiles({
      ...qlik,
      checkpoint: null,
      objects: [load(1, 'a', '2022-03-05T08:00:00Z'), change('20220305-090000000')],
    });
    expect(fresh.reload).toBeUndefined();
    expect(fresh.pending.every((f) => f.snapshot === undefined)).toBe(true);
    const same = planPendingFiles({ ...after, objects: [load(1, 'old-1', '2022-03-05T08:00:00Z')] });
    expect(same.reload).toBeUndefined();
    expect(same.archiveOnly.map((f) => f.key)).toEqual([`${T}LOAD001.csv.gz`]);
  });
});
