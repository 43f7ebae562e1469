process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';

import { randomBytes } from 'node:crypto';
import type { Batch, RawCsv, Row } from '@tributary/core';
import { memorySink } from '@tributary/core/testing';
import { parse } from 'csv-parse/sync';
import { describe, expect, inject, it } from 'vitest';
import type { ConsumedMessage, KafkaInput } from '../src/client/index.js';
import { kafkaPublishSink, platformaticClient } from '../src/index.js';
import { fastPlatformaticOptions } from '../src/testing/index.js';
import { readTopic } from './read-topic.js';

/**
 * The publisher's pass-through path (issue 18): a raw CSV batch becomes the same messages the
 * row path sends (keys, values byte for byte, headers), without parsing the batch into rows.
 */

const HEADER = ['id', 'name', 'note'];
const CSV = [
  'A1,plain,text',
  'A2,"with, comma","with ""quotes"""',
  'A3,"line\nbreak",',
  'EXPORT STOPPED AT 4 ROWS,,',
  'A5,unicode é 中文 🚀,last',
].join('\n');

/** A raw batch as the S3 source hands one out, counting the calls to `parse()`. */
function rawBatch(parsed: { calls: number }): Batch<Row> {
  const bytes = Buffer.from(`${CSV}\n`);
  const raw: RawCsv = {
    bytes,
    header: HEADER,
    records: 5,
    firstRecord: 1,
    emptyAsNull: false,
    steps: [{ op: 'skip-rows', name: 'sentinel', when: { column: 'id', startsWith: 'EXPORT STOPPED' } }],
    line: (i) => i + 2,
    parse: () => {
      parsed.calls++;
      const rows = parse(bytes, { columns: HEADER }) as Row[];
      return { rows, locations: rows.map((_, i) => ({ file: 'x.csv', line: i + 2, record: i + 1 })) };
    },
  };
  return {
    stream: 'files/x',
    rows: [],
    raw,
    position: { unit: 0, row: 5 },
    meta: { source: 'x.csv', commit: true, lastOfUnit: true, rowsRead: 5, filtered: {}, kind: 'baseline' },
  };
}

/** Every message of a topic, by key. */
async function byKey(k: KafkaInput, topic: string): Promise<Map<string, ConsumedMessage>> {
  return new Map((await readTopic(k, topic)).map((m) => [String(m.key), m]));
}

describe('publishing raw CSV batches', () => {
  it('sends what the row path sends, without parsing the batch, and counts the skipped sentinel', async () => {
    const k = platformaticClient(
      fastPlatformaticOptions(inject('kafkaBrokers'), `test-${randomBytes(3).toString('hex')}`),
    );
    const sinkFor = (topic: string) =>
      kafkaPublishSink({
        kafka: k,
        topic,
        key: ['id'],
        columns: HEADER,
        createTopics: { partitions: 2 },
        checkpoints: memorySink(),
      });
    const viaRaw = `t.${randomBytes(4).toString('hex')}`;
    const viaRows = `t.${randomBytes(4).toString('hex')}`;

    const parsed = { calls: 0 };
    const rawSink = sinkFor(viaRaw);
    expect(rawSink.acceptsRaw).toBe(true);
    const written = await rawSink.write(rawBatch(parsed));
    await rawSink.close();
    expect(parsed.calls).toBe(0);
    expect(written.rows).toBe(4);
    expect(written.filtered).toEqual({ sentinel: 1 });

    // The row path over the same records (what the pipeline gives a sink that takes rows).
    const rows = rawBatch(parsed).raw!.parse();
    const rowSink = sinkFor(viaRows);
    const kept = rows.rows.map((row, i) => ({ row, location: rows.locations[i]! }));
    const unsentinel = kept.filter(({ row }) => !String(row['id']).startsWith('EXPORT STOPPED'));
    const { raw: _raw, ...rest } = rawBatch(parsed);
    await rowSink.write({
      ...rest,
      rows: unsentinel.map(({ row }) => row),
      meta: { ...rest.meta, locations: unsentinel.map(({ location }) => location) },
    });
    await rowSink.close();

    const [a, b] = await Promise.all([byKey(k, viaRaw), byKey(k, viaRows)]);
    expect([...a.keys()].sort()).toEqual(['A1', 'A2', 'A3', 'A5']);
    for (const [key, message] of b) {
      const other = a.get(key)!;
      expect(other.value?.toString('hex')).toBe(message.value?.toString('hex'));
      const text = (h: ConsumedMessage['headers']) =>
        Object.fromEntries(Object.entries(h ?? {}).map(([n, v]) => [n, String(v)]));
      expect(text(other.headers)).toEqual(text(message.headers));
    }
    // Record numbers count the skipped sentinel, as in the file.
    expect(String(a.get('A5')!.headers?.['tributary-row'])).toBe('5');
  });
});
