import { sinkConformance } from '@tributary/core/testing';
import { beforeAll, describe, it } from 'vitest';
import { createTestDatabase, randomName, type TestDatabase } from '../../../test/support/services.js';
import { pgSink } from '../src/index.js';

/** pg-sink against the sink contract every sink keeps (issue 16). */

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});

describe('sinkConformance: pg-sink', () => {
  const checks = sinkConformance({
    create: async () => {
      // Fresh state per check: its own control schema and one table per stream.
      const schema = randomName('c');
      const tables = new Map<string, string>();
      const sink = pgSink({
        pool: db.pool,
        schema,
        targets: (stream) => {
          const table = tables.get(stream) ?? randomName('conf');
          tables.set(stream, table);
          return {
            schema: 'public',
            table,
            key: ['id'],
            columns: [
              { name: 'id', type: 'text' },
              { name: 'v', type: 'text' },
            ],
            createTable: true,
          };
        },
      });
      return {
        sink,
        rows: async (stream) => {
          const table = tables.get(stream);
          if (!table) return [];
          const exists = await db.pool.query('SELECT to_regclass($1) IS NOT NULL AS ok', [
            `public."${table}"`,
          ]);
          if (!exists.rows[0].ok) return [];
          return (await db.pool.query(`SELECT id, v FROM public."${table}"`)).rows;
        },
      };
    },
  });
  for (const check of checks) it(check.name, () => check.run());
});
