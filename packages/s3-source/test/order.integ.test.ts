import { pipeline } from '@tributary/core';
import { memorySink } from '@tributary/core/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestBucket, type TestBucket } from '../../../test/support/services.js';
import { s3Source } from '../src/index.js';
import { eventLog, put } from './helpers.js';
import { createPaginatingBucket } from './support/paginating-s3.js';

let t: TestBucket;
beforeAll(async () => {
  t = await createTestBucket();
});

/** Deterministic shuffle (so a failure reproduces). */
function shuffle<T>(items: T[], seed = 7): T[] {
  const out = [...items];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1_103_515_245 + 12_345) % 2 ** 31;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

describe('ordering', () => {
  it('applies keys uploaded in random order by the instant they encode (zones, DST fall-back)', async () => {
    // Zones in the names: lexical order differs from time order.
    const zoned = [
      '20261031_2330_EDT.csv', // 03:30Z Nov 1
      '20261101_0059_EDT.csv', // 04:59Z
      '20261101_0130_EDT.csv', // 05:30Z (first 01:30)
      '20261101_0115_EST.csv', // 06:15Z (second 01:15, lexically before 0130)
      '20261101_0700_UTC.csv', // 07:00Z
      '20261101_1000_EAT.csv', // 07:00Z too: a tie, broken by key
      '20261101_0900_CET.csv', // 08:00Z
    ];
    // IANA zone with a repeated hour (America/New_York falls back at 02:00 EDT → 01:00 EST).
    const local = [
      '2026-11-01T00-30-00.csv', // 04:30Z
      '2026-11-01T01-30-00.csv', // repeated: earlier instant 05:30Z
      '2026-11-01T01-59-59.csv', // repeated: 05:59:59Z
      '2026-11-01T02-00-00.csv', // 07:00Z
      '2026-10-31T23-59-59.csv', // 03:59:59Z
    ];
    for (const name of shuffle(zoned)) {
      await put(t.client, t.bucket, `zoned/${name}`, `name\n${name}\n`);
    }
    for (const name of shuffle(local)) {
      await put(t.client, t.bucket, `local/${name}`, `name\n${name}\n`);
    }
    // A custom pattern: epoch seconds in a Kafka-archive style name.
    const custom = ['batch-1000-b.csv', 'batch-200-a.csv', 'batch-30-c.csv'];
    for (const name of shuffle(custom)) await put(t.client, t.bucket, `custom/${name}`, `name\n${name}\n`);

    const source = s3Source({
      client: t.client,
      archive: false,
      streams: [
        { id: 'o/zoned', bucket: t.bucket, prefix: 'zoned/', keyPattern: 'YYYYMMDD_HHMM_<TZ>' },
        {
          id: 'o/local',
          bucket: t.bucket,
          prefix: 'local/',
          keyPattern: 'YYYY-MM-DDTHH-mm-ss',
          timeZone: 'America/New_York',
        },
        {
          id: 'o/custom',
          bucket: t.bucket,
          prefix: 'custom/',
          keyPattern: (key) => {
            const m = /batch-(\d+)-/.exec(key);
            return m ? new Date(Number(m[1]) * 1000) : undefined;
          },
        },
      ],
    });
    const sink = memorySink();
    const log = eventLog();
    await pipeline(source, sink, { onEvent: log.onEvent });
    const names = (of: string[]) => sink.rows.map((r) => String(r['name'])).filter((n) => of.includes(n));
    expect(names(zoned)).toEqual(zoned);
    expect(sink.rows.map((r) => r['name']).filter((n) => local.includes(String(n)))).toEqual([
      '2026-10-31T23-59-59.csv',
      '2026-11-01T00-30-00.csv',
      '2026-11-01T01-30-00.csv',
      '2026-11-01T01-59-59.csv',
      '2026-11-01T02-00-00.csv',
    ]);
    expect(sink.rows.map((r) => r['name']).filter((n) => custom.includes(String(n)))).toEqual([
      'batch-30-c.csv',
      'batch-200-a.csv',
      'batch-1000-b.csv',
    ]);
    // The repeated local times were resolved and logged.
    expect(log.warnings().filter((w) => /occurs twice in America\/New_York/.test(w))).toHaveLength(2);
  });
});

describe('listing', () => {
  let t: TestBucket;
  beforeAll(async () => {
    t = await createPaginatingBucket();
  });

  it('plans all of 2,500 keys under one prefix, in order (pagination)', async () => {
    const start = Date.UTC(2026, 0, 1);
    const names = Array.from({ length: 2500 }, (_, i) => {
      const d = new Date(start + i * 3_600_000 + ((i * 7919) % 3600) * 1000);
      const p = (n: number) => String(n).padStart(2, '0');
      return `${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())}T${p(d.getUTCHours())}-${p(d.getUTCMinutes())}-${p(d.getUTCSeconds())}.csv`;
    });
    const queue = shuffle(names, 11);
    const workers = Array.from({ length: 8 }, async () => {
      for (let name = queue.pop(); name; name = queue.pop())
        await put(t.client, t.bucket, `many/${name}`, 'a\n1\n');
    });
    await Promise.all(workers);
    const source = s3Source({
      client: t.client,
      archive: false,
      streams: [
        {
          id: 'o/many',
          bucket: t.bucket,
          prefix: 'many/',
          keyPattern: 'YYYY-MM-DDTHH-mm-ss',
          timeZone: 'Africa/Nairobi',
        },
      ],
    });
    const [plan] = await source.plan();
    expect(plan!.error).toBeUndefined();
    expect(plan!.pending).toHaveLength(2500);
    expect(plan!.pending.map((f) => f.key)).toEqual(names.map((n) => `many/${n}`));
    expect(plan!.pending[0]!.kind).toBe('baseline');
    expect(plan!.pending.slice(1).every((f) => f.kind === 'delta')).toBe(true);
  });
});
