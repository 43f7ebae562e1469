import { beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../../test/support/services.js';
import type { ApplyPlan } from '../src/apply.js';
import { copyCsv } from '../src/staging.js';

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});

const plan = { copy: 'COPY pg_temp.staged (c0, c1) FROM STDIN WITH (FORMAT csv)' } as ApplyPlan;

// A small payload goes out in one socket write (issue 12); a big one through pg-copy-streams.
describe.each([
  ['a small payload (one write)', 1],
  ['a payload over 64 KiB (streamed)', 20_000],
])('copyCsv: %s', (_, repeat) => {
  it('stages every record, and a COPY the server rejects fails with its error and leaves the client usable', async () => {
    const client = await db.pool.connect();
    try {
      await client.query('CREATE TEMP TABLE IF NOT EXISTS staged (c0 text, c1 text); TRUNCATE staged');
      await copyCsv(client, plan, Buffer.from('1,"a, b"\n2,\n'.repeat(repeat)));
      const staged = await client.query('SELECT count(*)::int AS n, count(c1)::int AS c1 FROM staged');
      expect(staged.rows[0]).toEqual({ n: 2 * repeat, c1: repeat });

      const rejected = await copyCsv(client, plan, Buffer.from(`${'3,c\n'.repeat(repeat)}4,d,extra\n`)).catch(
        (error: unknown) => error,
      );
      expect(rejected).toMatchObject({ code: '22P04' }); // extra data after last expected column
      expect((rejected as { where?: string }).where).toMatch(new RegExp(`line ${repeat + 1}\\b`));
      const after = await client.query('SELECT count(*)::int AS n FROM staged');
      expect(after.rows[0]).toEqual({ n: 2 * repeat }); // nothing of the failed COPY
    } finally {
      client.release();
    }
  });
});
