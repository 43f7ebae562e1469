import { readFile } from 'node:fs/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, randomName, type TestDatabase } from '../../../test/support/services.js';
import { migrate, pgSink } from '../src/index.js';
import { fileBatch } from './helpers.js';

let db: TestDatabase;
const suffix = randomName('r');
const roles = { owner: `owner_${suffix}`, writer: `writer_${suffix}`, ro: `ro_${suffix}` };
const pools: pg.Pool[] = [];

function poolAs(role: string): pg.Pool {
  // The test connects as the superuser and assumes the role, so no password is needed.
  const pool = new pg.Pool({ connectionString: db.url, options: `-c role=${role}`, max: 3 });
  pool.on('error', () => {});
  pools.push(pool);
  return pool;
}

beforeAll(async () => {
  db = await createTestDatabase();
  const script = (await readFile(new URL('../../../docs/roles.sql', import.meta.url), 'utf8'))
    .replaceAll('tributary_owner', roles.owner)
    .replaceAll('tributary_writer', roles.writer)
    .replaceAll('tributary_ro', roles.ro);
  await db.pool.query(script);
  await db.pool.query(script); // idempotent
});

afterAll(async () => {
  for (const pool of pools) await pool.end().catch(() => undefined);
  // Roles are cluster-wide: remove what they own in this database, then the roles.
  for (const role of Object.values(roles)) {
    await db.pool.query(`DROP OWNED BY "${role}" CASCADE`).catch(() => undefined);
  }
  for (const role of Object.values(roles)) await db.pool.query(`DROP ROLE IF EXISTS "${role}"`);
});

describe('docs/roles.sql', () => {
  it('owner migrates, writer loads with migrate: false, read-only reads and cannot write', async () => {
    const owner = poolAs(roles.owner);
    await migrate(owner, { schema: 'tributary' });
    await owner.query('CREATE TABLE bronze.tickets (id integer PRIMARY KEY, title text)');

    const sink = pgSink({
      pool: poolAs(roles.writer),
      migrate: false,
      targets: { 'tickets/inc': { schema: 'bronze', table: 'tickets', key: ['id'] } },
    });
    await sink.write(fileBatch('tickets/inc', 'a.csv', [{ id: '1', title: 'x' }]));
    await sink.close();
    const writer = poolAs(roles.writer);
    await expect(writer.query('CREATE TABLE bronze.nope (id int)')).rejects.toMatchObject({ code: '42501' });

    const ro = poolAs(roles.ro);
    expect((await ro.query('SELECT stream, loads_last_24h FROM tributary.v_stream_freshness')).rows).toEqual([
      { stream: 'tickets/inc', loads_last_24h: '1' },
    ]);
    expect((await ro.query('SELECT count(*)::int AS n FROM tributary.v_watermark_lag')).rows[0].n).toBe(1);
    expect((await ro.query('SELECT count(*)::int AS n FROM tributary.v_recent_failures')).rows[0].n).toBe(0);
    expect((await ro.query('SELECT title FROM bronze.tickets')).rows).toEqual([{ title: 'x' }]);
    await expect(ro.query(`DELETE FROM tributary.loads`)).rejects.toMatchObject({ code: '42501' });
    await expect(ro.query(`UPDATE bronze.tickets SET title = 'y'`)).rejects.toMatchObject({ code: '42501' });
    await expect(
      ro.query(`INSERT INTO tributary.checkpoints (stream, position) VALUES ('x', '{}')`),
    ).rejects.toMatchObject({
      code: '42501',
    });
  });
});
