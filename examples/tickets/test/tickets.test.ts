import { redact } from '@tributary/cli';
import { describe, expect, it } from 'vitest';
import { readEnvironment, UsageError } from '../src/config.js';
import { parseDatasets } from '../src/flags.js';
import { changeFiles, csvChunks, expectedTable, generateBucket } from '../src/generate.js';
import { applyRules, columnType, isTrue, normalizeRawStatus, normalizeRegion } from '../src/tickets.js';

describe('ticket rules', () => {
  it('is_alarm accepts true|t|1|yes in any case', () => {
    for (const v of ['true', 'TRUE', 't', 'T', '1', 'yes', 'Yes', ' yes ']) expect(isTrue(v)).toBe(true);
    for (const v of ['false', 'f', '0', 'no', '', 'maybe']) expect(isTrue(v)).toBe(false);
  });

  it('normalizes region and raw_status', () => {
    expect(normalizeRegion(' nairobi-east ')).toBe('NAIROBI EAST');
    expect(normalizeRegion('NAIROBI_EAST')).toBe('NAIROBI EAST');
    expect(normalizeRegion('   ')).toBeNull();
    expect(normalizeRawStatus('In-Progress')).toBe('in_progress');
    expect(normalizeRawStatus('closed ')).toBe('closed');
  });

  it('column types follow the contract', () => {
    expect(columnType('closed_at')).toBe('timestamptz');
    expect(columnType('week_start')).toBe('date');
    expect(columnType('latitude')).toBe('double precision');
    expect(columnType('mttr')).toBe('numeric');
    expect(columnType('is_alarm')).toBe('boolean');
    expect(columnType('region')).toBe('text');
  });

  it('drops sentinel and alarm rows', () => {
    expect(applyRules({ ticket_id: 'EXPORT STOPPED at 5', is_alarm: 'false' })).toBeUndefined();
    expect(applyRules({ ticket_id: 'INC1', is_alarm: 'Yes' })).toBeUndefined();
    expect(applyRules({ ticket_id: 'INC1', is_alarm: 'no', source_s3_key: 'x', region: 'a b' })).toEqual({
      ticket_id: 'INC1',
      is_alarm: 'no',
      region: 'A B',
      raw_status: undefined,
    });
  });
});

describe('generator', () => {
  it('is deterministic and shaped like the seed', () => {
    const a = generateBucket({ seed: 7 });
    const b = generateBucket({ seed: 7 });
    const inc = changeFiles(a, 'inc');
    expect(inc.map((f) => [f.key.split('/').pop(), f.rowCount])).toEqual([
      ['2026-06-22T15-50-39.csv', 34_849],
      ['2026-06-22T15-53-04.csv', 1],
      ['2026-06-22T17-10-41.csv', 22],
      ['2026-06-22T17-15-41.csv', 131],
    ]);
    expect([...csvChunks(inc[3]!)].join('')).toBe([...csvChunks(changeFiles(b, 'inc')[3]!)].join(''));
    const first = [...inc[0]!.rows()].slice(0, 2);
    expect(String(first[0]!['ticket_id'])).toMatch(/^EXPORT STOPPED/);
    expect(a.filter((f) => f.kind === 'placeholder').map((f) => f.key)).toContain(
      'automations/inc/latest.csv/',
    );
  });

  it('the oracle counts every row read as kept or filtered', () => {
    const files = changeFiles(generateBucket(), 'inc');
    const expected = expectedTable(files);
    expect(expected.read).toBe(34_849 + 1 + 22 + 131);
    expect(expected.filtered).toBeGreaterThan(900); // ~3% alarms + the sentinel
    expect(expected.rows.size).toBeLessThan(expected.read - expected.filtered); // updates fold onto existing keys
  });
});

describe('config', () => {
  it('reads the documented environment with defaults', () => {
    expect(readEnvironment({ S3_ENDPOINT: 'http://x:1' })).toMatchObject({
      bucket: 'tickets',
      prefix: 'automations',
      forcePathStyle: true,
    });
    expect(readEnvironment({})).toMatchObject({ forcePathStyle: false, s3Endpoint: undefined });
    expect(() => readEnvironment({ S3_FORCE_PATH_STYLE: 'maybe' })).toThrow(UsageError);
  });

  it('rejects unknown datasets by name', () => {
    expect(parseDatasets('inc,crq')).toEqual(['inc', 'crq']);
    expect(() => parseDatasets('inc,foo')).toThrow(/unknown dataset "foo"/);
  });

  it('redacts passwords and AWS keys', () => {
    expect(redact('connect postgres://app:s3cret@db:5432/x failed', [])).toBe(
      'connect postgres://app:***@db:5432/x failed',
    );
    expect(redact('key AKIAABCDEFGHIJKLMNOP', [])).toBe('key AKIA****************');
    expect(redact('token hunter22 leaked', ['hunter22'])).toBe('token *** leaked');
  });
});

describe('KAFKA_CLIENT', () => {
  it('defaults to @platformatic/kafka, accepts kafkajs, and refuses anything else by name', async () => {
    const { kafkaClientFrom, kafkaClientName } = await import('../src/kafka.js');
    expect(kafkaClientName({})).toBe('platformatic');
    expect(kafkaClientName({ KAFKA_CLIENT: '' })).toBe('platformatic');
    expect(kafkaClientName({ KAFKA_CLIENT: 'kafkajs' })).toBe('kafkajs');
    expect(() => kafkaClientName({ KAFKA_CLIENT: 'rdkafka' })).toThrow(
      expect.objectContaining({
        message: expect.stringMatching(/KAFKA_CLIENT must be one of platformatic, kafkajs/),
      }),
    );
    // No connection is made until a stage uses the client.
    expect(kafkaClientFrom({}, ['localhost:9092'], 'test')).toMatchObject({ kind: 'platformatic' });
    expect(kafkaClientFrom({ KAFKA_CLIENT: 'kafkajs' }, ['localhost:9092'], 'test')).not.toHaveProperty(
      'kind',
    );
  });
});
