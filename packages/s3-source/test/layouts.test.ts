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
