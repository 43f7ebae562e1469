import { changeFiles, csvChunks, type GeneratedFile } from '@tributary/example-tickets';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { collect, runCli, startCli } from '../support/cli.js';
import {
  checkpointOf,
  exactProblems,
  loadStatuses,
  pollUntil,
  putObject,
  type World,
  world,
} from '../support/reliability.js';
import { listAll } from '../support/tickets.js';

/**
 * PostgreSQL faults against the real binary (issue 7): the backend terminated in the middle of a
 * file's transaction, the server unreachable at start, a statement timeout. → bounded retries
 * or a clear failure; never a partial file; a later run completes exactly.
 */

/** A world where only the inc baseline is uploaded and applied (so tickets.inc exists). */
async function baselineApplied(): Promise<{ w: World; deltas: GeneratedFile[] }> {
  const w = await world();
  const inc = changeFiles(w.files, 'inc');
  const deltas = inc.slice(1);
  const { DeleteObjectCommand } = await import('@aws-sdk/client-s3');
  for (const d of deltas) await w.client.send(new DeleteObjectCommand({ Bucket: w.bucket, Key: d.key }));
  const first = await runCli(['run', '--apply'], w.env);
  expect(first.code, first.stderr).toBe(0);
  for (const d of deltas) await putObject(w, d.key, [...csvChunks(d)].join(''));
  return { w, deltas };
}

/** A second session holding SHARE on tickets.inc: reads pass, the binary's upsert waits. */
async function lockTarget(w: World): Promise<pg.Client> {
  const holder = new pg.Client({ connectionString: w.db.url });
  await holder.connect();
  await holder.query('BEGIN');
  await holder.query('LOCK TABLE tickets.inc IN SHARE MODE');
  return holder;
}

describe.concurrent('PostgreSQL faults', () => {
  it('backend terminated mid-transaction: the file is re-run on a new connection; exact', async () => {
    const { w } = await baselineApplied();
    const holder = await lockTarget(w);
    try {
      const done = collect(startCli(['run', '--apply', '--json'], w.env));
      // The binary's backend is inside a file's transaction, waiting on our lock.
      let pid = 0;
      await pollUntil('the binary waiting on the lock inside a transaction', async () => {
        const r = await w.db.pool.query<{ pid: number }>(
          `SELECT pid FROM pg_stat_activity WHERE application_name = 'tickets-pipeline'
              AND wait_event_type = 'Lock' AND xact_start IS NOT NULL AND datname = current_database()`,
        );
        pid = r.rows[0]?.pid ?? 0;
        return pid !== 0;
      });
      const killed = await w.db.pool.query('SELECT pg_terminate_backend($1) AS ok', [pid]);
      expect(killed.rows[0].ok).toBe(true);
      await holder.query('ROLLBACK');
      const result = await done;
      expect(result.code, result.stderr).toBe(0);
    } finally {
      await holder.end().catch(() => undefined);
    }
    expect(await exactProblems(w, ['inc'])).toEqual([]);
  });

  it('server unreachable at start: exit 1 with a clear message; a later run completes', async () => {
    const w = await world();
    const down = { ...w.env, DATABASE_URL: 'postgres://tributary:pw-unreachable-1@127.0.0.1:1/nowhere' };
    const result = await runCli(['run', '--apply', '--json'], down);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/dataset inc: .*(ECONNREFUSED|connect)/i);
    expect(result.stdout + result.stderr).not.toContain('pw-unreachable-1');
    // Nothing moved in S3.
    expect(await listAll(w.client, w.bucket, 'automations/inc/changes/')).toHaveLength(4);
    expect(await listAll(w.client, w.bucket, 'automations/inc/processed/')).toEqual([]);
    const later = await runCli(['run', '--dataset', 'inc,crq', '--apply'], w.env);
    expect(later.code, later.stderr).toBe(0);
    expect(await exactProblems(w)).toEqual([]);
  });

  it('statement timeout (lock held on the target): clear failure naming the file; checkpoint unmoved; later run exact', async () => {
    const { w, deltas } = await baselineApplied();
    const before = await checkpointOf(w);
    const holder = await lockTarget(w);
    let result: Awaited<ReturnType<typeof runCli>>;
    try {
      result = await runCli(['run', '--apply', '--json'], {
        ...w.env,
        PGOPTIONS: '-c statement_timeout=500',
      });
    } finally {
      await holder.query('ROLLBACK');
      await holder.end();
    }
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/dataset inc: .*2026-06-22T15-53-04\.csv.*statement timeout/);
    expect(await checkpointOf(w)).toEqual(before);
    expect(await loadStatuses(w)).toEqual({ archived: 1, failed: 1 });
    expect(await listAll(w.client, w.bucket, 'automations/inc/changes/')).toEqual(deltas.map((d) => d.key));
    const later = await runCli(['run', '--apply'], w.env);
    expect(later.code, later.stderr).toBe(0);
    expect(await exactProblems(w, ['inc'])).toEqual([]);
  });
});
