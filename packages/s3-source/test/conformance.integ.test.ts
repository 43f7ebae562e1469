import { sourceConformance } from '@tributary/core/testing';
import { beforeAll, describe, it } from 'vitest';
import { createTestBucket, randomName, type TestBucket } from '../../../test/support/services.js';
import { s3Source } from '../src/index.js';
import { put } from './helpers.js';

/**
 * s3Source against the source contract every source keeps (issue 16): one CSV file per unit. It
 * archives committed files (its record of what was applied when no load log is at hand).
 */

let t: TestBucket;
beforeAll(async () => {
  t = await createTestBucket();
});

describe('sourceConformance: s3-source', () => {
  const checks = sourceConformance({
    create: async (fixture) => {
      const root = randomName('conf');
      const streams = [];
      for (const { stream, units } of fixture) {
        const prefix = `${root}/${stream}/changes/`;
        for (const [u, rows] of units.entries()) {
          // One file per unit, named by its time; two rows per batch so units span batches.
          const key = `${prefix}2026-06-22T15-${String(u).padStart(2, '0')}-00.csv`;
          await put(t.client, t.bucket, key, `id,v\n${rows.map(([id, v]) => `${id},${v}`).join('\n')}\n`);
        }
        streams.push({ id: stream, bucket: t.bucket, prefix, keyPattern: 'YYYY-MM-DDTHH-mm-ss' as const });
      }
      return { source: s3Source({ client: t.client, batchRows: 2, streams }) };
    },
  });
  for (const check of checks) it(check.name, () => check.run());
});
