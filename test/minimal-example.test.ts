import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { cliEnv, collect } from './support/cli.js';
import { createTestBucket, createTestDatabase } from './support/services.js';
import { listAll } from './support/tickets.js';

/**
 * examples/minimal, run as a user runs the file they copied (`node src/main.ts`): the files are
 * applied in time order (not upload order), exactly once, and archived after commit.
 */
const MAIN = join(import.meta.dirname, '..', 'examples', 'minimal', 'src', 'main.ts');

describe('examples/minimal', () => {
  it('applies change files in time order into a created table, archives them, and a re-run is a no-op', async () => {
    const db = await createTestDatabase();
    const { bucket, client } = await createTestBucket();
    const files: [string, string][] = [
      // Uploaded out of order: the later delta first.
      ['2026-06-22T17-00-00.csv', 'id,status,amount,updated_at\n2,shipped,5.00,2026-06-22T17:00:00Z\n'],
      [
        '2026-06-22T15-00-00.csv',
        'id,status,amount,updated_at\n1,new,10.50,2026-06-22T15:00:00Z\n2,new,5.00,2026-06-22T15:00:00Z\n',
      ],
      [
        '2026-06-22T16-00-00.csv',
        'id,status,amount,updated_at\n1,paid,10.50,2026-06-22T16:00:00Z\n3,new,7.25,\n',
      ],
    ];
    for (const [name, body] of files)
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: `orders/changes/${name}`, Body: body }));
    const env = cliEnv({ databaseUrl: db.url, bucket });
    const run = () => collect(spawn(process.execPath, [MAIN], { env, stdio: ['ignore', 'pipe', 'pipe'] }));

    const first = await run();
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain('applied 3 files, 5 rows');
    const { rows } = await db.pool.query(
      `SELECT id::text, status, amount::text, updated_at FROM shop.orders ORDER BY id`,
    );
    expect(rows).toEqual([
      { id: '1', status: 'paid', amount: '10.50', updated_at: new Date('2026-06-22T16:00:00Z') },
      { id: '2', status: 'shipped', amount: '5.00', updated_at: new Date('2026-06-22T17:00:00Z') },
      { id: '3', status: 'new', amount: '7.25', updated_at: null },
    ]);
    expect(await listAll(client, bucket, 'orders/changes/')).toEqual([]);
    expect(await listAll(client, bucket, 'orders/processed/')).toHaveLength(3);

    const again = await run();
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('applied 0 files, 0 rows');
  });
});
